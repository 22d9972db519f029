"""The Train view's queue, its estimate before launch, the collapse warning and the
device/throughput line."""
from __future__ import annotations

import re

import pytest
from PySide6.QtCore import Qt

from engine import train as T
from engine.workbench import load_dataset


def tiny(tv, name: str) -> None:
    """The smallest run that still trains: 2 steps of 128 digits, no evaluation before the end."""
    tv.train_form.set_values({"epochs": 1, "batch_size": 128, "max_train_items": 256, "eval_every": 0,
                              "timeline_items": 0, "knn_k": 20})
    tv.method_form.set_values({"width": 4})
    tv.name_edit.setText(name)


def seconds(span: str) -> float:
    """"3.1 s", "4.8 min", "1.5 h" → seconds."""
    value, unit = span.split()
    return float(value) * {"s": 1, "min": 60, "h": 3600}[unit]


def queued_names(tv) -> list[str]:
    return [item.name for item in tv.queue]


@pytest.mark.timeout(240)
def test_queued_runs_train_one_after_the_other(window, project, qtbot, configure_small_run):
    tv = window.train_view
    configure_small_run(window, epochs=1, width=4)
    for name in ("first", "second", "third"):
        tiny(tv, name)
        qtbot.mouseClick(tv.queue_button, Qt.MouseButton.LeftButton)
    assert queued_names(tv) == ["first", "second", "third"]
    assert tv.queue_box.isVisible() and tv.queue_list.count() == 3
    assert tv.queue_list.item(0).text().startswith("1. first: SimCLR on digits · 1 epoch · batch 128")
    assert "width 4" in tv.queue_list.item(0).text()        # a method setting changed from its default
    assert not project.runs(), "queueing records nothing yet"

    # Reorder: third moves up, then second is removed.
    tv.queue_list.setCurrentRow(2)
    qtbot.mouseClick(tv.up_button, Qt.MouseButton.LeftButton)
    assert queued_names(tv) == ["first", "third", "second"] and tv.queue_list.currentRow() == 1
    tv.queue_list.setCurrentRow(2)
    qtbot.mouseClick(tv.remove_button, Qt.MouseButton.LeftButton)
    assert queued_names(tv) == ["first", "third"]
    assert tv.queue_list.item(1).text().startswith("2. third")

    qtbot.mouseClick(tv.run_queue_button, Qt.MouseButton.LeftButton)
    assert tv.busy and queued_names(tv) == ["third"]
    # While the first trains, the forms stay editable for the next runs.
    assert tv.tabs.isEnabled() and tv.queue_button.isEnabled() and not tv.start_button.isEnabled()
    qtbot.waitUntil(lambda: len(project.runs()) == 2, timeout=120_000)
    qtbot.waitUntil(lambda: not tv.busy and tv.state == "idle", timeout=120_000)

    runs = project.runs()
    assert [r.name for r in runs] == ["first", "third"]
    assert [r.status for r in runs] == ["finished", "finished"], [r.error for r in runs]
    assert runs[0].finished_at <= runs[1].started_at       # one after the other, in queue order
    assert tv.queue == [] and not tv.queue_box.isVisible()
    assert tv.run_id == runs[1].id
    # Device and throughput of the run shown.
    assert re.fullmatch(r"on cpu \(\d+ threads\)", tv.device_label.text())
    assert re.fullmatch(r"[\d,]+ img/s", tv.throughput_label.text())


