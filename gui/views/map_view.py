"""The Map view: a finished run's embeddings in 2-D.

The stored PCA projection appears at once; UMAP is computed in a worker
thread (umap-learn compiles with numba on first use, which takes a while) and
swapped in when ready, then stored in the project so the next visit is
instant. All points are one ``ScatterPlotItem`` in pixel mode; their brushes
are numpy object arrays indexed from a small palette (one QBrush per colour,
never one per point), so recolouring 100,000 points is a few array operations.
Hovering shows the item's image (or its word, or its sentence for the masked
language model) and label; clicking lists its eight nearest neighbours by
cosine similarity in embedding space (not on the map).

Colour by label, by an attribute, by a word in the captions (points whose
caption or sentence contains it are highlighted, the others greyed) or by
k-means cluster (computed on a worker). The lasso tool (or Shift + drag) draws
a freehand outline; the points inside become the selection, shown as a grid
or exported as CSV. "Compare with…" opens a second map of another run on the
same data beside the first: hovering, clicking or lassoing in one shows the
same items in the other.

The timeline replays how the map formed: the run stores the embeddings of a
fixed sample at every evaluation ("timeline" sets); each one is mapped with
PCA and rotated/reflected onto the previous frame (orthogonal Procrustes), so
that the frames differ only by what training changed, not by an arbitrary
rotation of the axes. A slider and a play button step through them, with the
points moving smoothly between frames.

What is computed (the run's points, UMAP, clusters, the lasso's polygon test, the
aligned timeline) lives in :mod:`engine.explore.map`, Qt-free; this module draws it.
"""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QKeySequence, QShortcut
from PySide6.QtWidgets import (QComboBox, QDialog, QFileDialog, QHBoxLayout, QLabel, QLineEdit,
                               QListView, QListWidget, QListWidgetItem, QProgressBar, QPushButton, QSlider,
                               QSpinBox, QSplitter, QStackedWidget, QStyle, QToolButton, QVBoxLayout,
                               QWidget)

from engine.explore.map import (MapData, Timeline, compute_clusters, compute_timeline, compute_umap,
                                load_map_data, points_in_polygon)

from ..images import thumbnail
# PaletteScatter is imported from here too (it was defined here first).
from ..scatter import PaletteScatter, ScatterHost, ScatterMap, projection_combo  # noqa: F401
from ..theme import accent, category_colors, is_dark
from ..widgets import ElidedLabel, error_dialog, fill_run_combo, select_run_quietly
from ..workers import FunctionWorker

N_NEIGHBOURS = 8
NEIGHBOUR_THUMB = 64
GRID_THUMB = 56
#: "Show as grid" lists at most this many selected items (thumbnails cost memory and time).
GRID_CAP = 500
#: Alpha of points outside the selection: see-through, so what is selected stays visible.
FADED_ALPHA = 45
#: Points whose caption does not contain the word: grey, and see-through for the same reason.
OTHER_COLOUR = QColor(150, 150, 150, 110)
MATCH_COLOUR = QColor("#f28e2b")
#: Slider positions between two timeline frames (the points glide from one to the next).
TIMELINE_SUBSTEPS = 10
TIMELINE_TICK_MS = 40
#: Typing a caption word or a k waits this long for the next key before recolouring.
RECOLOUR_DELAY_MS = 250


def _brush_array(colours: list[QColor]) -> np.ndarray:
    """One QBrush per colour, as an object array that per-point brushes index into."""
    out = np.empty(len(colours), dtype=object)
    for i, c in enumerate(colours):
        out[i] = pg.mkBrush(c)
    return out


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


