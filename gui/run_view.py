"""The base of the views that show one run picked from a list (Map, Words, Search,
Reconstructions).

A :class:`RunView` owns the run picker and the dance around it: which runs it lists
(:meth:`RunView.runs_to_list`, the subclass's), re-listing them when the view is shown
or the project changes, loading the run picked there or asked for by
:meth:`RunView.show_run`. The subclass says how to load a run (:meth:`RunView.load_run`)
and what to show when there is none (:meth:`RunView.show_no_runs`).
"""
from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QWidget

from .widgets import fill_run_combo, select_run_quietly

__all__ = ["RunView"]


class RunView(QWidget):
    """A view of one run of ``project``, picked in ``run_combo``."""

    #: the picker's placeholder when no run can be shown
    no_runs_placeholder = "no runs yet"
    #: load the picked run even while the view is hidden (else it loads when shown)
    loads_when_hidden = False

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.run_id: int | None = None

    def _make_run_combo(self, min_length: int) -> QComboBox:
        """The run picker (the subclass places it in its layout)."""
        self.run_combo = QComboBox()
        self.run_combo.setMinimumContentsLength(min_length)
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_combo.currentIndexChanged.connect(self._on_run_chosen)
        return self.run_combo

    # -- for the subclass ----------------------------------------------------------------
    def runs_to_list(self, project) -> list:
        """The RunRecords of ``project`` the picker lists, newest first."""
        raise NotImplementedError

    def load_run(self, run_id: int) -> None:
        """Show run ``run_id`` (a project is open)."""
        raise NotImplementedError

    def show_no_runs(self) -> None:
        """The picker is empty: say why."""

    def follows_picker(self) -> bool:
        """Whether a refresh loads the run the picker shows when it is not the one shown."""
        return self.loads_when_hidden or self.isVisible()

    # -- the run picker --------------------------------------------------------------------
    def set_project(self, project) -> None:
        self.project = project
        self.run_id = None
        self.refresh()

    def refresh(self) -> None:
        """Re-list the runs (keeps the current one) and load the listed one if it changed."""
        runs = self.runs_to_list(self.project) if self.project is not None else []
        fill_run_combo(self.run_combo, self.project, runs)
        self.run_combo.setPlaceholderText(self.no_runs_placeholder)
        if not self.run_combo.count():
            self.show_no_runs()
            return
        if self.run_combo.currentData() != self.run_id and self.follows_picker():
            self._on_run_chosen()

    def showEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        super().showEvent(ev)
        self.refresh()

    def show_run(self, run_id: int) -> None:
        """Pick ``run_id`` in the picker and load it."""
        self.refresh()
        select_run_quietly(self.run_combo, run_id)
        self.load(run_id)

    def _on_run_chosen(self, *_) -> None:
        run_id = self.run_combo.currentData()
        if run_id is not None:
            self.load(int(run_id))

    def load(self, run_id: int) -> None:
        if self.project is not None:
            self.load_run(run_id)
