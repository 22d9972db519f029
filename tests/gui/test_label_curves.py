"""Label-efficiency curves in the GUI: the Compare view's curves per run, the Train view's
curve of the shown run and its "Measure with few labels…" button. The numbers are planted
as metrics named as the engine stores them (``label_eff/{mode}@{k}`` and ``…_std``)."""
from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.workbench import create_run

TINY = {"epochs": "1", "batch_size": "128", "max_train_items": "256", "width": "4", "timeline_items": "0"}
SHOTS = Path(os.environ.get("PRETEXT_SHOTS", "/tmp/shots"))

#: Planted results: mode → {labels per class: (mean, std)}.
RUN_A = {"probe": {1: (0.412, 0.031), 10: (0.781, 0.012), 100: (0.912, 0.004)},
         "finetune": {1: (0.388, 0.045), 10: (0.802, 0.02), 100: (0.934, 0.006)},
         "scratch": {1: (0.22, 0.05), 10: (0.55, 0.03), 100: (0.861, 0.01)},
         "raw": {1: (0.35, 0.04), 10: (0.702, 0.015), 100: (0.881, 0.005)}}
RUN_B = {"probe": {1: (0.505, 0.02), 10: (0.845, 0.01), 100: (0.931, 0.003)},
         "raw": {1: (0.35, 0.04), 10: (0.702, 0.015), 100: (0.881, 0.005)}}


def _plant(project, run_id, results, select="random"):
    suffix = "" if select == "random" else f"/{select}"
    rows = []
    for mode, by_k in results.items():
        for k, (mean, std) in by_k.items():
            rows += [(0, 0.0, f"label_eff/{mode}@{k}{suffix}", mean), (0, 0.0, f"label_eff/{mode}@{k}_std{suffix}", std)]
    project.log_metrics(run_id, rows)


def _finished_run(project, dataset="digits", method="simclr", config=TINY, name=""):
    run_id = create_run(project, dataset, method, config, name=name)
    project.update_run(run_id, status="finished")
    return run_id


def _stop_estimates(tv, qtbot):
    """Cancel the Train view's dry-run estimate (it started when the view was shown) and wait for
    it: the window closes after the test, and the estimate's end would reach a deleted view."""
    tv._cancel_estimate()
    qtbot.waitUntil(lambda: tv._est_worker is None, timeout=30_000)


def _expected(results, mode):
    return [(k, 100 * mean, 100 * std) for k, (mean, std) in sorted(results[mode].items())]


def _close(got, want):
    assert [g[0] for g in got] == [w[0] for w in want], (got, want)
    for g, w in zip(got, want):
        assert math.isclose(g[1], w[1], abs_tol=1e-9) and math.isclose(g[2], w[2], abs_tol=1e-9), (got, want)


def test_metric_names_to_curves():
    from gui.label_curves import label_curves, parse_metric, point_tip, selections
    assert parse_metric("label_eff/probe@10") == ("probe", 10, False, "random")
    assert parse_metric("label_eff/raw@100_std") == ("raw", 100, True, "random")
    assert parse_metric("label_eff/probe@10/typiclust") == ("probe", 10, False, "typiclust")
    assert parse_metric("label_eff/probe@1_std/kcenter") == ("probe", 1, True, "kcenter")
    assert parse_metric("knn") is None and parse_metric("label_eff/probe") is None
    assert parse_metric("label_eff/n_seeds@10") is None             # bookkeeping, not a curve
    metrics = {"knn": 0.9, "label_eff/raw@10": 0.7, "label_eff/probe@100": 0.9, "label_eff/probe@10": 0.8,
               "label_eff/probe@10_std": 0.01, "label_eff/probe@1/typiclust": 0.6}
    curves = label_curves(metrics)
    assert list(curves) == ["probe", "raw"]                       # the engine's order, not the logging order
    assert [(p.per_class, p.mean, p.std) for p in curves["probe"]] == [(10, 0.8, 0.01), (100, 0.9, 0.0)]
    assert [(p.per_class, p.mean) for p in label_curves(metrics, "typiclust")["probe"]] == [(1, 0.6)]
    assert selections(metrics) == ["random", "typiclust"]
    assert point_tip("probe", 10, 0.912, 0.0104) == "probe, 10 labels/class: 91.2 % ± 1.0"
    assert point_tip("raw pixels", 1, 0.5, 0.0) == "raw pixels, 1 label/class: 50.0 % ± 0.0"


