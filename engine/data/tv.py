"""The ``torchvision`` data sets: CIFAR-10/100, MNIST, Fashion-MNIST, STL-10.

torchvision downloads the files from their official sources into ``root`` the
first time and reads them from there afterwards. Its CIFAR loaders unpickle the
downloaded batches; that is torchvision reading its own download, never a file
a person handed us. The official train split becomes split 0 and the test
split split 1 (STL-10: its labelled train and test parts; the 100,000
unlabelled images are left out).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.data import Cancel, DataError, ImageData, Progress, TEST, TRAIN, check_cancel

NAMES = ("CIFAR10", "CIFAR100", "MNIST", "FashionMNIST", "STL10")
DEFAULT_ROOT = Path("~/.cache/pretext/torchvision")


def load(name: str = "CIFAR10", root: Path = DEFAULT_ROOT, download: bool = True,
         progress: Progress | None = None, cancel: Cancel | None = None) -> ImageData:
    if name not in NAMES:
        raise DataError(f"torchvision: unknown data set {name!r} (choose from {', '.join(NAMES)})")
    try:
        import torchvision.datasets as tvd  # deferred: importing torch takes seconds
    except ImportError as e:
        raise DataError(f"torchvision is not installed ({e}); import an image folder instead") from None
    root = Path(root).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the folder {root} for {name} ({e.strerror or e})") from None

    parts: list[tuple[np.ndarray, np.ndarray]] = []
    class_names: list[str] = []
    for step, split in enumerate(("train", "test")):
        check_cancel(cancel)
        if progress is not None:
            progress(step, 2)
        kwargs: dict[str, Any] = {"split": split} if name == "STL10" else {"train": split == "train"}
        try:
            ds = getattr(tvd, name)(str(root), download=download, **kwargs)
        except Exception as e:  # urllib, OSError, torchvision's RuntimeError: all mean "no files"
            raise DataError(_explain(name, root, download, e)) from None
        parts.append(_arrays(ds))
        class_names = [str(c) for c in ds.classes]
    if progress is not None:
        progress(2, 2)

    (train_x, train_y), (test_x, test_y) = parts
    images = np.concatenate([train_x, test_x])
    return ImageData(
        name=name,
        images=images,
        labels=np.concatenate([train_y, test_y]).astype(np.int64),
        class_names=class_names,
        attributes={},
        captions=None,
        item_names=[f"{name}/train/{i}" for i in range(len(train_x))]
        + [f"{name}/test/{i}" for i in range(len(test_x))],
        split=np.concatenate([np.full(len(train_x), TRAIN, np.uint8), np.full(len(test_x), TEST, np.uint8)]),
        skipped=[],
        info={"source": f"torchvision {name}", "root": str(root)},
    )


def _arrays(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, C) uint8 images and (N,) labels from a torchvision data set's
    in-memory arrays (far faster than indexing it item by item)."""
    data = ds.data
    data = data.numpy() if hasattr(data, "numpy") else np.asarray(data)
    if data.ndim == 3:                                  # MNIST, Fashion-MNIST: (N, H, W)
        data = data[..., None]
    elif data.shape[1] == 3 and data.shape[3] != 3:     # STL-10: (N, 3, H, W)
        data = data.transpose(0, 2, 3, 1)
    targets = ds.labels if hasattr(ds, "labels") else ds.targets
    targets = targets.numpy() if hasattr(targets, "numpy") else np.asarray(targets)
    return np.ascontiguousarray(data, dtype=np.uint8), targets.astype(np.int64)


def _explain(name: str, root: Path, download: bool, error: Exception) -> str:
    reason = " ".join(str(error).split()) or type(error).__name__
    if len(reason) > 300:
        reason = reason[:297] + "..."
    if download:
        return (f"could not download {name} to {root}: no internet connection? ({reason}). "
                "Put the files there by hand or import an image folder instead.")
    return (f"{name} is not in {root} and downloading is off ({reason}). Turn download on, "
            "put the files there by hand, or import an image folder instead.")
