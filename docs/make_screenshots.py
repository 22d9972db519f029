"""Screenshots of the main window for the user guide.

    xvfb-run -s "-screen 0 1366x768x24" .venv/bin/python docs/make_screenshots.py [--out DIR]

Makes (or reuses) a project with the demo data sets, trains a short SimCLR run
on the digits *through the window* (so the Train view shows real curves),
waits for the UMAP map, trains a short masked autoencoder for the
Reconstructions view, word2vec on the shapes captions for the Words view, and saves
project.png, datasets.png, train.png, map.png, timeline.png, map-pick.png, map-compare.png, reconstructions.png,
compare.png, words.png, search.png and zero-shot.png (the window at 1366×768), and
read-only.png (the top of the window on a copy of the project in a folder made
read-only with ``chattr +i``; left out where chattr is not permitted). Works offscreen too (``QT_QPA_PLATFORM=offscreen``),
with Qt's built-in fonts.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wait_until(app, predicate, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        app.processEvents()
        if predicate():
            return True
        time.sleep(step)
    app.processEvents()
    return predicate()


def shoot_map(app, window, shot, run_id: int, umap_timeout: float = 180.0) -> None:
    """The Map view of ``run_id`` once its UMAP is ready: a point clicked (its neighbours
    listed and ringed) and one of them hovered."""
    window.show_map(run_id)
    mv = window.map_view
    wait_until(app, lambda: mv.kind == "umap", umap_timeout)
    if mv.coords is not None and len(mv.coords):
        i = int(len(mv.coords) // 3)
        mv.select_point(i)
        mv.hover_point(mv.neighbours[0] if mv.neighbours else i)
    shot("map")


def shoot_map_compare(app, window, shot, run_id: int, other_id: int, umap_timeout: float = 180.0) -> None:
    """Two runs side by side: a lasso around one class in the first map selects the same
    items in the second; a clicked and hovered point is ringed in both."""
    import numpy as np
    from scipy.spatial import ConvexHull
    window.show_map(run_id)
    mv = window.map_view
    wait_until(app, lambda: mv.info is not None and mv.info.run_id == run_id and mv.kind == "umap",
               umap_timeout)
    mv.clear_selection()
    other = mv.open_compare(other_id)
    wait_until(app, lambda: other.info is not None and other.kind == "umap", umap_timeout)
    labels = mv.info.data.labels[mv.info.ids]
    members = mv.coords[labels == 3]
    dist = np.linalg.norm(members - np.median(members, axis=0), axis=1)
    members = members[dist < 2 * np.median(dist)]              # the class's main cluster
    hull = members[ConvexHull(members).vertices]
    hull = hull + 0.15 * (hull - hull.mean(axis=0))          # a hand-drawn margin around the class
    mv.select_polygon(hull)
    closed = np.vstack([hull, hull[:1]])
    mv.vb.outline.setData(closed[:, 0], closed[:, 1])        # the lasso as it was drawn
    i = int(mv.selection[len(mv.selection) // 2])
    mv.select_point(i)                                       # its neighbours listed; ringed in both maps
    mv.hover_point(i)
    shot("map-compare")
    mv.vb.outline.setData([], [])
    mv.close_compare()
    mv.clear_lasso()


def shoot_words(app, window, project, shot, epochs: int = 10, umap_timeout: float = 180.0) -> None:
    """word2vec on the shapes captions (trained in-process), then the Words view with a
    neighbour query, an analogy and a hovered word on the map."""
    from engine.workbench import create_run, import_dataset, run_training
    if "shapes-captions" not in {d.name for d in project.datasets()}:
        import_dataset(project, "shapes-captions", "shapes-captions")
    run_id = create_run(project, "shapes-captions", "word2vec",
                        {"epochs": str(epochs), "sample": "0", "dim": "50"}, name="word2vec, captions")
    for _ in run_training(project, run_id):
        app.processEvents()
    window.train_view.runs_changed.emit()
    wv = window.words_view
    window.show_view("words")
    wv.show_run(run_id)
    wait_until(app, lambda: wv.info is not None and wv.info.run_id == run_id, 60)
    # UMAP spreads the tight clusters of this tiny corpus (colours, shapes, sizes) better than PCA.
    wv.kind_combo.setCurrentIndex(wv.kind_combo.findData("umap"))
    wait_until(app, lambda: wv.kind == "umap", umap_timeout)
    wv.query_neighbours("red")
    for edit, word in zip(wv.analogy_edits, ("red", "circle", "blue")):
        edit.setText(word)
    wv.query_analogy()
    if "triangle" in wv.map_words:
        wv.hover_point(wv.map_words.index("triangle"))
    shot("words")


def shoot_search(app, window, project, shot, epochs: int = 10) -> None:
    """CLIP on the shapes (trained in-process), then the Search view: a text query with the
    first result's captions, and zero-shot classification by colour."""
    from engine.workbench import create_run, run_training
    run_id = create_run(project, "shapes", "clip", {"epochs": str(epochs), "lr": "3e-3", "eval_every": "0"},
                        name="clip on shapes")
    for _ in run_training(project, run_id):
        app.processEvents()
    window.train_view.runs_changed.emit()
    sv = window.search_view
    window.show_view("search")
    sv.show_run(run_id)
    sv.query_edit.setText("a small red circle")
    sv.run_query()
    wait_until(app, lambda: sv.hits is not None and not sv.busy, 120)
    if sv.results.count():
        sv.results.setCurrentRow(0)
        wait_until(app, lambda: sv.described is not None and not sv.busy, 60)
    shot("search")
    sv.tabs.setCurrentIndex(1)
    sv.label_combo.setCurrentIndex(sv.label_combo.findData("colour"))
    sv.run_zero_shot()
    wait_until(app, lambda: sv.zero_shot_result is not None and not sv.busy, 60)
    shot("zero-shot")


