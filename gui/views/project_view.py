"""The Project view: the data sets and runs a project file holds."""
from __future__ import annotations

import math
from contextlib import contextmanager

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QGroupBox, QHBoxLayout, QHeaderView, QLabel, QMenu,
                               QPushButton, QSplitter, QTableWidget, QTableWidgetItem, QToolButton,
                               QVBoxLayout, QWidget)

from ..import_flow import ImportingView
from ..widgets import read_only_note, show_read_only

RUN_COLUMNS = ("#", "Name", "Method", "Data set", "Status", "kNN", "Linear probe", "Created")
DATASET_COLUMNS = ("Name", "Kind", "Items", "Size", "Classes", "Train / test")   # test: held out for text


def _item(text: str, sort_value=None, align_right: bool = False) -> QTableWidgetItem:
    it = QTableWidgetItem(text)
    it.setFlags(it.flags() & ~Qt.ItemFlag.ItemIsEditable)
    if sort_value is not None:
        it.setData(Qt.ItemDataRole.UserRole, sort_value)
    if align_right:
        it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return it


@contextmanager
def _filling(table: QTableWidget):
    """Fill ``table`` in one go: columns that fit their contents are sized once at the end,
    not after every cell (which made refreshing 60 runs take more than a second)."""
    header = table.horizontalHeader()
    modes = [header.sectionResizeMode(c) for c in range(header.count())]
    for c in range(header.count()):
        header.setSectionResizeMode(c, QHeaderView.ResizeMode.Fixed)
    try:
        yield
    finally:
        for c, mode in enumerate(modes):
            header.setSectionResizeMode(c, mode)


def _pct(value) -> str:
    if value is None or not isinstance(value, float) or math.isnan(value):
        return "—"
    return f"{value:.1%}"


def _size_text(stats: dict) -> str:
    size = stats.get("size") if isinstance(stats, dict) else None
    if not size:
        return "—"
    ch = stats.get("channels")
    colour = {1: "gray", 3: "RGB"}.get(ch, f"{ch} ch" if ch else "")
    return f"{size[0]}×{size[1]} {colour}".strip()


def resumable_statuses() -> tuple[str, ...]:
    """The run statuses a user can resume from (the store's list; imported when first needed,
    once the project, and with it the store, has been opened)."""
    from engine.store import RESUMABLE_STATUSES
    return RESUMABLE_STATUSES


