"""Interrupted runs: the Project view shows them with a Resume that works, and Run → Resume
resumes the selected or most recent resumable run, or says why nothing can be resumed."""
from __future__ import annotations

from engine.store import RESUMABLE_STATUSES
from engine.workbench import create_run

SMALL = {"epochs": "1", "batch_size": "128", "width": "4", "max_train_items": "256"}


def wait_until_idle(window, qtbot):
    qtbot.waitUntil(lambda: not window.train_view.busy, timeout=120_000)


def test_interrupted_run_is_shown_and_resumed_from_the_project_view(window, project, qtbot):
    assert "interrupted" in RESUMABLE_STATUSES
    run_id = create_run(project, "digits", "simclr", SMALL, name="cut short")
    project.update_run(run_id, status="interrupted")
    pv = window.project_view
    window.show_view("project")
    pv.refresh()
    assert pv.runs_table.item(0, 4).text() == "interrupted"
    assert "Resume" in pv.runs_table.item(0, 4).toolTip()
    assert not pv.resume_button.isEnabled()          # nothing selected yet
    assert pv.select_run(run_id)
    assert pv.resume_button.isEnabled() and not pv.map_button.isEnabled()
    pv.resume_button.click()
    assert window.current_view() == "train" and window.train_view.busy
    wait_until_idle(window, qtbot)
    assert project.run(run_id).status == "finished"
    # The window heard about it: the Project view lists the run as finished.
    window.show_view("project")
    assert pv.runs_table.item(0, 4).text() == "finished"


def test_run_menu_resume_says_why_when_nothing_can_be_resumed(window, project, qtbot):
    window.resume_action.trigger()
    box = window._info_box
    assert box.isVisible()
    assert box.text().startswith(f"No run of {project.path.name} can be resumed: only stopped, failed or "
                                 "interrupted runs")
    assert "can be resumed" in window.statusBar().currentMessage()
    assert not window.train_view.busy
    box.close()


def test_run_menu_resume_picks_the_selected_then_the_most_recent(window, project, qtbot):
    first = create_run(project, "digits", "simclr", SMALL, name="older")
    second = create_run(project, "digits", "simclr", SMALL, name="newer")
    project.update_run(first, status="interrupted")
    project.update_run(second, status="stopped")
    window.show_view("project")
    window.project_view.refresh()
    window.project_view.select_run(first)
    assert window.resume() == first                 # the selected one
    wait_until_idle(window, qtbot)
    assert project.run(first).status == "finished"
    window.show_view("project")
    window.project_view.runs_table.clearSelection()
    window.resume_action.trigger()                  # none selected: the most recent resumable
    assert window.train_view.busy and window.train_view.run_id == second
    wait_until_idle(window, qtbot)
    assert project.run(second).status == "finished"


def test_runs_changed_by_another_process_reach_the_visible_view(window, project, qtbot):
    """No view polls the runs on the GUI thread: the window's watcher reads a signature on a
    worker and emits runs_changed; the visible Project view then shows the new run."""
    import threading

    from engine.store import Project
    window.show_view("project")
    pv = window.project_view
    assert pv.runs_table.rowCount() == 0
    qtbot.wait(200)                                   # the watcher's first signature is its baseline
    qtbot.waitUntil(lambda: window.runs_watcher._signature is not None, timeout=10_000)
    elsewhere = Project.open(project.path)            # another connection, as the CLI would have
    run_id = create_run(elsewhere, "digits", "simclr", SMALL, name="from the CLI")
    threads = []
    window.runs_watcher.changed.connect(lambda: threads.append(threading.current_thread().name))
    with qtbot.waitSignal(window.runs_changed, timeout=15_000):
        pass
    assert threads == ["MainThread"]                 # emitted on the GUI thread (a queued result)
    assert pv.runs_table.rowCount() == 1 and pv.runs_table.item(0, 1).text() == "from the CLI"
    with qtbot.waitSignal(window.runs_changed, timeout=15_000):
        elsewhere.update_run(run_id, status="interrupted")
    assert pv.runs_table.item(0, 4).text() == "interrupted"
    elsewhere.close()
