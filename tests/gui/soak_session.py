"""A long GUI session as a user has it: the real main window, the Train view open
with live curves, SimCLR, MAE and CLIP queued back to back (again and again until
the time is up), each finished run shown on the Map (PCA at once, UMAP in the
background), then back to Train.

Run it by hand for the 15-minute check of issue #10 (under Xvfb for a real
window, or offscreen):

    xvfb-run -a .venv/bin/python tests/gui/soak_session.py --seconds 900

tests/gui/test_soak.py runs it for a couple of minutes in a subprocess, so a crash
(an abort in a C extension) fails the test instead of killing pytest. It prints one
JSON line: events handled, runs finished, reference counts of None/True/False
before and after, peak RSS and the event loop's longest gap.
"""
from __future__ import annotations

import argparse
import faulthandler
import gc
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PRETEXT_SETTINGS", str(Path(tempfile.mkdtemp(prefix="pretext-soak-")) / "settings.ini"))

#: (data set, method, loop settings, method settings) of the three runs queued per round:
#: a round takes about a minute on two CPU cores. SimCLR makes most of the events (640
#: small steps, an evaluation every 5 epochs so the evaluation plot and the collapse
#: monitor move too); MAE and CLIP are short, for their own curves and maps.
ROUND = (
    ("digits", "simclr", {"epochs": 20, "batch_size": 16, "max_train_items": 512, "eval_every": 5},
     {"width": 4}),
    ("digits", "mae", {"epochs": 3, "batch_size": 32, "max_train_items": 512}, {}),
    ("shapes", "clip", {"epochs": 2, "batch_size": 32, "max_train_items": 512}, {}),
)
TRAIN_COMMON = {"log_every": 1, "eval_every": 1, "timeline_items": 200, "knn_k": 20, "threads": 1}


def singleton_counts() -> dict[str, int]:
    gc.collect()
    return {"None": sys.getrefcount(None), "True": sys.getrefcount(True), "False": sys.getrefcount(False)}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB


def start_stall_watch(clock, stall_ms: float) -> None:
    """A daemon thread that prints where the GUI thread is while the event loop is blocked."""
    import threading
    import traceback
    gui_thread = threading.main_thread().ident

    def watch() -> None:
        reported_at = None
        while True:
            time.sleep(stall_ms / 4000)
            blocked = clock.elapsed()
            if blocked >= stall_ms and reported_at != clock.msecsSinceReference():
                reported_at = clock.msecsSinceReference()
                frame = sys._current_frames().get(gui_thread)
                stack = "".join(traceback.format_stack(frame)[-12:]) if frame else "?"
                print(f"--- event loop blocked {blocked} ms:\n{stack}", file=sys.stderr, flush=True)

    threading.Thread(target=watch, name="stall-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120, help="how long to keep training (at most)")
    ap.add_argument("--min-events", type=int, default=0,
                    help="end as soon as this many training events reached the window and a whole "
                         "round (SimCLR, MAE, CLIP) finished, even before --seconds (0 = run --seconds)")
    ap.add_argument("--project", help="a project file to use (default: a new temporary one)")
    ap.add_argument("--stall-ms", type=float, default=0,
                    help="print the GUI thread's stack to stderr whenever the event loop has been "
                         "blocked this long (0 = off): finds what stalls the window")
    args = ap.parse_args(argv)
    # A hang must not pass for a slow machine: past this, print every thread's stack and exit.
    faulthandler.dump_traceback_later(args.seconds + 240, exit=True)

    from PySide6.QtCore import QElapsedTimer, Qt, QTimer

    from engine.store import Project
    from engine.workbench import import_dataset
    from gui.app import make_app
    from gui.main_window import MainWindow
    from gui.workers import stop_all

    path = Path(args.project or Path(tempfile.mkdtemp(prefix="pretext-soak-")) / "soak.pretext")
    project = Project.open_or_create(path)
    names = {d.name for d in project.datasets()}
    for kind in ("digits", "shapes"):
        if kind not in names:
            import_dataset(project, kind, kind)

    app = make_app()
    window = MainWindow(project)
    window.resize(1366, 768)
    window.show()
    tv = window.train_view
    window.show_view("train")

    stats = {"events": 0, "rounds": 0, "maps_shown": 0, "max_gap_ms": 0.0}
    counted_workers: set[int] = set()
    deadline = time.monotonic() + args.seconds
    t0 = time.monotonic()

    def count_event(_ev) -> None:
        stats["events"] += 1

    def queue_round() -> None:
        for ds, method, train_values, method_values in ROUND:
            window.show_view("train")
            tv.dataset_combo.setCurrentIndex(tv.dataset_combo.findText(ds, Qt.MatchFlag.MatchStartsWith))
            tv.method_combo.setCurrentIndex(tv.method_combo.findData(method))
            tv.train_form.set_values({**TRAIN_COMMON, **train_values})
            if method_values:
                tv.method_form.set_values(method_values)
            tv.name_edit.setText(f"soak {stats['rounds'] + 1} {method}")
            if not tv.add_to_queue():
                raise SystemExit(f"could not queue {method} on {ds}: {tv.config_problems.text()}")
        stats["rounds"] += 1
        tv.run_queue()

    last_finished: list[int] = []

    def tick() -> None:
        worker = tv.worker
        if worker is not None and id(worker) not in counted_workers:
            counted_workers.add(id(worker))
            worker.event.connect(count_event)
        finished = [r.id for r in project.runs() if r.status == "finished"]
        if finished and finished[-1] not in last_finished:
            last_finished.append(finished[-1])
            window.show_map(finished[-1])        # PCA at once, UMAP in the background
            stats["maps_shown"] += 1
            QTimer.singleShot(3000, lambda: window.show_view("train"))
        enough = (args.min_events and stats["events"] >= args.min_events
                  and len(last_finished) >= len(ROUND))
        if time.monotonic() >= deadline or enough:
            app.exit(0)     # not quit(): in Qt 6 it closes the window, which asks about the run
        elif not tv.busy and not tv.queue:
            queue_round()
            clock.restart()    # picking three methods rebuilds the forms three times: the
                               # harness's own clicks, not a stall while training

    # The event loop's longest gap, measured by a 10 ms timer.
    clock = QElapsedTimer()
    clock.start()

    def beat() -> None:
        gap = clock.restart() - 10
        if time.monotonic() - t0 > 5:      # skip start-up (imports, first layout)
            stats["max_gap_ms"] = max(stats["max_gap_ms"], float(gap))

    if args.stall_ms:
        start_stall_watch(clock, args.stall_ms)
    before = singleton_counts()
    timers = []
    for interval, fn in ((10, beat), (250, tick)):
        t = QTimer()
        t.timeout.connect(fn)
        t.start(interval)
        timers.append(t)
    app.exec()
    for t in timers:
        t.stop()
    stop_all()
    app.processEvents()
    after = singleton_counts()

    runs = project.runs()
    result = {
        "seconds": round(time.monotonic() - t0, 1),
        "events": stats["events"],
        "rounds": stats["rounds"],
        "runs_finished": sum(r.status == "finished" for r in runs),
        "runs_failed": [f"#{r.id} {r.method}: {(r.error or '').splitlines()[0] if r.error else ''}"
                        for r in runs if r.status == "failed"],
        "maps_shown": stats["maps_shown"],
        "refcounts_before": before,
        "refcounts_after": after,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "max_event_loop_gap_ms": round(stats["max_gap_ms"], 1),
        "python": sys.version.split()[0],
    }
    window.close()
    project.close()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