class ProjectView(QWidget, ImportingView):
    """Tables of data sets and runs. The main window refreshes it when runs change (its
    ``runs_changed``: a run here started or ended, or another process changed one)."""

    resume_requested = Signal(int)
    map_requested = Signal(int)
    datasets_changed = Signal()
    #: (message, timeout ms) for the status bar
    message = Signal(str, int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self._make_import_flow(self._update_buttons)
        #: the file being opened, shown while there is no project yet
        self._opening: tuple[str, object] | None = None
        self._train_shortcut = ""
        self._build()

    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        self.title = QLabel()
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        root.addWidget(self.title)
        split = QSplitter(Qt.Orientation.Vertical)

        ds_box = QGroupBox("Data sets")
        dl = QVBoxLayout(ds_box)
        self.datasets_table = QTableWidget(0, len(DATASET_COLUMNS))
        self.datasets_table.setHorizontalHeaderLabels(DATASET_COLUMNS)
        self._table_defaults(self.datasets_table, stretch=0)
        dl.addWidget(self.datasets_table)
        self.datasets_empty = QLabel("No data sets yet. Add one with “Add data set”: the built-in "
                                     "digits train in seconds.")
        self.datasets_empty.setWordWrap(True)
        dl.addWidget(self.datasets_empty)
        row = QHBoxLayout()
        self.add_button = QToolButton()
        self.add_button.setText("Add data set")
        self.add_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.add_button)
        menu.addAction("Handwritten digits (8×8, built in)", lambda: self.import_dataset("digits"))
        menu.addAction("Shapes (32×32, built in)", lambda: self.import_dataset("shapes"))
        # The same form as the Datasets view's (a folder or a .zip, a name, an image size).
        menu.addAction("Image folder or .zip…", lambda: self.import_flow.open_dialog("image-folder"))
        self.add_button.setMenu(menu)
        self.import_progress = self.import_flow.progress
        self.cancel_import_button = self.import_flow.cancel_button
        row.addWidget(self.add_button)
        row.addWidget(self.import_progress)
        row.addWidget(self.cancel_import_button)
        row.addStretch(1)
        dl.addLayout(row)
        split.addWidget(ds_box)

        runs_box = QGroupBox("Runs")
        rl = QVBoxLayout(runs_box)
        self.runs_table = QTableWidget(0, len(RUN_COLUMNS))
        self.runs_table.setHorizontalHeaderLabels(RUN_COLUMNS)
        self._table_defaults(self.runs_table, stretch=1)
        self.runs_table.itemSelectionChanged.connect(self._update_buttons)
        self.runs_table.itemDoubleClicked.connect(self._on_run_double_clicked)
        rl.addWidget(self.runs_table)
        self.runs_empty = QLabel()
        self.runs_empty.setWordWrap(True)
        self.set_train_shortcut("")
        rl.addWidget(self.runs_empty)
        buttons = QHBoxLayout()
        self.resume_button = QPushButton("Resume selected run")
        self.resume_button.setToolTip("Continue a stopped, failed or interrupted run from its last checkpoint")
        self.resume_button.clicked.connect(self._resume_selected)
        self.map_button = QPushButton("Show map")
        self.map_button.setToolTip("Open the selected finished run in the Map view")
        self.map_button.clicked.connect(self._map_selected)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        for b in (self.resume_button, self.map_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.refresh_button)
        rl.addLayout(buttons)
        split.addWidget(runs_box)
        split.setSizes([200, 400])
        root.addWidget(split, 1)
        self._update_buttons()

    @staticmethod
    def _table_defaults(t: QTableWidget, stretch: int) -> None:
        t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.verticalHeader().setVisible(False)
        t.setAlternatingRowColors(True)
        header = t.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)   # the name column

    # ------------------------------------------------------------------ data
    def set_project(self, project) -> None:
        self.project = project
        self.refresh()

    def set_train_shortcut(self, keys: str) -> None:
        """The Train view's shortcut, named in the hint shown while there are no runs."""
        self._train_shortcut = keys
        where = f"Train ({keys})" if keys else "Train"
        self.runs_empty.setText(f"No runs yet. Go to {where}, pick a data set and a method, "
                                "and press Start (Ctrl+Return).")

    def set_opening(self, path, what: str = "Opening") -> None:
        """Say that ``path`` is being opened (None: no opening under way); adding a data set
        and resuming wait until it is open."""
        self._opening = None if path is None else (what, path)
        self._update_buttons()
        if self.project is None:
            self.refresh()

    def showEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        super().showEvent(ev)
        self.refresh()

    def refresh(self) -> None:
        if self.project is None:
            if self._opening is not None:
                what, path = self._opening
                self.title.setText(f"<b>{what} {path.name}…</b> &nbsp; <span style='color:gray'>{path}</span>")
            else:
                self.title.setText("No project open. File → New project… or File → Open…")
            self.datasets_table.setRowCount(0)
            self.runs_table.setRowCount(0)
            self.datasets_empty.setVisible(False)
            self.runs_empty.setVisible(False)
            self._update_buttons()
            return
        lock = " &nbsp; (read-only)" if self.project.read_only else ""
        self.title.setText(f"<b>{self.project.path.name}</b>{lock} &nbsp; <span style='color:gray'>"
                           f"{self.project.path}</span>")
        datasets = self.project.datasets()
        runs = self.project.runs()
        metrics = {run.id: self.project.latest_metrics(run.id) for run in runs}
        with _filling(self.datasets_table):
            self._fill_datasets(datasets)
        with _filling(self.runs_table):
            self._fill_runs(runs, {d.id: d.name for d in datasets}, metrics)
        self.datasets_empty.setVisible(not datasets)
        self.runs_empty.setVisible(not runs)
        self._update_buttons()

    def _fill_datasets(self, datasets) -> None:
        t = self.datasets_table
        t.setSortingEnabled(False)
        t.setRowCount(len(datasets))
        for r, d in enumerate(datasets):
            t.setItem(r, 0, _item(d.name, d.id))
            t.setItem(r, 1, _item(d.kind))
            t.setItem(r, 2, _item(f"{d.n_items:,}", align_right=True))
            t.setItem(r, 3, _item(_size_text(d.stats)))
            stats = d.stats if isinstance(d.stats, dict) else {}
            n_classes = stats.get("n_classes")
            t.setItem(r, 4, _item("—" if not n_classes else str(n_classes), align_right=True))
            split = stats.get("split") or {}
            t.setItem(r, 5, _item(f"{split.get('train', 0):,} / {split.get('test', split.get('heldout', 0)):,}" if split else "—"))

    def _fill_runs(self, runs, dataset_names: dict, metrics: dict) -> None:
        """The runs, newest first, keeping the selected one selected."""
        selected = self.selected_run_id()
        t = self.runs_table
        t.setRowCount(len(runs))
        for row, run in enumerate(reversed(runs)):
            m = metrics.get(run.id, {})
            t.setItem(row, 0, _item(str(run.id), run.id, align_right=True))
            t.setItem(row, 1, _item(run.name))
            t.setItem(row, 2, _item(run.method))
            t.setItem(row, 3, _item(dataset_names.get(run.dataset_id, "?")))
            status = _item(run.status)
            if run.status == "failed" and run.error:
                status.setToolTip(run.error.split("\n\n")[0])
            elif run.status == "interrupted":
                status.setToolTip("Its training process ended without stopping the run (the app or the "
                                  "computer quit): Resume continues it from its last checkpoint")
            t.setItem(row, 4, status)
            t.setItem(row, 5, _item(_pct(m.get("knn")), align_right=True))
            t.setItem(row, 6, _item(_pct(m.get("linear")), align_right=True))
            created = run.created_at.astimezone().strftime("%Y-%m-%d %H:%M") if run.created_at else ""
            t.setItem(row, 7, _item(created))
            if run.id == selected:
                t.selectRow(row)

    def selected_run_id(self) -> int | None:
        rows = self.runs_table.selectionModel().selectedRows() if self.runs_table.selectionModel() else []
        if not rows:
            return None
        it = self.runs_table.item(rows[0].row(), 0)
        return None if it is None else int(it.data(Qt.ItemDataRole.UserRole))

    def select_run(self, run_id: int) -> bool:
        for row in range(self.runs_table.rowCount()):
            it = self.runs_table.item(row, 0)
            if it is not None and it.data(Qt.ItemDataRole.UserRole) == run_id:
                self.runs_table.selectRow(row)
                return True
        return False

    def _selected_status(self) -> str | None:
        rows = self.runs_table.selectionModel().selectedRows()
        if not rows:
            return None
        it = self.runs_table.item(rows[0].row(), 4)
        return None if it is None else it.text()

    def _update_buttons(self, *_) -> None:
        ready = self.project is not None and self._opening is None
        # A read-only project is shown, never changed: no data set is added, no run resumed.
        read_only = read_only_note(self.project)
        status = self._selected_status() if ready else None
        self.resume_button.setEnabled(not read_only and status is not None and status in resumable_statuses())
        self.map_button.setEnabled(status == "finished")
        self.add_button.setEnabled(ready and not read_only and not self.importing)
        self.refresh_button.setEnabled(ready)
        for b in (self.resume_button, self.add_button):
            show_read_only(b, read_only)

    def _resume_selected(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.resume_requested.emit(run_id)

    def _map_selected(self) -> None:
        run_id = self.selected_run_id()
        if run_id is not None:
            self.map_requested.emit(run_id)

    def _on_run_double_clicked(self, _item) -> None:
        if self._selected_status() == "finished":
            self._map_selected()

    # ------------------------------------------------------------------ imports
    # The import itself is the shared ImportFlow (ImportingView); this view then re-reads its tables.
    def _on_imported(self, _dataset_id: int, _data) -> None:
        self.refresh()
        self.datasets_changed.emit()
