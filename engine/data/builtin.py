"""The ``digits`` data set: scikit-learn's 1,797 handwritten 8×8 digits.

It ships inside scikit-learn (no download), so it is always available and
small enough to train on in seconds on a laptop CPU.
"""
from __future__ import annotations

import numpy as np

from engine.data import Cancel, ImageData, Progress, check_cancel, stratified_split


def load(progress: Progress | None = None, cancel: Cancel | None = None) -> ImageData:
    from sklearn.datasets import load_digits  # deferred: importing sklearn costs ~1 s

    check_cancel(cancel)
    bunch = load_digits()
    # The pixels are counts 0..16 (of a 4×4 block of a 32×32 bitmap); scale them
    # to the full 0..255 range every other image source uses.
    pixels = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0))
    images = np.clip(pixels, 0, 255).astype(np.uint8)[..., None]
    labels = np.asarray(bunch.target, dtype=np.int64)
    if progress is not None:
        progress(len(labels), len(labels))
    return ImageData(
        name="digits",
        images=images,
        labels=labels,
        class_names=[str(d) for d in range(10)],
        attributes={},
        captions=None,
        item_names=[f"digits/{i}" for i in range(len(labels))],
        split=stratified_split(labels, len(labels), seed=0),
        skipped=[],
    )
