"""What a first-time user met in the Train view (issue 10): the estimate that did not add up
or stayed "estimating…", devices that do not exist, runs named twice, the evaluation plot's
axes, labels and legend, the collapse monitor where it means nothing, the "press Start"
hint during a run, the cost of a redraw, and interrupted runs that could not be resumed."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PySide6.QtCore import Qt

from engine import train as T
from engine.workbench import create_run
from gui.config_form import ConfigForm
from gui.views import train_view as tvmod


# ------------------------------------------------------------------ estimate
@pytest.mark.timeout(180)
def test_start_during_a_dry_run_never_leaves_estimating(window, project, qtbot, configure_small_run, monkeypatch):
    """Start cancels the dry run in flight. Its "estimating…" stayed for the whole run (and
    after it) because the cancelled dry run had no successor and nothing replaced the text."""
    monkeypatch.setattr("engine.estimate.EVAL_SAMPLE", 128)
    tv = window.train_view
    configure_small_run(window, epochs=30, width=4)
    tv._est_timer.stop()
    tv.estimate_steps = 1000              # a dry run that lasts until it is cancelled (or 8 s)
    tv._start_estimate()
    dry_run = tv._est_worker
    assert dry_run is not None and tv.estimate_label.text() == tvmod.ESTIMATING
    tv.estimate_steps = 1
    qtbot.mouseClick(tv.start_button, Qt.MouseButton.LeftButton)
    assert dry_run.is_cancelled()
    qtbot.waitUntil(lambda: tv.state == "running", timeout=60_000)
    # Once the cancelled dry run has ended, the label says when the estimate comes.
    qtbot.waitUntil(lambda: not dry_run.is_running(), timeout=30_000)
    qtbot.waitUntil(lambda: tv.estimate_label.text() == "estimate: after this run", timeout=5_000)
    assert tv._est_worker is None and tv.busy
    qtbot.mouseClick(tv.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tv.busy, timeout=60_000)
    # After the run, the settings are estimated again.
    qtbot.waitUntil(lambda: tv.estimate is not None, timeout=60_000)
    assert re.match(r"≈ [\d.]+ (s|min|h) in all = 30 epochs × ", tv.estimate_label.text()), \
        tv.estimate_label.text()


@pytest.mark.timeout(180)
def test_start_before_any_estimate_estimates_after_the_run(window, project, qtbot, configure_small_run,
                                                          monkeypatch):
    """Start within the quiet period after an edit: no dry run was on its way to cancel, and
    the label stayed empty (or showed the previous settings' estimate) for good."""
    monkeypatch.setattr("engine.estimate.EVAL_SAMPLE", 128)
    tv = window.train_view
    tv.estimate_steps = 1
    configure_small_run(window, epochs=30, width=4)
    assert tv._est_timer.isActive() and tv._est_worker is None
    qtbot.mouseClick(tv.start_button, Qt.MouseButton.LeftButton)
    assert tv.estimate_label.text() == "estimate: after this run"
    qtbot.waitUntil(lambda: tv.state == "running", timeout=60_000)
    qtbot.mouseClick(tv.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tv.busy, timeout=60_000)
    qtbot.waitUntil(lambda: tv.estimate is not None, timeout=60_000)
    assert tv.estimate_label.text().startswith("≈ ") and "= 30 epochs ×" in tv.estimate_label.text()


def test_time_split_adds_up():
    from engine.estimate import time_split, total_seconds
    est = {"iterative": True, "fixed_evaluations": 2, "seconds_per_epoch": 3.0, "seconds_per_evaluation": 2.0,
           "seconds_linear_probe": 0.5, "seconds_baselines": 1.0}
    split = time_split(est, 10, 1)
    assert split["training_seconds"] == 30.0 and split["evaluations"] == 11
    assert split["evaluation_seconds"] == pytest.approx(11 * 2.0 + 2 * 0.5 + 1.0)
    assert split["seconds_each_evaluation"] * 11 == pytest.approx(split["evaluation_seconds"])
    assert split["total_seconds"] == pytest.approx(30 + 24) == pytest.approx(total_seconds(est, 10, 1))
    every_5 = time_split(est, 20, 5, linear_every_eval=True)
    assert every_5["evaluations"] == 2 + 3 and every_5["linear_probes"] == 5


def test_estimate_label_is_the_sum_of_its_parts(window, qtbot, configure_small_run):
    tv = window.train_view
    configure_small_run(window, epochs=10, width=4)
    tv._est_timer.stop()
    est = {"available": True, "iterative": True, "fixed_evaluations": 2, "seconds_per_epoch": 3.1,
           "seconds_per_evaluation": 2.5, "seconds_linear_probe": 0.4, "seconds_baselines": 1.6,
           "seconds_per_step": 0.28, "steps_per_epoch": 11, "timed_steps": 3, "batch_size": 128, "n_train": 1438,
           "device": "cpu (2 threads)", "peak_memory_bytes": 6_300_000, "memory_method": "counted",
           "memory_parts": {"parameters": 100_000}, "epochs": 10}
    tv._show_estimate(est)
    # 10 × 3.1 = 31 s training; 11 evaluations: 11 × 2.5 + 2 probes × 0.4 + 1.6 = 29.9 s, 2.7 s each.
    assert tv.estimate_label.text() == "≈ 61 s in all = 10 epochs × 3.1 s + 11 evaluations × 2.7 s · ~6.3 MB"
    tip = tv.estimate_label.toolTip()
    assert "Training ≈ 31 s" in tip and "Evaluation ≈ 30 s: 11 evaluations" in tip and "every epoch" in tip


# ------------------------------------------------------------------ devices and names
def test_only_existing_devices_are_offered(window, qtbot, monkeypatch):
    import torch
    tvmod.available_devices.cache_clear()
    try:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
        assert tvmod.available_devices() == ("auto", "cpu")
        tvmod.available_devices.cache_clear()
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert tvmod.available_devices() == ("auto", "cpu", "cuda")
        tvmod.available_devices.cache_clear()

        tv = window.train_view
        window.show_view("train")
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        tv._rebuild_forms()
        combo = tv.train_form.editor("device")
        assert [combo.itemData(i) for i in range(combo.count())] == ["auto", "cpu"]
        assert tv.start_button.isEnabled()
        # A setting that names a missing device (a queued or copied config) is shown and flagged.
        tv.train_form.set_values({"device": "cuda"})
        assert "device" in tv.train_form.problems()
        assert "not available on this machine" in tv.train_form.error_label("device").text()
        assert not tv.start_button.isEnabled()
    finally:
        tvmod.available_devices.cache_clear()


def test_config_form_offer_narrows_choices(qtbot):
    from engine.train import TrainConfig
    form = ConfigForm(TrainConfig, offer={"device": ("cpu", "auto")})
    qtbot.addWidget(form)
    combo = form.editor("device")
    assert [combo.itemData(i) for i in range(combo.count())] == ["auto", "cpu"]     # declared order
    assert form.is_valid() and form.config().device == "auto"
    assert "Offered on this machine: auto, cpu" in combo.toolTip()
    form.set_values({"device": "mps"})
    assert form.problems() == {"device": "is not available on this machine: mps (offered: auto, cpu)"}
    # Without offer, every declared choice.
    plain = ConfigForm(TrainConfig)
    qtbot.addWidget(plain)
    assert plain.editor("device").count() == 4


def test_resume_list_names_each_run_once(window, project, qtbot):
    tv = window.train_view
    default = create_run(project, "digits", "simclr", {"width": "4"})
    named = create_run(project, "digits", "simclr", {"width": "4"}, name="first")
    project.update_run(default, status="failed")
    project.update_run(named, status="stopped")
    tv.refresh()
    texts = [tv.resume_combo.itemText(i) for i in range(tv.resume_combo.count())]
    assert texts == [f"#{named} first on digits — stopped", f"#{default} simclr on digits — failed"]


# ------------------------------------------------------------------ plots
def _feed_short_run(tv, epochs: int = 1, steps_per_epoch: int = 11):
    tv._clear_curves()
    tv._run_method = "simclr"
    tv._on_event(T.Started(1, "cpu", epochs * steps_per_epoch, steps_per_epoch, 1438, 0))
    tv._on_event(T.Evaluation(1, 0, 0.0, {"raw_knn": 0.95, "random_knn": 0.727}))
    for s in range(1, epochs * steps_per_epoch + 1):
        tv._on_event(T.Step(1, s, s / steps_per_epoch, 4.0 - s / 10, 1e-3, 400.0, {}))
    tv._on_event(T.Evaluation(1, epochs * steps_per_epoch, float(epochs), {"knn": 0.889, "linear": 0.93}))
    tv._redraw()


def test_evaluation_plot_range_labels_and_legend(window, qtbot):
    tv = window.train_view
    window.show_view("train")
    _feed_short_run(tv, epochs=1)
    qtbot.wait(50)
    (x0, x1), (y0, y1) = tv.knn_plot.getViewBox().viewRange()
    # One evaluation point: the axis spans the run's epoch (it ran from −10 to 20).
    assert -0.1 <= x0 <= 0 and 1 <= x1 <= 1.1, (x0, x1)
    # The accuracies and both baselines are in view.
    assert y0 <= 72.7 and y1 >= 95.0 and y0 >= 0 and y1 <= 100
    # The baselines' labels say their values and lie inside the plot (the top one was clipped).
    assert tv.raw_line.label.toPlainText() == "kNN on raw pixels: 95.0%"
    assert tv.random_line.label.toPlainText() == "kNN on untrained network: 72.7%"
    view = tv.knn_plot.getViewBox().sceneBoundingRect()
    for line in (tv.raw_line, tv.random_line):
        rect = line.label.sceneBoundingRect()
        assert view.contains(rect), (line.label.toPlainText(), rect, view)
    # No legend box over the curves: the title names them.
    assert tv.knn_plot.getPlotItem().legend is None
    title = tv.knn_plot.getPlotItem().titleLabel.text
    assert "kNN" in title and "linear probe" in title
    # Several epochs: the axis runs from 0 to the last epoch.
    _feed_short_run(tv, epochs=5)
    x0, x1 = tv.knn_plot.getViewBox().viewRange()[0]
    assert -0.3 <= x0 <= 0 and 5 <= x1 <= 5.3, (x0, x1)


@pytest.mark.parametrize("method, shown", [("simclr", True), ("byol", True), ("swav", True), ("mae", False),
                                           ("clip", False), ("autoencoder", False), ("word2vec", False)])
def test_collapse_monitor_only_for_joint_embedding_methods(window, qtbot, method, shown):
    tv = window.train_view
    window.show_view("train")
    tv.method_combo.setCurrentIndex(tv.method_combo.findData(method))
    assert tv.collapse_plot.isVisible() == shown
    title = tv.collapse_plot.getPlotItem().titleLabel.text
    assert "std ratio" in title and "effective-rank ratio" in title and "1 healthy" not in title
    tip = tv.collapse_plot.toolTip()
    assert "√d" in tip and "effective rank" in tip and "all images map to one point" in tip


def test_redraws_are_throttled_and_skip_unchanged_curves(window, qtbot, monkeypatch):
    tv = window.train_view
    window.show_view("train")
    _feed_short_run(tv, epochs=1)
    assert tv._redraw_timer.interval() <= 200          # at least 5 redraws a second while training
    for curve in (tv.loss_curve, tv.c_std_curve, tv.c_rank_curve):
        assert curve.opts["autoDownsample"] and curve.opts["downsampleMethod"] == "peak"
        assert curve.opts["clipToView"]
    calls = {"loss": 0, "knn": 0}
    monkeypatch.setattr(tv.loss_curve, "setData", lambda *a, **k: calls.__setitem__("loss", calls["loss"] + 1))
    monkeypatch.setattr(tv.knn_curve, "setData", lambda *a, **k: calls.__setitem__("knn", calls["knn"] + 1))
    value_before = tv.progress.value()
    for s in range(12, 1012):
        tv._on_event(T.Step(1, s, s / 11, 1.0, 1e-3, 400.0, {}))
    # The events are only recorded: no widget changed yet (a progress-bar update repainted per step).
    assert calls == {"loss": 0, "knn": 0} and tv.progress.value() == value_before
    tv._redraw()
    tv._redraw()
    assert calls == {"loss": 1, "knn": 0}               # one redraw for 1,000 steps; kNN unchanged
    assert tv.progress.value() == min(1011, tv.progress.maximum())
    assert tv.throughput_label.text() == "400 img/s"


# ------------------------------------------------------------------ hint and interrupted runs
@pytest.mark.timeout(240)
def test_interrupted_run_is_listed_and_resumes_to_the_end(window, project, qtbot, configure_small_run):
    tv = window.train_view
    configure_small_run(window, epochs=3, width=4)
    assert tv.loss_hint.isVisible(), "no run yet: the hint says to press Start"
    qtbot.mouseClick(tv.start_button, Qt.MouseButton.LeftButton)
    assert tv.busy and not tv.loss_hint.isVisible(), "a run is starting: the hint is gone at once"
    qtbot.waitUntil(lambda: tv.state == "running" and tv.loss.n >= 1, timeout=60_000)
    qtbot.mouseClick(tv.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tv.busy and tv.state == "idle", timeout=60_000)
    assert not tv.loss_hint.isVisible(), "a run is shown: no hint"
    (run,) = project.runs()
    assert run.status == "stopped", run.error

    # The process that trained it died: the store says "interrupted".
    project.update_run(run.id, status="interrupted")
    tv.refresh()
    assert tv.resume_combo.currentData() == run.id
    assert tv.resume_combo.currentText() == f"#{run.id} simclr on digits — interrupted"
    assert tv.resume_button.isEnabled()
    qtbot.mouseClick(tv.resume_button, Qt.MouseButton.LeftButton)
    assert tv.busy
    qtbot.waitUntil(lambda: not tv.busy and tv.state == "idle", timeout=180_000)
    done = project.run(run.id)
    assert done.status == "finished", done.error
    assert tv._start_step > 0, "resumed from its checkpoint, not from scratch"
    assert tv.run_label.text() == f"Run #{run.id} finished at step {tv._total_steps}"
    assert tv.resume_combo.findData(run.id) < 0, "a finished run is no longer offered"
    assert np.all(np.diff(tv.loss.x) > 0), "the history and the resumed steps do not overlap"


def test_method_card_says_what_mae_needs_and_warns_on_digits(window, qtbot):
    """MAE on 8×8 digits ends at the untrained network's level: the card says what MAE needs,
    and warns about these images before the run; SimCLR on the same digits gets no warning."""
    tv = window.train_view
    window.show_view("train")
    tv.dataset_combo.setCurrentIndex(tv.dataset_combo.findText("digits", Qt.MatchFlag.MatchStartsWith))
    tv.method_combo.setCurrentIndex(tv.method_combo.findData("mae"))
    text = tv.card.text()
    assert "Needs:" in text and "fine-tuning" in text
    assert "⚠ MAE on 8×8 images" in text
    tv.method_combo.setCurrentIndex(tv.method_combo.findData("simclr"))
    assert "⚠" not in tv.card.text()
