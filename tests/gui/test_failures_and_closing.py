"""A failing run shows a readable error and leaves the window working; closing
during a run asks first and stops the run cleanly."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from engine.methods.simclr import SimCLR


@pytest.mark.timeout(120)
def test_failing_run_shows_details_and_marks_run_failed(window, project, qtbot, configure_small_run,
                                                         monkeypatch):
    def broken_step(self, x, views, generator, index=None):
        raise RuntimeError("the method exploded on purpose")

    monkeypatch.setattr(SimCLR, "training_step", broken_step)
    tv = window.train_view
    configure_small_run(window, epochs=1)
    tv.train_form.set_values({"max_train_items": 256})          # 2 steps of 128
    qtbot.mouseClick(tv.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tv.busy and tv.state == "idle", timeout=60_000)

    box = tv.last_error_box
    assert box is not None and box.isVisible()
    assert box.icon() == QMessageBox.Icon.Critical
    assert box.text() == "RuntimeError: the method exploded on purpose"
    assert "Traceback" in box.detailedText() and "broken_step" in box.detailedText()
    run = project.run(tv.run_id)
    assert run.status == "failed"
    assert "the method exploded on purpose" in run.error
    assert "failed" in window.run_state_label.text()
    box.close()

    # The window keeps working: once the cause is fixed, the failed run resumes to the end.
    assert tv.start_button.isEnabled()
    assert tv.resume_combo.currentData() == run.id
    monkeypatch.undo()
    qtbot.mouseClick(tv.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tv.busy and tv.state == "idle", timeout=90_000)
    assert project.run(run.id).status == "finished"
    assert list(tv.loss_curve.xData) == [1, 2]


@pytest.mark.timeout(120)
def test_close_during_run_asks_then_stops_cleanly(window, project, qtbot, configure_small_run,
                                                  monkeypatch):
    tv = window.train_view
    configure_small_run(window, epochs=50)
    window._start_shortcut()                       # what Ctrl+Return does
    qtbot.waitUntil(lambda: len(tv.step_events) >= 1, timeout=60_000)
    run_id = tv.run_id

    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.No)
    window.close()
    assert len(asked) == 1 and window.isVisible() and tv.busy     # "No": keep training

    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.Yes)
    window.close()
    assert len(asked) == 2
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=60_000)
    assert not tv.busy
    assert project.run(run_id).status == "stopped"
    assert project.checkpoints(run_id), "the stopped run has a checkpoint to resume from"


def test_pause_and_continue(window, project, qtbot, configure_small_run):
    tv = window.train_view
    configure_small_run(window, epochs=50)
    window.show_view("project")
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)   # start
    assert tv.busy and window.current_view() == "train"
    qtbot.waitUntil(lambda: len(tv.step_events) >= 1, timeout=60_000)
    qtbot.mouseClick(tv.pause_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tv.state == "paused", timeout=30_000)
    # (the engine records "paused" just after it yields the Paused event)
    qtbot.waitUntil(lambda: project.run(tv.run_id).status == "paused", timeout=10_000)
    n = len(tv.step_events)
    qtbot.wait(300)
    assert len(tv.step_events) == n                   # no steps while paused
    assert tv.resume_button.isEnabled() and not tv.pause_button.isEnabled()
    qtbot.mouseClick(tv.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(tv.step_events) > n, timeout=30_000)
    assert tv.state == "running"
    qtbot.keyClick(window, Qt.Key.Key_Escape)           # stop (also Ctrl+.)
    assert tv.state == "stopping"
    qtbot.waitUntil(lambda: not tv.busy, timeout=60_000)
    assert project.run(tv.run_id).status == "stopped"
