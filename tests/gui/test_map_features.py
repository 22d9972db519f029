"""The Map view's sentence maps, caption-word and cluster colours, lasso selection (grid,
export) and two linked maps side by side."""
from __future__ import annotations

import csv
import re
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QPolygonF
from PySide6.QtTest import QTest

from engine.workbench import cluster_embeddings, create_run, import_dataset, run_training

MLM_TINY = {"tokenizer": "word", "vocab_size": "60", "dim": "32", "depth": "1", "heads": "2", "max_len": "24",
            "batch_size": "64", "epochs": "1"}


def trained(project, dataset, method, overrides=None) -> int:
    run_id = create_run(project, dataset, method, overrides or {})
    events = list(run_training(project, run_id))
    assert type(events[-1]).__name__ == "Finished" and events[-1].status == "finished", events[-1]
    return run_id


def open_map(window, qtbot, run_id):
    mv = window.map_view
    mv.auto_umap = False                        # no numba compilation in a test
    with qtbot.waitSignal(mv.map_ready, timeout=30_000):
        window.show_map(run_id)
    return mv


def inside_by_qt(coords: np.ndarray, polygon: np.ndarray) -> set[int]:
    """The reference: Qt's own even-odd point-in-polygon test."""
    poly = QPolygonF([QPointF(float(x), float(y)) for x, y in polygon])
    return {i for i, (x, y) in enumerate(coords)
            if poly.containsPoint(QPointF(float(x), float(y)), Qt.FillRule.OddEvenFill)}


class FakeDrag:
    """A left-button drag event, as pyqtgraph's scene delivers it to a ViewBox."""

    def __init__(self, vb, start, last, here, stage, modifiers=Qt.KeyboardModifier.NoModifier):
        self._vb, self._start, self._last, self._here = vb, start, last, here
        self._stage, self._mods = stage, modifiers

    def isStart(self):  # noqa: N802 - pyqtgraph naming
        return self._stage == "start"

    def isFinish(self):  # noqa: N802
        return self._stage == "finish"

    def button(self):
        return Qt.MouseButton.LeftButton

    def modifiers(self):
        return self._mods

    def _local(self, xy):
        return pg.Point(self._vb.mapFromView(QPointF(*xy)))

    def buttonDownPos(self, button=None):  # noqa: N802
        return self._local(self._start)

    def pos(self):
        return self._local(self._here)

    def lastPos(self):  # noqa: N802
        return self._local(self._last)

    def accept(self):
        pass

    def ignore(self):
        pass


def drag_lasso(vb, polygon, modifiers=Qt.KeyboardModifier.NoModifier):
    """Drag through the polygon's corners; returns the outline the view received (the
    corners after a round trip through pixel coordinates), or None when it panned."""
    received = []
    vb.lasso_finished.connect(received.append)
    pts = [tuple(p) for p in polygon]
    for k, p in enumerate(pts[1:], 1):
        stage = "start" if k == 1 else "finish" if k == len(pts) - 1 else "move"
        vb.mouseDragEvent(FakeDrag(vb, pts[0], pts[k - 1], p, stage, modifiers))
    vb.lasso_finished.disconnect(received.append)
    if received:
        np.testing.assert_allclose(received[0], polygon, atol=1e-6)
    return received[0] if received else None


def test_points_in_polygon_matches_qt(lasso_cases):
    from engine.explore.map import points_in_polygon
    pts, star, bow = lasso_cases
    for poly in (star, bow):
        got = points_in_polygon(pts, poly)
        assert set(np.flatnonzero(got)) == inside_by_qt(pts, poly)
        assert 100 < got.sum() < 2900
    assert not points_in_polygon(pts, star[:2]).any()             # two points enclose nothing


