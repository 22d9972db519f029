"""Label-efficiency curves: test accuracy against the number of labels per class.

The engine (``engine.label_efficiency``) stores its numbers as metrics of the run:
``label_eff/{mode}@{k}`` (the mean accuracy over the seeds, a fraction) and
``label_eff/{mode}@{k}_std``, with a suffix ``/{select}`` when the labelled items were
chosen by a strategy other than random (``label_eff/probe@10/typiclust``). This module
reads those names back into curves (:func:`label_curves`) and draws them
(:class:`LabelCurvesPlot`): one curve per mode or per run, x = labels per class on a
log axis, y = accuracy in per cent, the spread over the seeds as error bars, and a
tooltip on each point. It needs nothing but the metrics, so it draws whatever the
engine has stored so far.
"""
from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QWidget

from .theme import style_plot

__all__ = ["MODES", "MODE_COLOURS", "MODE_TITLES", "PREFIX", "Curve", "CurvePoint", "LabelCurvesPlot",
           "has_label_curves", "label_curves", "parse_metric", "point_tip", "selections"]

PREFIX = "label_eff/"
#: The engine's modes, in the order they are drawn and listed.
MODES = ("probe", "finetune", "scratch", "raw")
MODE_TITLES = {"probe": "probe", "finetune": "fine-tune", "scratch": "scratch", "raw": "raw pixels"}
MODE_TIPS = {
    "probe": "a linear probe on the frozen features",
    "finetune": "the encoder and a head fine-tuned on the labels",
    "scratch": "the same network trained from scratch on the labels, same budget as fine-tuning",
    "raw": "a linear probe on the raw pixels (the baseline to beat)",
}
MODE_COLOURS = {"probe": "#4e79a7", "finetune": "#f28e2b", "scratch": "#e15759", "raw": "#8c8c8c"}
#: ``label_eff/probe@10``, ``label_eff/probe@10_std``, ``label_eff/probe@10/typiclust``.
#: (``label_eff/n_seeds@10`` and other bookkeeping beside the modes is not a curve.)
_NAME = re.compile(r"label_eff/(" + "|".join(MODES) + r")@(\d+)(_std)?(?:/([\w-]+))?")


@dataclass(frozen=True)
class CurvePoint:
    per_class: int
    mean: float          #: accuracy, a fraction
    std: float           #: its standard deviation over the seeds (0 when not stored)


@dataclass
class Curve:
    """One drawn curve: its legend entry, colour and points (sorted by ``per_class``)."""
    name: str
    colour: str
    points: list[CurvePoint]


def parse_metric(name: str) -> tuple[str, int, bool, str] | None:
    """``label_eff/probe@10_std/kcenter`` → ("probe", 10, True, "kcenter"); other names → None."""
    m = _NAME.fullmatch(name)
    if m is None:
        return None
    return m[1], int(m[2]), bool(m[3]), m[4] or "random"


def has_label_curves(metrics: Mapping[str, float]) -> bool:
    return any(parse_metric(n) is not None for n in metrics)


def selections(metrics: Mapping[str, float]) -> list[str]:
    """The selection strategies measured in ``metrics``: random first, then by name."""
    found = {p[3] for n in metrics if (p := parse_metric(n)) is not None}
    return sorted(found, key=lambda s: (s != "random", s))


def label_curves(metrics: Mapping[str, float], select: str = "random") -> dict[str, list[CurvePoint]]:
    """mode → its points (by labels per class) among ``metrics`` (name → value), for the
    selection strategy ``select``, in the engine's order of the modes."""
    means: dict[str, dict[int, float]] = {}
    stds: dict[tuple[str, int], float] = {}
    for name, value in metrics.items():
        parsed = parse_metric(name)
        if parsed is None or parsed[3] != select or value is None or not math.isfinite(value):
            continue
        mode, k, is_std, _ = parsed
        if is_std:
            stds[mode, k] = float(value)
        else:
            means.setdefault(mode, {})[k] = float(value)
    order = [m for m in MODES if m in means]
    return {mode: [CurvePoint(k, means[mode][k], stds.get((mode, k), 0.0)) for k in sorted(means[mode])]
            for mode in order}


def point_tip(label: str, per_class: int, mean: float, std: float) -> str:
    """"probe, 10 labels/class: 91.2 % ± 1.0"."""
    return f"{label}, {per_class} label{'s' if per_class != 1 else ''}/class: {100 * mean:.1f} % ± {100 * std:.1f}"


def _tip(x, y, data) -> str:       # a point's tooltip is the text stored with it
    return str(data)