@pytest.mark.timeout(120)
def test_compare_view_draws_each_runs_curve(window, project, qtbot):
    a = _finished_run(project, name="simclr few labels")
    b = _finished_run(project, method="byol", name="byol few labels")
    c = _finished_run(project, name="not measured")
    _plant(project, a, RUN_A)
    _plant(project, b, RUN_B)
    _plant(project, b, {"probe": {1: (0.61, 0.05), 10: (0.86, 0.01)}}, select="typiclust")
    project.log_metrics(a, [(10, 1.0, "knn", 0.83)])
    cv = window.compare_view
    window.show_view("compare")
    cv.lower_tabs.setCurrentIndex(1)
    assert cv.model.rowCount() == 3
    # The table keeps its columns: the curves' numbers are not columns of their own.
    assert cv.model.metric_names == ["knn"] and cv.cell_text(a, "knn") == "83.0%"

    # No selection: every run's probe curve (the unmeasured run has none), exactly the planted points.
    assert cv.mode_combo.currentData() == "probe"
    assert [c_.name for c_ in cv.label_plot.curves] == [f"#{b} byol few labels", f"#{a} simclr few labels"] or \
        [c_.name for c_ in cv.label_plot.curves] == [f"#{a} simclr few labels", f"#{b} byol few labels"]
    _close(cv.few_label_points(a), _expected(RUN_A, "probe"))
    _close(cv.few_label_points(b), _expected(RUN_B, "probe"))
    assert cv.few_label_points(c) == []
    assert cv.label_plot.plotItem.ctrl.logXCheck.isChecked()           # log x axis

    # Another mode: only the runs that measured it.
    cv.mode_combo.setCurrentIndex(cv.mode_combo.findData("finetune"))
    _close(cv.few_label_points(a), _expected(RUN_A, "finetune"))
    assert cv.few_label_points(b) == [] and len(cv.label_plot.curves) == 1

    # Selecting runs limits the curves to them.
    cv.mode_combo.setCurrentIndex(cv.mode_combo.findData("probe"))
    cv.select_runs([b])
    assert [c_.name for c_ in cv.label_plot.curves] == [f"#{b} byol few labels"]
    # A selection strategy measured by a run appears in its combo, with its own points.
    assert [cv.select_combo.itemData(i) for i in range(cv.select_combo.count())] == ["random", "typiclust"]
    cv.select_combo.setCurrentIndex(1)
    _close(cv.few_label_points(b), [(1, 61.0, 5.0), (10, 86.0, 1.0)])
    cv.select_combo.setCurrentIndex(0)
    cv.select_runs([])
    cv.table.clearSelection()
    assert len(cv.label_plot.curves) == 2

    # Hovering a point shows its tooltip.
    from PySide6.QtCore import QPointF
    curve = cv.label_plot.curves[0]
    line = cv.label_plot._items[0][0]
    point = curve.points[1]
    qtbot.wait(50)
    line.scatter.hoverEvent(SimpleNamespace(exit=False, pos=lambda: QPointF(1.0, 100 * point.mean),
                                            acceptClicks=lambda *_: None))
    assert cv.label_plot.getViewBox().toolTip() == \
        f"{curve.name}, 10 labels/class: {100 * point.mean:.1f} % ± {100 * point.std:.1f}"
    SHOTS.mkdir(parents=True, exist_ok=True)
    qtbot.wait(50)
    assert window.grab().save(str(SHOTS / "label_curves_compare.png"))


