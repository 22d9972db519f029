"""Colours shared by the views: plot styling that follows the palette, and
categorical colours for classes."""
from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QWidget

# Tableau 10 then the lighter half of Tableau 20: distinguishable, colour-blind-aware enough.
_CATEGORICAL = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#dbdb8d", "#9edae5", "#17becf",
]


def category_colors(n: int) -> list[QColor]:
    """``n`` distinct colours: a fixed palette for up to 20, evenly spread hues beyond."""
    if n <= len(_CATEGORICAL):
        return [QColor(c) for c in _CATEGORICAL[:n]]
    return [pg.intColor(i, hues=n, values=1, maxValue=230, minValue=150) for i in range(n)]


def is_dark(widget: QWidget | None = None) -> bool:
    pal = widget.palette() if widget is not None else QApplication.palette()
    return pal.color(QPalette.ColorRole.Window).lightness() < 128


def style_plot(plot: pg.PlotWidget) -> None:
    """Background, axes and text from the widget's palette (light or dark)."""
    pal = plot.palette()
    bg = pal.color(QPalette.ColorRole.Base)
    fg = pal.color(QPalette.ColorRole.Text)
    plot.setBackground(bg)
    item = plot.getPlotItem()
    for name in ("left", "bottom", "right", "top"):
        ax = item.getAxis(name)
        ax.setPen(pg.mkPen(fg))
        ax.setTextPen(pg.mkPen(fg))
    title = item.titleLabel
    if title is not None and title.text:
        title.setText(title.text, color=fg.name())


def accent(widget: QWidget | None = None) -> QColor:
    pal = widget.palette() if widget is not None else QApplication.palette()
    return pal.color(QPalette.ColorRole.Highlight)


def error_colour(widget: QWidget | None = None) -> str:
    return "#ff7b72" if is_dark(widget) else "#c62828"
