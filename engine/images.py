"""Small image helpers for artifacts and exports (Pillow, no Qt)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image


def grid(rows: list[np.ndarray], pad: int = 1, scale: int = 1) -> np.ndarray:
    """Stack uint8 (n, H, W, C) rows into one (rows·H, n·W, 3) picture with gaps."""
    n = max(len(r) for r in rows)
    h, w = rows[0].shape[1:3]
    out = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 40, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            img = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y:y + h, x:x + w] = img
    if scale > 1:
        out = np.kron(out, np.ones((scale, scale, 1), np.uint8))
    return out


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    arr = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def grid_png(rows: list[np.ndarray], scale: int = 0) -> bytes:
    """PNG bytes of :func:`grid`; small images are enlarged so they can be seen."""
    h = rows[0].shape[1]
    scale = scale or max(1, 64 // max(h, 1))
    return png_bytes(grid(rows, scale=scale))
