"""The Map view: a finished run's embeddings in 2-D.

The stored PCA projection appears at once; UMAP is computed in a worker
thread (umap-learn compiles with numba on first use, which takes a while) and
swapped in when ready, then stored in the project so the next visit is
instant. All points are one ``ScatterPlotItem`` in pixel mode, coloured by
class. Hovering shows the item's image and label; clicking lists its eight
nearest neighbours by cosine similarity in embedding space (not on the map).
"""
from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QIcon
from PySide6.QtWidgets import (QComboBox, QFrame, QHBoxLayout, QLabel, QListView, QListWidget,
                               QListWidgetItem, QProgressBar, QSplitter, QStackedWidget,
                               QVBoxLayout, QWidget)

from ..images import thumbnail
from ..theme import category_colors, is_dark, style_plot
from ..widgets import ElidedLabel
from ..workers import FunctionWorker

N_NEIGHBOURS = 8
HOVER_RADIUS_PX = 8
HOVER_THUMB = 96
NEIGHBOUR_THUMB = 64


def load_map_data(project, run_id: int) -> dict:
    """Everything the view shows for one run (runs on a worker thread)."""
    from engine.workbench import final_embeddings, load_dataset
    emb = final_embeddings(project, run_id)
    if emb is None:
        raise ValueError(f"run {run_id} has no final embeddings yet (it has not finished)")
    ids, vectors = project.load_embeddings(emb.id)
    projections = {}
    for p in project.projections(emb.id):
        projections[p.kind] = (p.id, project.load_projection(p.id))   # the latest of each kind wins
    run = project.run(run_id)
    data = load_dataset(project, run.dataset_id)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.maximum(norms, 1e-12)
    return {"run_id": run_id, "embedding_id": emb.id, "ids": ids, "vectors": vectors, "unit": unit,
            "projections": projections, "data": data, "run": run}


def compute_umap(project, embedding_id: int, progress=None) -> tuple[int, int, np.ndarray]:
    """Compute and store the UMAP map (on a worker thread): (embedding id, projection id, coords)."""
    from engine.workbench import compute_map
    proj_id = compute_map(project, embedding_id, "umap")
    if progress is not None:
        progress(1.0, "done")
    return embedding_id, proj_id, project.load_projection(proj_id)