def shoot_read_only(app, window, out: Path, project_path: Path) -> Path | None:
    """A copy of the project in a folder made immutable (``chattr +i``, as root), opened the way
    the app opens any file: the read-only banner and the Project view, top part only."""
    import sqlite3
    import subprocess
    from PySide6.QtCore import QRect
    folder = project_path.parent / "read-only"
    folder.mkdir(exist_ok=True)
    copy = folder / "course.pretext"
    copy.unlink(missing_ok=True)
    with sqlite3.connect(f"file:{project_path}?mode=ro", uri=True) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)                     # a consistent copy while the window has the file open
    dst.close()
    src.close()
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"read-only.png left out: chattr +i is not permitted here ({done.stderr.strip()})")
        return None
    try:
        opened = []
        window.project_opened.connect(opened.append)
        window.open_project_async(copy)
        wait_until(app, lambda: bool(opened), 120)
        window.project_opened.disconnect(opened.append)
        window.show_view("project")
        window.project_view.refresh()
        wait_until(app, lambda: False, 0.5)
        path = out / "read-only.png"
        window.grab(QRect(0, 0, window.width(), 300)).save(str(path))
        print(f"saved {path}", flush=True)
        return path
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--project", type=Path, default=Path("/tmp/pretext-shots/shots.pretext"))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--theme", choices=("light", "dark", "system"), default="system")
    parser.add_argument("--umap-timeout", type=float, default=180.0)
    parser.add_argument("--mae-epochs", type=int, default=15)
    args = parser.parse_args(argv)

    import os
    if args.theme != "system":
        os.environ["PRETEXT_THEME"] = args.theme
    os.environ.setdefault("PRETEXT_SETTINGS", str(args.project.parent / "settings.ini"))
    from gui.app import make_app
    app = make_app()
    from engine.workbench import ensure_demo_project
    from gui.main_window import MainWindow, describe_device
    from gui.workers import stop_all

    args.project.parent.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for leftover in (args.project, *args.project.parent.glob(args.project.name + "-*")):
        leftover.unlink(missing_ok=True)     # a fresh project: the pictures show only this script's runs
    project = ensure_demo_project(args.project)
    window = MainWindow(project)
    window.set_project(project, describe_device())
    window.resize(1366, 768)
    window.show()
    wait_until(app, lambda: window.isVisible(), 5)

    def shot(name: str) -> Path:
        app.processEvents()
        path = args.out / f"{name}.png"
        window.grab().save(str(path))
        print(f"saved {path}", flush=True)
        return path

    # Train a short run through the window.
    tv = window.train_view
    window.show_view("train")
    tv.dataset_combo.setCurrentIndex(tv.dataset_combo.findData(project.dataset("digits").id))
    tv.method_combo.setCurrentIndex(tv.method_combo.findData("simclr"))
    tv.train_form.set_values({"epochs": args.epochs, "batch_size": 128})
    tv.method_form.set_values({"width": 16})
    tv.name_edit.setText("simclr, width 16")
    assert tv.start_run(), tv.config_problems.text()
    if not wait_until(app, lambda: not tv.busy, 600):
        print("the run did not finish in time", file=sys.stderr)
        stop_all()
        return 1
    run_id = tv.run_id
    # The view estimates after a run that started before any estimate: wait for its numbers.
    wait_until(app, lambda: tv.estimate is not None, 60)
    shot("train")

    shoot_map(app, window, shot, run_id, args.umap_timeout)
    mv = window.map_view

    # The timeline: half way between the first and the last evaluation.
    mv.clear_selection()
    mv.set_timeline(True)
    if wait_until(app, lambda: mv.timeline is not None, 60):
        mv.timeline_slider.setValue(mv.timeline_slider.maximum() // 2)
        shot("timeline")
    mv.set_timeline(False)

    # Pick to label: 30 images chosen by TypiClust light up on the map.
    mv.pick_to_label("typiclust", 30)
    if wait_until(app, lambda: len(mv.selection) == 30, 60):
        shot("map-pick")
    mv.clear_lasso()

    # A masked autoencoder for the Reconstructions view (trained in-process, no evaluations
    # until the end: this is about the pictures).
    from engine.workbench import create_run, run_training
    mae_id = create_run(project, "digits", "mae", {"epochs": str(args.mae_epochs), "eval_every": "0"},
                        name="mae, 75 % masked")
    for _ in run_training(project, mae_id):
        app.processEvents()
    window.train_view.runs_changed.emit()
    rv = window.reconstructions_view
    window.show_view("reconstructions")
    rv.show_run(mae_id)
    wait_until(app, lambda: rv.result is not None and not rv.busy, 60)
    shot("reconstructions")

    shoot_map_compare(app, window, shot, run_id, mae_id, args.umap_timeout)

    window.show_view("compare")
    window.compare_view.refresh()
    window.compare_view.select_runs([run_id, mae_id])
    shot("compare")

    shoot_words(app, window, project, shot, umap_timeout=args.umap_timeout)
    shoot_search(app, window, project, shot)

    dv = window.datasets_view
    window.show_view("datasets")
    dv.show_dataset(project.dataset("shapes").id)
    wait_until(app, lambda: dv.data is not None and dv.data.name.startswith("shapes"), 60)
    dv.tabs.setCurrentIndex(1)
    shot("datasets")

    window.show_view("project")
    window.project_view.refresh()
    window.project_view.select_run(run_id)
    shot("project")
    stop_all()
    shoot_read_only(app, window, args.out, args.project)
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
