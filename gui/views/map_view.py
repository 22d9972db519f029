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
The scatter with its hover card is :mod:`gui.scatter` (shared with the Words view);
the view's parts are mixins beside this module: :mod:`.map_colours`,
:mod:`.map_timeline`, :mod:`.map_selection` (with the lasso's ViewBox) and
:mod:`.map_compare`.
"""
from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QKeySequence, QShortcut
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem,
                               QProgressBar, QSplitter, QStackedWidget, QStyle, QToolButton, QVBoxLayout,
                               QWidget)

from engine.data import picture
from engine.explore.map import MapData, compute_umap, load_map_data

from ..images import thumbnail
# PaletteScatter, LassoViewBox, MATCH_COLOUR and OTHER_COLOUR are still imported from this module.
from ..scatter import PaletteScatter, ScatterHost, ScatterMap, projection_combo  # noqa: F401
from ..theme import accent, is_dark
from ..run_view import RunView
from ..tasks import Task
from ..widgets import ElidedLabel
from ..workers import FunctionWorker
from .map_colours import MATCH_COLOUR, OTHER_COLOUR, MapColours  # noqa: F401
from .map_compare import MapCompare
from .map_selection import LassoViewBox, MapSelection  # noqa: F401
from .map_timeline import MapTimeline

N_NEIGHBOURS = 8
NEIGHBOUR_THUMB = 64


class MapView(MapColours, MapTimeline, MapSelection, MapCompare, ScatterHost, RunView):
    """Scatter of a run's embeddings, with hover previews, neighbours, colourings, a lasso
    selection and an optional second map linked to it. This class wires the parts together
    and owns loading, the projection (PCA / UMAP), drawing and the neighbour panel; the
    colourings, the timeline, the lasso selection and the comparison are its mixins.

    ``compact=True`` makes the second map of a comparison: no run picker, timeline,
    selection tools or neighbour panel of its own (the first map's serve both)."""

    map_ready = Signal(str)              # "pca" or "umap", once drawn
    hovered = Signal(int)                # the item id under the mouse, -1 when none (for a linked map)
    item_clicked = Signal(int)           # the item id clicked (for a linked map)
    selection_changed = Signal(object)   # item ids (int64 array) of the lasso selection
    close_requested = Signal()           # a compact map's close button

    no_runs_placeholder = "no finished runs yet"

    def __init__(self, parent: QWidget | None = None, compact: bool = False):
        super().__init__(parent)
        self.compact = compact
        self.info: MapData | None = None
        self.kind = ""                          # the projection on screen (self.coords: the points as drawn)
        self.selected_index: int | None = None
        self.neighbours: list[int] = []
        self.neighbour_sims: list[float] = []
        self.auto_umap = True
        self._hovered_item = -1
        # A newer load replaces the one on its way; UMAP runs one at a time.
        self.load_task = Task(self, "pretext-map-load", done=self._on_loaded, error=self._on_load_error,
                              supersede=True)
        self.umap_task = Task(self, "pretext-umap", done=self._on_umap, error=self._on_umap_error,
                              finished=self._on_umap_finished)
        self._umap_error = ""
        self._build()

    # The workers the main window cancels when it closes.
    @property
    def _load_worker(self) -> FunctionWorker | None:
        return self.load_task.worker

    @property
    def _umap_worker(self) -> FunctionWorker | None:
        return self.umap_task.worker

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QVBoxLayout(self)
        margin = 0 if self.compact else 6
        root.setContentsMargins(margin, margin, margin, margin)
        bar = QHBoxLayout()
        self._make_run_combo(20)
        self.title = ElidedLabel("")             # the compact map's run name, in place of the picker
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self._build_colour_controls()
        self._build_timeline()
        self._build_selection_tools()
        self._build_compare_picker()
        self.kind_combo = projection_combo()
        self.kind_combo.currentIndexChanged.connect(self._on_kind_chosen)
        self.umap_progress = QProgressBar()
        self.umap_progress.setMaximumWidth(160)
        self.umap_progress.setRange(0, 0)
        self.umap_progress.setVisible(False)
        self.status = ElidedLabel("")
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
        tools.addWidget(self.lasso_button)
        tools.addWidget(self.selection_label)
        tools.addWidget(self.grid_button)
        tools.addWidget(self.export_button)
        tools.addWidget(self.clear_lasso_button)
        tools.addWidget(self.pick_button)
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
        self.info = None
        self._clusters.clear()
        super().set_project(project)

    def runs_to_list(self, project) -> list:
        return [r for r in reversed(project.runs()) if r.status == "finished"]

    def follows_picker(self) -> bool:
        return not self.compact and self.isVisible()     # the first map says which run the second shows

    def show_no_runs(self) -> None:
        self.pages.setCurrentIndex(0)

    def refresh(self) -> None:
        """Re-list the finished runs (keeps the current one)."""
        super().refresh()
        self.empty.setText(self._empty_text())
        has_runs = self.run_combo.count() > 0
        for w in (self.run_combo, self.colour_combo, self.kind_combo):
            w.setEnabled(has_runs)
        if has_runs and not self.compact:
            self._fill_compare()

    def showEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        if self.compact:
            QWidget.showEvent(self, ev)
        else:
            super().showEvent(ev)

    # ------------------------------------------------------------------ loading
    def load_run(self, run_id: int, force: bool = False) -> None:
        """Load ``run_id``'s map on a worker thread (``map_ready`` says when it is drawn)."""
        loading = self.load_task.awaits(self.project, run_id)
        if run_id == self.run_id and not force and (loading or self.info is not None):
            return   # already shown or on its way
        self.run_id = run_id
        self.info = None
        self.status.setText("Loading…")
        self.load_task.start(load_map_data, self.project, run_id)

    def _on_load_error(self, message: str, details: str) -> None:
        self.status.setText(f"Could not load the map: {message}")

    def _on_loaded(self, info: MapData) -> None:
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
        if self.umap_task.busy:
            return
        self._umap_error = ""
        self.umap_progress.setVisible(True)
        self.umap_task.start(compute_umap, self.project, self.info.embedding_id)
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

    # ------------------------------------------------------------------ status and projection
    def _update_status(self) -> None:
        if self.info is None or self.coords is None:
            return
        run = self.info.run
        noun = {"sentences": "sentences", "words": "words"}.get(self.info.points, "items")
        text = (f"{self.kind.upper()} of {len(self.coords):,} {noun} · {self.info.vectors.shape[1]}-d "
                f"{run.method} features")
        if self.umap_task.busy:
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
        return None if images is None else picture(images, int(self.info.ids[i]))

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

