"""A 2-D scatter you can hover and click: the plot behind the Map view and the Words view's word map.

:class:`ScatterMap` is a pyqtgraph plot of one :class:`PaletteScatter` (many points, few
styles) with no axes. Hovering near a point shows a small card beside the mouse (an
image and an HTML text, both given by the view through ``describe``); a left click near
a point emits ``point_clicked`` with its row. Ring items (``add_rings`` / ``set_rings``)
mark chosen points: a selection, its neighbours, the item hovered in a linked map.

Views that host one inherit :class:`ScatterHost`, which names the plot's hover and
click under the view (``mv.hover_point``, ``wv.point_at``, …) and keeps the view's
``coords`` in the plot, where hover detection reads them.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, Qt, Signal
from PySide6.QtWidgets import QComboBox, QFrame, QLabel, QVBoxLayout

from .images import thumbnail
from .theme import style_plot

#: A point within this many pixels of the mouse is under it.
HOVER_RADIUS_PX = 8
#: The hover card's image side, in pixels (small images are scaled up, nearest neighbour).
HOVER_THUMB = 96
#: The card sits this far from the mouse, on whichever side has room.
CARD_OFFSET_PX = 14


def projection_combo() -> QComboBox:
    """The picker of a map's projection: its data is "pca" or "umap"."""
    combo = QComboBox()
    combo.addItem("PCA", "pca")
    combo.addItem("UMAP", "umap")
    combo.setToolTip("PCA is linear and instant; UMAP keeps neighbourhoods and is computed in the background")
    return combo


class PaletteScatter(pg.ScatterPlotItem):
    """A ScatterPlotItem for many points that share a few styles (a map's palette).

    pyqtgraph finds every point's pre-rendered symbol in its atlas one point at a
    time, in Python: about a second per 100,000 points on each recolour here. This
    looks up each distinct (symbol, size, pen, brush) once and hands the result to
    all points with numpy, then lets pyqtgraph draw as usual. Anything unexpected
    in pyqtgraph's internals falls back to its own lookup."""

    def set_brushes(self, brushes: np.ndarray) -> None:
        """Per-point brushes, already QBrush objects (no per-point mkBrush)."""
        if len(brushes) != len(self.data):
            raise ValueError(f"{len(brushes)} brushes for {len(self.data)} points")
        self.data["brush"] = brushes
        self.data["sourceRect"] = 0
        self.updateSpots()

    def updateSpots(self, dataSet=None) -> None:  # noqa: N802,N803 - pyqtgraph naming
        data = self.data if dataSet is None else dataSet
        if not (self.opts["pxMode"] and self.opts["useCache"]) or len(data) < 1000:
            return super().updateSpots(dataSet)
        try:
            todo = np.flatnonzero(data["sourceRect"]["w"] == 0)
            if len(todo):
                cols = list(self._style(["symbol", "size", "pen", "brush"], data=data, idx=todo))
                # A style is the identity of its symbol, pen and brush objects and its size:
                # equal styles made of distinct but equal objects only cost an extra lookup.
                key = np.zeros(len(todo), np.int64)
                for col in (np.fromiter(map(id, cols[0]), np.int64, len(todo)),
                            np.asarray(cols[1], np.float64).view(np.int64),
                            np.fromiter(map(id, cols[2]), np.int64, len(todo)),
                            np.fromiter(map(id, cols[3]), np.int64, len(todo))):
                    values, codes = np.unique(col, return_inverse=True)      # 1-D uniques are fast
                    key = key * len(values) + codes.ravel()
                _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
                rects = self.fragmentAtlas[list(zip(*(c[first] for c in cols)))]
                data["sourceRect"][todo] = np.array(rects, dtype=data["sourceRect"].dtype)[inverse.ravel()]
                self._maybeRebuildAtlas()
                self.invalidate()
            self._updateMaxSpotSizes(data=data)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            data["sourceRect"] = 0
            super().updateSpots(dataSet)


class HoverCard(QFrame):
    """A small frame over the plot with an optional image and a line of HTML: not a real
    tooltip (those are slow to appear and cannot show a scaled image reliably)."""

    def __init__(self, parent):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        self.image = QLabel()
        self.image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setMaximumWidth(220)
        layout.addWidget(self.image)
        layout.addWidget(self.text)
        self.hide()

    def show_at(self, x: float, y: float, text: str, image: np.ndarray | None) -> None:
        """Fill the card and place it beside widget position (x, y), inside the parent."""
        self.image.setVisible(image is not None)
        if image is not None:
            self.image.setPixmap(thumbnail(image, HOVER_THUMB))
        self.text.setText(text)
        self.adjustSize()
        area = self.parentWidget()
        left, top = x + CARD_OFFSET_PX, y + CARD_OFFSET_PX
        if left + self.width() > area.width():
            left = x - self.width() - CARD_OFFSET_PX
        if top + self.height() > area.height():
            top = y - self.height() - CARD_OFFSET_PX
        self.move(max(0, int(left)), max(0, int(top)))
        self.show()
        self.raise_()


