"""The Train view's live panel: progress, the loss / evaluation / collapse plots, the banner.

Events are only folded into growable numpy buffers (:class:`Series`) as they arrive; a
timer redraws what changed (the curves with ``setData``, the progress bar, ETA and
throughput) about seven times a second, so a fast run never floods the event loop with
redraws. Text methods (word2vec, the masked language model) show words/s or tokens/s as
the throughput and their own evaluation metric in the lower plot. The collapse metrics
the loop logs are plotted, and a banner warns when a joint-embedding method's
representation collapses.
"""
from __future__ import annotations

import html
import math
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSplitter, QVBoxLayout

from engine.explore.collapse import (COLLAPSE_KEYS, COLLAPSE_RANK, COLLAPSE_STD, CollapseReading, CollapseWatch,
                                     shows_collapse_monitor, warns_collapse)

from ...theme import accent, style_plot
from ...widgets import ElidedLabel

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
#: The live curves and the progress texts are redrawn at most this often (about 7 times a
#: second), however fast the events come: one redraw repaints every axis of three plots.
REDRAW_INTERVAL_MS = 150
#: Colours of the evaluation curves, also used in the plot's title (its legend).
KNN_COLOUR, LINEAR_COLOUR = "#4e79a7", "#f28e2b"


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


class TrainPlots:
    """TrainView's progress row, facts row and plots, and everything that draws on them.

    Reads from the view: ``busy``, ``run_id``, ``_run_method`` (the run shown) and
    ``method_combo`` (the method picked, when no run is shown)."""

    def _init_plots(self) -> None:
        self.loss = Series()
        self.knn = Series()
        self.linear = Series()
        self.step_events: list = []          # kept short: the last events, for inspection
        self._dirty = False
        self._total_steps = 0
        self._start_step = 0
        self._t_started = 0.0
        self._ips: list[float] = []
        self._rate = "img/s"                     # the shown run's throughput unit (Started.rate)
        self._epochs_total = 0.0                 # the shown run's length in epochs (from Started)
        self._axes_stale = True                  # the evaluation plot's range needs fitting
        self._last_step: int | None = None       # the latest step, shown by the next redraw
        self._drawn: dict[int, int] = {}         # id(curve) → the Series.version it shows
        self._eval_name = "kNN"                  # what the evaluation curve is (text runs: their metric)
        # Collapse monitor: live (per logged step) and evaluation points, the warning state.
        self.c_std, self.c_rank = Series(), Series()
        self.f_std, self.f_rank = Series(), Series()
        self._collapse = CollapseWatch()         # the streak of low logs, where the collapse began
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setInterval(REDRAW_INTERVAL_MS)
        self._redraw_timer.timeout.connect(self._redraw)

    def _build_plots(self, rv: QVBoxLayout) -> QSplitter:
        """The progress and facts rows into ``rv``; returns the splitter of the three plots."""
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
        return plots

    def _style_plots(self) -> None:
        """The plots in the palette's colours (once they sit in the view, and on a palette change)."""
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
            self._style_plots()
        super().changeEvent(ev)

    # ------------------------------------------------------------------ evaluations
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