@pytest.mark.timeout(120)
def test_train_view_curve_and_button(window, project, qtbot):
    from engine.workbench import import_dataset
    run = _finished_run(project)
    _plant(project, run, RUN_A)
    tv = window.train_view
    window.show_view("train")
    # The run the Train view shows (as after training it).
    tv.run_id, tv._run_method = run, "simclr"
    tv.refresh_few_labels()
    plot = tv.few_labels_plot
    assert [c.name for c in plot.curves] == ["probe", "fine-tune", "scratch", "raw pixels"]
    title = plot.plotItem.titleLabel.text                     # the legend, in the curves' colours
    assert f"run #{run}" in title and "#4e79a7'>● probe" in title and "● raw pixels" in title
    for mode, title in (("probe", "probe"), ("scratch", "scratch"), ("raw", "raw pixels")):
        _close(plot.points_of(title), _expected(RUN_A, mode))
    # Error bars of ± one std around each point, at log10 of the counts (the axis is logarithmic).
    bars = plot._items[0][1]
    assert list(bars.opts["x"]) == [0.0, 1.0, 2.0]
    assert [round(h, 6) for h in bars.opts["height"]] == [6.2, 2.4, 0.8]
    assert plot.plotItem.ctrl.logXCheck.isChecked()
    ticks = plot.getAxis("bottom")._tickLevels[0]
    assert [label for _, label in ticks] == ["1", "10", "100"]
    assert tv.few_labels_button.isEnabled(), tv.few_labels_button.toolTip()

    # While a run trains the button is off.
    tv.worker = SimpleNamespace(is_running=lambda: True)
    tv._update_buttons()
    assert not tv.few_labels_button.isEnabled() and "training" in tv.few_labels_button.toolTip()
    tv.worker = None
    tv._update_buttons()
    assert tv.few_labels_button.isEnabled()
    SHOTS.mkdir(parents=True, exist_ok=True)
    qtbot.wait(50)
    assert window.grab().save(str(SHOTS / "label_curves_train.png"))

    # A word2vec run: no few-label measurement, and no curve.
    import_dataset(project, "shapes-captions", "captions", n=200)
    text_run = _finished_run(project, "captions", "word2vec", {"epochs": "1"})
    tv.run_id, tv._run_method = text_run, "word2vec"
    tv.refresh_few_labels()
    assert plot.curves == []
    assert not tv.few_labels_button.isEnabled() and "image methods" in tv.few_labels_button.toolTip()
    assert not tv.measure_few_labels()
    _stop_estimates(tv, qtbot)


@pytest.mark.timeout(240)
def test_measure_button_runs_the_engine(window, project, qtbot, monkeypatch):
    le = pytest.importorskip("engine.label_efficiency")
    from engine.workbench import run_training

    from gui.views.train import few_labels
    run = create_run(project, "digits", "simclr", TINY)
    for _ in run_training(project, run):
        pass
    assert project.run(run).status == "finished", project.run(run).error
    real = le.label_efficiency
    calls = []

    def small(project_, run_id, **kw):
        calls.append(run_id)
        return real(project_, run_id, **{**kw, "per_class": (1, 5), "seeds": 1, "modes": ("probe", "raw")})

    monkeypatch.setattr(le, "label_efficiency", small)
    monkeypatch.setattr(few_labels, "ask_settings", lambda parent: {"per_class": (1, 10, 100), "seeds": 5,
                                                                     "select": "random"})
    tv = window.train_view
    window.show_view("train")
    tv.run_id, tv._run_method = run, "simclr"
    tv.refresh_few_labels()
    assert tv.few_labels_plot.curves == []
    assert tv.few_labels_button.isEnabled(), tv.few_labels_button.toolTip()
    tv.few_labels_button.click()
    assert not tv.few_labels_button.isEnabled() and tv.few_labels_cancel.isVisible()
    qtbot.waitUntil(lambda: not tv.few_labels_task.busy and not tv.few_labels_cancel.isVisible(), timeout=200_000)
    assert tv.few_labels_plot.curves, tv.few_labels_status.text()
    assert calls == [run]
    stored = project.latest_metrics(run)
    assert [c.name for c in tv.few_labels_plot.curves] == ["probe", "raw pixels"]
    got = tv.few_labels_plot.points_of("probe")
    assert [k for k, _, _ in got] == [1, 5]
    assert math.isclose(got[1][1], 100 * stored["label_eff/probe@5"])
    assert tv.few_labels_button.isEnabled() and not tv.few_labels_cancel.isVisible()

    # Cancel: the measurement stops, nothing new is stored, and the button comes back.
    n_rows = len(project.metrics(run))
    assert tv.measure_few_labels(per_class=(1, 5), seeds=3)
    tv.few_labels_cancel.click()
    qtbot.waitUntil(lambda: not tv.few_labels_task.busy and not tv.few_labels_cancel.isVisible(), timeout=60_000)
    assert tv.few_labels_status.text() == "Cancelled"
    assert len(project.metrics(run)) == n_rows and tv.few_labels_button.isEnabled()
    _stop_estimates(tv, qtbot)
