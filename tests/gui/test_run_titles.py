"""Every run picker names a run the same way: "#id title", the data set named once (a typed
name gets it appended), and the status of a run that has not finished."""
from __future__ import annotations

from types import SimpleNamespace

from engine.workbench import create_run

from gui.widgets import fill_run_combo, run_label, run_title

SMALL = {"epochs": "1", "batch_size": "128", "width": "4", "max_train_items": "256"}


def run(id=2, name="", method="simclr", status="finished"):
    return SimpleNamespace(id=id, name=name, method=method, status=status, dataset_id=1)


def test_run_title_names_the_data_set_once():
    assert run_title(run(name="simclr on digits"), "digits") == "simclr on digits"
    assert run_title(run(name="first"), "digits") == "first on digits"
    assert run_title(run(name=""), "digits") == "simclr on digits"       # no name: the method's
    assert run_title(run(name="digits, width 16"), "digits") == "digits, width 16"


def test_run_label_adds_the_status_of_runs_that_have_not_finished():
    assert run_label(run(), "digits") == "#2 simclr on digits"
    assert run_label(run(id=3, name="first", status="interrupted"), "digits") == "#3 first on digits — interrupted"
    assert run_label(run(id=4, status="stopped"), "shapes") == "#4 simclr on shapes — stopped"


def test_pickers_list_runs_by_their_titles(window, project, qtbot):
    """The shared combo filler (Reconstructions, Words, Search) and the Train view's Resume
    picker list the same titles; the old "#2 simclr on digits (digits)" is gone."""
    from PySide6.QtWidgets import QComboBox
    default = create_run(project, "digits", "simclr", SMALL)
    typed = create_run(project, "digits", "mae", {"epochs": "1"}, name="first")
    project.update_run(default, status="finished")
    project.update_run(typed, status="interrupted")
    combo = QComboBox()
    qtbot.addWidget(combo)
    runs = list(reversed(project.runs()))
    fill_run_combo(combo, project, runs)
    assert [combo.itemText(i) for i in range(combo.count())] == [
        f"#{typed} first on digits — interrupted", f"#{default} simclr on digits"]
    assert [combo.itemData(i) for i in range(combo.count())] == [typed, default]
    fill_run_combo(combo, project, runs, with_status=False)
    assert combo.itemText(0) == f"#{typed} first on digits"

    tv = window.train_view
    window.show_view("train")
    tv.refresh()
    assert [tv.resume_combo.itemText(i) for i in range(tv.resume_combo.count())] == [
        f"#{typed} first on digits — interrupted"]

    # A view that uses the shared filler: Reconstructions lists runs of methods that reconstruct.
    rv = window.reconstructions_view
    rv.refresh()
    assert rv.run_combo.findText(f"#{typed} first on digits — interrupted") >= 0
    assert all("(digits)" not in rv.run_combo.itemText(i) for i in range(rv.run_combo.count()))

    # The Map lists its finished runs with the same titles (it had its own "(digits)" format).
    mv = window.map_view
    mv.refresh()
    assert [mv.run_combo.itemText(i) for i in range(mv.run_combo.count())] == [f"#{default} simclr on digits"]