def test_sentence_map_hover_caption_word_and_clusters(window, project, qtbot):
    """A masked language model run: its points are sentences (ids index TextData.sentences)."""
    _, data = import_dataset(project, "shapes-captions", "captions", n=400)
    run_id = trained(project, "captions", "mlm", MLM_TINY)
    mv = open_map(window, qtbot, run_id)
    ids = mv.info.ids
    assert mv.info.points == "sentences" and mv.shows_words and len(ids) == data.n
    assert "sentences" in mv.status.text()

    # Hover: the sentence itself, not the vocabulary word with the same index.
    i = 37
    mv._on_mouse_moved(mv.scene_pos_of(i))
    hovered = mv.hover_index
    assert hovered is not None and mv.hover_card.isVisible() and not mv.hover_image.isVisible()
    sentence = data.sentences[int(ids[hovered])]
    assert sentence in mv.hover_text.text()
    assert data.vocab[int(ids[hovered]) % len(data.vocab)] != sentence
    # Click: the neighbours are sentences too.
    mv.select_point(i)
    texts = [mv.neighbour_list.item(k).text() for k in range(mv.neighbour_list.count())]
    assert len(texts) == 8
    assert texts[0].endswith(data.sentences[int(ids[mv.neighbours[0]])])
    assert not mv.compare_combo.isEnabled()                       # no other sentence run to compare with

    # Colour by a word in the sentences: matching points highlighted, the count shown.
    keys = [mv.colour_combo.itemData(k) for k in range(mv.colour_combo.count())]
    assert keys == ["caption", "cluster", "none"]
    mv.colour_combo.setCurrentIndex(keys.index("caption"))
    assert mv.caption_edit.isVisible() and not mv.k_spin.isVisible()
    mv.caption_edit.setText("Red")                               # typed: recolours after a short pause
    qtbot.waitUntil(lambda: mv.match_count is not None, timeout=5_000)
    want = np.array(["red" in re.findall(r"\w+", data.sentences[int(k)].lower()) for k in ids])
    assert 0 < mv.match_count == int(want.sum()) < len(ids)
    assert mv.colour_note.text() == f"{want.sum():,} of {len(ids):,}"
    from gui.views.map_view import MATCH_COLOUR, OTHER_COLOUR
    colours = np.array([b.color().rgba() for b in mv.scatter.data["brush"]])
    assert (colours[want] == MATCH_COLOUR.rgba()).all() and (colours[~want] == OTHER_COLOUR.rgba()).all()
    assert [label.text for _, label in mv.legend.items][1].startswith("contains “Red”")

    # Colour by k-means cluster: computed on a worker, k distinct colours, the engine's clusters.
    mv.k_spin.setValue(5)
    mv.colour_combo.setCurrentIndex(keys.index("cluster"))
    qtbot.waitUntil(lambda: mv.colour_note.text() == "5 clusters", timeout=30_000)
    colours = [b.color().name() for b in mv.scatter.data["brush"]]
    assert len(set(colours)) == 5
    expected = cluster_embeddings(mv.info.vectors, 5)
    np.testing.assert_array_equal(mv.labels, expected)
    assert all(colours[r] == mv.class_colors[expected[r]].name() for r in range(len(ids)))
    assert len(mv.legend.items) == 5


def test_lasso_selects_shows_a_grid_and_exports(window, project, qtbot, tmp_path):
    run_id = trained(project, "digits", "pca", {"dim": "16"})
    mv = open_map(window, qtbot, run_id)
    data = mv.info.data
    assert not mv.grid_button.isEnabled() and not mv.export_button.isEnabled()

    # A lasso drawn with Shift + drag (the view pans without Shift, unless the lasso tool is on).
    c = mv.coords
    lo, hi = c.min(axis=0), c.max(axis=0)
    mid = (lo + hi) / 2
    poly = np.array([lo, [mid[0], hi[1]], [hi[0], mid[1]], [mid[0], lo[1] + 0.2 * (hi[1] - lo[1])]])
    with qtbot.waitSignal(mv.selection_changed) as changed:
        drawn = drag_lasso(mv.vb, poly, Qt.KeyboardModifier.ShiftModifier)
    want = inside_by_qt(c, drawn)
    assert 20 < len(want) < len(c) - 20
    assert set(mv.selection.tolist()) == want
    np.testing.assert_array_equal(changed.args[0], mv.info.ids[sorted(want)])
    assert mv.selection_label.text() == f"<b>{len(want):,}</b> selected"
    # The points outside fade; inside keep their class colour.
    alpha = np.array([b.color().alpha() for b in mv.scatter.data["brush"]])
    inside = np.zeros(len(c), bool)
    inside[sorted(want)] = True
    assert (alpha[inside] == 255).all() and (alpha[~inside] < 100).all()
    assert mv.scatter.data["brush"][min(want)].color() == \
        mv.class_colors[data.labels[mv.info.ids[min(want)]]]
    # The palette scatter's shortcut finds the same pre-rendered symbols pyqtgraph's per-point lookup does.
    sc = mv.scatter
    ref = sc.fragmentAtlas[list(zip(*sc._style(["symbol", "size", "pen", "brush"])))]
    assert (np.array(ref, dtype=sc.data["sourceRect"].dtype) == sc.data["sourceRect"]).all()
    assert (sc.data["sourceRect"]["w"] > 0).all()

    # Without Shift and with the tool off, a drag pans: the selection stays.
    vb_range = mv.vb.viewRange()
    assert drag_lasso(mv.vb, np.array([[0, 0], [0.1, 0.1], [0.2, 0.2]])) is None
    assert set(mv.selection.tolist()) == want and mv.vb.viewRange() != vb_range
    # With the lasso tool on, a plain drag selects.
    mv.lasso_button.setChecked(True)
    small = np.array([[lo[0], lo[1]], [mid[0], lo[1]], [mid[0], mid[1]], [lo[0], mid[1]]])
    drawn = drag_lasso(mv.vb, small)
    few = sorted(inside_by_qt(mv.coords, drawn))
    assert mv.selection.tolist() == few and 0 < len(few) < 500
    mv.lasso_button.setChecked(False)

    # The grid: every selected item, as thumbnails.
    dlg = mv.show_selection_grid()
    assert dlg.list.count() == len(few) and dlg.isVisible()
    assert [dlg.list.item(k).data(Qt.ItemDataRole.UserRole) for k in range(len(few))] == few
    assert dlg.list.item(0).text() == data.class_names[data.labels[mv.info.ids[few[0]]]]
    assert not dlg.list.item(0).icon().isNull()
    dlg.close()
    mv.select_polygon(poly)

    # Export: one row per selected item with its name, label and map position.
    out = mv.export_selection(tmp_path / "selection.csv")
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == len(want)
    for row, r in zip(rows, sorted(want)):
        item = int(mv.info.ids[r])
        assert int(row["index"]) == item and row["name"] == data.item_names[item]
        assert row["label"] == data.class_names[data.labels[item]]
        np.testing.assert_allclose([float(row["x"]), float(row["y"])], mv.coords[r], rtol=1e-5, atol=1e-6)

    # A grid of more than the cap: the first 500 and a note.
    mv.select_polygon(np.array([lo - 1, [hi[0] + 1, lo[1] - 1], hi + 1, [lo[0] - 1, hi[1] + 1]]))
    assert len(mv.selection) == 1797
    dlg = mv.show_selection_grid()
    assert dlg.list.count() == 500 and "first 500 of 1,797" in dlg.note.text()
    dlg.close()
    mv.clear_lasso()
    assert not len(mv.selection) and not mv.export_button.isEnabled()
    assert mv.export_selection(tmp_path / "none.csv") is None


