"""The Train view: pick a data set and a method, set the configs, train, watch.

Training runs in a :class:`~gui.workers.TrainWorker`; this widget only reacts
to its events. Events are only folded into growable numpy buffers as they
arrive; a timer redraws what changed (the curves with ``setData``, the progress
bar, ETA and throughput) about seven times a second, so a fast run never floods
the event loop with redraws.

Text methods (word2vec, the masked language model) get the same view with
what fits them: only text data sets in the picker, no augmented views, words/s
or tokens/s as the throughput and their own evaluation metric in the lower plot.

Under Start, an estimate of the time (training + evaluation = total) and the
memory comes from a few dry-run steps (:func:`engine.estimate.estimate_run`) on a worker thread,
recomputed shortly after the settings change (the latest settings win; a
stale estimate is cancelled). Runs can be queued: when a run finishes or
fails, the next queued one starts. The collapse metrics the loop logs are
plotted, and a banner warns when a joint-embedding method's representation
collapses.
"""
from __future__ import annotations

import functools
import html
import json
import math
import time
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout,
                               QLabel, QLineEdit, QListWidget, QMessageBox, QProgressBar, QPushButton,
                               QScrollArea, QSizePolicy, QSplitter, QTabWidget, QVBoxLayout, QWidget)

from engine.explore.collapse import (COLLAPSE_KEYS, COLLAPSE_RANK, COLLAPSE_STD, CollapseReading, CollapseWatch,
                                     shows_collapse_monitor, warns_collapse)

from ..config_form import ConfigForm
from ..theme import accent, error_colour, style_plot
from ..widgets import ElidedLabel, read_only_note, run_label, show_read_only
from ..workers import FunctionWorker, TrainWorker



def resumable_statuses() -> tuple[str, ...]:
    """The statuses a run can be resumed from: the store's (stopped, failed, interrupted),
    and "created", a run recorded but stopped before its first step (it starts from scratch).
    "running" and "paused" are left out: another process (the CLI, torchrun) may be training
    that run right now. (Imported here, not at module level: the store imports torch.)"""
    from engine.store import RESUMABLE_STATUSES
    return (*RESUMABLE_STATUSES, "created")


@functools.lru_cache(maxsize=1)
def available_devices() -> tuple[str, ...]:
    """The devices this machine can train on, for the device picker: "auto" and "cpu",
    then "cuda" and "mps" only where torch finds them (a run on a missing device fails)."""
    import torch
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return tuple(devices)


#: What the lower plot shows for a text run: the first of these metrics it reports.
TEXT_METRICS = (("analogy", "analogy accuracy"), ("masked_accuracy", "masked-token accuracy"),
                ("neighbour_purity", "neighbour purity"))

COLLAPSE_TITLE = ("Collapse monitor: <span style='color:#59a14f'>spread (std ratio)</span> · "
                  "<span style='color:#9c755f'>effective-rank ratio</span> (1 = spread out, 0 = collapsed)")
COLLAPSE_EXPLAINED = (
    "What is measured, on the l2-normalised embeddings of a batch (lines: the projections of the logged "
    "steps; dots: the features at each evaluation):\n"
    "• std ratio: the standard deviation of each dimension, averaged, × √d (d = the dimension). "
    "≈ 1 when the embeddings spread over the unit sphere, 0 when every image maps to one point.\n"
    "• effective-rank ratio: the effective rank of the embeddings (RankMe) / their dimension. "
    "1 = spread over all dimensions, near 0 = squeezed into a few directions (dimensional collapse), "
    "0 = all images map to one point.\n"
    f"Dotted red: the warning thresholds ({COLLAPSE_STD} and {COLLAPSE_RANK}).")
COLLAPSE_WHAT = {
    "std": "The representation is collapsing: every image maps to nearly the same vector, so it carries "
           "no information.",
    "rank": "The representation is collapsing into a few directions: the vectors use only a small part "
            "of their dimensions (dimensional collapse).",
}
COLLAPSE_ADVICE = ("Lower the learning rate or the weight decay, check the predictor and the stop-gradient "
                   "(SimSiam, BYOL) or the momentum, raise the temperature or the batch size — or stop the run.")
#: Settings that change a run's length but not the time of one step: an estimate is reused across them.
ESTIMATE_IGNORES = ("epochs", "eval_every", "checkpoint_every", "log_every", "linear_probe_every_eval",
                    "knn_k", "timeline_items", "seed")
#: How long the settings must rest before a new estimate starts.
ESTIMATE_DELAY_MS = 700
#: What the estimate label says while a dry run is on its way (only then).
ESTIMATING = "estimating…"
#: The live curves and the progress texts are redrawn at most this often (about 7 times a
#: second), however fast the events come: one redraw repaints every axis of three plots.
REDRAW_INTERVAL_MS = 150
#: Colours of the evaluation curves, also used in the plot's title (its legend).
KNN_COLOUR, LINEAR_COLOUR = "#4e79a7", "#f28e2b"


@dataclass
class QueuedRun:
    """A run waiting in the queue: everything ``create_run`` needs, captured when it was added."""
    dataset_id: int
    dataset_name: str
    config: object            # engine.train.RunConfig
    name: str
    summary: str