class MapView(QWidget):
    """Scatter of a run's embeddings, with hover previews and neighbours."""

    map_ready = Signal(str)      # "pca" or "umap", once drawn

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.run_id: int | None = None
        self.info: dict | None = None
        self.kind = ""                          # the projection on screen
        self.coords: np.ndarray | None = None   # (n, 2) as drawn
        self.labels: np.ndarray | None = None   # colour group per point
        self.group_names: list[str] = []
        self.class_colors: list[QColor] = []
        self.hover_index: int | None = None
        self.selected_index: int | None = None
        self.neighbours: list[int] = []
        self.neighbour_sims: list[float] = []
        self.auto_umap = True
        self._load_worker: FunctionWorker | None = None
        self._umap_worker: FunctionWorker | None = None
        self._brushes: list[QBrush] = []
        self._umap_error = ""
        self._build()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QVBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        bar = QHBoxLayout()
        self.run_combo = QComboBox()
        self.run_combo.setMinimumContentsLength(20)
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.run_combo.currentIndexChanged.connect(self._on_run_chosen)
        self.colour_combo = QComboBox()
        self.colour_combo.setToolTip("Colour the points by their label or another attribute")
        self.colour_combo.currentIndexChanged.connect(self._on_colour_chosen)
        self.kind_combo = QComboBox()
        self.kind_combo.addItem("PCA", "pca")
        self.kind_combo.addItem("UMAP", "umap")
        self.kind_combo.setToolTip("PCA is linear and instant; UMAP keeps neighbourhoods and is computed "
                                   "in the background")
        self.kind_combo.currentIndexChanged.connect(self._on_kind_chosen)
        self.umap_progress = QProgressBar()
        self.umap_progress.setMaximumWidth(160)
        self.umap_progress.setRange(0, 0)
        self.umap_progress.setVisible(False)
        self.status = ElidedLabel("")
        bar.addWidget(QLabel("Run"))
        bar.addWidget(self.run_combo, 2)
        bar.addWidget(QLabel("Colour by"))
        bar.addWidget(self.colour_combo)
        bar.addWidget(QLabel("Map"))
        bar.addWidget(self.kind_combo)
        bar.addWidget(self.umap_progress)
        bar.addWidget(self.status, 1)
        root.addLayout(bar)

        self.pages = QStackedWidget()
        self.empty = QLabel()
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setText(self._empty_text())
        self.pages.addWidget(self.empty)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.plot = pg.PlotWidget()
        self.plot.setAspectLocked(True)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setMenuEnabled(False)
        self.plot.getPlotItem().hideButtons()
        self.scatter = pg.ScatterPlotItem(pxMode=True, size=6, pen=None, symbol="o")
        self.plot.addItem(self.scatter)
        self.highlight = pg.ScatterPlotItem(pxMode=True, size=12, brush=None, symbol="o")
        self.plot.addItem(self.highlight)
        self.legend = pg.LegendItem(offset=(-10, 10), labelTextSize="8pt")
        self.legend.setParentItem(self.plot.getPlotItem().vb)
        self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        self.plot.scene().sigMouseClicked.connect(self._on_mouse_clicked)
        self.plot.viewport().installEventFilter(self)
        style_plot(self.plot)
        split.addWidget(self.plot)

        # The hover card: a small frame over the plot, not a real tooltip (those
        # are slow to appear and cannot show a scaled image reliably).
        self.hover_card = QFrame(self.plot)
        self.hover_card.setFrameShape(QFrame.Shape.StyledPanel)
        self.hover_card.setAutoFillBackground(True)
        self.hover_card.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        hc = QVBoxLayout(self.hover_card)
        hc.setContentsMargins(6, 6, 6, 6)
        self.hover_image = QLabel()
        self.hover_image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hover_text = QLabel()
        self.hover_text.setWordWrap(True)
        self.hover_text.setMaximumWidth(220)
        hc.addWidget(self.hover_image)
        hc.addWidget(self.hover_text)
        self.hover_card.hide()

        side = QWidget()
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
        self.pages.addWidget(split)
        root.addWidget(self.pages, 1)

    def _empty_text(self) -> str:
        if self.project is None:
            return "Open a project (File → Open…) to see maps of its runs."
        return ("No finished runs yet.\n\nTrain a run in the Train view: when it finishes, its "
                "embeddings appear here as a map you can hover and click.")

    def changeEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        if ev.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            style_plot(self.plot)
            self._style_highlight()
        super().changeEvent(ev)

    def eventFilter(self, obj, ev) -> bool:  # noqa: N802 - Qt naming
        if ev.type() == QEvent.Type.Leave:
            self.hide_hover()
        return super().eventFilter(obj, ev)

    # ------------------------------------------------------------------ project
    def set_project(self, project) -> None:
        self.project = project
        self.info = None
        self.run_id = None
        self.refresh()

    def refresh(self) -> None:
        """Re-list the finished runs (keeps the current one)."""
        current = self.run_combo.currentData()
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        if self.project is not None:
            datasets = {d.id: d.name for d in self.project.datasets()}
            for r in reversed(self.project.runs()):
                if r.status == "finished":
                    self.run_combo.addItem(f"#{r.id} {r.name or r.method} "
                                           f"({datasets.get(r.dataset_id, '?')})", r.id)
        self.run_combo.blockSignals(False)
        self.empty.setText(self._empty_text())
        has_runs = self.run_combo.count() > 0
        self.run_combo.setPlaceholderText("no finished runs yet")
        for w in (self.run_combo, self.colour_combo, self.kind_combo):
            w.setEnabled(has_runs)
        if not has_runs:
            self.pages.setCurrentIndex(0)
            return
        i = self.run_combo.findData(current) if current is not None else 0
        self.run_combo.blockSignals(True)
        self.run_combo.setCurrentIndex(max(i, 0))
        self.run_combo.blockSignals(False)
        if self.run_combo.currentData() != self.run_id and self.isVisible():
            self._on_run_chosen()

    def showEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        super().showEvent(ev)
        self.refresh()
        if self.run_combo.count() and self.run_combo.currentData() != self.run_id:
            self._on_run_chosen()

    def show_run(self, run_id: int) -> None:
        """Show ``run_id``'s map (loads on a worker thread; ``map_ready`` says when)."""
        self.refresh()
        i = self.run_combo.findData(run_id)
        if i >= 0:
            self.run_combo.blockSignals(True)
            self.run_combo.setCurrentIndex(i)
            self.run_combo.blockSignals(False)
        self._load(run_id)

    def _on_run_chosen(self, *_):
        run_id = self.run_combo.currentData()
        if run_id is not None:
            self._load(int(run_id))

    # ------------------------------------------------------------------ loading
    def _load(self, run_id: int, force: bool = False) -> None:
        if self.project is None:
            return
        loading = self._load_worker is not None and self._load_worker.is_running()
        if run_id == self.run_id and not force and (loading or self.info is not None):
            return   # already shown or on its way
        self.run_id = run_id
        self.info = None
        self.status.setText("Loading…")
        worker = FunctionWorker(load_map_data, self.project, run_id, thread_name="pretext-map-load")
        worker.result.connect(self._on_loaded)
        worker.errored.connect(self._on_load_error)
        self._load_worker = worker
        worker.start()

    def _on_load_error(self, message: str, details: str) -> None:
        self.status.setText(f"Could not load the map: {message}")

    def _on_loaded(self, info: dict) -> None:
        if info["run_id"] != self.run_id:
            return  # the user picked another run meanwhile
        self.info = info
        self.pages.setCurrentIndex(1)
        data = info["data"]
        self.colour_combo.blockSignals(True)
        self.colour_combo.clear()
        if data.labels is not None:
            self.colour_combo.addItem("label", "label")
        for attr in data.attributes:
            self.colour_combo.addItem(attr, f"attr:{attr}")
        self.colour_combo.addItem("nothing", "none")
        self.colour_combo.blockSignals(False)
        self._apply_colours()
        self.clear_selection()
        want = "umap" if "umap" in info["projections"] else "pca"
        if "pca" not in info["projections"] and "umap" not in info["projections"]:
            from engine.maps import pca_2d
            info["projections"]["pca"] = (None, pca_2d(info["vectors"]))
        self._draw(want)
        if "umap" not in info["projections"] and self.auto_umap:
            self.start_umap()

    # ------------------------------------------------------------------ UMAP
    def start_umap(self) -> None:
        if self.info is None or self.project is None:
            return
        if self._umap_worker is not None and self._umap_worker.is_running():
            return
        self._umap_error = ""
        worker = FunctionWorker(compute_umap, self.project, self.info["embedding_id"], thread_name="pretext-umap")
        worker.result.connect(self._on_umap)
        worker.errored.connect(self._on_umap_error)
        worker.finished.connect(self._on_umap_finished)
        self._umap_worker = worker
        self.umap_progress.setVisible(True)
        worker.start()
        self._update_status()

    def _on_umap(self, result) -> None:
        emb_id, proj_id, coords = result
        if self.info is None or emb_id != self.info["embedding_id"]:
            return
        self.info["projections"]["umap"] = (proj_id, coords)
        if self.kind_combo.currentData() == "pca" and self.kind == "pca":
            self._draw("umap")

    def _on_umap_finished(self) -> None:
        self.umap_progress.setVisible(False)
        self._update_status()

    def _on_umap_error(self, message: str, details: str) -> None:
        self._umap_error = message

    def _update_status(self) -> None:
        if self.info is None or self.coords is None:
            return
        run = self.info["run"]
        text = (f"{self.kind.upper()} of {len(self.coords):,} items · {self.info['vectors'].shape[1]}-d "
                f"{run.method} features")
        busy = self._umap_worker is not None and self._umap_worker.is_running()
        if busy:
            text += " · computing UMAP in the background (the first map of a session takes a while)…"
        elif self._umap_error and self.kind != "umap":
            text += f" · UMAP failed: {self._umap_error}"
        self.status.setText(text)

    def _on_kind_chosen(self, *_):
        kind = self.kind_combo.currentData()
        if self.info is None or kind == self.kind:
            return
        if kind in self.info["projections"]:
            self._draw(kind)
        elif kind == "umap":
            self.start_umap()

    # ------------------------------------------------------------------ drawing
    def _on_colour_chosen(self, *_):
        if self.info is not None:
            self._apply_colours()
            self.scatter.setBrush(self._brushes)
            self._update_legend()

    def _apply_colours(self) -> None:
        data = self.info["data"]
        ids = self.info["ids"]
        key = self.colour_combo.currentData() or "none"
        if key == "label" and data.labels is not None:
            groups = data.labels[ids]
            names = list(data.class_names or [])
        elif key.startswith("attr:"):
            a_ids, names = data.attributes[key[5:]]
            groups = np.asarray(a_ids)[ids]
            names = list(names)
        else:
            groups = np.zeros(len(ids), np.int64)
            names = ["all items"]
        k = max(int(groups.max()) + 1 if len(groups) else 1, len(names))
        names = names + [str(i) for i in range(len(names), k)]
        self.labels = np.asarray(groups, np.int64)
        self.group_names = names
        self.class_colors = category_colors(k)
        brushes = [pg.mkBrush(c) for c in self.class_colors]
        self._brushes = [brushes[g] for g in self.labels]

    def _draw(self, kind: str) -> None:
        coords = np.asarray(self.info["projections"][kind][1], np.float32)
        from engine.maps import normalise_coords
        self.coords = normalise_coords(coords)
        self.kind = kind
        n = len(self.coords)
        size = 7 if n < 2000 else 5 if n < 20000 else 3
        self.scatter.setData(x=self.coords[:, 0], y=self.coords[:, 1], brush=self._brushes,
                             size=size, pen=None, data=np.arange(n))
        self._update_legend()
        self._update_highlight()
        self.plot.getPlotItem().vb.autoRange(padding=0.05)
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

    def _update_highlight(self) -> None:
        self._style_highlight()
        if self.coords is None or self.selected_index is None:
            self.highlight.setData([], [])
            return
        idx = [self.selected_index] + list(self.neighbours)
        sizes = [14] + [10] * len(self.neighbours)
        self.highlight.setData(x=self.coords[idx, 0], y=self.coords[idx, 1], size=sizes, brush=None)

    # ------------------------------------------------------------------ items
    def item_text(self, i: int) -> str:
        """Label, caption and name of map point ``i``, as HTML."""
        data = self.info["data"]
        item = int(self.info["ids"][i])
        lines = []
        if data.labels is not None:
            lab = int(data.labels[item])
            names = data.class_names or []
            lines.append(f"<b>{html.escape(names[lab] if lab < len(names) else str(lab))}</b>")
        if data.captions:
            lines.append(html.escape(data.captions[item]))
        lines.append(f"<small>{html.escape(data.item_names[item])}</small>")
        return "<br>".join(lines)

    def item_image(self, i: int) -> np.ndarray:
        return self.info["data"].images[int(self.info["ids"][i])]

    def point_at(self, scene_pos) -> int | None:
        """The point nearest ``scene_pos`` within a few pixels, or None."""
        if self.coords is None or not len(self.coords):
            return None
        vb = self.plot.getPlotItem().vb
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        p = vb.mapSceneToView(scene_pos)
        px, py = vb.viewPixelSize()
        if not px or not py:
            return None
        dx = (self.coords[:, 0] - p.x()) / px
        dy = (self.coords[:, 1] - p.y()) / py
        d2 = dx * dx + dy * dy
        i = int(np.argmin(d2))
        return i if d2[i] <= HOVER_RADIUS_PX ** 2 else None

    def scene_pos_of(self, i: int) -> QPointF:
        vb = self.plot.getPlotItem().vb
        return vb.mapViewToScene(QPointF(float(self.coords[i, 0]), float(self.coords[i, 1])))

    def _on_mouse_moved(self, scene_pos) -> None:
        i = self.point_at(scene_pos)
        if i is None:
            self.hide_hover()
        else:
            self.hover_point(i, scene_pos)

    def hover_point(self, i: int, scene_pos=None) -> None:
        """Show point ``i``'s image (scaled up, nearest-neighbour) and label beside it."""
        if self.info is None:
            return
        self.hover_index = i
        self.hover_image.setPixmap(thumbnail(self.item_image(i), HOVER_THUMB))
        self.hover_text.setText(self.item_text(i))
        self.hover_card.adjustSize()
        if scene_pos is None:
            scene_pos = self.scene_pos_of(i)
        p = self.plot.mapFromScene(scene_pos)
        x, y = p.x() + 14, p.y() + 14
        w, h = self.hover_card.width(), self.hover_card.height()
        if x + w > self.plot.width():
            x = p.x() - w - 14
        if y + h > self.plot.height():
            y = p.y() - h - 14
        self.hover_card.move(max(0, int(x)), max(0, int(y)))
        self.hover_card.show()
        self.hover_card.raise_()

    def hide_hover(self) -> None:
        self.hover_index = None
        self.hover_card.hide()

    def _on_mouse_clicked(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        i = self.point_at(ev.scenePos())
        if i is not None:
            self.select_point(i)

    def nearest(self, i: int, k: int = N_NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
        """Indices and cosine similarities of the ``k`` points nearest to ``i`` (itself excluded)."""
        unit = self.info["unit"]
        sims = unit @ unit[i]
        sims[i] = -np.inf
        k = min(k, len(sims) - 1)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return top, sims[top]

    def select_point(self, i: int) -> None:
        """Show point ``i`` and its nearest neighbours in the side panel."""
        if self.info is None or i is None:
            return
        i = int(i)
        self.selected_index = i
        top, sims = self.nearest(i)
        self.neighbours = [int(j) for j in top]
        self.neighbour_sims = [float(s) for s in sims]
        self.selected_image.setPixmap(thumbnail(self.item_image(i), 128))
        self.selected_title.setText(self.item_text(i))
        self.neighbour_list.clear()
        data = self.info["data"]
        for j, s in zip(self.neighbours, self.neighbour_sims):
            item = int(self.info["ids"][j])
            if data.labels is not None:
                lab = int(data.labels[item])
                names = data.class_names or []
                name = names[lab] if lab < len(names) else str(lab)
            else:
                name = data.item_names[item].rsplit("/", 1)[-1]
            it = QListWidgetItem(QIcon(thumbnail(self.item_image(j), NEIGHBOUR_THUMB)), f"{name}\n{s:.3f}")
            it.setData(Qt.ItemDataRole.UserRole, j)
            it.setToolTip(self.item_text(j).replace("<br>", "\n"))
            self.neighbour_list.addItem(it)
        self._update_highlight()

    def clear_selection(self) -> None:
        self.selected_index = None
        self.neighbours, self.neighbour_sims = [], []
        self.neighbour_list.clear()
        self.selected_image.clear()
        self.selected_title.setText("<b>Click a point</b> to see its nearest neighbours "
                                    "(cosine similarity in embedding space).")
        self._update_highlight()
        self.hide_hover()
