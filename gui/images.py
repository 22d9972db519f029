"""numpy images → Qt pixmaps, for thumbnails and previews."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap


def to_qimage(img: np.ndarray) -> QImage:
    """A uint8 (H, W), (H, W, 1) or (H, W, 3) array → a QImage that owns its pixels."""
    a = np.ascontiguousarray(img, dtype=np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = np.ascontiguousarray(a[:, :, 0])
    if a.ndim == 2:
        h, w = a.shape
        q = QImage(a.data, w, h, w, QImage.Format.Format_Grayscale8)
    elif a.ndim == 3 and a.shape[2] == 3:
        h, w, _ = a.shape
        q = QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888)
    else:
        raise ValueError(f"expected a (H, W[, 1|3]) uint8 image, got shape {a.shape}")
    return q.copy()  # detach from the numpy buffer


def thumbnail(img: np.ndarray, size: int) -> QPixmap:
    """The image scaled to fit ``size``×``size`` pixels, keeping its aspect.

    Small images are scaled up with nearest-neighbour sampling (an 8×8 digit
    stays crisp); larger ones are scaled down smoothly.
    """
    q = to_qimage(img)
    smooth = max(q.width(), q.height()) > size
    mode = Qt.TransformationMode.SmoothTransformation if smooth else Qt.TransformationMode.FastTransformation
    if not smooth:
        # Scale by a whole factor so every source pixel becomes an even block.
        factor = max(1, size // max(q.width(), q.height()))
        return QPixmap.fromImage(q.scaled(q.width() * factor, q.height() * factor,
                                          Qt.AspectRatioMode.KeepAspectRatio, mode))
    return QPixmap.fromImage(q.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, mode))