@pytest.mark.timeout(240)
def test_stop_holds_the_queue_and_stop_all_clears_it(window, project, qtbot, configure_small_run):
    tv = window.train_view
    configure_small_run(window, epochs=50, width=4)
    tv.name_edit.setText("long")
    qtbot.mouseClick(tv.start_button, Qt.MouseButton.LeftButton)
    tiny(tv, "next")
    qtbot.mouseClick(tv.queue_button, Qt.MouseButton.LeftButton)
    assert queued_names(tv) == ["next"]
    qtbot.waitUntil(lambda: tv.state == "running", timeout=60_000)
    qtbot.mouseClick(tv.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tv.busy and tv.state == "idle", timeout=60_000)
    qtbot.wait(100)
    # Stopped: the queue is still there, held, and nothing else started.
    assert [r.status for r in project.runs()] == ["stopped"]
    assert queued_names(tv) == ["next"] and tv.queue_held and not tv.busy
    assert "held" in tv.queue_box.title() and tv.run_queue_button.isEnabled()

    # Run queue continues; Stop all stops that run and empties the queue.
    tiny(tv, "after")
    qtbot.mouseClick(tv.queue_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(tv.run_queue_button, Qt.MouseButton.LeftButton)
    assert tv.busy and queued_names(tv) == ["after"]
    qtbot.mouseClick(tv.stop_all_button, Qt.MouseButton.LeftButton)
    assert tv.queue == []
    qtbot.waitUntil(lambda: not tv.busy and tv.state == "idle", timeout=60_000)
    qtbot.wait(100)
    assert [r.name for r in project.runs()] == ["long", "next"]
    # (stopped at its first checkpoint, or before its first step: then it stays "created")
    assert project.runs()[1].status in ("stopped", "created")
    assert not tv.busy and not tv.queue_box.isVisible()


@pytest.mark.timeout(120)
def test_estimate_before_launch(window, project, qtbot, configure_small_run, monkeypatch):
    monkeypatch.setattr("engine.estimate.EVAL_SAMPLE", 128)     # time the evaluations on fewer items
    tv = window.train_view
    tv.estimate_steps = 1           # one timed step after the warm-up: enough to test the view
    configure_small_run(window, epochs=4, width=4)
    tv.schedule_estimate()
    qtbot.waitUntil(lambda: tv.estimate is not None, timeout=60_000)
    est = tv.estimate
    n_train = int((load_dataset(project, "digits").split == 0).sum())
    assert est["available"] and est["n_train"] == n_train
    assert est["steps_per_epoch"] == n_train // 128 and est["batch_size"] == 128
    text = tv.estimate_label.text()
    # The total is the visible sum of training and evaluation (issue 10: it did not multiply out).
    span = r"([\d.]+ (?:s|min|h))"
    m = re.fullmatch(rf"≈ {span} in all = 4 epochs × {span} \+ (\d+) evaluations × {span} · ~([\d.]+) (kB|MB|GB)",
                     text)
    assert m, text
    total, per_epoch, n_eval, per_eval = seconds(m[1]), seconds(m[2]), int(m[3]), seconds(m[4])
    assert n_eval == 1 + 3 + 1            # the untrained network, after epochs 1-3, the final one
    assert per_epoch > 0 and float(m[5]) > 0
    # Each shown number is rounded to 2 significant digits: the sum agrees to that.
    assert total == pytest.approx(4 * per_epoch + n_eval * per_eval, rel=0.1, abs=0.3)
    assert "counted" in tv.estimate_label.toolTip()
    assert not project.runs(), "an estimate records no run"
    assert not tv.busy and tv.start_button.isEnabled()

    # The same settings with other epochs reuse the dry run; a new batch size asks for another.
    tv.train_form.set_values({"epochs": 8})
    tv.schedule_estimate()
    qtbot.waitUntil(lambda: "= 8 epochs ×" in tv.estimate_label.text(), timeout=5_000)
    assert tv._est_worker is None
    tv.estimate_steps = 1000         # a dry run that lasts until it is cancelled (or 8 s)
    tv.train_form.set_values({"batch_size": 64})
    tv.schedule_estimate()
    qtbot.waitUntil(lambda: tv._est_worker is not None, timeout=5_000)
    # Changed again while that dry run is in flight: it is cancelled and the latest settings win.
    stale = tv._est_worker
    tv.estimate_steps = 1
    tv.train_form.set_values({"batch_size": 32})
    tv._start_estimate()             # (what the quiet-period timer calls)
    assert stale.is_cancelled()
    qtbot.waitUntil(lambda: tv.estimate is not None and tv.estimate["batch_size"] == 32, timeout=60_000)
    assert tv.estimate["steps_per_epoch"] == n_train // 32 and tv.estimate["timed_steps"] == 1
    assert "= 8 epochs ×" in tv.estimate_label.text()

    # Start while a dry run is in flight: it is cancelled, and the run is created once it has ended
    # (the two would otherwise share torch's global random state while the run seeds its weights).
    tv.estimate_steps = 1000
    tv.train_form.set_values({"batch_size": 16})
    tv._start_estimate()
    dry_run = tv._est_worker
    assert dry_run is not None and dry_run.is_running()
    qtbot.mouseClick(tv.start_button, Qt.MouseButton.LeftButton)
    assert dry_run.is_cancelled()
    qtbot.waitUntil(lambda: tv.state == "running", timeout=60_000)
    assert not dry_run.is_running() and len(project.runs()) == 1
    qtbot.mouseClick(tv.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tv.busy, timeout=60_000)



def test_collapse_warning_from_the_metric_handler(window, qtbot):
    tv = window.train_view
    window.show_view("train")
    tv.method_combo.setCurrentIndex(tv.method_combo.findData("simsiam"))
    tv._run_method = "simsiam"
    tv._on_event(T.Started(1, "cpu", 100, 10, 1000, 0))
    assert re.fullmatch(r"on cpu \(\d+ threads\)", tv.device_label.text())

    def step(s, std, rank):
        tv._on_event(T.Step(1, s, s / 10, 1.0, 0.01, 500.0,
                            {"collapse_std_ratio": std, "collapse_rank_ratio": rank}))

    step(10, 0.9, 0.4)
    step(20, 0.05, 0.3)        # low, low, then healthy: the count starts again
    step(30, 0.04, 0.3)
    step(40, 0.8, 0.3)
    step(50, 0.5, 0.02)
    step(60, 0.03, 0.3)
    assert tv.collapse_step is None and tv.collapse_banner.isHidden()
    step(70, 0.01, 0.01)       # third low log in a row: the collapse began at step 50
    assert tv.collapse_step == 50
    assert tv.collapse_banner.isVisible()
    assert "from step 50 to 70" in tv.collapse_banner.text()
    assert "The representation is collapsing: every image maps to nearly the same vector" \
        in tv.collapse_banner.text()
    assert "lower the learning rate" in tv.collapse_banner.text().lower()
    assert tv.collapse_line.isVisible() and tv.collapse_line.value() == 50
    tv._redraw()                     # (the texts, like the curves, are shown by the throttled redraw)
    assert tv.throughput_label.text() == "500 img/s"
    assert list(tv.c_std_curve.xData) == [10, 20, 30, 40, 50, 60, 70]
    assert tv.c_rank_curve.yData[-1] == pytest.approx(0.01)

    # A new run clears the warning; one evaluation with collapsed features raises it at once.
    tv._clear_curves()
    assert tv.collapse_banner.isHidden() and not tv.collapse_line.isVisible()
    tv._on_event(T.Evaluation(1, 110, 1.0, {"knn": 0.5, "feature_std_ratio": 0.9, "feature_rank_ratio": 0.4}))
    assert tv.collapse_step is None
    tv._on_event(T.Evaluation(1, 220, 2.0, {"knn": 0.1, "feature_std_ratio": 0.5, "feature_rank_ratio": 0.01}))
    assert tv.collapse_step == 220 and tv.collapse_banner.isVisible()
    assert "collapsing into a few directions" in tv.collapse_banner.text()     # the spread alone is fine

    # A masked autoencoder's features are legitimately narrow: plotted, never warned about.
    tv._clear_curves()
    tv._run_method = "mae"
    for s in (10, 20, 30, 40):
        step(s, 0.03, 0.15)
    assert tv.collapse_step is None and tv.collapse_banner.isHidden()
    tv._redraw()
    assert len(tv.c_std_curve.xData) == 4

    # A text run's throughput is in its own unit.
    tv._clear_curves()
    tv._run_method = "word2vec"
    tv._on_event(T.Started(2, "cpu", 10, 5, 100, 0, items="words", rate="words/s"))
    tv._on_event(T.Step(2, 1, 0.2, 3.0, 0.025, 12345.0, {}))
    tv._redraw()
    assert tv.throughput_label.text() == "12,345 words/s"
