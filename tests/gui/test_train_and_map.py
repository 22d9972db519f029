"""Drive the window end to end: train, stop, resume, then explore the map."""
from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt, QTimer

from engine.workbench import final_embeddings, load_dataset
from gui.images import thumbnail


class Ticks:
    """Records when a 10 ms QTimer actually fires: the gaps show event-loop stalls."""

    def __init__(self):
        self.times: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(lambda: self.times.append(time.perf_counter()))

    def start(self):
        self.timer.start()

    def stop(self):
        self.timer.stop()
        gaps = np.diff(self.times) if len(self.times) > 1 else np.zeros(1)
        return gaps


def _losses(project, run_id):
    rows = project.metrics(run_id, "loss")
    return [r.step for r in rows], [r.value for r in rows]


@pytest.mark.timeout(240)
def test_train_stop_resume_and_map(window, project, qtbot, configure_small_run, monkeypatch):
    tv = window.train_view
    configure_small_run(window, epochs=2, width=8)

    ticks = Ticks()
    ticks.start()
    qtbot.mouseClick(tv.start_button, Qt.MouseButton.LeftButton)
    assert tv.busy and not tv.start_button.isEnabled()
    qtbot.waitUntil(lambda: tv.loss_curve.yData is not None and len(tv.loss_curve.yData) >= 2, timeout=60_000)

    # The curve is exactly the losses the Step events carried.
    steps = [e.step for e in tv.step_events]
    losses = [e.loss for e in tv.step_events]
    n = len(tv.loss_curve.yData)
    assert list(tv.loss_curve.xData) == steps[:n]
    np.testing.assert_allclose(tv.loss_curve.yData, losses[:n])
    assert tv.state == "running"
    assert window.run_state_label.text().startswith("Training run #")
    assert tv.progress.maximum() == 22          # 1437 training digits // 128 = 11 steps × 2 epochs
    run_id = tv.run_id
    assert project.run(run_id).config["method_config"]["width"] == 8
    assert project.run(run_id).config["train"]["batch_size"] == 128

    qtbot.mouseClick(tv.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tv.busy and tv.state == "idle", timeout=60_000)
    assert project.run(run_id).status == "stopped"
    checkpoints = project.checkpoints(run_id)
    assert checkpoints, "stopping saves a checkpoint"
    stopped_at = checkpoints[-1][1]
    assert 2 <= stopped_at < 22
    # After the stop every logged loss is in the table, and the curve matches it.
    table_steps, table_losses = _losses(project, run_id)
    assert list(tv.loss_curve.xData) == table_steps
    np.testing.assert_allclose(tv.loss_curve.yData, table_losses)

    # Resume the stopped run from the Train view's resume picker.
    assert tv.resume_combo.currentData() == run_id
    assert tv.resume_button.isEnabled()
    qtbot.mouseClick(tv.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tv.busy and tv.state == "idle", timeout=120_000)
    gaps = ticks.stop()
    assert project.run(run_id).status == "finished", project.run(run_id).error
    table_steps, table_losses = _losses(project, run_id)
    assert table_steps == list(range(1, 23))
    assert list(tv.loss_curve.xData) == table_steps   # history before the stop + the resumed steps
    np.testing.assert_allclose(tv.loss_curve.yData, table_losses)
    knn_rows = project.metrics(run_id, "knn")
    assert list(tv.knn_curve.xData) == [r.epoch for r in knn_rows] == [1.0, 2.0]
    np.testing.assert_allclose(tv.knn_curve.yData, [100 * r.value for r in knn_rows])   # in %
    assert tv.progress.value() == 22

    p99 = float(np.percentile(gaps, 99)) * 1000
    print(f"\nevent loop during training: {len(gaps)} ticks, max gap {gaps.max() * 1000:.0f} ms, "
          f"p99 {p99:.0f} ms")
    # A gross-stall guard only (training or I/O on the GUI thread would block for seconds):
    # the latency target (p99 < 50 ms) is measured by bench/gui_latency.py, not by a timed
    # test — a fresh virtualenv compiling its first imports on a busy machine can pause ~0.5 s.
    assert gaps.max() < 2.0, f"the event loop stalled for {gaps.max() * 1000:.0f} ms"

    # The Project view lists the run with its evaluation.
    window.show_view("project")
    pv = window.project_view
    assert pv.select_run(run_id)
    row = pv.runs_table.currentRow()
    assert pv.runs_table.item(row, 4).text() == "finished"
    assert pv.runs_table.item(row, 5).text() == f"{project.latest_metrics(run_id)['knn']:.1%}"
    assert pv.runs_table.item(row, 6).text() == f"{project.latest_metrics(run_id)['linear']:.1%}"

    # ---- the map -------------------------------------------------------------------
    mv = window.map_view
    mv.auto_umap = False
    with qtbot.waitSignal(mv.map_ready, timeout=30_000) as ready:
        window.show_map(run_id)
    assert ready.args == ["pca"]
    data = load_dataset(project, project.run(run_id).dataset_id)
    emb = final_embeddings(project, run_id)
    ids, vectors = project.load_embeddings(emb.id)
    assert len(mv.scatter.data) == data.n == 1797
    assert mv.scatter.opts["pxMode"]
    labels = data.labels[ids]
    brushes = mv.scatter.data["brush"]
    colours = [QColorName(b) for b in brushes]
    for cls in range(10):
        members = {colours[i] for i in np.flatnonzero(labels == cls)}
        assert members == {mv.class_colors[cls].name()}
    assert len({c.name() for c in mv.class_colors}) == 10
    assert len(mv.legend.items) == 10
    assert [label.text for _, label in mv.legend.items] == data.class_names

    # Hover: the handler, fed the point's scene position, shows that item.
    i = 123
    mv._on_mouse_moved(mv.scene_pos_of(i))
    assert mv.hover_index is not None
    same_place = np.flatnonzero(np.all(mv.coords == mv.coords[i], axis=1))
    assert mv.hover_index in same_place
    hovered = mv.hover_index
    assert mv.hover_card.isVisible()
    expected = thumbnail(data.images[ids[hovered]], 96).toImage()
    shown = mv.hover_image.pixmap().toImage()
    assert shown.size() == expected.size() and shown.width() == 96   # 8×8 scaled 12× by nearest neighbour
    assert shown == expected
    assert f"<b>{data.class_names[labels[hovered]]}</b>" in mv.hover_text.text()
    assert data.item_names[ids[hovered]] in mv.hover_text.text()
    mv._on_mouse_moved(QPointF(-1000, -1000))
    assert not mv.hover_card.isVisible()

    # Click: eight neighbours by cosine similarity, the nearest first.
    mv._on_mouse_clicked(FakeClick(mv.scene_pos_of(i)))
    assert mv.selected_index in same_place
    sel = mv.selected_index
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit[sel]
    sims[sel] = -np.inf
    assert mv.neighbour_list.count() == 8
    listed = [mv.neighbour_list.item(k).data(Qt.ItemDataRole.UserRole) for k in range(8)]
    assert listed[0] == int(np.argmax(sims))
    np.testing.assert_allclose(sorted(sims[listed], reverse=True), sims[listed], rtol=1e-5)
    np.testing.assert_allclose(sims[listed], np.sort(sims)[::-1][:8], rtol=1e-5)

    # UMAP is computed in the background and swapped in (a fake fit: numba compiling is slow).
    fake = np.column_stack([vectors[:, 0], vectors[:, 1] * 2]).astype(np.float32)

    def fake_umap(project_, embedding_id, progress=None):
        pid = project_.save_projection(embedding_id, "umap", {}, fake)
        return embedding_id, pid, project_.load_projection(pid)

    monkeypatch.setattr("gui.views.map_view.compute_umap", fake_umap)
    # (A PCA redraw still queued from loading the run may arrive first: wait for the UMAP one.)
    with qtbot.waitSignal(mv.map_ready, timeout=30_000, check_params_cb=lambda kind: kind == "umap") as ready:
        mv.start_umap()
    assert ready.args == ["umap"] and mv.kind == "umap"
    from engine.maps import normalise_coords
    np.testing.assert_allclose(mv.coords, normalise_coords(fake))
    np.testing.assert_allclose(mv.scatter.data["x"], normalise_coords(fake)[:, 0])
    assert len(mv.scatter.data) == 1797
    assert [p.kind for p in project.projections(emb.id)] == ["pca", "umap"]
    assert window.map_view.kind_combo.currentData() == "umap"


