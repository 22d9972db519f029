"""The Map view: a finished run's embeddings in 2-D.

The stored PCA projection appears at once; UMAP is computed in a worker
thread (umap-learn compiles with numba on first use, which takes a while) and
swapped in when ready, then stored in the project so the next visit is
instant. All points are one ``ScatterPlotItem`` in pixel mode, coloured by
class. Hovering shows the item's image and label; clicking lists its eight
nearest neighbours by cosine similarity in embedding space (not on the map).

The timeline replays how the map formed: the run stores the embeddings of a
fixed sample at every evaluation ("timeline" sets); each one is mapped with
PCA and rotated/reflected onto the previous frame (orthogonal Procrustes), so
that the frames differ only by what training changed, not by an arbitrary
rotation of the axes. A slider and a play button step through them, with the
points moving smoothly between frames.
"""
from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QIcon
from PySide6.QtWidgets import (QComboBox, QFrame, QHBoxLayout, QLabel, QListView, QListWidget,
                               QListWidgetItem, QProgressBar, QPushButton, QSlider, QSplitter,
                               QStackedWidget, QStyle, QToolButton, QVBoxLayout, QWidget)

from ..images import thumbnail
from ..theme import category_colors, is_dark, style_plot
from ..widgets import ElidedLabel
from ..workers import FunctionWorker

N_NEIGHBOURS = 8
HOVER_RADIUS_PX = 8
HOVER_THUMB = 96
NEIGHBOUR_THUMB = 64
#: Slider positions between two timeline frames (the points glide from one to the next).
TIMELINE_SUBSTEPS = 10
TIMELINE_TICK_MS = 40


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
    n_timeline = len({e.epoch for e in project.embedding_sets(run_id) if e.split == "timeline"})
    return {"run_id": run_id, "embedding_id": emb.id, "ids": ids, "vectors": vectors, "unit": unit,
            "projections": projections, "data": data, "run": run, "n_timeline": n_timeline}


def compute_umap(project, embedding_id: int, progress=None) -> tuple[int, int, np.ndarray]:
    """Compute and store the UMAP map (on a worker thread): (embedding id, projection id, coords)."""
    from engine.workbench import compute_map
    proj_id = compute_map(project, embedding_id, "umap")
    if progress is not None:
        progress(1.0, "done")
    return embedding_id, proj_id, project.load_projection(proj_id)


def align_frames(frames: list[np.ndarray]) -> np.ndarray:
    """PCA maps of successive embeddings of the same items, each rotated (or reflected)
    onto the one before: (F, n, 2), centred, scaled together to about [-1, 1].

    Each frame is centred and scaled to unit RMS radius, then turned by the orthogonal
    matrix R minimising ||frame·R − previous|| (Procrustes: R = U Vᵀ from the SVD of
    frameᵀ·previous), so only what training changed moves between frames."""
    from engine.maps import normalise_coords, pca_2d
    out, prev = [], None
    for x in frames:
        c = pca_2d(x).astype(np.float64)
        c -= c.mean(axis=0)
        rms = float(np.sqrt((c ** 2).sum(axis=1).mean()))
        if rms > 0:
            c /= rms
        if prev is not None:
            u, _, vt = np.linalg.svd(c.T @ prev)
            c = c @ (u @ vt)
        out.append(c)
        prev = c
    stacked = np.stack(out) if out else np.zeros((0, 0, 2))
    if stacked.size:
        stacked = normalise_coords(stacked.reshape(-1, 2)).reshape(stacked.shape)
    return stacked.astype(np.float32)