class Series:
    """An append-only (x, y) buffer that grows by doubling (amortised O(1) appends).

    ``version`` changes with every change, so a redraw can skip the curves whose data
    did not change since they were last drawn."""

    def __init__(self, capacity: int = 256):
        self._x = np.empty(capacity, np.float64)
        self._y = np.empty(capacity, np.float64)
        self.n = 0
        self.version = 0

    def append(self, x: float, y: float) -> None:
        if self.n == len(self._x):
            self._x = np.concatenate([self._x, np.empty_like(self._x)])
            self._y = np.concatenate([self._y, np.empty_like(self._y)])
        self._x[self.n], self._y[self.n] = x, y
        self.n += 1
        self.version += 1

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` points."""
        if n < self.n:
            self.n = max(0, n)
            self.version += 1

    def clear(self) -> None:
        self.truncate(0)

    @property
    def x(self) -> np.ndarray:
        return self._x[:self.n]

    @property
    def y(self) -> np.ndarray:
        return self._y[:self.n]


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _fmt_span(seconds: float) -> str:
    """A rough duration: "0.4 s", "12 s", "3 min", "1.5 h"."""
    if not math.isfinite(seconds) or seconds < 0:
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 600:
        return f"{seconds / 60:.1f} min"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if n < 10 * size else f"{n / size:.0f} {unit}"
    return f"{n:.0f} B"


def _device_text(device: str) -> str:
    """"cuda:0" → "cuda:0 (NVIDIA H200)"; "cpu" → "cpu (2 threads)"."""
    try:
        import torch
        if device.startswith("cuda") and torch.cuda.is_available():
            return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
        if device == "cpu":
            return f"cpu ({torch.get_num_threads()} threads)"
    except Exception:  # noqa: BLE001 - the bare name is still worth showing
        pass
    return device


def _estimate_in_background(project, dataset_id: int, run_config, cancel, steps: int, max_seconds: float):
    """The dry run, on a worker thread that yields the CPU to the GUI thread."""
    from engine.estimate import estimate_run

    from ..workers import lower_priority
    lower_priority()
    return estimate_run(project, dataset_id, run_config=run_config, steps=steps, cancel=cancel,
                        max_seconds=max_seconds)


def _scroll(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    area.setWidget(widget)
    return area


class TrainView(QWidget):
    """Configure and run training."""

    #: state ("idle", "starting", "running", "paused", "stopping"), human text
    state_changed = Signal(str, str)
    #: a run was created, changed status or got new metrics
    runs_changed = Signal()
    #: a run finished with embeddings: its id
    run_finished = Signal(int)

    #: Timed dry-run steps per estimate (after one warm-up step), and the most seconds they may take.
    estimate_steps = 3
    estimate_max_seconds = 8.0

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.worker: TrainWorker | None = None
        self.run_id: int | None = None
        self.state = "idle"
        self.loss = Series()
        self.knn = Series()
        self.linear = Series()
        self.step_events: list = []          # kept short: the last events, for inspection
        self.last_error_box: QMessageBox | None = None
        self._dirty = False
        self._total_steps = 0
        self._start_step = 0
        self._t_started = 0.0
        self._forms_valid = True
        self._building = False
        self._method_cls = None
        self._shown_defaults: dict[str, dict] = {}
        self._ips: list[float] = []
        self._rate = "img/s"                     # the shown run's throughput unit (Started.rate)
        self._epochs_total = 0.0                 # the shown run's length in epochs (from Started)
        self._axes_stale = True                  # the evaluation plot's range needs fitting
        self._last_step: int | None = None       # the latest step, shown by the next redraw
        self._drawn: dict[int, int] = {}         # id(curve) → the Series.version it shows
        self._eval_name = "kNN"                  # what the evaluation curve is (text runs: their metric)
        self._run_method: str | None = None      # the method of the run shown (started or resumed)
        # Collapse monitor: live (per logged step) and evaluation points, the warning state.
        self.c_std, self.c_rank = Series(), Series()
        self.f_std, self.f_rank = Series(), Series()
        self._collapse = CollapseWatch()         # the streak of low logs, where the collapse began
        # The queue, and whether it waits (after a Stop) instead of starting its next run.
        self.queue: list[QueuedRun] = []
        self.queue_held = False
        # Estimates: the worker computing one, its settings' key, results by key.
        self.estimate: dict | None = None        # the estimate shown (for the settings now in the forms)
        self._est_worker: FunctionWorker | None = None
        self._est_pending = False
        self._est_cache: dict[str, dict] = {}
        self._est_text = ""                      # what the estimate label says now

        self._build()
        self._est_timer = QTimer(self)
        self._est_timer.setSingleShot(True)
        self._est_timer.setInterval(ESTIMATE_DELAY_MS)
        self._est_timer.timeout.connect(self._start_estimate)
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setInterval(REDRAW_INTERVAL_MS)
        self._redraw_timer.timeout.connect(self._redraw)
        self._set_state("idle", "No run")

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        root = QHBoxLayout(self)
        root.setContentsMargins(6, 6, 6, 6)
        split = QSplitter(Qt.Orientation.Horizontal)
        root.addWidget(split)

        # Left: what to train.
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 4, 0)
        pick = QFormLayout()
        self.dataset_combo = QComboBox()
        self.dataset_combo.setToolTip("The data set to train on (add more in the Project view)")
        self.dataset_combo.currentIndexChanged.connect(self._on_dataset_changed)
        self.method_combo = QComboBox()
        self.method_combo.setToolTip("The self-supervised method")
        self.method_combo.currentIndexChanged.connect(self._on_method_changed)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("optional, e.g. simclr τ=0.1")
        pick.addRow("Data set", self.dataset_combo)
        pick.addRow("Method", self.method_combo)
        pick.addRow("Run name", self.name_edit)
        lv.addLayout(pick)

        self.card = QLabel()
        self.card.setWordWrap(True)
        self.card.setOpenExternalLinks(True)
        self.card.setTextFormat(Qt.TextFormat.RichText)
        self.card.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.card.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        card_box = QGroupBox("About the method")
        cb = QVBoxLayout(card_box)
        cb.setContentsMargins(6, 4, 6, 4)
        cb.addWidget(self.card)
        lv.addWidget(card_box)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.train_form: ConfigForm | None = None
        self.method_form: ConfigForm | None = None
        self.views_form: ConfigForm | None = None
        lv.addWidget(self.tabs, 1)
        self.config_problems = QLabel()
        self.config_problems.setWordWrap(True)
        self.config_problems.setVisible(False)
        lv.addWidget(self.config_problems)
        split.addWidget(left)

        # Right: controls and curves.
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(4, 0, 0, 0)
        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Start a new run with these settings (Ctrl+Return)")
        self.start_button.setDefault(True)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Pause the run after the current step")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the run after the current step and save a checkpoint (Esc)")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue a paused run, or the stopped, failed or interrupted run "
                                      "chosen on the right from its last checkpoint")
        self.resume_combo = QComboBox()
        self.resume_combo.setToolTip("A stopped, failed or interrupted run (its program ended while it "
                                     "trained) to resume from its last checkpoint")
        self.resume_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.resume_combo.setMinimumContentsLength(18)
        self.queue_button = QPushButton("Add to queue")
        self.queue_button.setToolTip("Queue a run with these settings: it starts when the runs before it "
                                     "end (Ctrl+Shift+Return)")
        # Its own row under Start and Add to queue: the sum it shows needs the width
        # (elided when narrow; the whole text and the details are in its tooltip).
        self.estimate_label = ElidedLabel("")
        self.start_button.clicked.connect(self.start_run)
        self.queue_button.clicked.connect(self.add_to_queue)
        self.pause_button.clicked.connect(self.pause_run)
        self.stop_button.clicked.connect(self.stop_run)
        self.resume_button.clicked.connect(self.resume)
        self.resume_combo.currentIndexChanged.connect(self._update_buttons)
        for b in (self.start_button, self.queue_button, self.pause_button, self.stop_button,
                  self.resume_button):
            buttons.addWidget(b)
        buttons.addWidget(self.resume_combo, 1)
        rv.addLayout(buttons)
        rv.addWidget(self.estimate_label)
        shortcut = QShortcut(QKeySequence("Ctrl+Shift+Return"), self, self.add_to_queue)
        shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)

        # The queue: shown while it holds runs.
        self.queue_box = QGroupBox("Queue")
        qb = QHBoxLayout(self.queue_box)
        qb.setContentsMargins(6, 2, 6, 4)
        self.queue_list = QListWidget()
        self.queue_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.queue_list.setMaximumHeight(self.fontMetrics().height() * 3 + 12)
        self.queue_list.currentRowChanged.connect(self._update_buttons)
        qb.addWidget(self.queue_list, 1)
        qbuttons = QGridLayout()
        qbuttons.setSpacing(2)
        self.run_queue_button = QPushButton("Run queue")
        self.run_queue_button.setToolTip("Start the first queued run (the others follow)")
        self.up_button = QPushButton("Move up")
        self.remove_button = QPushButton("Remove")
        self.stop_all_button = QPushButton("Stop all")
        self.stop_all_button.setToolTip("Stop the current run (a checkpoint is saved) and empty the queue")
        self.run_queue_button.clicked.connect(self.run_queue)
        self.up_button.clicked.connect(lambda: self.move_queued_up(self.queue_list.currentRow()))
        self.remove_button.clicked.connect(lambda: self.remove_queued(self.queue_list.currentRow()))
        self.stop_all_button.clicked.connect(self.stop_all)
        for i, b in enumerate((self.run_queue_button, self.up_button, self.remove_button, self.stop_all_button)):
            qbuttons.addWidget(b, i // 2, i % 2)
        qb.addLayout(qbuttons)
        self.queue_box.setVisible(False)
        rv.addWidget(self.queue_box)

        prog = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setFormat("step %v / %m")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.eta_label = QLabel("ETA —")
        prog.addWidget(self.progress, 1)
        prog.addWidget(self.eta_label)
        rv.addLayout(prog)

        facts = QHBoxLayout()
        self.run_label = ElidedLabel("No run yet: pick a data set and a method, then press Start.")
        self.throughput_label = QLabel("")
        self.device_label = QLabel("")
        self.eval_label = QLabel("")
        for w in (self.run_label, self.eval_label, self.throughput_label, self.device_label):
            facts.addWidget(w)
        facts.setStretch(0, 1)
        rv.addLayout(facts)

        self.loss_plot = pg.PlotWidget()
        self.loss_plot.setTitle("Training loss")
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.setLabel("left", "loss")
        self.loss_plot.showGrid(x=True, y=True, alpha=0.15)
        self.loss_curve = self.loss_plot.plot([], [], pen=pg.mkPen(accent(self), width=1.5))
        self.loss_curve.setDownsampling(auto=True, method="peak")
        self.loss_curve.setClipToView(True)
        self.loss_hint = QLabel("The loss curve appears here while a run trains.\n"
                                "Pick a data set and a method on the left, then press Start (Ctrl+Return).",
                                self.loss_plot)
        self.loss_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.loss_hint.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.loss_hint.setStyleSheet("color: gray;")
        self.loss_plot.installEventFilter(self)
        # The collapse warning: a banner over the loss curve and a line where it began.
        self.collapse_banner = QLabel(self.loss_plot)
        self.collapse_banner.setWordWrap(True)
        self.collapse_banner.setStyleSheet("QLabel { background: #fff3cd; color: #5c3c00; border: 1px solid #e0a800;"
                                           " border-radius: 4px; padding: 6px; }")
        self.collapse_banner.setVisible(False)
        self.collapse_line = pg.InfiniteLine(angle=90, movable=False,
                                             pen=pg.mkPen("#d62728", width=1.5, style=Qt.PenStyle.DashLine),
                                             label="collapse", labelOpts={"position": 0.08, "color": "#d62728",
                                                                            "anchors": [(0, 1), (0, 1)]})
        self.collapse_line.setVisible(False)
        self.loss_plot.addItem(self.collapse_line)
        self.knn_plot = pg.PlotWidget()
        # The title is the legend (set by _set_knn_title): a legend box covered the kNN line.
        self._set_knn_title(text_run=False)
        self.knn_plot.setLabel("bottom", "epoch")
        self.knn_plot.setLabel("left", "accuracy (%)")
        self.knn_plot.getAxis("left").enableAutoSIPrefix(False)
        self.knn_plot.showGrid(x=True, y=True, alpha=0.15)
        self.knn_curve = self.knn_plot.plot([], [], pen=pg.mkPen(KNN_COLOUR, width=2), symbol="o",
                                            symbolSize=6, symbolBrush=KNN_COLOUR)
        self.linear_curve = self.knn_plot.plot([], [], pen=None, symbol="s", symbolSize=7,
                                               symbolBrush=LINEAR_COLOUR)
        # A baseline's label sits below its line in the upper half of the plot and above it in
        # the lower half (pyqtgraph picks between the two anchors), so it is never clipped.
        self.raw_line = pg.InfiniteLine(angle=0, movable=False,
                                        pen=pg.mkPen("#888888", style=Qt.PenStyle.DashLine),
                                        label="raw pixels", labelOpts={"position": 0.04, "color": "#888888",
                                                                       "anchors": [(0, 0), (0, 1)]})
        self.random_line = pg.InfiniteLine(angle=0, movable=False,
                                           pen=pg.mkPen("#b07aa1", style=Qt.PenStyle.DotLine),
                                           label="untrained", labelOpts={"position": 0.5, "color": "#b07aa1",
                                                                         "anchors": [(0, 0), (0, 1)]})
        for line in (self.raw_line, self.random_line):
            line.setVisible(False)
            self.knn_plot.addItem(line)

        # Collapse monitor: the spread and the effective rank of the projections, both ≈ 1 healthy.
        self.collapse_plot = pg.PlotWidget()
        # The title is the legend: a legend box would cover the curves of this short plot.
        self.collapse_plot.setTitle(COLLAPSE_TITLE)
        self.collapse_plot.setLabel("bottom", "step")
        self.collapse_plot.setLabel("left", "ratio")
        self.collapse_plot.showGrid(x=True, y=True, alpha=0.15)
        self.collapse_plot.setYRange(0, 1.05)
        self.collapse_plot.setXLink(self.loss_plot)
        self.c_std_curve = self.collapse_plot.plot([], [], pen=pg.mkPen("#59a14f", width=1.5))
        self.c_rank_curve = self.collapse_plot.plot([], [], pen=pg.mkPen("#9c755f", width=1.5))
        for curve in (self.c_std_curve, self.c_rank_curve):       # long curves: draw what is seen, decimated
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
        self.f_std_curve = self.collapse_plot.plot([], [], pen=None, symbol="o", symbolSize=6,
                                                   symbolBrush="#59a14f")
        self.f_rank_curve = self.collapse_plot.plot([], [], pen=None, symbol="o", symbolSize=6,
                                                    symbolBrush="#9c755f")
        for value in (COLLAPSE_STD, COLLAPSE_RANK):
            self.collapse_plot.addItem(pg.InfiniteLine(value, angle=0, movable=False,
                                                       pen=pg.mkPen("#d62728", style=Qt.PenStyle.DotLine)))
        self.collapse_plot_line = pg.InfiniteLine(angle=90, movable=False,
                                                  pen=pg.mkPen("#d62728", width=1.5, style=Qt.PenStyle.DashLine))
        self.collapse_plot_line.setVisible(False)
        self.collapse_plot.addItem(self.collapse_plot_line)
        self.collapse_plot.setToolTip(COLLAPSE_EXPLAINED)

        plots = QSplitter(Qt.Orientation.Vertical)
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.knn_plot)
        plots.addWidget(self.collapse_plot)
        plots.setSizes([280, 180, 130])
        rv.addWidget(plots, 1)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([440, 900])
        for p in (self.loss_plot, self.knn_plot, self.collapse_plot):
            style_plot(p)

    def eventFilter(self, obj, ev) -> bool:  # noqa: N802 - Qt naming
        if obj is self.loss_plot and ev.type() == QEvent.Type.Resize:
            self.loss_hint.setGeometry(0, 0, self.loss_plot.width(), self.loss_plot.height())
            self._place_banner()
        return super().eventFilter(obj, ev)

    def _place_banner(self) -> None:
        width = max(100, self.loss_plot.width() - 90)
        self.collapse_banner.setGeometry(60, 26, width, self.collapse_banner.heightForWidth(width))

    def changeEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        if ev.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            for p in (self.loss_plot, self.knn_plot, self.collapse_plot):
                style_plot(p)
        super().changeEvent(ev)

    def showEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        super().showEvent(ev)
        # Estimates are computed only for a visible view (they cost a few seconds of CPU).
        if self.estimate is None and self._est_worker is None:
            self.schedule_estimate()

    # ------------------------------------------------------------------ project
    def set_project(self, project) -> None:
        if self.busy:
            raise RuntimeError("cannot switch projects while a run is training")
        self.project = project
        self.run_id = None
        self._run_method = None
        self._clear_curves()
        self.queue.clear()          # queued runs name data sets of the previous project
        self.queue_held = False
        self._refresh_queue()
        self._est_cache.clear()
        self._cancel_estimate()
        self.run_label.setText("No run yet: pick a data set and a method, then press Start.")
        self._building = True
        try:
            self.method_combo.clear()
            from engine.methods import METHODS
            for name, cls in METHODS.items():
                self.method_combo.addItem(f"{cls.card.title}  ({cls.card.family})", name)
            i = self.method_combo.findData("simclr")
            self.method_combo.setCurrentIndex(max(i, 0))
        finally:
            self._building = False
        self.refresh()
        self._rebuild_forms()

    def refresh(self) -> None:
        """Re-read data sets and resumable runs from the project."""
        if self.project is None:
            return
        current = self.dataset_combo.currentData()
        self._building = True
        try:
            self.dataset_combo.clear()
            from engine.workbench import kind_modality
            modality = self.method_modality()
            others = 0
            for d in self.project.datasets():
                # Only data sets the chosen method can train on (images or text).
                if kind_modality(d.kind) != modality:
                    others += 1
                    continue
                size = d.stats.get("size") if isinstance(d.stats, dict) else None
                extra = f", {size[0]}×{size[1]}" if size else ""
                unit = "sentences" if modality == "text" else "items"
                self.dataset_combo.addItem(f"{d.name}  ({d.n_items:,} {unit}{extra})", d.id)
            i = self.dataset_combo.findData(current) if current is not None else -1
            self.dataset_combo.setCurrentIndex(i if i >= 0 else (0 if self.dataset_combo.count() else -1))
        finally:
            self._building = False
        if self.dataset_combo.count() == 0:
            self.dataset_combo.setPlaceholderText(
                "No text data sets: import a corpus (or Shapes captions) in the Datasets view"
                if modality == "text" and others else
                "No image data sets: import one in the Datasets view" if others else
                "No data sets: add one in the Datasets view")
        self.dataset_combo.setToolTip(
            f"The {modality} data set to train on (this method trains on {modality}; add more in the "
            "Datasets view)")
        self._refresh_resumable()
        self._update_buttons()

    def _refresh_resumable(self) -> None:
        """The runs Resume can continue: stopped, failed, interrupted (their process died while
        they trained) or never started, with their status."""
        current = self.resume_combo.currentData()
        self.resume_combo.blockSignals(True)
        self.resume_combo.clear()
        if self.project is not None:
            statuses = resumable_statuses()
            datasets = {d.id: d.name for d in self.project.datasets()}
            for r in reversed(self.project.runs()):
                if r.status in statuses and not (self.busy and r.id == self.run_id):
                    self.resume_combo.addItem(run_label(r, datasets.get(r.dataset_id, '?')), r.id)
        # (a combo with a placeholder text does not select its first item by itself)
        i = self.resume_combo.findData(current) if current is not None else -1
        self.resume_combo.setCurrentIndex(i if i >= 0 else (0 if self.resume_combo.count() else -1))
        self.resume_combo.setPlaceholderText("no runs to resume")
        self.resume_combo.blockSignals(False)

    def select_resumable(self, run_id: int) -> bool:
        self._refresh_resumable()
        i = self.resume_combo.findData(run_id)
        if i >= 0:
            self.resume_combo.setCurrentIndex(i)
        return i >= 0

    # ------------------------------------------------------------------ forms
    def _dataset_record(self):
        ds_id = self.dataset_combo.currentData()
        if self.project is None or ds_id is None:
            return None
        try:
            return self.project.dataset(ds_id)
        except Exception:  # noqa: BLE001 - deleted meanwhile
            return None

    def _on_dataset_changed(self) -> None:
        if not self._building:
            self._rebuild_forms(keep_train=True)

    def _on_method_changed(self) -> None:
        if not self._building:
            # The data sets on offer depend on the method's modality.
            before = self.dataset_combo.currentData()
            self._building = True
            try:
                self.refresh()
            finally:
                self._building = False
            self._rebuild_forms(keep_train=before == self.dataset_combo.currentData())

    def method_modality(self) -> str:
        """"images" or "text": what the chosen method trains on."""
        from engine.methods import METHODS
        cls = METHODS.get(self.method_combo.currentData() or "")
        return cls.modality if cls is not None else "images"

    @property
    def is_text(self) -> bool:
        return self.method_modality() == "text"

    def _defaults(self, method: str):
        """The engine's defaults for ``method`` on the chosen data set.

        ``default_run_config`` wants the data only for its name, image size and
        channel count; the data set record's stats carry those, so the data
        itself is not loaded on the GUI thread."""
        from types import SimpleNamespace

        from engine.methods import get_method
        from engine.train import default_run_config
        rec = self._dataset_record()
        stats = rec.stats if rec is not None and isinstance(rec.stats, dict) else {}
        size = stats.get("size") or [32, 32]
        from engine.workbench import kind_modality
        shape = SimpleNamespace(name=str(stats.get("name") or (rec.name if rec else "")),
                                height=int(size[0]), width=int(size[1]),
                                channels=int(stats.get("channels") or 3),
                                modality=kind_modality(rec.kind) if rec is not None else "images")
        cfg = default_run_config(method, shape)
        return get_method(method), cfg.train, cfg.method_config, cfg.views

    def _rebuild_forms(self, keep_train: bool = False) -> None:
        """New forms for the chosen method and data set. With ``keep_train``, the
        training and view settings the user changed survive; everything else
        takes the new method's and data set's defaults."""
        method = self.method_combo.currentData()
        if method is None:
            return
        from engine import config as cfgmod
        m, train, method_cfg, views = self._defaults(method)
        edits: dict[str, dict] = {"train": {}, "views": {}}
        if keep_train and self.train_form is not None:
            for key, form in (("train", self.train_form), ("views", self.views_form)):
                shown = self._shown_defaults.get(key, {})
                edits[key] = {k: v for k, v in form.values().items() if k in shown and v != shown[k]}
        self._shown_defaults = {"train": cfgmod.to_dict(train), "views": cfgmod.to_dict(views)}
        self._method_cls = m
        self.tabs.clear()
        hide = m.ignores_settings          # training settings the method does not read
        # Only the devices that exist here are offered (a run on a missing one fails at once).
        self.train_form = ConfigForm(type(train), train, hide=hide, offer={"device": available_devices()})
        self.train_form.set_values(edits["train"])
        self.method_form = ConfigForm(m.Config, method_cfg)
        self.views_form = ConfigForm(type(views), views)
        self.views_form.set_values(edits["views"])
        self.tabs.addTab(_scroll(self.train_form), "Training")
        self.tabs.addTab(_scroll(self.method_form), f"{m.card.title} settings")
        i = self.tabs.addTab(_scroll(self.views_form), "Augmented views")
        # Methods without views (text methods, PCA, autoencoders) do not show the tab at all.
        self.tabs.setTabVisible(i, m.uses_views)
        self.tabs.setTabEnabled(i, m.uses_views)
        self.tabs.setTabToolTip(i, "How the two views of an image are made")
        self._style_for_modality()
        for form in (self.train_form, self.method_form, self.views_form):
            form.validity_changed.connect(self._on_validity)
            form.changed.connect(self.schedule_estimate)
        self._show_card(m)
        self._on_validity()
        self.schedule_estimate()

    def forms(self) -> dict[str, ConfigForm]:
        return {"train": self.train_form, "method": self.method_form, "views": self.views_form}

    def _on_validity(self, *_):
        bad = []
        for key, form in self.forms().items():
            if form is None:
                continue
            if key == "views" and self._method_cls is not None and not self._method_cls.uses_views:
                continue
            for name, msg in form.problems().items():
                bad.append(f"{name} {msg}")
        self._forms_valid = not bad
        if bad:
            self.config_problems.setText("Fix before starting: " + "; ".join(bad))
            self.config_problems.setStyleSheet(f"color: {error_colour(self)};")
        self.config_problems.setVisible(bool(bad))
        self._update_buttons()

    def _show_card(self, m) -> None:
        c = m.card
        link = f' <a href="{html.escape(c.url)}">paper</a>' if c.url else ""
        needs = f"<br><i>Needs:</i> {html.escape(c.needs)}" if c.needs else ""
        warning = self._data_warning(m)
        warn = f"<br><span style='color:#b35c00'>⚠ {html.escape(warning)}</span>" if warning else ""
        self.card.setText(
            f"<b>{html.escape(c.title)}</b> <span style='color:gray'>· {html.escape(c.family)}</span><br>"
            f"<i>Learns:</i> {html.escape(c.learns)}<br>"
            f"<i>Loss:</i> <span style='font-family: monospace'>{html.escape(c.loss)}</span>{needs}{warn}<br>"
            f"<small>{html.escape(c.paper)}{link}</small>")

    def _data_warning(self, m) -> str | None:
        """The method's own word on the chosen images (MAE on 8×8 digits), or None."""
        rec = self._dataset_record()
        size = rec.stats.get("size") if rec is not None and isinstance(rec.stats, dict) else None
        if not size:                  # a text corpus has no image size
            return None
        return m.data_warning(int(size[0]), int(size[1]))

    def run_config(self):
        """The RunConfig the forms describe (ConfigError if a field is wrong)."""
        from engine.train import RunConfig
        method = self.method_combo.currentData()
        views = self.views_form.config() if self._method_cls.uses_views else self._defaults(method)[3]
        # (a method without views still stores the default view config, as the CLI does)
        return RunConfig(method=method, train=self.train_form.config(),
                         method_config=self.method_form.config(), views=views)

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    def _set_state(self, state: str, text: str) -> None:
        self.state = state
        self._update_buttons()
        self.state_changed.emit(state, text)

    def _update_buttons(self, *_):
        busy = self.busy
        idle = not busy
        # A read-only project can be looked at, not trained in: what would record a run is off.
        read_only = read_only_note(self.project)
        has_project = self.project is not None and not read_only
        has_data = self.dataset_combo.count() > 0
        self.start_button.setEnabled(idle and has_project and has_data and self._forms_valid)
        # The forms stay editable during a run: set up the next runs and queue them.
        self.queue_button.setEnabled(has_project and has_data and self._forms_valid)
        self.pause_button.setEnabled(busy and self.state == "running")
        self.stop_button.setEnabled(busy and self.state in ("running", "paused", "starting"))
        can_resume_paused = busy and self.state == "paused"
        can_resume_stored = idle and has_project and self.resume_combo.currentData() is not None
        self.resume_button.setEnabled(can_resume_paused or can_resume_stored)
        self.resume_combo.setEnabled(idle)
        row = self.queue_list.currentRow()
        self.run_queue_button.setEnabled(idle and has_project and bool(self.queue))
        for b in (self.start_button, self.queue_button, self.resume_button, self.run_queue_button):
            show_read_only(b, read_only)
        self.up_button.setEnabled(row > 0)
        self.remove_button.setEnabled(0 <= row < len(self.queue))
        self.stop_all_button.setEnabled(busy or bool(self.queue))

    # ------------------------------------------------------------------ actions
    def start_run(self) -> bool:
        """Create a run from the forms and train it in a worker thread."""
        if self.busy or self.project is None or self.project.read_only or not self._forms_valid:
            return False
        ds_id = self.dataset_combo.currentData()
        if ds_id is None:
            return False
        try:
            cfg = self.run_config()
        except Exception as exc:  # noqa: BLE001 - shown, never raised into Qt
            self._show_error("The settings are not valid", str(exc), "")
            return False
        self._start_config(ds_id, cfg, self.name_edit.text().strip())
        return True

    def _start_config(self, ds_id: int, cfg, name: str) -> None:
        from engine.workbench import create_run
        create = functools.partial(create_run, self.project, ds_id, cfg.method, run_config=cfg, name=name)
        self._clear_curves()
        self.run_id = None
        self._run_method = cfg.method
        self.run_label.setText(f"Preparing {cfg.method}…")
        self._launch(create)

    def resume_run(self, run_id: int) -> bool:
        """Continue a stored run from its last checkpoint."""
        if self.busy or self.project is None or self.project.read_only:
            return False
        self._clear_curves()
        self.run_id = run_id
        rec = self.project.run(run_id)
        self._run_method = rec.method
        self._load_history(run_id)
        self.run_label.setText(f"Resuming run #{run_id} {rec.name}…")
        self._launch(lambda: run_id)
        return True

    def resume(self) -> bool:
        """The Resume button: continue a paused run, else resume the chosen stored run."""
        if self.busy:
            if self.state == "paused":
                self.worker.resume()
                self._set_state("running", f"Training run #{self.run_id}")
                return True
            return False
        run_id = self.resume_combo.currentData()
        return self.resume_run(int(run_id)) if run_id is not None else False

    def pause_run(self) -> None:
        if self.busy and self.state == "running":
            self.worker.pause()
            self.pause_button.setEnabled(False)

    def stop_run(self) -> None:
        """Stop the current run at a checkpoint. The queue stays, held: Run queue continues it."""
        if self.busy:
            self.queue_held = True
            self.worker.stop()
            self._set_state("stopping", f"Stopping run #{self.run_id} (saving a checkpoint)…")

    def stop_all(self) -> None:
        """Stop the current run and empty the queue."""
        self.queue.clear()
        self._refresh_queue()
        self.stop_run()
        self._update_buttons()

    # ------------------------------------------------------------------ queue
    def add_to_queue(self) -> bool:
        """Queue a run with the settings in the forms (it starts when the runs before it end)."""
        if (self.project is None or self.project.read_only or not self._forms_valid
                or self.dataset_combo.currentData() is None):
            return False
        try:
            cfg = self.run_config()
        except Exception as exc:  # noqa: BLE001 - shown, never raised into Qt
            self._show_error("The settings are not valid", str(exc), "")
            return False
        ds_id = int(self.dataset_combo.currentData())
        rec = self._dataset_record()
        ds_name = rec.name if rec is not None else f"data set {ds_id}"
        name = self.name_edit.text().strip()
        self.queue.append(QueuedRun(ds_id, ds_name, cfg, name, self._summary(cfg, ds_name, name)))
        self._refresh_queue()
        self.queue_list.setCurrentRow(len(self.queue) - 1)
        return True

    def run_queue(self) -> bool:
        """Start the first queued run; the others follow as each run ends."""
        self.queue_held = False
        if self.busy or not self.queue or self.project is None or self.project.read_only:
            return False
        item = self.queue.pop(0)
        self._refresh_queue()
        self._start_config(item.dataset_id, item.config, item.name)
        return True

    def move_queued_up(self, row: int) -> None:
        if 0 < row < len(self.queue):
            self.queue[row - 1], self.queue[row] = self.queue[row], self.queue[row - 1]
            self._refresh_queue()
            self.queue_list.setCurrentRow(row - 1)

    def remove_queued(self, row: int) -> None:
        if 0 <= row < len(self.queue):
            del self.queue[row]
            self._refresh_queue()
            self.queue_list.setCurrentRow(min(row, len(self.queue) - 1))

    def _refresh_queue(self) -> None:
        row = self.queue_list.currentRow()
        self.queue_list.blockSignals(True)
        self.queue_list.clear()
        for i, item in enumerate(self.queue, 1):
            self.queue_list.addItem(f"{i}. {item.summary}")
            self.queue_list.item(i - 1).setToolTip(json.dumps(item.config.to_dict(), indent=1))
        self.queue_list.setCurrentRow(min(row, len(self.queue) - 1))
        self.queue_list.blockSignals(False)
        held = " — held after a Stop: Run queue continues" if self.queue_held and not self.busy else ""
        self.queue_box.setTitle(f"Queue ({len(self.queue)}){held}")
        self.queue_box.setVisible(bool(self.queue))
        self._update_buttons()

    def _summary(self, cfg, ds_name: str, name: str) -> str:
        """The method, the data set and the settings that tell queued runs apart."""
        from engine import config as cfgmod
        from engine.methods import get_method
        m = get_method(cfg.method)
        t = cfg.train
        parts = [f"{m.card.title} on {ds_name}", f"{t.epochs} epoch{'s' if t.epochs != 1 else ''}"]
        if m.iterative:
            parts += [f"batch {t.batch_size}", f"lr {t.lr:g}"]
        # Method settings that differ from the defaults the form offered, e.g. "temperature 0.1".
        defaults = cfgmod.to_dict(self._defaults(cfg.method)[2])
        changed = [f"{k.replace('_', ' ')} {v}" for k, v in cfgmod.to_dict(cfg.method_config).items()
                   if defaults.get(k) != v]
        parts += changed[:3]
        return (f"{name}: " if name else "") + " · ".join(parts)

    def stop_and_wait(self, timeout_ms: int = 120_000) -> bool:
        """Stop the run and block until its checkpoint is saved (used when quitting)."""
        if not self.busy:
            return True
        self.worker.stop()
        return self.worker.wait(timeout_ms)

    def _launch(self, create) -> None:
        """Train the run ``create()`` records (or returns) in a worker thread."""
        # A dry run still in flight shares torch's global RNG with the new run's seeded
        # initialisation: cancel it, and have the worker wait for it before creating the run.
        estimating = self._est_worker
        # No estimate for the settings in the forms yet (none computed, or they changed and the
        # quiet period is still running): it comes after this run, and the label says so.
        unanswered = self.estimate is None or self._est_timer.isActive()
        self._cancel_estimate()
        if unanswered:
            self._est_pending = True
            self._set_estimate_text("estimate: after this run", "")

        def create_after_estimate() -> int:
            if estimating is not None:
                estimating.wait(120_000)
            return int(create())

        worker = TrainWorker(self.project, create=create_after_estimate)
        self.worker = worker
        self._rate = "words/s" if self._run_is_text else "img/s"
        self.collapse_plot.setVisible(self._shows_collapse_monitor())
        self._eval_name = "evaluation" if self._run_is_text else "kNN"
        self._set_knn_title()
        worker.run_created.connect(self._on_run_created)
        worker.event.connect(self._on_event)
        worker.errored.connect(self._on_worker_error)
        worker.finished.connect(self._on_worker_finished)
        self._total_steps = 0
        self.progress.setRange(0, 0)  # busy indicator until Started says how many steps
        self.eta_label.setText("ETA —")
        worker.start()
        self._set_state("starting", "Starting a run…")
        self._update_hint()              # a run is on its way: no "press Start" over its plot
        self._redraw_timer.start()

    # ------------------------------------------------------------------ events
    def _on_run_created(self, run_id: int) -> None:
        self.run_id = run_id
        self.runs_changed.emit()

    def _on_event(self, ev) -> None:
        from engine import train as T
        if isinstance(ev, T.Step):
            # Only recorded here: the next redraw (a few times a second) shows it. Each widget
            # update per step cost more than the step's data (QProgressBar.setValue repaints
            # at once when its text changes).
            self.loss.append(ev.step, ev.loss)
            self.step_events.append(ev)
            if len(self.step_events) > 10_000:
                del self.step_events[:5_000]
            self._last_step = ev.step
            self._dirty = True
            if ev.images_per_s:
                # The median of recent steps: a step right after an evaluation or a
                # checkpoint counts that time too and would read as a slump.
                self._ips.append(ev.images_per_s)
                del self._ips[:-20]
            if "collapse_std_ratio" in ev.logs or "collapse_rank_ratio" in ev.logs:
                self.add_collapse_metrics(ev.step, ev.logs)
        elif isinstance(ev, T.Started):
            self.run_id = ev.run_id
            self._drop_after(ev.start_step)
            self._total_steps, self._start_step = ev.total_steps, ev.start_step
            self._epochs_total = ev.total_steps / max(1, ev.steps_per_epoch)
            self._last_step = None
            self._axes_stale = self._dirty = True
            self._t_started = time.monotonic()
            self.progress.setRange(0, max(1, ev.total_steps))
            self.progress.setValue(ev.start_step)
            self._rate = ev.rate
            self.device_label.setText(f"on {_device_text(ev.device)}")
            self.device_label.setToolTip("Where this run trains")
            self.throughput_label.setToolTip(f"Training throughput ({ev.rate}), the median of the last "
                                             "20 logged steps")
            what = "Resumed" if ev.start_step else "Training"
            items = "words" if self._run_is_text else "images"
            self.run_label.setText(f"{what} run #{ev.run_id}: {ev.n_train:,} training {items}, "
                                   f"{ev.steps_per_epoch} steps/epoch")
            self._set_state("running", f"Training run #{ev.run_id}")
            self.runs_changed.emit()
        elif isinstance(ev, T.Evaluation):
            self._add_evaluation(ev.epoch, ev.metrics)
            if any(k in ev.metrics for k in COLLAPSE_KEYS[2:]):
                self.add_collapse_metrics(ev.step, ev.metrics)
            self._dirty = True
            self.runs_changed.emit()
        elif isinstance(ev, T.CheckpointSaved):
            self.run_label.setText(f"Run #{ev.run_id}: checkpoint saved at step {ev.step}")
        elif isinstance(ev, T.Paused):
            self._set_state("paused", f"Run #{ev.run_id} paused at step {ev.step}")
            self.runs_changed.emit()
        elif isinstance(ev, T.EmbeddingsSaved):
            self.runs_changed.emit()
        elif isinstance(ev, T.Finished):
            self._dirty = True
            self._show_progress()        # the last steps first, so their ETA does not replace "done"
            if ev.status == "finished":
                self.run_label.setText(f"Run #{ev.run_id} finished at step {ev.step}")
                self.progress.setValue(self.progress.maximum())
                self.eta_label.setText("done")
            else:
                self.run_label.setText(f"Run #{ev.run_id} stopped at step {ev.step}; "
                                       "Resume continues it from its checkpoint")
                self.eta_label.setText("stopped")
        elif isinstance(ev, T.Failed):
            self._show_progress()
            self.run_label.setText(f"Run #{ev.run_id} failed: {ev.error}")
            self._show_error("Training failed", ev.error, ev.details)

    def _add_evaluation(self, epoch: float, metrics: dict) -> None:
        if self._run_is_text:
            # Text runs: the first metric they report of these, as a percentage.
            for key, what in TEXT_METRICS:
                if key in metrics and math.isfinite(metrics[key]):
                    self.knn.append(epoch, metrics[key])
                    self._set_eval_name(what)
                    self.eval_label.setText(f"{what} {metrics[key]:.1%}")
                    break
            return
        if "knn" in metrics:
            self.knn.append(epoch, metrics["knn"])
        if "linear" in metrics:
            self.linear.append(epoch, metrics["linear"])
        # Baselines: kNN on raw pixels and on the untrained network, as dashed lines.
        for key, line, what in (("raw_knn", self.raw_line, "raw pixels"),
                                ("random_knn", self.random_line, "untrained network")):
            if key in metrics:
                # Visible first: a hidden line's label ignores a new text (it kept "untrained").
                line.setVisible(True)
                line.setValue(100 * metrics[key])
                line.label.setFormat(f"kNN on {what}: {metrics[key]:.1%}")
                self._axes_stale = self._dirty = True
        parts = []
        if "knn" in metrics:
            parts.append(f"kNN {metrics['knn']:.1%}")
        if "linear" in metrics:
            parts.append(f"linear {metrics['linear']:.1%}")
        if parts:
            self.eval_label.setText(" · ".join(parts))

    def _on_worker_error(self, message: str, details: str) -> None:
        # Failures before training started (e.g. the data set cannot be loaded).
        if self.run_id is not None and self.project is not None:
            try:
                if self.project.run(self.run_id).status not in ("failed", "finished", "stopped"):
                    self.project.update_run(self.run_id, status="failed", error=f"{message}\n\n{details}")
            except Exception:  # noqa: BLE001 - the file may be the problem; the dialog says so
                pass
        self.run_label.setText(f"Run failed: {message}")
        self._show_error("Training failed", message, details)

    def _on_worker_finished(self) -> None:
        worker = self.sender() if isinstance(self.sender(), TrainWorker) else self.worker
        if worker is not self.worker:
            return
        self._redraw_timer.stop()
        self._redraw()
        last = worker.last_event
        from engine import train as T
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        self.worker = None
        self._update_hint()
        self._refresh_resumable()
        self._set_state("idle", "No run" if last is None else {
            T.Finished: f"Run #{self.run_id} {getattr(last, 'status', '')}",
            T.Failed: f"Run #{self.run_id} failed"}.get(type(last), "No run"))
        self.runs_changed.emit()
        # The queue moves on after a finished or failed run; after a Stop it waits (it is held).
        # The next run starts before run_finished is announced, so the window sees a run
        # training and starts no background work (the UMAP warm-up) beside it.
        stopped = isinstance(last, T.Finished) and last.status == "stopped"
        if stopped or worker.control.stop_requested:
            self.queue_held = True
        if self.queue and not self.queue_held:
            self.run_queue()
        else:
            self._refresh_queue()
            if self._est_pending:
                self._est_pending = False
                self.schedule_estimate()
        if isinstance(last, T.Finished) and last.status == "finished":
            self.run_finished.emit(last.run_id)

    # ------------------------------------------------------------------ drawing
    def _clear_curves(self) -> None:
        self.loss.clear()
        self.knn.clear()
        self.linear.clear()
        self.step_events.clear()
        self._ips.clear()
        self.raw_line.setVisible(False)
        self.random_line.setVisible(False)
        for series in (self.c_std, self.c_rank, self.f_std, self.f_rank):
            series.clear()
        self._collapse.reset()
        self.collapse_banner.setVisible(False)
        self.collapse_line.setVisible(False)
        self.collapse_plot_line.setVisible(False)
        self.eval_label.setText("")
        self.throughput_label.setText("")
        self.device_label.setText("")
        self._rate = "img/s"
        self._epochs_total = 0.0
        self._last_step = None
        self._axes_stale = True
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._dirty = True
        self._redraw()

    def _drop_after(self, step: int) -> None:
        """A resumed run restarts at its checkpoint: forget loss points logged after it
        (a failed run may have logged steps past its last checkpoint)."""
        for series in (self.loss, self.c_std, self.c_rank):
            keep = int(np.searchsorted(series.x, step, side="right")) if series.n else 0
            if keep < series.n:
                series.truncate(keep)
                self._dirty = True

    def _load_history(self, run_id: int) -> None:
        """Draw what a resumed run logged before."""
        rows = self.project.metrics(run_id)
        evals: dict[float, dict] = {}
        collapse: dict[int, dict] = {}
        for r in rows:
            if r.name == "loss":
                self.loss.append(r.step, r.value)
            elif r.name in ("knn", "linear", "raw_knn", "random_knn") or r.name in dict(TEXT_METRICS):
                evals.setdefault(r.epoch, {})[r.name] = r.value
            elif r.name in COLLAPSE_KEYS:
                collapse.setdefault(r.step, {})[r.name] = r.value
        for epoch in sorted(evals):
            self._add_evaluation(epoch, evals[epoch])
        for step in sorted(collapse):
            self.add_collapse_metrics(step, collapse[step])
        self._dirty = True
        self._redraw()

    def _update_hint(self) -> None:
        """"Press Start" shows only while there is no run: none training, none shown."""
        self.loss_hint.setVisible(not self.busy and self.run_id is None and self.loss.n == 0)

    def _show_progress(self) -> None:
        """The progress bar, the ETA and the throughput at the latest step (once per redraw)."""
        step, self._last_step = self._last_step, None
        if step is None:
            return
        self.progress.setValue(min(step, self.progress.maximum()))
        done = step - self._start_step
        elapsed = time.monotonic() - self._t_started
        if done > 0 and self._total_steps:
            self.eta_label.setText(f"ETA {_fmt_duration(elapsed / done * (self._total_steps - step))}")
        if self._ips:
            self.throughput_label.setText(f"{float(np.median(self._ips)):,.0f} {self._rate}")

    def _redraw(self) -> None:
        """Show what the events since the last redraw brought: only the curves whose data
        changed get new data (each ``setData`` re-ranges and repaints its plot)."""
        if not self._dirty:
            return
        self._dirty = False
        self._show_progress()
        self._update_hint()
        evaluations_changed = False
        for curve, series, scale in ((self.loss_curve, self.loss, 1), (self.knn_curve, self.knn, 100),
                                     (self.linear_curve, self.linear, 100), (self.c_std_curve, self.c_std, 1),
                                     (self.c_rank_curve, self.c_rank, 1), (self.f_std_curve, self.f_std, 1),
                                     (self.f_rank_curve, self.f_rank, 1)):
            if self._drawn.get(curve) == series.version:
                continue
            self._drawn[curve] = series.version
            curve.setData(series.x.copy(), scale * series.y)
            evaluations_changed |= series is self.knn or series is self.linear
        if evaluations_changed or self._axes_stale:
            self._axes_stale = False
            self._fit_evaluation_axes()
        # Auto-range now, not while painting: a range found during a paint schedules a second
        # paint of the plot (and of the collapse monitor linked to it), doubling each redraw's cost.
        for plot in (self.loss_plot, self.knn_plot, self.collapse_plot):
            plot.getViewBox().prepareForPaint()

    def _fit_evaluation_axes(self) -> None:
        """The evaluation plot's range: the run's epochs (from 0) across, and the accuracies with
        the baselines up and down, with room for the baselines' labels. Left to pyqtgraph, one
        point made an axis from −10 to 20."""
        xs = [series.x for series in (self.knn, self.linear) if series.n]
        right = max([self._epochs_total, *(float(x.max()) for x in xs)])
        if right > 0:
            self.knn_plot.setXRange(0, right, padding=0.05)
        else:
            self.knn_plot.enableAutoRange(x=True)
        values = [100 * float(v) for series in (self.knn, self.linear) if series.n
                  for v in (series.y.min(), series.y.max())]
        values += [line.value() for line in (self.raw_line, self.random_line) if line.isVisible()]
        if not values:
            self.knn_plot.enableAutoRange(y=True)
            return
        low, high = min(values), max(values)
        pad = max(3.0, 0.12 * (high - low))
        low, high = max(0.0, low - pad), min(100.0, high + pad)
        if high - low < 10:              # one value: a 10-point window around it
            low, high = max(0.0, min(low, high - 10)), min(100.0, max(high, low + 10))
        self.knn_plot.setYRange(low, high, padding=0)

    # ------------------------------------------------------------------ collapse
    def add_collapse_metrics(self, step: int, metrics: dict) -> None:
        """Plot a step's collapse metrics (``collapse_std_ratio``, ``collapse_rank_ratio`` from
        the logged projections, or ``feature_std_ratio``, ``feature_rank_ratio`` from an
        evaluation) and raise the warning when they stay below the thresholds."""
        method = self._run_method or self.method_combo.currentData() or ""
        reading = self._collapse.observe(step, metrics, warns=warns_collapse(method))
        live = reading.live
        for value, series in ((reading.std, self.c_std if live else self.f_std),
                              (reading.rank, self.c_rank if live else self.f_rank)):
            if value is not None and math.isfinite(value):
                series.append(step, value)
        self._dirty = True
        if reading.starts_collapse:
            self._warn_collapse(reading)

    @property
    def collapse_step(self) -> int | None:
        """Where the collapse began, None while healthy."""
        return self._collapse.collapse_step

    def _warn_collapse(self, reading: CollapseReading) -> None:
        """Show the banner and mark where the collapse began (the first low log of the streak)."""
        std, rank, step = reading.std, reading.rank, reading.collapse_step
        seen = []
        if std is not None:
            seen.append(f"spread (std ratio) {std:.3f}, healthy ≈ 1")
        if rank is not None:
            seen.append(f"effective-rank ratio {rank:.3f}")
        where = (f"in {reading.streak} logged steps in a row, from step {reading.since} to {reading.step}"
                 if reading.live else f"at the evaluation of step {reading.step}")
        what = COLLAPSE_WHAT[reading.cause]
        self.collapse_banner.setText(f"<b>⚠ {what}</b> {COLLAPSE_ADVICE}<br><small>Seen {where}: "
                                     f"{'; '.join(seen)}.</small>")
        self.collapse_banner.setVisible(True)
        self._place_banner()
        self.collapse_banner.raise_()
        for line in (self.collapse_line, self.collapse_plot_line):
            line.setValue(step)
            line.setVisible(True)
        self.collapse_line.label.setFormat(f"collapse from step {step}")

    # ------------------------------------------------------------------ estimate
    def schedule_estimate(self, *_) -> None:
        """(Re)start the quiet period after which the settings in the forms are estimated."""
        if self.project is None or self._building:
            return
        self._est_timer.start()          # restarts: only the settings that rest count

    def _estimate_request(self):
        """(data set id, RunConfig, cache key) for the forms, or None when they cannot run."""
        ds_id = self.dataset_combo.currentData()
        if self.project is None or ds_id is None or not self._forms_valid or self.train_form is None:
            return None
        try:
            cfg = self.run_config()
        except Exception:  # noqa: BLE001 - the forms show what is wrong
            return None
        d = cfg.to_dict()
        for key in ESTIMATE_IGNORES:
            d["train"].pop(key, None)
        return int(ds_id), cfg, json.dumps([str(self.project.path), ds_id, d], sort_keys=True, default=str)

    def _start_estimate(self) -> None:
        if self.project is None or not self.isVisible():
            self.estimate = None         # showEvent asks again
            self._set_estimate_text("", "")
            return
        request = self._estimate_request()
        if request is None:
            self._show_estimate(None)
            return
        ds_id, cfg, key = request
        if key in self._est_cache:
            self._show_estimate(self._est_cache[key])
            return
        if self.busy:
            # A dry run beside a training run would slow it down and time the contention.
            self._est_pending = True
            self._set_estimate_text("estimate: after this run", "")
            return
        if self._est_worker is not None and self._est_worker.is_running():
            # The latest settings win: cancel the stale dry run, start this one when it has stopped.
            self._est_worker.cancel()
            self._est_pending = True
            self._set_estimate_text(ESTIMATING, "")
            return
        self.estimate = None
        self._set_estimate_text(ESTIMATING, "A few dry-run training steps time these settings")
        worker = FunctionWorker(_estimate_in_background, self.project, ds_id, cfg, steps=self.estimate_steps,
                                max_seconds=self.estimate_max_seconds, thread_name="pretext-estimate")
        worker.result.connect(lambda result, key=key: self._on_estimate(key, result))
        worker.errored.connect(lambda message, details, key=key: self._on_estimate_error(key, message))
        worker.finished.connect(lambda w=worker: self._on_estimate_finished(w))
        self._est_worker = worker
        worker.start()

    def _on_estimate(self, key: str, result: dict) -> None:
        self._est_cache[key] = result
        while len(self._est_cache) > 32:
            self._est_cache.pop(next(iter(self._est_cache)))
        request = self._estimate_request()
        if request is not None and request[2] == key:
            self._show_estimate(result)

    def _on_estimate_error(self, key: str, message: str) -> None:
        request = self._estimate_request()
        if request is not None and request[2] == key:
            self._set_estimate_text(f"no estimate: {message}", message)

    def _on_estimate_finished(self, worker: FunctionWorker) -> None:
        """A dry run ended (with a result, an error, or cancelled). "estimating…" must not
        outlive it: a request that waited, or one whose dry run was cancelled without a
        successor (Start cancels it), is answered now, or after the run when one trains."""
        if worker is not self._est_worker:
            return
        self._est_worker = None
        if not (self._est_pending or self._est_text == ESTIMATING):
            return                       # its result or its error is shown
        self._est_pending = False
        if self.busy:
            self._est_pending = True     # _on_worker_finished asks again
            self._set_estimate_text("estimate: after this run", "")
        else:
            self._start_estimate()

    def _cancel_estimate(self) -> None:
        """Drop the waiting request and cancel the dry run in flight (it ends after its step;
        then _on_estimate_finished replaces its "estimating…")."""
        self._est_timer.stop()
        self._est_pending = False
        if self._est_worker is not None:
            self._est_worker.cancel()

    def _show_estimate(self, est: dict | None) -> None:
        self.estimate = est
        if est is None:
            self._set_estimate_text("", "")
            return
        if not est.get("available"):
            self._set_estimate_text("no estimate for text methods", est.get("reason", ""))
            return
        from engine.estimate import time_split
        train = self.train_form.config() if self.train_form is not None else None
        epochs = train.epochs if train is not None else est["epochs"]
        eval_every = train.eval_every if train is not None else 1
        linear_every = bool(train.linear_probe_every_eval) if train is not None else False
        split = time_split(est, epochs, eval_every, linear_every)
        epochs, n_eval = split["epochs"], split["evaluations"]
        # The total as the visible sum of its two parts: training and evaluation.
        if est.get("iterative", True):
            training = f"{epochs} epoch{'s' if epochs != 1 else ''} × {_fmt_span(split['seconds_per_epoch'])}"
        else:
            training = f"fit {_fmt_span(split['training_seconds'])}"
        text = (f"≈ {_fmt_span(split['total_seconds'])} in all = {training} + {n_eval} "
                f"evaluation{'s' if n_eval != 1 else ''} × {_fmt_span(split['seconds_each_evaluation'])} · "
                f"~{_fmt_bytes(est['peak_memory_bytes'])}")
        how = ("measured (torch.cuda.max_memory_allocated)" if est["memory_method"] == "measured" else
               "counted: parameters, gradients, optimiser state, the activations kept for the backward "
               "pass, the loop's image copies and one evaluation's features")
        parts = "\n".join(f"  {k}: {_fmt_bytes(v)}" for k, v in est.get("memory_parts", {}).items())
        if est.get("iterative", True):
            steps = (f"From {est.get('timed_steps', 0)} dry-run training steps on {est['device']} (after a "
                     f"warm-up step), nothing saved: {_fmt_span(est['seconds_per_step'])} per step of "
                     f"{est['batch_size']} images × {est['steps_per_epoch']} steps per epoch.")
        else:
            steps = (f"From a fit on a sample of the training images on {est['device']}, scaled to all "
                     f"{est['n_train']:,}, nothing saved: ≈ {_fmt_span(est['seconds_per_epoch'])}.")
        when = ("every epoch" if eval_every == 1 else f"every {eval_every} epochs" if eval_every else
                "only at the end")
        fixed = ("the untrained network's, " if int(est["fixed_evaluations"]) > 1 else "")
        tip = (f"Training ≈ {_fmt_span(split['training_seconds'])}: {steps}\n"
               f"Evaluation ≈ {_fmt_span(split['evaluation_seconds'])}: {n_eval} evaluation"
               f"{'s' if n_eval != 1 else ''} ({fixed}{when}{', and the final one' if eval_every else ''}"
               f"), ≈ {_fmt_span(split['seconds_each_evaluation'])} each on average: embedding every item "
               f"and the kNN ≈ {_fmt_span(est['seconds_per_evaluation'])} each, the linear probe "
               f"≈ {_fmt_span(est.get('seconds_linear_probe', 0.0))} a fit × {split['linear_probes']}, the "
               f"raw-pixel baselines ≈ {_fmt_span(est.get('seconds_baselines', 0.0))} (a data set's first "
               f"run only).\nMemory {how}:\n{parts}")
        if est.get("warning"):
            text += " · ⚠ loss not finite"
            tip = est["warning"] + "\n\n" + tip
        self._set_estimate_text(text, tip)

    def _set_estimate_text(self, text: str, tip: str) -> None:
        # (an elided label: a long error message does not widen the window)
        self._est_text = text
        self.estimate_label.setText(text)
        self.estimate_label.setToolTip(tip or text)

    # ------------------------------------------------------------------ text runs
    @property
    def _run_is_text(self) -> bool:
        """The run being shown trains a text method (its method, not the one now picked)."""
        from engine.methods import METHODS
        cls = METHODS.get(self._run_method or self.method_combo.currentData() or "")
        return cls is not None and cls.modality == "text"

    def _set_eval_name(self, name: str) -> None:
        if name != self._eval_name:
            self._eval_name = name
            self._set_knn_title()

    def _set_knn_title(self, text_run: bool | None = None) -> None:
        """The evaluation plot's title, which is also its legend (a legend box in the plot
        covered the kNN line): the curves' names in their colours."""
        if self._run_is_text if text_run is None else text_run:
            # Text runs: one metric, no linear probe.
            title = (f"Evaluation of the representation (%): "
                     f"<span style='color:{KNN_COLOUR}'>● {html.escape(self._eval_name)}</span>")
        else:
            title = (f"Evaluation accuracy (test split): <span style='color:{KNN_COLOUR}'>● kNN</span> · "
                     f"<span style='color:{LINEAR_COLOUR}'>■ linear probe</span>")
        self.knn_plot.setTitle(title)
        style_plot(self.knn_plot)

    def _shows_collapse_monitor(self) -> bool:
        """The collapse monitor is shown for the run shown (or the method picked): joint-embedding
        methods only, where collapse is the failure mode."""
        return shows_collapse_monitor(self._run_method or self.method_combo.currentData() or "")

    def _style_for_modality(self) -> None:
        """Titles that say what a text or an image run is measured by."""
        if self.busy:
            return
        self.collapse_plot.setVisible(self._shows_collapse_monitor())
        self._eval_name = "evaluation" if self._run_is_text else "kNN"
        self._set_knn_title()

    # ------------------------------------------------------------------ errors
    def _show_error(self, title: str, message: str, details: str) -> None:
        """A non-blocking dialog with the readable message and the traceback under Details."""
        box = QMessageBox(QMessageBox.Icon.Critical, title, message, QMessageBox.StandardButton.Ok, self)
        box.setInformativeText("The run is marked failed; fix the cause and press Resume to continue it "
                               "from its last checkpoint, or start a new run.")
        if details:
            box.setDetailedText(details)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
        self.last_error_box = box
        box.open()
