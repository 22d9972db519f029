"""The Map view's selection: a freehand outline drawn on the map (the lasso tool, or
Shift + drag) selects the points inside, and "Pick to label…" selects the training images
that are worth labelling first (:mod:`engine.selection`: TypiClust, k-center greedy or
random, on the run's embedding). The selection is shown as a grid of its items or exported
as CSV. The polygon test itself is :func:`engine.explore.map.points_in_polygon`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QLabel,
                               QListView, QListWidget, QListWidgetItem, QPushButton, QSpinBox, QToolButton,
                               QVBoxLayout)

from engine.explore.map import points_in_polygon

from ..images import thumbnail
from ..tasks import Task
from ..widgets import error_dialog

GRID_THUMB = 56
#: "Show as grid" lists at most this many selected items (thumbnails cost memory and time).
GRID_CAP = 500
#: "Pick to label…": the strategies offered, in order, with what each does.
PICK_STRATEGIES = {
    "typiclust": ("TypiClust (typical of each cluster)",
                  "k-means into as many clusters as images to label, then the most typical image of "
                  "each: the best choice for a small budget (Hacohen et al. 2022)."),
    "kcenter": ("k-center greedy (coverage)",
                "Each pick is the image farthest from those picked so far: covers the whole collection, "
                "outliers included (Sener & Savarese 2018)."),
    "random": ("random", "A uniform random sample: the baseline the others are measured against."),
}


class LassoViewBox(pg.ViewBox):
    """A ViewBox whose left drag draws a freehand lasso instead of panning while
    ``lasso_mode`` is on or Shift is held. The closed outline goes out, in view
    coordinates, through ``lasso_finished``; the wheel and the right drag still zoom."""

    lasso_finished = Signal(object)      # (m, 2) float array

    def __init__(self):
        super().__init__()
        self.lasso_mode = False
        self._path: list[tuple[float, float]] = []
        self.outline = pg.PlotCurveItem()
        self.outline.setZValue(30)
        self.addItem(self.outline, ignoreBounds=True)

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph naming
        shift = bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        lasso = bool(self._path) or (ev.button() == Qt.MouseButton.LeftButton and axis is None
                                     and (self.lasso_mode or shift))
        if not lasso:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        if ev.isStart():
            start = self.mapToView(ev.buttonDownPos())
            self._path = [(start.x(), start.y())]
        p = self.mapToView(ev.pos())
        self._path.append((p.x(), p.y()))
        if ev.isFinish():
            polygon = np.array(self._path, np.float64)
            self._path = []
            self.outline.setData([], [])
            self.lasso_finished.emit(polygon)
        else:
            closed = np.array(self._path + self._path[:1], np.float64)
            self.outline.setData(closed[:, 0], closed[:, 1])



class MapSelection:
    """The lasso-selection part of :class:`~gui.views.map_view.MapView` (a mixin: it works on
    the view's ``info``, ``coords``, ``vb`` and brushes, and its linked ``partner``)."""

    def _build_selection_tools(self) -> None:
        """The lasso tool, the selection's count and its buttons (the view places them)."""
        self.selection = np.zeros(0, np.int64)  # rows inside the lasso
        self.grid_dialog: QDialog | None = None
        self.lasso_button = QToolButton()
        self.lasso_button.setText("Lasso")
        self.lasso_button.setCheckable(True)
        self.lasso_button.setToolTip("Drag to draw a freehand lasso around points to select them "
                                     "(Ctrl+L; or hold Shift and drag at any time). Esc clears.")
        if not self.compact:
            self.lasso_button.setShortcut("Ctrl+L")
        self.lasso_button.toggled.connect(self._on_lasso_tool)
        self.selection_label = QLabel("")
        self.grid_button = QPushButton("Show as grid")
        self.grid_button.setToolTip(f"The selected items in a window (the first {GRID_CAP})")
        self.grid_button.clicked.connect(self.show_selection_grid)
        self.export_button = QPushButton("Export selection…")
        self.export_button.setToolTip("Save the selected items as CSV: index, name, label, x, y")
        self.export_button.clicked.connect(lambda: self.export_selection())
        self.clear_lasso_button = QPushButton("Clear")
        self.clear_lasso_button.setToolTip("Clear the selection (Esc)")
        self.clear_lasso_button.clicked.connect(self.clear_lasso)
        self.pick_button = QPushButton("Pick to label…")
        self.pick_button.setToolTip("Select the training images worth labelling first, chosen from this "
                                    "run's embedding (TypiClust, k-center greedy or random)")
        self.pick_button.clicked.connect(self.ask_pick_to_label)
        # The button comes back once the worker has ended (``finished``), not with its outcome,
        # which arrives while the thread is still winding down.
        self.pick_task = Task(self, "pretext-pick", done=self._on_picked, error=self._on_pick_error,
                              finished=self._update_selection_ui)

    def _on_lasso_tool(self, on: bool) -> None:
        self.vb.lasso_mode = on
        if self.partner is not None:
            self.partner.vb.lasso_mode = on

    def select_polygon(self, polygon) -> int:
        """Select the points inside ``polygon`` ((m, 2) in map coordinates); returns how many."""
        if self.info is None or self.coords is None:
            return 0
        rows = np.flatnonzero(points_in_polygon(self.coords, polygon))
        self.set_selection(rows)
        return len(rows)

    def set_selection(self, rows, emit: bool = True) -> None:
        """Make map rows ``rows`` the selection: the other points fade; with ``emit``, a
        linked map selects the same items."""
        if self.info is None:
            return
        rows = np.unique(np.asarray(rows, np.int64).ravel())
        self.selection = rows[(rows >= 0) & (rows < len(self.info.ids))]
        self._compose_brushes()
        self._push_brushes()
        self._update_selection_ui()
        if emit:
            self.selection_changed.emit(self.selected_items())

    def select_items(self, items) -> None:
        """Select item ids ``items`` (a lasso in the linked map), without echoing back."""
        self.set_selection(self.rows_of(items), emit=False)

    def selected_items(self) -> np.ndarray:
        """Item ids of the selection (indices into the data set, vocabulary or sentences)."""
        if self.info is None:
            return np.zeros(0, np.int64)
        return np.asarray(self.info.ids, np.int64)[self.selection]

    def clear_lasso(self) -> None:
        if len(self.selection):
            self.set_selection([])

    # ------------------------------------------------------------------ pick to label
    def label_pool_rows(self) -> np.ndarray:
        """Map rows that may be picked for labelling: the training split's images (all of them
        when the data set has no test split)."""
        if self.info is None:
            return np.zeros(0, np.int64)
        split = getattr(self.info.data, "split", None)
        rows = np.arange(len(self.info.ids))
        if split is None:
            return rows
        in_train = np.asarray(split)[np.asarray(self.info.ids, np.int64)] == 0
        return rows[in_train] if in_train.any() else rows

    def ask_pick_to_label(self) -> QDialog | None:
        """The "Pick to label" dialog: a strategy and how many images; OK picks them."""
        pool = len(self.label_pool_rows())
        if not pool:
            return None
        dlg = QDialog(self)
        dlg.setWindowTitle("Pick images to label")
        form = QFormLayout(dlg)
        intro = QLabel(f"Choose which of the {pool:,} training images to label first, from this run's "
                       "embedding (no labels are used). The picks become the selection: export them "
                       "as a CSV of file names for whoever labels them.")
        intro.setWordWrap(True)
        form.addRow(intro)
        dlg.strategy = QComboBox()
        for key, (title, why) in PICK_STRATEGIES.items():
            dlg.strategy.addItem(title, key)
            dlg.strategy.setItemData(dlg.strategy.count() - 1, why, Qt.ItemDataRole.ToolTipRole)
        dlg.why = QLabel(PICK_STRATEGIES["typiclust"][1])
        dlg.why.setWordWrap(True)
        dlg.strategy.currentIndexChanged.connect(
            lambda _: dlg.why.setText(PICK_STRATEGIES[dlg.strategy.currentData()][1]))
        dlg.budget = QSpinBox()
        dlg.budget.setRange(1, pool)
        dlg.budget.setValue(min(100, pool))
        dlg.budget.setSuffix(" images")
        form.addRow("Strategy", dlg.strategy)
        form.addRow("", dlg.why)
        form.addRow("How many", dlg.budget)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(dlg.accept)
        buttons.rejected.connect(dlg.reject)
        form.addRow(buttons)
        dlg.accepted.connect(lambda: self.pick_to_label(dlg.strategy.currentData(), dlg.budget.value()))
        dlg.setFixedWidth(480)
        dlg.setModal(True)
        dlg.show()
        return dlg

    def pick_to_label(self, strategy: str, budget: int, seed: int = 0) -> None:
        """Pick ``budget`` training images by ``strategy`` on a worker (after the pick under way,
        if any); they become the selection."""
        self.pick_task.when_free(lambda: self._start_pick(strategy, budget, seed), kind="pick")

    def _start_pick(self, strategy: str, budget: int, seed: int) -> None:
        if self.info is None:
            return
        pool = self.label_pool_rows()
        budget = max(1, min(int(budget), len(pool)))
        self.pick_button.setEnabled(False)
        self.status.setText(f"Picking {budget:,} of {len(pool):,} training images ({strategy})…")
        self.pick_task.start(_pick_rows, self.info.vectors, pool, budget, strategy, seed, self.info.run_id)

    def _on_picked(self, picked) -> None:
        rows, strategy, pool, run_id = picked
        if self.info is None or run_id != self.info.run_id:
            return
        self.set_selection(rows)
        by = PICK_STRATEGIES[strategy][0].split(" (")[0]
        self.status.setText(f"{len(rows):,} of {pool:,} training images picked to label, by {by}: "
                            "Export selection… saves their file names.")

    def _on_pick_error(self, message: str, details: str) -> None:
        error_dialog(self, "Could not pick images to label", message, details)

    def _update_selection_ui(self) -> None:
        self.pick_button.setEnabled(self.info is not None and self.info.points == "images"
                                    and not self.pick_task.busy)
        n = len(self.selection)
        if n:
            self.selection_label.setText(f"<b>{n:,}</b> selected")
        else:
            self.selection_label.setText("No selection: draw a lasso (Shift + drag)")
        for w in (self.grid_button, self.export_button, self.clear_lasso_button):
            w.setEnabled(n > 0)

    def show_selection_grid(self) -> QDialog | None:
        """A window with the selected items: thumbnails, or words / sentences one per line
        (at most GRID_CAP of them, with a note saying so)."""
        if self.info is None or not len(self.selection):
            return None
        if self.grid_dialog is not None:
            self.grid_dialog.close()
        n = len(self.selection)
        rows = self.selection[:GRID_CAP]
        dlg = QDialog(self)
        run = self.info.run
        dlg.setWindowTitle(f"Selection of {n:,} items: #{run.id} {run.name or run.method}")
        v = QVBoxLayout(dlg)
        dlg.note = QLabel(f"{n:,} items selected" if n <= GRID_CAP else
                          f"Showing the first {GRID_CAP:,} of {n:,} selected items (export the selection "
                          "for all of them).")
        dlg.list = lst = QListWidget()
        names = self.info.names
        images = self.info.points == "images"
        if images:
            lst.setViewMode(QListView.ViewMode.IconMode)
            lst.setIconSize(QSize(GRID_THUMB, GRID_THUMB))
            lst.setGridSize(QSize(GRID_THUMB + 28, GRID_THUMB + 30))
            lst.setResizeMode(QListView.ResizeMode.Adjust)
            lst.setMovement(QListView.Movement.Static)
            lst.setUniformItemSizes(True)
        else:
            lst.setWordWrap(True)
        for r in rows:
            item = int(self.info.ids[r])
            if images:
                label = self._label_of(item) if self.info.data.labels is not None else \
                    names[item].rsplit("/", 1)[-1]
                it = QListWidgetItem(QIcon(thumbnail(self.item_image(int(r)), GRID_THUMB)), label)
                it.setToolTip(self.item_text(int(r)).replace("<br>", "\n"))
            else:
                it = QListWidgetItem(names[item])
            it.setData(Qt.ItemDataRole.UserRole, int(r))
            lst.addItem(it)
        lst.itemDoubleClicked.connect(lambda it: self.select_point(it.data(Qt.ItemDataRole.UserRole)))
        v.addWidget(dlg.note)
        v.addWidget(lst, 1)
        dlg.resize(760, 540)
        dlg.show()
        self.grid_dialog = dlg
        return dlg

    def export_selection(self, path: str | Path | None = None) -> Path | None:
        """Write the selection as CSV (asks where when ``path`` is None); returns the file."""
        if self.info is None or not len(self.selection):
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export the selection",
                                                  f"selection-run{self.run_id}.csv", "CSV files (*.csv)")
            if not path:
                return None
        from engine.workbench import export_selection as write_selection
        rows = self.selection
        try:
            out = write_selection(path, self.info.data, self.info.split, self.selected_items(),
                                  self.coords[rows])
        except OSError as exc:
            error_dialog(self, "Export failed", f"Could not write {path}: {exc}")
            return None
        self.status.setText(f"Exported {len(rows):,} items to {out}")
        return out


def _pick_rows(vectors, pool, budget, strategy, seed, run_id):
    """Worker side of "Pick to label": map rows picked among ``pool`` rows."""
    from engine.selection import select     # torch: imported on first use, not at the window's start
    positions = select(np.asarray(vectors)[pool], budget, strategy, seed)
    return pool[positions], strategy, len(pool), run_id