class LabelCurvesPlot(pg.PlotWidget):
    """Accuracy (%) against labels per class (log axis): one curve per :class:`Curve`, with
    error bars of ± one std and a tooltip per point. Curves are pyqtgraph items reused
    between calls (``setData``): :meth:`set_curves` only changes what is drawn.

    The legend is a box in the plot's top left, or, with ``legend_in_title``, the curves'
    names in their colours after the title (for a short plot, where a box covers the curves)."""

    def __init__(self, parent: QWidget | None = None, title: str = "Accuracy with few labels",
                 legend_in_title: bool = False):
        super().__init__(parent)
        self.legend_in_title = legend_in_title
        self._title = title
        self.setTitle(title)
        self.setLabel("bottom", "labels per class (log scale)")
        self.setLabel("left", "accuracy (%)")
        self.getAxis("left").enableAutoSIPrefix(False)
        self.showGrid(x=True, y=True, alpha=0.15)
        self.setLogMode(x=True, y=False)
        self.legend = None if legend_in_title else self.addLegend(
            offset=(10, 10), labelTextSize="8pt",
            labelTextColor=self.palette().color(QPalette.ColorRole.Text))
        self.setMenuEnabled(False)
        self.curves: list[Curve] = []
        # Reused items: (line with symbols, error bars), one pair per curve drawn.
        self._items: list[tuple[pg.PlotDataItem, pg.ErrorBarItem]] = []
        self._legend_names: list[str] = []
        style_plot(self)

    def set_title(self, title: str) -> None:
        """The title (followed by the legend with ``legend_in_title``), in the palette's text colour."""
        self._title = title
        if self.legend_in_title and self.curves:
            names = " · ".join(f"<span style='color:{c.colour}'>● {html.escape(c.name)}</span>"
                               for c in self.curves)
            title = f"{title}: {names}"
        if title != self.getPlotItem().titleLabel.text:
            self.setTitle(title)
            style_plot(self)

    def set_curves(self, curves: list[Curve]) -> None:
        self.curves = [c for c in curves if c.points]
        while len(self._items) < len(self.curves):
            line = self.plot([], [])
            # The points carry their tooltips (pyqtgraph shows a hovered spot's tip(x, y, data)).
            line.scatter.opts.update(hoverable=True, tip=_tip)
            bars = pg.ErrorBarItem(x=np.zeros(0), y=np.zeros(0), beam=0.04)
            self.addItem(bars)
            self._items.append((line, bars))
        for i, (line, bars) in enumerate(self._items):
            if i >= len(self.curves):
                line.setData([], [])
                bars.setData(x=np.zeros(0), y=np.zeros(0), height=np.zeros(0))
                continue
            c = self.curves[i]
            ks = np.array([p.per_class for p in c.points], float)
            ys = np.array([100 * p.mean for p in c.points])
            sd = np.array([100 * p.std for p in c.points])
            line.setData(ks, ys, pen=pg.mkPen(c.colour, width=2), symbol="o", symbolSize=7,
                         symbolBrush=c.colour, symbolPen=pg.mkPen(c.colour),
                         data=[point_tip(c.name, p.per_class, p.mean, p.std) for p in c.points])
            # Error bars are not log-aware: their x is given in the axis's log10 coordinates.
            bars.setData(x=np.log10(ks), y=ys, height=2 * sd, pen=pg.mkPen(c.colour, width=1.5))
        names = [c.name for c in self.curves]
        if names != self._legend_names and self.legend is not None:
            self.legend.clear()
            for c, (line, _) in zip(self.curves, self._items):
                self.legend.addItem(line, c.name)
        self._legend_names = names
        self.set_title(self._title)
        self._fit()

    def _fit(self) -> None:
        """Ticks at the measured counts (1, 10, 100), the range around them; y from the
        accuracies and their bars, with room for the legend."""
        ks = sorted({p.per_class for c in self.curves for p in c.points})
        axis = self.getAxis("bottom")
        if not ks:
            # Nothing measured yet: the usual counts as ticks (pyqtgraph's own log ticks
            # crowd the axis with 2·10¹, 3·10¹, ...).
            axis.setTicks([[(math.log10(k), str(k)) for k in (1, 10, 100)], []])
            self.setXRange(-0.12, 2.12, padding=0)
            self.setYRange(0, 100)
            return
        axis.setTicks([[(math.log10(k), str(k)) for k in ks], []])
        lo, hi = math.log10(ks[0]), math.log10(ks[-1])
        pad = max(0.12, 0.06 * (hi - lo))
        self.setXRange(lo - pad, hi + pad, padding=0)
        values = [100 * v for c in self.curves for p in c.points for v in (p.mean - p.std, p.mean + p.std)]
        low, high = min(values), max(values)
        span = max(10.0, high - low)
        room = 0.08 if self.legend is None else 0.35         # room above the curves for the legend box
        self.setYRange(max(0.0, low - 0.08 * span), min(100.0, high + room * span), padding=0)

    def points_of(self, name: str) -> list[tuple[int, float, float]]:
        """(labels per class, accuracy %, std %) of the curve ``name`` as drawn (for tests)."""
        for c, (line, _) in zip(self.curves, self._items):
            if c.name == name:
                xs, ys = line.getOriginalDataset()
                bars = self._items[self.curves.index(c)][1]
                stds = np.asarray(bars.opts["height"]) / 2
                return [(int(round(x)), float(y), float(s)) for x, y, s in zip(xs, ys, stds)]
        return []