def QColorName(brush) -> str:  # noqa: N802 - reads like the Qt call it wraps
    return brush.color().name()


class FakeClick:
    def __init__(self, pos):
        self._pos = pos

    def button(self):
        return Qt.MouseButton.LeftButton

    def scenePos(self):  # noqa: N802 - Qt naming
        return self._pos


def test_map_colours_by_attribute_and_shows_captions(window, project, qtbot):
    """A PCA run on shapes: colour by any attribute; the hover card shows the caption."""
    from engine.workbench import create_run, import_dataset, run_training
    ds_id, data = import_dataset(project, "shapes", "shapes", n=200, size=16, seed=0)
    run_id = create_run(project, ds_id, "pca")
    events = list(run_training(project, run_id))
    assert type(events[-1]).__name__ == "Finished", events[-1]

    mv = window.map_view
    mv.auto_umap = False
    with qtbot.waitSignal(mv.map_ready, timeout=30_000):
        window.show_map(run_id)
    keys = [mv.colour_combo.itemData(i) for i in range(mv.colour_combo.count())]
    assert keys[0] == "label" and keys[-1] == "none"
    assert {k[5:] for k in keys if k.startswith("attr:")} == set(data.attributes)
    attr = next(iter(data.attributes))
    mv.colour_combo.setCurrentIndex(keys.index(f"attr:{attr}"))
    ids_attr, names = data.attributes[attr]
    assert mv.group_names[:len(names)] == list(names)
    for i in (0, 17, 199):
        assert mv.scatter.data["brush"][i].color() == mv.class_colors[ids_attr[i]]
    assert [label.text for _, label in mv.legend.items] == list(names)

    mv.hover_point(5)
    assert data.captions[5] in mv.hover_text.text()
    assert mv.hover_image.pixmap().width() == 96          # 16×16 scaled up 6×