def compute_timeline(project, run_id: int) -> dict:
    """The aligned frames of a run's timeline (on a worker thread): {"run_id", "epochs",
    "ids" (item ids of the sample), "frames" (F, n, 2)}. The last frame is the final embedding
    of the same items."""
    from engine.workbench import final_embeddings
    latest: dict[int, object] = {}
    for e in project.embedding_sets(run_id):
        if e.split == "timeline":
            latest[int(e.epoch or 0)] = e           # a resumed run may store an epoch again: keep the last
    epochs = sorted(latest)
    ids, vectors = None, []
    for ep in epochs:
        ids_e, v = project.load_embeddings(latest[ep].id)
        if ids is None:
            ids = ids_e
        elif not np.array_equal(ids_e, ids):
            raise ValueError(f"the timeline of run {run_id} changed its sample at epoch {ep}")
        vectors.append(v)
    final = final_embeddings(project, run_id)
    if final is not None and ids is not None:
        f_ids, f_vec = project.load_embeddings(final.id)
        pos = {int(i): k for k, i in enumerate(f_ids)}
        if all(int(i) in pos for i in ids):
            vectors.append(f_vec[[pos[int(i)] for i in ids]])
            epochs.append(int(final.epoch or (epochs[-1] + 1 if epochs else 0)))
    if len(vectors) < 2:
        raise ValueError("this run has no timeline: it stored embeddings at fewer than two evaluations "
                         "(train for two epochs or more with evaluations on)")
    return {"run_id": run_id, "epochs": epochs, "ids": ids, "frames": align_frames(vectors)}


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
        self.timeline: dict | None = None        # compute_timeline's result for the shown run
        self.timeline_points = np.zeros(0, np.int64)   # map points (rows of info["ids"]) in the timeline
        self._timeline_worker: FunctionWorker | None = None
        self._timeline_run_id: int | None = None
        self._play_timer = QTimer(self)
        self._play_timer.setInterval(TIMELINE_TICK_MS)
        self._play_timer.timeout.connect(self._play_tick)
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
        self.timeline_button = QPushButton("Timeline")
        self.timeline_button.setCheckable(True)
        self.timeline_button.setToolTip("Replay how the map formed: the embedding at every evaluated epoch, "
                                        "aligned frame to frame (Ctrl+T)")
        self.timeline_button.setShortcut("Ctrl+T")
        self.timeline_button.toggled.connect(self.set_timeline)
        bar.addWidget(QLabel("Run"))
        bar.addWidget(self.run_combo, 2)
        bar.addWidget(QLabel("Colour by"))
        bar.addWidget(self.colour_combo)
        bar.addWidget(QLabel("Map"))
        bar.addWidget(self.kind_combo)
        bar.addWidget(self.timeline_button)
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
        # The same run loaded again (a refresh) keeps its timeline; another run starts without one.
        keep_timeline = self.timeline_active and self._timeline_run_id == info["run_id"]
        if not keep_timeline:
            self._reset_timeline(info.get("n_timeline", 0))
        data = info["data"]
        self.colour_combo.blockSignals(True)
        self.colour_combo.clear()
        if data.labels is not None:
            self.colour_combo.addItem("label", "label")
        for attr in getattr(data, "attributes", {}):     # text data sets have none
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
        if keep_timeline and self.timeline is not None and self.timeline["run_id"] == info["run_id"]:
            self._on_timeline(self.timeline)
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
                self._draw(kind if kind in self.info["projections"] else "pca")
            return
        if self.info is None:
            self.timeline_button.setChecked(False)
            return
        if self.timeline is not None and self.timeline["run_id"] == self.run_id:
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

    def _on_timeline(self, result: dict) -> None:
        if self.info is None or result["run_id"] != self.run_id:
            return
        pos = {int(i): k for k, i in enumerate(self.info["ids"])}
        self.timeline = result
        self.timeline_points = np.array([pos[int(i)] for i in result["ids"]], np.int64)
        if self.timeline_active:
            self._show_timeline()

    def _on_timeline_error(self, message: str, details: str) -> None:
        self.timeline_button.setChecked(False)
        self.status.setText(f"No timeline: {message}")

    def _show_timeline(self) -> None:
        frames = self.timeline["frames"]
        self.timeline_slider.blockSignals(True)
        self.timeline_slider.setRange(0, (len(frames) - 1) * TIMELINE_SUBSTEPS)
        self.timeline_slider.setPageStep(TIMELINE_SUBSTEPS)
        self.timeline_slider.setValue(0)
        self.timeline_slider.blockSignals(False)
        # One fixed view for all frames, so the camera does not jump while the points move.
        lo, hi = np.nanmin(frames.reshape(-1, 2), axis=0), np.nanmax(frames.reshape(-1, 2), axis=0)
        self.plot.getPlotItem().vb.setRange(xRange=(float(lo[0]), float(hi[0])),
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
        frames, epochs = self.timeline["frames"], self.timeline["epochs"]
        t = value / TIMELINE_SUBSTEPS
        i = min(int(t), len(frames) - 2)
        f = t - i
        c = ((1 - f) * frames[i] + f * frames[i + 1]).astype(np.float32)
        pts = self.timeline_points
        coords = np.full((len(self.info["ids"]), 2), np.nan, np.float32)
        coords[pts] = c
        self.coords = coords
        n = len(pts)
        size = 7 if n < 2000 else 5 if n < 20000 else 3
        self.scatter.setData(x=c[:, 0], y=c[:, 1], brush=[self._brushes[j] for j in pts], size=size,
                             pen=None, data=pts)
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
        if self.timeline_active:
            self.kind = ""                  # the timeline closes onto the chosen map
            self.set_timeline(False)
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
            if self.timeline_active and self.timeline is not None:
                self._draw_timeline(self.timeline_slider.value())
            else:
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
        shown = [k for k, j in enumerate(idx) if np.isfinite(self.coords[j]).all()]
        idx, sizes = [idx[k] for k in shown], [sizes[k] for k in shown]
        self.highlight.setData(x=self.coords[idx, 0], y=self.coords[idx, 1], size=sizes, brush=None)

    # ------------------------------------------------------------------ items
    def item_text(self, i: int) -> str:
        """Label, caption and name of map point ``i``, as HTML."""
        data = self.info["data"]
        item = int(self.info["ids"][i])
        if self.shows_words:
            counts = getattr(data, "counts", None)
            seen = f"<br><small>seen {int(counts[item]):,}×</small>" if counts is not None else ""
            return f"<b>{html.escape(data.item_names[item])}</b>{seen}"
        lines = []
        if data.labels is not None:
            lab = int(data.labels[item])
            names = data.class_names or []
            lines.append(f"<b>{html.escape(names[lab] if lab < len(names) else str(lab))}</b>")
        if data.captions:
            lines.append(html.escape(data.captions[item]))
        lines.append(f"<small>{html.escape(data.item_names[item])}</small>")
        return "<br>".join(lines)

    def item_image(self, i: int) -> np.ndarray | None:
        """Point ``i``'s image, or None for data without images (a text run's points are words)."""
        images = getattr(self.info["data"], "images", None)
        return None if images is None else images[int(self.info["ids"][i])]

    @property
    def shows_words(self) -> bool:
        """The shown run's points are words (a text run), not images."""
        return self.info is not None and getattr(self.info["data"], "modality", "images") == "text"

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
        d2[~np.isfinite(d2)] = np.inf          # points not drawn (outside the timeline's sample)
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
        image = self.item_image(i)
        self.hover_image.setVisible(image is not None)
        if image is not None:
            self.hover_image.setPixmap(thumbnail(image, HOVER_THUMB))
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
        image = self.item_image(i)
        if image is None:
            self.selected_image.clear()
        else:
            self.selected_image.setPixmap(thumbnail(image, 128))
        self.selected_title.setText(self.item_text(i))
        self.neighbour_list.clear()
        data = self.info["data"]
        words = self.shows_words
        # Words are listed one per line with their similarity; images as a grid of thumbnails.
        self.neighbour_list.setViewMode(QListView.ViewMode.ListMode if words else QListView.ViewMode.IconMode)
        self.neighbour_list.setGridSize(QSize() if words else QSize(NEIGHBOUR_THUMB + 30, NEIGHBOUR_THUMB + 40))
        for j, s in zip(self.neighbours, self.neighbour_sims):
            item = int(self.info["ids"][j])
            if words:
                it = QListWidgetItem(f"{data.item_names[item]}   {s:.3f}")
                it.setData(Qt.ItemDataRole.UserRole, j)
                self.neighbour_list.addItem(it)
                continue
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