def test_pick_to_label_selects_training_images_by_strategy(window, project, qtbot, tmp_path):
    from engine.selection import select
    run_id = trained(project, "digits", "pca", {"dim": "16"})
    mv = open_map(window, qtbot, run_id)
    data = mv.info.data
    assert mv.pick_button.isEnabled()
    pool = mv.label_pool_rows()
    split = np.asarray(data.split)[mv.info.ids]
    assert 0 < len(pool) < len(mv.info.ids) and (split[pool] == 0).all() and (split == 1).any()

    # The dialog offers the three strategies and at most the pool; OK picks on a worker.
    dlg = mv.ask_pick_to_label()
    assert [dlg.strategy.itemData(i) for i in range(dlg.strategy.count())] == ["typiclust", "kcenter", "random"]
    assert dlg.budget.maximum() == len(pool) and dlg.budget.value() == 100
    dlg.budget.setValue(20)
    with qtbot.waitSignal(mv.selection_changed, timeout=30_000) as changed:
        dlg.accept()
    want = pool[select(mv.info.vectors[pool], 20, "typiclust", 0)]
    assert sorted(mv.selection.tolist()) == sorted(want.tolist())
    np.testing.assert_array_equal(changed.args[0], mv.info.ids[np.sort(want)])
    assert "20 of" in mv.status.text() and "by TypiClust:" in mv.status.text()
    qtbot.waitUntil(mv.pick_button.isEnabled, timeout=10_000)     # back once the worker has ended

    # k-center greedy and random give other picks, each from the training split only.
    # A pick asked for while another runs waits for it (the button is off meanwhile).
    with qtbot.waitSignal(mv.selection_changed, timeout=30_000):
        mv.pick_to_label("random", 5, seed=3)
        assert not mv.pick_button.isEnabled()
        mv.pick_to_label("random", 7, seed=3)
    qtbot.waitUntil(lambda: len(mv.selection) == 7, timeout=30_000)
    picks = {}
    for strategy in ("kcenter", "random"):
        with qtbot.waitSignal(mv.selection_changed, timeout=30_000):
            mv.pick_to_label(strategy, 20, seed=1)
        picks[strategy] = sorted(mv.selection.tolist())
        assert picks[strategy] == sorted(pool[select(mv.info.vectors[pool], 20, strategy, 1)].tolist())
        assert (split[picks[strategy]] == 0).all()
    assert picks["kcenter"] != picks["random"] != sorted(want.tolist())

    # The picks export as the selection does: one row per image, with its file name.
    out = mv.export_selection(tmp_path / "to-label.csv")
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [row["name"] for row in rows] == [data.item_names[i] for i in mv.info.ids[picks["random"]]]


