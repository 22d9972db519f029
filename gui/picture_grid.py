"""Rows of same-size images with a title per row (original, a view, a reconstruction…),
wrapped into as many bands as make the tiles largest in the space the widget has, laid
out again on every resize: the Reconstructions view's grids and the Datasets view's
augmentation preview."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QFontMetrics, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from .images import to_qimage


def fitted_columns(n_images: int, n_rows: int, image_w: int, image_h: int, width: float, height: float,
                   gap: int = 3, band_gap: int = 10) -> int:
    """How many columns make the tiles largest when ``n_rows`` rows of ``n_images`` images of
    ``image_w``×``image_h`` wrap into bands in a ``width``×``height`` area (fewer bands on a tie)."""
    best, best_scale = 1, -1.0
    for cols in range(1, max(1, n_images) + 1):
        bands = -(-n_images // cols)
        lines = n_rows * bands
        cell_w = (width - gap * cols) / cols
        cell_h = (height - band_gap * (bands - 1) - gap * lines) / lines
        scale = min(cell_w / image_w, cell_h / image_h)
        if scale > best_scale + 1e-9:
            best, best_scale = cols, scale
    return best


class PictureGrid(QWidget):
    """Rows of same-size images with a title per row, wrapped into as many bands as make
    the tiles largest in the space the widget has (again on every resize), centred.

    ``set_rows([("original", imgs), ("masked input", imgs), ...])`` with uint8 (n, H, W, C)
    arrays. Small images are enlarged with nearest-neighbour sampling: pixels stay crisp."""

    GAP, BAND_GAP = 3, 10

    def __init__(self, parent=None):
        super().__init__(parent)
        self.rows: list[tuple[str, np.ndarray]] = []
        self._images: list[list] = []
        self.message = ""
        self.columns = 1
        self.tile = (0, 0)          # the size the images are drawn at (pixels), after the last paint
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 120)

    def set_rows(self, rows: list[tuple[str, np.ndarray]]) -> None:
        self.rows = [(t, np.asarray(a)) for t, a in rows]
        self._images = [[to_qimage(img) for img in a] for _, a in self.rows]
        self.message = ""
        self.update()

    def set_message(self, text: str) -> None:
        self.message = text
        self.update()

    def n_images(self) -> int:
        return max((len(a) for _, a in self.rows), default=0)

    def layout_for(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(columns, tile width, tile height, title width) for an area of ``width``×``height``."""
        fm = QFontMetrics(self.font())
        label_w = max(fm.horizontalAdvance(t) for t, _ in self.rows) + 10
        n, h0, w0 = self.n_images(), *self.rows[0][1].shape[1:3]
        avail_w, avail_h = width - label_w, height - fm.height()
        cols = fitted_columns(n, len(self.rows), w0, h0, avail_w, avail_h, self.GAP, self.BAND_GAP)
        bands = -(-n // cols)
        lines = len(self.rows) * bands
        cell_w = (avail_w - self.GAP * cols) / cols
        cell_h = (avail_h - self.BAND_GAP * (bands - 1) - self.GAP * lines) / lines
        scale = max(1.0, min(cell_w / w0, cell_h / h0))
        if scale >= 4:
            scale = float(int(scale))      # tiny images: whole factors, every source pixel an even block
        return cols, int(w0 * scale), int(h0 * scale), label_w

    def paintEvent(self, ev) -> None:  # noqa: N802 - Qt naming
        p = QPainter(self)
        pal = self.palette()
        p.setPen(pal.color(pal.ColorRole.WindowText))
        if not self.rows or not self.n_images():
            p.drawText(self.rect(), int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self.message)
            return
        fm = QFontMetrics(self.font())
        cols, w, h, label_w = self.layout_for(self.width(), self.height())
        self.columns, self.tile = cols, (w, h)
        n = self.n_images()
        bands = -(-n // cols)
        grid_w = label_w + cols * (w + self.GAP)
        grid_h = bands * len(self.rows) * (h + self.GAP) + (bands - 1) * self.BAND_GAP
        x0 = max(0, (self.width() - grid_w) // 2)
        y = max(fm.height() // 2, (self.height() - grid_h) // 2)
        for b in range(bands):
            for r, (title, _) in enumerate(self.rows):
                p.drawText(QRect(x0, y, label_w - 6, h),
                           int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), title)
                for c in range(cols):
                    k = b * cols + c
                    if k < len(self._images[r]):
                        p.drawImage(QRect(x0 + label_w + c * (w + self.GAP), y, w, h), self._images[r][k])
                y += h + self.GAP
            y += self.BAND_GAP
        if self.message:
            p.drawText(QRect(0, y, self.width(), fm.height() * 3), int(Qt.TextFlag.TextWordWrap), self.message)