class ScatterMap(pg.PlotWidget):
    """A 2-D scatter without axes: hover a point for its card, click it for ``point_clicked``.

    ``describe(row)`` gives the card of point ``row``: (HTML text, image or None), or None
    for no card. ``coords`` ((n, 2), NaN for a point not drawn) is what hover and clicks
    are measured against; the view keeps it equal to what it drew."""

    hovered = Signal(int)            # the row under the mouse, -1 when none
    point_clicked = Signal(int)      # the row clicked

    def __init__(self, view_box: pg.ViewBox | None = None):
        super().__init__(viewBox=view_box)
        self.coords: np.ndarray | None = None
        self.hover_index: int | None = None
        self.describe: Callable[[int], tuple[str, np.ndarray | None] | None] = lambda row: None
        self.setAspectLocked(True)
        self.hideAxis("left")
        self.hideAxis("bottom")
        self.setMenuEnabled(False)
        self.getPlotItem().hideButtons()
        self.scatter = PaletteScatter(pxMode=True, size=6, pen=None, symbol="o")
        self.addItem(self.scatter)
        self.card = HoverCard(self)
        self.scene().sigMouseMoved.connect(self.on_mouse_moved)
        self.scene().sigMouseClicked.connect(self.on_mouse_clicked)
        self.viewport().installEventFilter(self)
        style_plot(self)

    @property
    def vb(self) -> pg.ViewBox:
        return self.getPlotItem().vb

    def add_rings(self, size: float, z: float | None = None) -> pg.ScatterPlotItem:
        """A layer of unfilled circles over the points (see ``set_rings``)."""
        rings = pg.ScatterPlotItem(pxMode=True, size=size, brush=None, symbol="o")
        if z is not None:
            rings.setZValue(z)
        self.addItem(rings)
        return rings

    def set_rings(self, rings: pg.ScatterPlotItem, rows, sizes=None, pens=None) -> None:
        """Ring points ``rows`` (with per-ring ``sizes`` and ``pens`` if given); a point not
        drawn (NaN) gets no ring, and no rows clear the layer."""
        rows = [int(r) for r in rows]
        if self.coords is None or not rows:
            rings.setData([], [])
            return
        keep = [k for k, r in enumerate(rows) if np.isfinite(self.coords[r]).all()]
        rows = [rows[k] for k in keep]
        style = {"brush": None}
        if sizes is not None:
            style["size"] = [sizes[k] for k in keep]
        if pens is not None:
            style["pen"] = [pens[k] for k in keep]
        rings.setData(x=self.coords[rows, 0], y=self.coords[rows, 1], **style)

    def point_at(self, scene_pos) -> int | None:
        """The point nearest ``scene_pos`` within a few pixels, or None."""
        if self.coords is None or not len(self.coords):
            return None
        vb = self.vb
        if not vb.sceneBoundingRect().contains(scene_pos):
            return None
        p = vb.mapSceneToView(scene_pos)
        px, py = vb.viewPixelSize()
        if not px or not py:
            return None
        dx = (self.coords[:, 0] - p.x()) / px
        dy = (self.coords[:, 1] - p.y()) / py
        d2 = dx * dx + dy * dy
        d2[~np.isfinite(d2)] = np.inf          # points not drawn (outside a timeline's sample)
        i = int(np.argmin(d2))
        return i if d2[i] <= HOVER_RADIUS_PX ** 2 else None

    def scene_pos_of(self, i: int) -> QPointF:
        return self.vb.mapViewToScene(QPointF(float(self.coords[i, 0]), float(self.coords[i, 1])))

    def on_mouse_moved(self, scene_pos) -> None:
        i = self.point_at(scene_pos)
        if i is None:
            self.hide_hover()
        else:
            self.hover_point(i, scene_pos)

    def on_mouse_clicked(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        i = self.point_at(ev.scenePos())
        if i is not None:
            self.point_clicked.emit(i)

    def hover_point(self, i: int, scene_pos=None) -> None:
        """Show point ``i``'s card beside ``scene_pos`` (the mouse; by default the point)."""
        if self.coords is None:
            return
        card = self.describe(i)
        if card is None:
            return
        self.hover_index = i
        if scene_pos is None:
            scene_pos = self.scene_pos_of(i)
        p = self.mapFromScene(scene_pos)
        self.card.show_at(p.x(), p.y(), *card)
        self.hovered.emit(i)

    def hide_hover(self) -> None:
        self.hover_index = None
        self.card.hide()
        self.hovered.emit(-1)

    def changeEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        # (a palette change can arrive while PlotWidget.__init__ is still building the plot)
        if (ev.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange)
                and getattr(self, "plotItem", None) is not None):
            style_plot(self)
        super().changeEvent(ev)

    def eventFilter(self, obj, ev) -> bool:  # noqa: N802 - Qt naming
        if ev.type() == QEvent.Type.Leave:
            self.hide_hover()
        return super().eventFilter(obj, ev)


class ScatterHost:
    """For a view that shows a :class:`ScatterMap` as ``self.plot``: the plot's points,
    hover and click under the view's own names (the main window and tests use them)."""

    plot: ScatterMap

    @property
    def coords(self) -> np.ndarray | None:
        """(n, 2) positions of the points as drawn (NaN: not drawn)."""
        return self.plot.coords

    @coords.setter
    def coords(self, value: np.ndarray | None) -> None:
        self.plot.coords = value

    @property
    def scatter(self) -> PaletteScatter:
        return self.plot.scatter

    @property
    def hover_index(self) -> int | None:
        return self.plot.hover_index

    def point_at(self, scene_pos) -> int | None:
        return self.plot.point_at(scene_pos)

    def scene_pos_of(self, i: int) -> QPointF:
        return self.plot.scene_pos_of(i)

    def hover_point(self, i: int, scene_pos=None) -> None:
        self.plot.hover_point(i, scene_pos)

    def hide_hover(self) -> None:
        self.plot.hide_hover()

    def _on_mouse_moved(self, scene_pos) -> None:
        self.plot.on_mouse_moved(scene_pos)

    def _on_mouse_clicked(self, ev) -> None:
        self.plot.on_mouse_clicked(ev)