def test_two_runs_side_by_side_with_linked_selection(window, project, qtbot):
    a = trained(project, "digits", "pca", {"dim": "32"})
    b = trained(project, "digits", "pca", {"dim": "4"})
    mv = open_map(window, qtbot, a)
    listed = [mv.compare_combo.itemData(k) for k in range(mv.compare_combo.count())]
    assert listed == [None, b]
    mv.lasso_button.setChecked(True)
    mv.compare_combo.setCurrentIndex(1)
    other = mv.partner
    assert other is not None and other.compact and other.isVisible()
    qtbot.waitUntil(lambda: other.info is not None and other.coords is not None, timeout=30_000)
    assert other.run_id == b and other.vb.lasso_mode
    assert not np.allclose(other.coords, mv.coords)              # a different map of the same items
    assert other.colour_combo.currentData() == "label"

    # Hover in one map: a ring on the same item in the other.
    mv.hover_point(100)
    item = int(mv.info.ids[100])
    row = int(np.flatnonzero(other.info.ids == item)[0])
    np.testing.assert_allclose([other.link_marker.data["x"][0], other.link_marker.data["y"][0]], other.coords[row])
    mv.hide_hover()
    assert len(other.link_marker.data) == 0
    other.hover_point(row)
    np.testing.assert_allclose([mv.link_marker.data["x"][0], mv.link_marker.data["y"][0]], mv.coords[100])

    # A lasso in the first map selects the same items in the second, and the other way round.
    c = mv.coords
    lo, hi = c.min(axis=0), c.max(axis=0)
    poly = np.array([lo, [hi[0], lo[1]], (lo + hi) / 2])
    n = mv.select_polygon(poly)
    assert n > 10
    np.testing.assert_array_equal(np.sort(other.selected_items()), np.sort(mv.selected_items()))
    alpha = np.array([br.color().alpha() for br in other.scatter.data["brush"]])
    assert (alpha == 255).sum() == n
    lo2, hi2 = other.coords.min(axis=0), other.coords.max(axis=0)
    poly2 = np.array([[lo2[0], hi2[1]], hi2, (lo2 + hi2) / 2])
    drawn = drag_lasso(other.vb, poly2)             # the lasso tool is on in both maps
    want = inside_by_qt(other.coords, drawn)
    assert len(want) > 10 and set(other.selection.tolist()) == want
    np.testing.assert_array_equal(np.sort(mv.selected_items()), np.sort(other.selected_items()))
    assert mv.selection_label.text() == f"<b>{len(other.selection):,}</b> selected"

    # A click in the second map selects the item in the first (its neighbours listed there).
    other.select_point(row)
    assert mv.selected_index == 100 and mv.neighbour_list.count() == 8
    mv.select_point(5)
    assert other.selected_index == int(np.flatnonzero(other.info.ids == mv.info.ids[5])[0])

    # Esc (anywhere in either map) clears the selection in both.
    other.plot.setFocus()
    QTest.keyClick(other.plot, Qt.Key.Key_Escape)
    assert not len(mv.selection) and not len(other.selection)

    # Closing the comparison hides the second map.
    mv.compare_combo.setCurrentIndex(0)
    assert not other.isVisible()
    mv.lasso_button.setChecked(False)


def test_toolbar_stays_put_when_umap_arrives(window, project, qtbot, monkeypatch):
    """The Timeline button (and the controls left of it) keep their place while UMAP computes,
    when its result arrives and when the colour extras appear, so clicks land where aimed."""
    import gui.views.map_view as map_module
    from engine.maps import pca_2d
    from PySide6.QtCore import QPoint, QRect

    run_id = trained(project, "digits", "simclr", {"epochs": "1", "batch_size": "128", "width": "4",
                                                   "max_train_items": "256"})
    mv = open_map(window, qtbot, run_id)
    assert mv.kind == "pca"

    def where(w) -> QRect:
        return QRect(w.mapTo(window, QPoint(0, 0)), w.size())

    def controls() -> list[QRect]:
        qtbot.wait(20)                               # let the layout settle
        return [where(w) for w in (mv.run_combo, mv.kind_combo, mv.timeline_button)]

    before = controls()
    assert before[2].width() > 0 and before[2].x() > before[1].x() > before[0].x()

    release = []

    def slow_umap(project_, embedding_id, progress=None):       # a stand-in for the real fit (worker thread)
        while not release:
            time.sleep(0.01)
        ids, vectors = project_.load_embeddings(embedding_id)
        return embedding_id, None, pca_2d(vectors)[:, ::-1].copy()

    monkeypatch.setattr(map_module, "compute_umap", slow_umap)
    mv.start_umap()
    assert mv.umap_progress.isVisible()
    computing = controls()
    release.append(True)
    qtbot.waitUntil(lambda: not mv.umap_progress.isVisible(), timeout=30_000)
    assert mv.kind == "umap"                        # the UMAP result arrived and is drawn
    after = controls()
    assert before == computing == after, (before, computing, after)

    mv.colour_combo.setCurrentIndex(mv.colour_combo.findData("cluster"))   # shows "k = …" and a note
    assert mv.k_spin.isVisible()
    assert controls() == before
