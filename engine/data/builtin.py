"""The ``digits`` data set: scikit-learn's 1,797 handwritten 8×8 digits.

It ships inside scikit-learn (no download), so it is always available and
small enough to train on in seconds on a laptop CPU.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from engine.data import Cancel, ImageData, Progress, check_cancel, stratified_split


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """(images (1797, 8, 8) float64 counts 0..16, labels (1797,)), as
    ``sklearn.datasets.load_digits`` gives them.

    Read straight from the CSV scikit-learn ships, found without importing
    scikit-learn: the import takes 1-2 s, which ``main.py new`` (it adds the
    digits to every new project) should not pay. Falls back to load_digits.
    """
    spec = importlib.util.find_spec("sklearn")
    csv = (Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
           if spec is not None and spec.submodule_search_locations else None)
    if csv is not None and csv.is_file():
        table = np.loadtxt(csv, delimiter=",")  # 64 pixels then the label, per row
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits
    bunch = load_digits()
    return bunch.images, bunch.target


def load(progress: Progress | None = None, cancel: Cancel | None = None) -> ImageData:
    check_cancel(cancel)
    counts, target = _digits()
    # The pixels are counts 0..16 (of a 4×4 block of a 32×32 bitmap); scale them
    # to the full 0..255 range every other image source uses.
    pixels = np.rint(np.asarray(counts, dtype=np.float64) * (255.0 / 16.0))
    images = np.clip(pixels, 0, 255).astype(np.uint8)[..., None]
    labels = np.asarray(target, dtype=np.int64)
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
