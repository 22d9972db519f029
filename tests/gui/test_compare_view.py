"""The Compare view: runs × metrics, sortable, with the settings that differ."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from engine.workbench import create_run, run_training

TINY = {"epochs": "1", "batch_size": "128", "max_train_items": "256", "width": "4", "timeline_items": "0"}


def _train(project, method, **overrides):
    run_id = create_run(project, "digits", method, {**TINY, **overrides})
    for _ in run_training(project, run_id):
        pass
    assert project.run(run_id).status == "finished", project.run(run_id).error
    return run_id


@pytest.mark.timeout(180)
def test_compare_two_runs(window, project, qtbot):
    a = _train(project, "simclr", temperature="0.1")
    b = _train(project, "simclr", temperature="0.5", width="8")
    cv = window.compare_view
    window.show_view("compare")
    assert cv.model.rowCount() == 2

    # Every evaluation metric the runs logged is a column, with the stored values.
    for run_id in (a, b):
        m = project.latest_metrics(run_id)
        assert cv.cell_text(run_id, "knn") == f"{m['knn']:.1%}"
        assert cv.cell_text(run_id, "linear") == f"{m['linear']:.1%}"
        assert cv.cell_text(run_id, "raw_knn") == f"{m['raw_knn']:.1%}"
        assert cv.cell_text(run_id, "random_linear") == f"{m['random_linear']:.1%}"
    assert cv.cell_text(a, "lr") is None                      # per-step logs are not run results

    # Sorting by kNN puts the better run first.
    col = len(__import__("gui.views.compare_view", fromlist=["RUN_COLUMNS"]).RUN_COLUMNS) + \
        cv.model.metric_names.index("knn")
    cv.table.sortByColumn(col, Qt.SortOrder.DescendingOrder)
    knn = {r: project.latest_metrics(r)["knn"] for r in (a, b)}
    best = max(knn, key=knn.get)
    assert cv.row_of(best) == 0

    # Two runs selected: only the settings that differ, with each run's value.
    cv.select_runs([a, b])
    assert sorted(cv.difference_keys()) == ["temperature", "width"]
    values = {cv.diff_table.verticalHeaderItem(i).text(): [cv.diff_table.item(i, j).text() for j in range(2)]
              for i in range(cv.diff_table.rowCount())}
    assert values["temperature"] == ["0.1", "0.5"] and values["width"] == ["4", "8"]
    assert "2 settings differ" in cv.diff_title.text()
    # One run: its whole config.
    cv.select_runs([a])
    assert {"method", "lr", "temperature", "views.flip_p"} <= set(cv.difference_keys())
    assert cv.map_button.isEnabled()

    # The filter narrows the table; a new run appears when the runs change.
    cv.filter_edit.setText("no such run")
    assert cv.proxy.rowCount() == 0
    cv.filter_edit.clear()
    c = create_run(project, "digits", "byol", TINY)          # a new run, not trained yet
    window.train_view.runs_changed.emit()                   # what the Train view emits when runs change
    assert cv.model.rowCount() == 3 and cv.cell_text(c, "knn") == "—"


def test_metric_columns_and_difference():
    from gui.views.compare_view import config_difference, metric_columns
    cols = metric_columns(["loss", "lr", "feature_std", "linear", "zero_shot_top1", "knn", "raw_knn",
                           "collapse_std_ratio", "images_per_s"])
    assert cols == ["knn", "linear", "raw_knn", "zero_shot_top1", "loss", "feature_std"]
    diff = config_difference([{"method": "simclr", "train": {"lr": 0.1, "seed": 0}, "views": {"flip_p": 0.5}},
                              {"method": "simclr", "train": {"lr": 0.2, "seed": 0}, "views": {"flip_p": 0.0}}])
    assert diff == [("lr", [0.1, 0.2]), ("views.flip_p", [0.5, 0.0])]


def test_metric_headers_formats_and_numeric_order(qtbot):
    """CLIP's metrics: readable headers with tooltips, recalls in numeric order, every rate in
    per cent (as kNN), losses plain, and sorting by value, not by text."""
    from types import SimpleNamespace

    from PySide6.QtCore import QSortFilterProxyModel

    from gui.views.compare_view import (RUN_COLUMNS, SORT_ROLE, RunsModel, format_metric, metric_columns,
                                        metric_title)
    cols = metric_columns(["t2i_r10", "i2t_r10", "i2t_r5", "i2t_r1", "t2i_r1", "t2i_r5", "zs_colour", "knn",
                           "loss", "zeroshot_shapes_colour", "zeroshot_shapes_colour/red", "zs_shape",
                           "words_per_s"])
    assert cols == ["knn", "zs_colour", "zs_shape", "zeroshot_shapes_colour", "i2t_r1", "i2t_r5", "i2t_r10",
                    "t2i_r1", "t2i_r5", "t2i_r10", "loss"]
    assert metric_title("i2t_r1") == "image→text\nR@1" and metric_title("t2i_r10") == "text→image\nR@10"
    assert metric_title("zs_colour") == "zero-shot\ncolour"
    assert metric_title("zs_colour_heldout") == "zero-shot\ncolour, held out"
    for name in ("knn", "i2t_r1", "t2i_r5", "zs_colour", "zs_combo_heldout", "neighbour_purity"):
        assert format_metric(name, 0.6575) == "65.8%", name
    assert format_metric("loss", 0.6575) == "0.6575" and format_metric("spearman_wordsim353", 0.41) == "0.41"

    runs = [SimpleNamespace(id=i, name=f"run {i}", method="clip", dataset_id=1, status="finished", error=None)
            for i in (1, 2, 3)]
    metrics = [{"i2t_r1": 0.9, "i2t_r10": 1.0, "i2t_r5": 0.95, "loss": 12.5},
               {"i2t_r1": 1.0, "i2t_r10": 1.0, "i2t_r5": 1.0, "loss": 3.0},
               {"i2t_r1": 0.15, "loss": 100.0}]
    model = RunsModel()
    model.set_rows(runs, {1: "shapes"}, metrics)
    assert model.metric_names == ["i2t_r1", "i2t_r5", "i2t_r10", "loss"]
    col = len(RUN_COLUMNS)
    header = [model.headerData(col + i, Qt.Orientation.Horizontal) for i in range(4)]
    assert header == ["image→text\nR@1", "image→text\nR@5", "image→text\nR@10", "Final loss"]
    tip = model.headerData(col, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert "Recall@1, image → text" in tip and "i2t_r1" in tip
    assert [model.data(model.index(r, col)) for r in range(3)] == ["90.0%", "100.0%", "15.0%"]
    assert model.data(model.index(2, col + 1)) == "—"
    # Sorting is numeric: 100 % above 90 % (as text, "90.0%" would come first), 100 above 12.5.
    proxy = QSortFilterProxyModel()
    proxy.setSourceModel(model)
    proxy.setSortRole(SORT_ROLE)
    proxy.sort(col, Qt.SortOrder.DescendingOrder)
    assert [proxy.data(proxy.index(r, 0)) for r in range(3)] == ["2", "1", "3"]
    proxy.sort(col + 3, Qt.SortOrder.DescendingOrder)
    assert [proxy.data(proxy.index(r, col + 3)) for r in range(3)] == ["100", "12.5", "3"]