@pytest.mark.timeout(240)
def test_an_image_folder_imports_and_trains_streamed_from_the_gui(window, project, qtbot, tmp_path, set_field):
    """Issue 13 in the app: a folder imported through the Datasets view is stored encoded,
    and a run on it streams its batches from decoding worker processes to the end."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for i in range(120):
        folder = tmp_path / "photos" / ("red" if i % 2 else "blue")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 60, (48, 64, 3), dtype=np.uint8)
        pixels[..., 0 if i % 2 else 2] += 180
        Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=85)
    dv = window.datasets_view
    window.show_view("datasets")
    assert dv.import_dataset("image-folder", "photos", path=str(tmp_path / "photos"), size=24)
    qtbot.waitUntil(lambda: "photos" in [d.name for d in project.datasets()] and not dv.cancel_button.isVisible(),
                    timeout=60_000)
    rec = project.dataset("photos")
    assert rec.n_items == 120 and project.dataset_items(rec.id) is not None
    tv = window.train_view
    window.show_view("train")
    qtbot.waitUntil(lambda: tv.dataset_combo.findText("photos", Qt.MatchFlag.MatchStartsWith) >= 0, timeout=10_000)
    tv.dataset_combo.setCurrentIndex(tv.dataset_combo.findText("photos", Qt.MatchFlag.MatchStartsWith))
    tv.method_combo.setCurrentIndex(tv.method_combo.findData("simclr"))
    for name, value in (("epochs", 2), ("batch_size", 32), ("cache_mb", 0), ("data_workers", 2)):
        set_field(tv.train_form, name, value)
    set_field(tv.method_form, "width", 4)
    assert tv.start_button.isEnabled(), tv.config_problems.text()
    qtbot.mouseClick(tv.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tv.run_id is not None and project.run(tv.run_id).status == "finished", timeout=180_000)
    run = project.run(tv.run_id)
    assert run.config["train"]["data_workers"] == 2 and run.config["train"]["cache_mb"] == 0
    emb = final_embeddings(project, run.id)
    assert emb.n == 120
    latest = project.latest_metrics(run.id)
    assert latest["raw_knn"] > 0.9 and 0.0 <= latest["knn"] <= 1.0      # red vs blue: easy for raw pixels