class MapView(ScatterHost, QWidget):
    """Scatter of a run's embeddings, with hover previews, neighbours, colourings, a lasso
    selection and an optional second map linked to it.

    ``compact=True`` makes the second map of a comparison: no run picker, timeline,
    selection tools or neighbour panel of its own (the first map's serve both)."""

    map_ready = Signal(str)              # "pca" or "umap", once drawn
    hovered = Signal(int)                # the item id under the mouse, -1 when none (for a linked map)
    item_clicked = Signal(int)           # the item id clicked (for a linked map)
    selection_changed = Signal(object)   # item ids (int64 array) of the lasso selection
    close_requested = Signal()           # a compact map's close button

    def __init__(self, parent: QWidget | None = None, compact: bool = False):
        super().__init__(parent)
        self.compact = compact
        self.project = None
        self.run_id: int | None = None
        self.info: MapData | None = None
        self.kind = ""                          # the projection on screen (self.coords: the points as drawn)
        self.labels: np.ndarray | None = None   # colour group per point
        self.group_names: list[str] = []
        self.class_colors: list[QColor] = []
        self.selected_index: int | None = None
        self.neighbours: list[int] = []
        self.neighbour_sims: list[float] = []
        self.selection = np.zeros(0, np.int64)  # rows inside the lasso
        self.match_count: int | None = None      # points whose caption contains the word
        self.auto_umap = True
        self.partner: MapView | None = None      # the second map of a comparison
        self.grid_dialog: QDialog | None = None
        self._partner_fresh = False
        self._hovered_item = -1
        self._load_worker: FunctionWorker | None = None
        self._loading_run: int | None = None     # the run whose load result is awaited
        self._umap_worker: FunctionWorker | None = None
        self._cluster_worker: FunctionWorker | None = None
        self._clusters: dict[tuple[int, int], np.ndarray] = {}     # (embedding id, k) → labels
        self._palette = _brush_array([QColor("#4e79a7")])
        self._faded = _brush_array([QColor(78, 121, 167, FADED_ALPHA)])
        self._brushes = np.empty(0, dtype=object)     # per point, indexes into the palettes
        self._umap_error = ""
        self.timeline: Timeline | None = None    # compute_timeline's result for the shown run
        self.timeline_points = np.zeros(0, np.int64)   # map points (rows of info.ids) in the timeline
        self._timeline_worker: FunctionWorker | None = None
        self._timeline_run_id: int | None = None
        self._play_timer = QTimer(self)
        self._play_timer.setInterval(TIMELINE_TICK_MS)
        self._play_timer.timeout.connect(self._play_tick)
        self._recolour_timer = QTimer(self)
        self._recolour_timer.setSingleShot(True)
        self._recolour_timer.setInterval(RECOLOUR_DELAY_MS)
        self._recolour_timer.timeout.connect(self._on_colour_chosen)
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QVBoxLayout(self)
        margin = 0 if self.compact else 6
        root.setContentsMargins(margin, margin, margin, margin)
        bar = QHBoxLayout()
        self.run_combo = QComboBox()
        self.run_combo.setMinimumContentsLength(20)
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_combo.currentIndexChanged.connect(self._on_run_chosen)
        self.title = ElidedLabel("")             # the compact map's run name, in place of the picker
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.colour_combo = QComboBox()
        self.colour_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.colour_combo.setToolTip("Colour the points by their label, an attribute, a word in their "
                                     "captions or a k-means cluster of the embeddings")
        self.colour_combo.currentIndexChanged.connect(self._on_colour_chosen)
        self.caption_edit = QLineEdit()
        self.caption_edit.setPlaceholderText("word…")
        self.caption_edit.setClearButtonEnabled(True)
        self.caption_edit.setMaximumWidth(140)
        self.caption_edit.setToolTip("Highlight the points whose caption (or sentence) contains this word "
                                     "or phrase, whole words, any case")
        self.caption_edit.textChanged.connect(lambda _t: self._recolour_timer.start())
        self.caption_edit.returnPressed.connect(self._on_colour_chosen)
        self.k_spin = QSpinBox()
        self.k_spin.setRange(2, 40)
        self.k_spin.setValue(8)
        self.k_spin.setPrefix("k = ")
        self.k_spin.setToolTip("Number of k-means clusters (on the embeddings, cosine geometry)")
        self.k_spin.valueChanged.connect(lambda _v: self._recolour_timer.start())
        self.colour_note = QLabel("")
        for w in (self.caption_edit, self.k_spin, self.colour_note):
            w.setVisible(False)
        self.kind_combo = projection_combo()
        self.kind_combo.currentIndexChanged.connect(self._on_kind_chosen)
        self.umap_progress = QProgressBar()
        self.umap_progress.setMaximumWidth(160)
        self.umap_progress.setRange(0, 0)
        self.umap_progress.setVisible(False)
        self.status = ElidedLabel("")
        self.timeline_button = QPushButton("Timeline")
        self.timeline_button.setCheckable(True)
        self.timeline_button.setToolTip("Replay how the map formed: the embedding at every evaluated epoch, "
                                        "aligned frame to frame (Ctrl+T)")
        self.timeline_button.toggled.connect(self.set_timeline)
        # The progress bar keeps its place while hidden, so nothing moves when UMAP finishes.
        policy = self.umap_progress.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        self.umap_progress.setSizePolicy(policy)
        if self.compact:
            close = QToolButton()
            close.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_TitleBarCloseButton))
            close.setToolTip("Close the second map")
            close.clicked.connect(lambda: self.close_requested.emit())
            bar.addWidget(self.title, 2)
            self.run_combo.setVisible(False)
            self.timeline_button.setVisible(False)
            bar.addWidget(QLabel("Colour by"))
            bar.addWidget(self.colour_combo)
            bar.addWidget(self.caption_edit)
            bar.addWidget(self.k_spin)
            bar.addWidget(self.colour_note)
            bar.addWidget(QLabel("Map"))
            bar.addWidget(self.kind_combo)
            bar.addWidget(self.umap_progress)
            bar.addWidget(self.status, 1)       # the first map shows its status on the tools row
            bar.addWidget(close)
        else:
            # A stable toolbar: everything left of the Timeline button keeps its width whatever
            # happens (the run picker has a fixed width, not a stretch), and what changes (the
            # colour extras, UMAP's progress) sits to its right, so a click never lands on
            # another control because the row shifted.
            self.timeline_button.setShortcut("Ctrl+T")
            self.run_combo.setMinimumContentsLength(32)
            bar.addWidget(QLabel("Run"))
            bar.addWidget(self.run_combo)
            self.title.setVisible(False)
            bar.addWidget(QLabel("Map"))
            bar.addWidget(self.kind_combo)
            bar.addWidget(self.timeline_button)
            bar.addSpacing(12)
            bar.addWidget(QLabel("Colour by"))
            bar.addWidget(self.colour_combo)
            bar.addWidget(self.caption_edit)
            bar.addWidget(self.k_spin)
            bar.addWidget(self.colour_note)
            bar.addStretch(1)
            bar.addWidget(self.umap_progress)
        root.addLayout(bar)

        # The selection tools and the comparison picker (the first map's, serving both).
        self.tools_bar = QWidget()
        tools = QHBoxLayout(self.tools_bar)
        tools.setContentsMargins(0, 0, 0, 0)
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
        self.compare_combo = QComboBox()
        self.compare_combo.setMinimumContentsLength(18)
        self.compare_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.compare_combo.setToolTip("Open a second map of another finished run on the same data beside "
                                      "this one; hovering, clicking and lassoing show the same items in both")
        self.compare_combo.currentIndexChanged.connect(self._on_compare_chosen)
        tools.addWidget(self.lasso_button)
        tools.addWidget(self.selection_label)
        tools.addWidget(self.grid_button)
        tools.addWidget(self.export_button)
        tools.addWidget(self.clear_lasso_button)
        if not self.compact:
            tools.addWidget(self.status, 1)
        tools.addWidget(QLabel("Compare with"))
        tools.addWidget(self.compare_combo)
        root.addWidget(self.tools_bar)
        self.tools_bar.setVisible(not self.compact)
        if not self.compact:       # one Esc for both maps (the second is a child of the first)
            esc = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
            esc.setWhatsThis("Clear the selection")     # named in Help → Keyboard shortcuts
            esc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            esc.activated.connect(self.clear_lasso)

        self.pages = QStackedWidget()
        self.empty = QLabel()
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setText(self._empty_text())
        self.pages.addWidget(self.empty)

        self.split = split = QSplitter(Qt.Orientation.Horizontal)
        self.vb = LassoViewBox()
        self.vb.lasso_finished.connect(self.select_polygon)
        self.plot = ScatterMap(view_box=self.vb)
        self.plot.describe = self._card_of
        self.plot.hovered.connect(self._on_point_hovered)
        self.plot.point_clicked.connect(self.select_point)
        self.highlight = self.plot.add_rings(12)
        # Where the item hovered in the linked map lies on this one.
        self.link_marker = self.plot.add_rings(18, z=25)
        self.hover_card = self.plot.card
        self.hover_image, self.hover_text = self.hover_card.image, self.hover_card.text
        self.legend = pg.LegendItem(offset=(-10, 10), labelTextSize="8pt")
        self.legend.setParentItem(self.vb)
        plot_box = QWidget()
        pb = QVBoxLayout(plot_box)
        pb.setContentsMargins(0, 0, 0, 0)
        pb.addWidget(self.plot, 1)
        self.timeline_bar = QWidget()
        tb = QHBoxLayout(self.timeline_bar)
        tb.setContentsMargins(0, 2, 0, 0)
        self.play_button = QToolButton()
        self.play_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.play_button.setToolTip("Play the timeline from its first frame")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self._on_play)
        self.timeline_slider = QSlider(Qt.Orientation.Horizontal)
        self.timeline_slider.valueChanged.connect(self._on_timeline_slider)
        self.timeline_label = QLabel("")
        self.timeline_label.setMinimumWidth(130)
        tb.addWidget(self.play_button)
        tb.addWidget(self.timeline_slider, 1)
        tb.addWidget(self.timeline_label)
        self.timeline_bar.setVisible(False)
        pb.addWidget(self.timeline_bar)
        split.addWidget(plot_box)

        self.side = side = QWidget()
        sv = QVBoxLayout(side)
        sv.setContentsMargins(4, 0, 0, 0)
        self.selected_title = QLabel("<b>Click a point</b> to see its nearest neighbours "
                                     "(cosine similarity in embedding space).")
        self.selected_title.setWordWrap(True)
        self.selected_image = QLabel()
        self.selected_image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.neighbour_list = QListWidget()
        self.neighbour_list.setViewMode(QListView.ViewMode.IconMode)
        self.neighbour_list.setIconSize(QSize(NEIGHBOUR_THUMB, NEIGHBOUR_THUMB))
        self.neighbour_list.setResizeMode(QListView.ResizeMode.Adjust)
        self.neighbour_list.setMovement(QListView.Movement.Static)
        self.neighbour_list.setGridSize(QSize(NEIGHBOUR_THUMB + 30, NEIGHBOUR_THUMB + 40))
        self.neighbour_list.setWordWrap(True)
        self.neighbour_list.itemClicked.connect(lambda it: self.select_point(it.data(Qt.ItemDataRole.UserRole)))
        sv.addWidget(self.selected_title)
        sv.addWidget(self.selected_image)
        sv.addWidget(QLabel("Nearest neighbours"))
        sv.addWidget(self.neighbour_list, 1)
        side.setMinimumWidth(230)
        split.addWidget(side)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        split.setSizes([900, 260])
        side.setVisible(not self.compact)
        self.pages.addWidget(split)
        root.addWidget(self.pages, 1)
        self._update_selection_ui()

    def _empty_text(self) -> str:
        if self.project is None:
            return "Open a project (File → Open…) to see maps of its runs."
        return ("No finished runs yet.\n\nTrain a run in the Train view: when it finishes, its "
                "embeddings appear here as a map you can hover and click.")

    def changeEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        if ev.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self._style_highlight()
        super().changeEvent(ev)

    # ------------------------------------------------------------------ project
    def set_project(self, project) -> None:
        self.close_compare()
        self.project = project
        self.info = None
        self.run_id = None
        self._loading_run = None
        self._clusters.clear()
        self.refresh()

    def refresh(self) -> None:
        """Re-list the finished runs (keeps the current one)."""
        current = self.run_combo.currentData()
        # The same titles as every run picker ("#2 simclr on digits"), without emitting signals.
        finished = [] if self.project is None else [r for r in reversed(self.project.runs())
                                                    if r.status == "finished"]
        fill_run_combo(self.run_combo, self.project, finished)
        self.empty.setText(self._empty_text())
        has_runs = self.run_combo.count() > 0
        self.run_combo.setPlaceholderText("no finished runs yet")
        for w in (self.run_combo, self.colour_combo, self.kind_combo):
            w.setEnabled(has_runs)
        if not has_runs:
            self.pages.setCurrentIndex(0)
            return
        if self.compact:          # the first map says which run this one shows
            return
        i = self.run_combo.findData(current) if current is not None else 0
        self.run_combo.blockSignals(True)
        self.run_combo.setCurrentIndex(max(i, 0))
        self.run_combo.blockSignals(False)
        if self.run_combo.currentData() != self.run_id and self.isVisible():
            self._on_run_chosen()
        self._fill_compare()

    def showEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        super().showEvent(ev)
        if self.compact:
            return
        self.refresh()
        if self.run_combo.count() and self.run_combo.currentData() != self.run_id:
            self._on_run_chosen()

    def show_run(self, run_id: int) -> None:
        """Show ``run_id``'s map (loads on a worker thread; ``map_ready`` says when)."""
        self.refresh()
        select_run_quietly(self.run_combo, run_id)
        self._load(run_id)

    def _on_run_chosen(self, *_):
        run_id = self.run_combo.currentData()
        if run_id is not None:
            self._load(int(run_id))

    # ------------------------------------------------------------------ loading
    def _load(self, run_id: int, force: bool = False) -> None:
        if self.project is None:
            return
        # Until its result has been handled, a load counts as on its way: the worker
        # thread ends a moment before its queued result reaches this thread.
        loading = self._loading_run == run_id
        if run_id == self.run_id and not force and (loading or self.info is not None):
            return   # already shown or on its way
        self.run_id = run_id
        self.info = None
        self.status.setText("Loading…")
        worker = FunctionWorker(load_map_data, self.project, run_id, thread_name="pretext-map-load")
        worker.result.connect(self._on_loaded)
        worker.errored.connect(self._on_load_error)
        self._load_worker = worker
        self._loading_run = run_id
        worker.start()

    def _on_load_error(self, message: str, details: str) -> None:
        self._loading_run = None
        self.status.setText(f"Could not load the map: {message}")

    def _on_loaded(self, info: MapData) -> None:
        if info.run_id == self._loading_run:
            self._loading_run = None
        if info.run_id != self.run_id:
            return  # the user picked another run meanwhile
        self.info = info
        self.pages.setCurrentIndex(1)
        run = info.run
        self.title.setText(f"#{run.id} {run.name or run.method}")
        # The same run loaded again (a refresh) keeps its timeline; another run starts without one.
        keep_timeline = self.timeline_active and self._timeline_run_id == info.run_id
        if not keep_timeline:
            self._reset_timeline(info.n_timeline)
        data = info.data
        self.colour_combo.blockSignals(True)
        self.colour_combo.clear()
        if data.labels is not None:
            self.colour_combo.addItem("label", "label")
        for attr in getattr(data, "attributes", {}):     # text data sets have none
            self.colour_combo.addItem(attr, f"attr:{attr}")
        if info.texts is not None:
            what = "sentence" if info.points == "sentences" else "caption"
            self.colour_combo.addItem(f"{what} contains…", "caption")
        self.colour_combo.addItem("cluster (k-means)", "cluster")
        self.colour_combo.addItem("nothing", "none")
        self.colour_combo.blockSignals(False)
        self.selection = np.zeros(0, np.int64)
        self._hovered_item = -1
        self.link_marker.setData([], [])
        self._show_colour_extras()
        self._apply_colours()
        self.clear_selection()
        want = "umap" if "umap" in info.projections else "pca"
        self._draw(want)
        self._update_selection_ui()
        if keep_timeline and self.timeline is not None and self.timeline.run_id == info.run_id:
            self._on_timeline(self.timeline)
        if not self.compact:
            self._fill_compare()
        if "umap" not in info.projections and self.auto_umap:
            self.start_umap()

    # ------------------------------------------------------------------ UMAP
    def start_umap(self) -> None:
        if self.info is None or self.project is None:
            return
        if self._umap_worker is not None and self._umap_worker.is_running():
            return
        self._umap_error = ""
        worker = FunctionWorker(compute_umap, self.project, self.info.embedding_id, thread_name="pretext-umap")
        worker.result.connect(self._on_umap)
        worker.errored.connect(self._on_umap_error)
        worker.finished.connect(self._on_umap_finished)
        self._umap_worker = worker
        self.umap_progress.setVisible(True)
        worker.start()
        self._update_status()

    def _on_umap(self, result) -> None:
        emb_id, proj_id, coords = result
        if self.info is None or emb_id != self.info.embedding_id:
            return
        self.info.projections["umap"] = (proj_id, coords)
        if self.timeline_active:
            self.kind = "umap"       # shown when the timeline is closed
            return
        if self.kind_combo.currentData() == "pca" and self.kind == "pca":
            self._draw("umap")

    def _on_umap_finished(self) -> None:
        self.umap_progress.setVisible(False)
        self._update_status()

    def _on_umap_error(self, message: str, details: str) -> None:
        self._umap_error = message

    # ------------------------------------------------------------------ timeline
    @property
    def timeline_active(self) -> bool:
        return self.timeline_button.isChecked()

    def _reset_timeline(self, n_sets: int) -> None:
        self._play_timer.stop()
        self.timeline = None
        self.timeline_points = np.zeros(0, np.int64)
        self.timeline_button.blockSignals(True)
        self.timeline_button.setChecked(False)
        self.timeline_button.blockSignals(False)
        self.timeline_bar.setVisible(False)
        self.timeline_button.setEnabled(n_sets >= 1)
        self.timeline_button.setToolTip(
            "Replay how the map formed: the embedding at every evaluated epoch, aligned frame to frame "
            "(Ctrl+T)" if n_sets else "This run stored no timeline (it evaluated only at the end)")

    def set_timeline(self, on: bool) -> None:
        """Show (compute on a worker the first time) or leave the timeline of the shown run."""
        if self.timeline_button.isChecked() != on:
            self.timeline_button.setChecked(on)      # comes back here through toggled
            return
        self.timeline_bar.setVisible(on)
        if not on:
            self.play_button.setChecked(False)
            if self.info is not None:
                kind = self.kind_combo.currentData() or "pca"
                self._draw(kind if kind in self.info.projections else "pca")
            return
        if self.info is None:
            self.timeline_button.setChecked(False)
            return
        if self.timeline is not None and self.timeline.run_id == self.run_id:
            self._show_timeline()
            return
        if self._timeline_worker is not None and self._timeline_worker.is_running():
            return
        self._timeline_run_id = self.run_id
        self.status.setText("Aligning the timeline's frames…")
        worker = FunctionWorker(compute_timeline, self.project, self.run_id, thread_name="pretext-timeline")
        worker.result.connect(self._on_timeline)
        worker.errored.connect(self._on_timeline_error)
        self._timeline_worker = worker
        worker.start()

    def _on_timeline(self, result: Timeline) -> None:
        if self.info is None or result.run_id != self.run_id:
            return
        pos = {int(i): k for k, i in enumerate(self.info.ids)}
        self.timeline = result
        self.timeline_points = np.array([pos[int(i)] for i in result.ids], np.int64)
        if self.timeline_active:
            self._show_timeline()

    def _on_timeline_error(self, message: str, details: str) -> None:
        self.timeline_button.setChecked(False)
        self.status.setText(f"No timeline: {message}")

    def _show_timeline(self) -> None:
        frames = self.timeline.frames
        self.timeline_slider.blockSignals(True)
        self.timeline_slider.setRange(0, (len(frames) - 1) * TIMELINE_SUBSTEPS)
        self.timeline_slider.setPageStep(TIMELINE_SUBSTEPS)
        self.timeline_slider.setValue(0)
        self.timeline_slider.blockSignals(False)
        # One fixed view for all frames, so the camera does not jump while the points move.
        lo, hi = np.nanmin(frames.reshape(-1, 2), axis=0), np.nanmax(frames.reshape(-1, 2), axis=0)
        self.vb.setRange(xRange=(float(lo[0]), float(hi[0])),
                                            yRange=(float(lo[1]), float(hi[1])), padding=0.05)
        self._draw_timeline(0)
        n = len(self.timeline_points)
        self.status.setText(f"Timeline of {n:,} items over {len(frames)} evaluations · PCA, each frame "
                            "aligned to the previous one")

    def _on_timeline_slider(self, value: int) -> None:
        if self.timeline is not None and self.timeline_active:
            self._draw_timeline(value)

    def _draw_timeline(self, value: int) -> None:
        """Draw slider position ``value``: between two frames the points are interpolated."""
        frames, epochs = self.timeline.frames, self.timeline.epochs
        t = value / TIMELINE_SUBSTEPS
        i = min(int(t), len(frames) - 2)
        f = t - i
        c = ((1 - f) * frames[i] + f * frames[i + 1]).astype(np.float32)
        pts = self.timeline_points
        coords = np.full((len(self.info.ids), 2), np.nan, np.float32)
        coords[pts] = c
        self.coords = coords
        n = len(pts)
        size = 7 if n < 2000 else 5 if n < 20000 else 3
        self.scatter.setData(x=c[:, 0], y=c[:, 1], size=size, pen=None, data=pts)
        self.scatter.set_brushes(self._brushes[pts])
        k = int(round(t))
        self.timeline_label.setText(f"epoch {epochs[k]} · frame {k + 1} of {len(frames)}")
        self._update_highlight()

    def _on_play(self, playing: bool) -> None:
        icon = QStyle.StandardPixmap.SP_MediaPause if playing else QStyle.StandardPixmap.SP_MediaPlay
        self.play_button.setIcon(self.style().standardIcon(icon))
        if playing:
            if self.timeline_slider.value() >= self.timeline_slider.maximum():
                self.timeline_slider.setValue(0)
            self._play_timer.start()
        else:
            self._play_timer.stop()

    def _play_tick(self) -> None:
        v = self.timeline_slider.value() + 1
        if v > self.timeline_slider.maximum():
            self.play_button.setChecked(False)
        else:
            self.timeline_slider.setValue(v)

    def _update_status(self) -> None:
        if self.info is None or self.coords is None:
            return
        run = self.info.run
        noun = {"sentences": "sentences", "words": "words"}.get(self.info.points, "items")
        text = (f"{self.kind.upper()} of {len(self.coords):,} {noun} · {self.info.vectors.shape[1]}-d "
                f"{run.method} features")
        busy = self._umap_worker is not None and self._umap_worker.is_running()
        if busy:
            text += " · computing UMAP in the background (the first map of a session takes a while)…"
        elif self._umap_error and self.kind != "umap":
            text += f" · UMAP failed: {self._umap_error}"
        self.status.setText(text)

    def _on_kind_chosen(self, *_):
        kind = self.kind_combo.currentData()
        if self.timeline_active:
            self.kind = ""                  # the timeline closes onto the chosen map
            self.set_timeline(False)
        if self.info is None or kind == self.kind:
            return
        if kind in self.info.projections:
            self._draw(kind)
        elif kind == "umap":
            self.start_umap()

    # ------------------------------------------------------------------ colours
    def _show_colour_extras(self) -> None:
        key = self.colour_combo.currentData() or "none"
        self.caption_edit.setVisible(key == "caption")
        self.k_spin.setVisible(key == "cluster")
        self.colour_note.setVisible(key in ("caption", "cluster"))

    def _on_colour_chosen(self, *_):
        self._recolour_timer.stop()
        self._show_colour_extras()
        if self.info is not None:
            self._apply_colours()
            self._push_brushes()
            self._update_legend()

    def _apply_colours(self) -> None:
        """Colour groups per point for the chosen colouring, and the per-point brushes."""
        data = self.info.data
        ids = self.info.ids
        key = self.colour_combo.currentData() or "none"
        colours: list[QColor] | None = None
        self.match_count = None
        self.colour_note.setText("")
        if key == "label" and data.labels is not None:
            groups = data.labels[ids]
            names = list(data.class_names or [])
        elif key.startswith("attr:"):
            a_ids, names = data.attributes[key[5:]]
            groups = np.asarray(a_ids)[ids]
            names = list(names)
        elif key == "caption" and self.caption_edit.text().strip():
            from engine.workbench import caption_matches
            query = self.caption_edit.text().strip()
            match = caption_matches(self.info.texts, ids, query)
            m = self.match_count = int(match.sum())
            groups = match.astype(np.int64)
            names = [f"other ({len(ids) - m:,})", f"contains “{query}” ({m:,})"]
            colours = [OTHER_COLOUR, MATCH_COLOUR]
            self.colour_note.setText(f"{m:,} of {len(ids):,}")
        elif key == "cluster":
            k = self.k_spin.value()
            labels = self._clusters.get((self.info.embedding_id, k))
            if labels is None:
                self._start_clusters(k)
                groups = np.zeros(len(ids), np.int64)
                names = ["clustering…"]
                self.colour_note.setText("clustering…")
            else:
                groups = labels
                counts = np.bincount(labels, minlength=k)
                names = [f"cluster {c + 1} ({counts[c]:,})" for c in range(k)]
                self.colour_note.setText(f"{k} clusters")
        else:
            groups = np.zeros(len(ids), np.int64)
            names = ["all items"]
        k = max(int(groups.max()) + 1 if len(groups) else 1, len(names))
        names = names + [str(i) for i in range(len(names), k)]
        self.labels = np.asarray(groups, np.int64)
        self.group_names = names
        self.class_colors = colours or category_colors(k)
        self._palette = _brush_array(self.class_colors)
        faded = []
        for c in self.class_colors:
            f = QColor(c)
            f.setAlpha(min(FADED_ALPHA, c.alpha()))
            faded.append(f)
        self._faded = _brush_array(faded)
        self._compose_brushes()

    def _compose_brushes(self) -> None:
        """Per-point brushes: the group's colour, faded outside a non-empty selection (array
        indexing: the points share the palette's few QBrush objects)."""
        if len(self.selection):
            inside = np.zeros(len(self.labels), bool)
            inside[self.selection] = True
            self._brushes = np.where(inside, self._palette[self.labels], self._faded[self.labels])
        else:
            self._brushes = self._palette[self.labels]

    def _push_brushes(self) -> None:
        """Hand the current brushes to the scatter (all points, or the timeline's sample)."""
        if self.timeline_active and self.timeline is not None:
            self._draw_timeline(self.timeline_slider.value())
        elif len(self.scatter.data) == len(self._brushes):
            self.scatter.set_brushes(self._brushes)

    def _start_clusters(self, k: int) -> None:
        if self._cluster_worker is not None and self._cluster_worker.is_running():
            args = self._cluster_worker.args
            if args[0] == self.info.embedding_id and args[2] == k:
                return          # already on its way
        worker = FunctionWorker(compute_clusters, self.info.embedding_id, self.info.vectors, k,
                                thread_name="pretext-kmeans")
        worker.result.connect(self._on_clusters)
        worker.errored.connect(self._on_clusters_error)
        self._cluster_worker = worker
        worker.start()

    def _on_clusters(self, result) -> None:
        emb_id, k, labels = result
        self._clusters[(emb_id, k)] = labels
        if (self.info is not None and emb_id == self.info.embedding_id and k == self.k_spin.value()
                and self.colour_combo.currentData() == "cluster"):
            self._on_colour_chosen()

    def _on_clusters_error(self, message: str, details: str) -> None:
        self.colour_note.setText("")
        self.status.setText(f"k-means failed: {message}")

    # ------------------------------------------------------------------ drawing
    def _draw(self, kind: str) -> None:
        coords = np.asarray(self.info.projections[kind][1], np.float32)
        from engine.maps import normalise_coords
        self.coords = normalise_coords(coords)
        self.kind = kind
        n = len(self.coords)
        size = 7 if n < 2000 else 5 if n < 20000 else 3
        self.scatter.setData(x=self.coords[:, 0], y=self.coords[:, 1], size=size, pen=None, data=np.arange(n))
        self.scatter.set_brushes(self._brushes)
        self._update_legend()
        self._update_highlight()
        self.link_marker.setData([], [])
        self.vb.autoRange(padding=0.05)
        self.kind_combo.blockSignals(True)
        self.kind_combo.setCurrentIndex(self.kind_combo.findData(kind))
        self.kind_combo.blockSignals(False)
        self._update_status()
        self.map_ready.emit(kind)

    def _update_legend(self) -> None:
        self.legend.clear()
        if len(self.group_names) <= 1:
            return
        shown = self.group_names[:20]
        for i, name in enumerate(shown):
            sample = pg.ScatterPlotItem(pxMode=True, size=9, pen=None, symbol="o",
                                        brush=pg.mkBrush(self.class_colors[i]))
            self.legend.addItem(sample, name)
        if len(self.group_names) > 20:
            self.legend.addItem(pg.ScatterPlotItem(size=0), f"… {len(self.group_names) - 20} more")

    def _style_highlight(self) -> None:
        colour = QColor("white") if is_dark(self) else QColor("black")
        self.highlight.setPen(pg.mkPen(colour, width=1.5))
        self.link_marker.setPen(pg.mkPen(accent(self), width=2.5))
        self.vb.outline.setPen(pg.mkPen(colour, width=1.5, style=Qt.PenStyle.DashLine))

    def _update_highlight(self) -> None:
        self._style_highlight()
        if self.coords is None or self.selected_index is None:
            self.highlight.setData([], [])
            return
        self.plot.set_rings(self.highlight, [self.selected_index] + list(self.neighbours),
                            sizes=[14] + [10] * len(self.neighbours))

    # ------------------------------------------------------------------ items
    def item_text(self, i: int) -> str:
        """Label, caption and name of map point ``i``, as HTML."""
        data = self.info.data
        item = int(self.info.ids[i])
        names = self.info.names
        points = self.info.points
        if points == "sentences":
            part = "held-out" if int(data.split[item]) == 1 else "training"
            return f"{html.escape(names[item])}<br><small>sentence {item:,} · {part} text</small>"
        if points == "words":
            counts = getattr(data, "counts", None)
            seen = f"<br><small>seen {int(counts[item]):,}×</small>" if counts is not None else ""
            return f"<b>{html.escape(names[item])}</b>{seen}"
        lines = []
        if data.labels is not None:
            lines.append(f"<b>{html.escape(self._label_of(item))}</b>")
        if data.captions:
            lines.append(html.escape(data.captions[item]))
        lines.append(f"<small>{html.escape(names[item])}</small>")
        return "<br>".join(lines)

    def _label_of(self, item: int) -> str:
        data = self.info.data
        lab = int(data.labels[item])
        names = data.class_names or []
        return names[lab] if lab < len(names) else str(lab)

    def item_image(self, i: int) -> np.ndarray | None:
        """Point ``i``'s image, or None for data without images (a text run's points are words)."""
        images = getattr(self.info.data, "images", None)
        return None if images is None else images[int(self.info.ids[i])]

    @property
    def shows_words(self) -> bool:
        """The shown run's points are text (words or sentences), not images."""
        return self.info is not None and self.info.shows_words

    def rows_of(self, items) -> np.ndarray:
        """The map rows of item ids ``items`` (those not on this map are left out)."""
        if self.info is None:
            return np.zeros(0, np.int64)
        return self.info.rows_of(items)

    def _card_of(self, i: int) -> tuple[str, np.ndarray | None] | None:
        """The hover card of point ``i``: its image (if the data has images) and label."""
        if self.info is None:
            return None
        return self.item_text(i), self.item_image(i)

    def _on_point_hovered(self, i: int) -> None:
        """Tell a linked map which item is under the mouse (-1: none), once per change."""
        item = int(self.info.ids[i]) if i >= 0 and self.info is not None else -1
        if item != self._hovered_item:
            self._hovered_item = item
            self.hovered.emit(item)

    def show_linked_hover(self, item: int) -> None:
        """Ring item ``item`` (hovered in the linked map) on this one; -1 clears the ring."""
        rows = self.rows_of([item]) if item >= 0 else np.zeros(0, np.int64)
        self.plot.set_rings(self.link_marker, rows[:1])

    def nearest(self, i: int, k: int = N_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
        """Indices and cosine similarities of the ``k`` points nearest to ``i`` (itself excluded)."""
        return self.info.nearest(i, k)

    def select_point(self, i: int, emit: bool = True) -> None:
        """Show point ``i`` and its nearest neighbours in the side panel (and, with ``emit``,
        tell a linked map, which rings the same item)."""
        if self.info is None or i is None:
            return
        i = int(i)
        self.selected_index = i
        top, sims = self.nearest(i)
        self.neighbours = [int(j) for j in top]
        self.neighbour_sims = [float(s) for s in sims]
        image = self.item_image(i)
        if image is None:
            self.selected_image.clear()
        else:
            self.selected_image.setPixmap(thumbnail(image, 128))
        self.selected_title.setText(self.item_text(i))
        self.neighbour_list.clear()
        names = self.info.names
        points = self.info.points
        text = points != "images"
        # Words and sentences are listed one per line with their similarity; images as a grid.
        self.neighbour_list.setViewMode(QListView.ViewMode.ListMode if text else QListView.ViewMode.IconMode)
        self.neighbour_list.setGridSize(QSize() if text else QSize(NEIGHBOUR_THUMB + 30, NEIGHBOUR_THUMB + 40))
        for j, s in zip(self.neighbours, self.neighbour_sims):
            item = int(self.info.ids[j])
            if points == "words":
                it = QListWidgetItem(f"{names[item]}   {s:.3f}")
            elif points == "sentences":
                it = QListWidgetItem(f"{s:.3f}   {names[item]}")
                it.setToolTip(names[item])
            else:
                if self.info.data.labels is not None:
                    name = self._label_of(item)
                else:
                    name = names[item].rsplit("/", 1)[-1]
                it = QListWidgetItem(QIcon(thumbnail(self.item_image(j), NEIGHBOUR_THUMB)), f"{name}\n{s:.3f}")
                it.setToolTip(self.item_text(j).replace("<br>", "\n"))
            it.setData(Qt.ItemDataRole.UserRole, j)
            self.neighbour_list.addItem(it)
        self._update_highlight()
        if emit:
            self.item_clicked.emit(int(self.info.ids[i]))

    def select_item(self, item: int) -> None:
        """Select item id ``item`` if it is on this map (a click in the linked map)."""
        rows = self.rows_of([item])
        if len(rows):
            self.select_point(int(rows[0]), emit=False)

    def clear_selection(self) -> None:
        """Forget the clicked point and its neighbours (the lasso selection stays)."""
        self.selected_index = None
        self.neighbours, self.neighbour_sims = [], []
        self.neighbour_list.clear()
        self.selected_image.clear()
        self.selected_title.setText("<b>Click a point</b> to see its nearest neighbours "
                                    "(cosine similarity in embedding space).")
        self._update_highlight()
        self.hide_hover()

    # ------------------------------------------------------------------ lasso selection
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

    def _update_selection_ui(self) -> None:
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

    # ------------------------------------------------------------------ a second, linked map
    def _fill_compare(self) -> None:
        """List the finished runs a second map can show: same data set, same kind of items."""
        if self.compact:
            return
        current = self.partner.run_id if self.partner is not None and self.partner.isVisible() else None
        self.compare_combo.blockSignals(True)
        self.compare_combo.clear()
        self.compare_combo.addItem("no second map", None)
        # Only once a map is loaded: its worker has imported the engine by then (importing it
        # here first would stall the window for seconds).
        if self.info is not None and self.project is not None:
            from engine.workbench import final_embeddings
            for r in reversed(self.project.runs(self.info.run.dataset_id)):
                if r.status != "finished" or r.id == self.run_id:
                    continue
                emb = final_embeddings(self.project, r.id)
                if emb is not None and emb.split == self.info.split:
                    self.compare_combo.addItem(f"#{r.id} {r.name or r.method}", r.id)
        i = self.compare_combo.findData(current) if current is not None else 0
        self.compare_combo.setCurrentIndex(max(i, 0))
        self.compare_combo.setEnabled(self.compare_combo.count() > 1)
        self.compare_combo.blockSignals(False)
        if current is not None and i < 0:
            self.close_compare()

    def _on_compare_chosen(self, *_):
        run_id = self.compare_combo.currentData()
        if run_id is None:
            self.close_compare()
        else:
            self.open_compare(int(run_id))

    def open_compare(self, run_id: int) -> MapView:
        """Show ``run_id``'s map beside this one, linked to it; returns the second map."""
        if self.partner is None:
            p = self.partner = MapView(compact=True)
            self.hovered.connect(p.show_linked_hover)
            p.hovered.connect(self.show_linked_hover)
            self.item_clicked.connect(p.select_item)
            p.item_clicked.connect(self.select_item)
            self.selection_changed.connect(p.select_items)
            p.selection_changed.connect(self.select_items)
            p.map_ready.connect(self._on_partner_ready)
            p.close_requested.connect(self.close_compare)
            self.split.insertWidget(1, p)
        p = self.partner
        p.vb.lasso_mode = self.lasso_button.isChecked()
        p.auto_umap = self.auto_umap
        if p.project is not self.project:
            p.set_project(self.project)
        self._partner_fresh = True
        p.setVisible(True)
        QTimer.singleShot(0, self._share_width)
        p.show_run(run_id)
        i = self.compare_combo.findData(run_id)
        if i >= 0 and i != self.compare_combo.currentIndex():
            self.compare_combo.blockSignals(True)
            self.compare_combo.setCurrentIndex(i)
            self.compare_combo.blockSignals(False)
        return p

    def _share_width(self) -> None:
        """The two maps get equal widths; the neighbour panel keeps its own."""
        sizes = self.split.sizes()
        if len(sizes) == 3:
            half = max(0, sum(sizes) - sizes[2]) // 2
            self.split.setSizes([half, half, sizes[2]])

    def close_compare(self) -> None:
        if self.partner is not None and self.partner.isVisible():
            self.partner.setVisible(False)
            self.partner.hide_hover()
            self.link_marker.setData([], [])
        if self.compare_combo.currentIndex() > 0:
            self.compare_combo.blockSignals(True)
            self.compare_combo.setCurrentIndex(0)
            self.compare_combo.blockSignals(False)

    def _on_partner_ready(self, kind: str) -> None:
        """The second map is drawn: the first time, give it this map's colouring and selection."""
        p = self.partner
        if p is None or p.info is None:
            return
        if self._partner_fresh:
            self._partner_fresh = False
            key = self.colour_combo.currentData()
            i = p.colour_combo.findData(key)
            if i >= 0:
                p.caption_edit.setText(self.caption_edit.text())
                p.k_spin.setValue(self.k_spin.value())
                if i != p.colour_combo.currentIndex():
                    p.colour_combo.setCurrentIndex(i)        # recolours through the signal
                else:
                    p._on_colour_chosen()
        p.select_items(self.selected_items())
        if self.selected_index is not None and self.info is not None:
            p.select_item(int(self.info.ids[self.selected_index]))
