"""A big image collection in the app (issue 13): import it and train on it from the window.

Drives the real MainWindow on a project (made by bench/scale.py): imports the
photo folder through the Datasets view's import flow (a project that already
holds those files recognises them by their fingerprint and stores nothing),
then starts SimCLR on the collection from the Train view and stops after a few
steps. Prints the import time, the time from Start to the first step shown,
the steps seen, the longest event-loop gap, and the process's peak RSS.

    xvfb-run -a .venv/bin/python bench/gui_scale.py [--project P] [--photos FOLDER] [--steps 3]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

CACHE = Path("~/.cache/pretext/bench-scale").expanduser()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, default=CACHE / "scale-n100000.pretext")
    ap.add_argument("--photos", type=Path, default=CACHE / "n100000")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--skip-import", action="store_true")
    args = ap.parse_args(argv)
    if not args.project.exists() or not args.photos.exists():
        sys.exit(f"make the collection first: .venv/bin/python bench/scale.py (no {args.project} or {args.photos})")

    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication
    app = QApplication(sys.argv)
    from gui.main_window import MainWindow
    sys.path.insert(0, str(ROOT / "docs"))
    from make_screenshots import wait_until

    gaps, last = [0.0], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now
    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)

    w = MainWindow()
    w.resize(1366, 768)
    w.show()
    w.open_project_async(str(args.project))
    assert wait_until(app, lambda: w.project is not None and w.opening_path is None, 120), "project did not open"
    n = w.project.dataset("photos").n_items
    messages = []
    w.statusBar().messageChanged.connect(lambda text: messages.append(text) if text else None)

    dv = w.datasets_view
    w.show_view("datasets")
    t0 = time.perf_counter()
    if not args.skip_import:
        dv.import_dataset("image-folder", None, path=str(args.photos), size=96)
        assert wait_until(app, lambda: not dv.cancel_button.isVisible(), 1800), "import did not end"
        imported = time.perf_counter() - t0
        said = [m for m in messages if "already holds" in m or "Imported" in m]
        print(f"gui import of {n} photos: {imported:.0f} s; the window said: {said[-1] if said else messages[-1:]}",
              flush=True)

    tv = w.train_view
    w.show_view("train")
    tv.dataset_combo.setCurrentIndex(tv.dataset_combo.findText("photos", Qt.MatchFlag.MatchStartsWith))
    tv.method_combo.setCurrentIndex(tv.method_combo.findData("simclr"))
    t0 = time.perf_counter()
    if not wait_until(app, lambda: tv.start_button.isEnabled(), 300):
        sys.exit(f"Start stayed disabled: {tv.config_problems.text()!r} {tv.estimate_label.text()!r} {messages[-3:]}")
    print(f"train view ready to start after {time.perf_counter() - t0:.1f} s "
          f"(estimate: {tv.estimate_label.text()})", flush=True)
    gaps.clear()
    last[0] = time.perf_counter()
    t0 = time.perf_counter()
    tv.start_button.click()
    if not wait_until(app, lambda: len(tv.step_events) >= 1, 600):
        sys.exit(f"no step: state {tv.state}, messages {messages[-5:]}")
    first = time.perf_counter() - t0
    assert wait_until(app, lambda: len(tv.step_events) >= args.steps, 900), "too few steps"
    tv.stop_button.click()
    wait_until(app, lambda: not tv.busy, 600)
    status = w.project.run(tv.run_id).status
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"gui train simclr on {n} photos at 96 px: first step shown {first:.1f} s after Start, "
          f"{len(tv.step_events)} steps, then stopped ({status}); longest event-loop gap while training "
          f"{1000 * max(gaps):.0f} ms; peak RSS {peak:.0f} MB", flush=True)
    w.close()


if __name__ == "__main__":
    main()
