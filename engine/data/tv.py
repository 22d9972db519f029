"""The ``torchvision`` data sets: CIFAR-10/100, MNIST, Fashion-MNIST, STL-10.

torchvision downloads the files from their official sources into ``root`` the
first time and reads them from there afterwards. Its CIFAR loaders unpickle the
downloaded batches; that is torchvision reading its own download, never a file
a person handed us. The official train split becomes split 0 and the test
split split 1.

STL-10 (96×96 RGB, the standard self-supervised benchmark) is read here, not
by torchvision's class, which loads every file whole: its 100,000 unlabelled
images are 2.8 GB decoded. torchvision only downloads and unpacks the archive
when the files are absent. The binary files in ``root/stl10_binary`` are mapped
with ``np.memmap`` and :class:`StackedImages` shows them as one lazy
``(N, 96, 96, 3)`` array, so the importer can read them a chunk at a time.
Items are the 5,000 labelled train images (split 0), the 8,000 test images
(split 1), then the 100,000 unlabelled ones (split 0, label -1: they train,
evaluation skips them). The labelled items come first so they keep the
positions they had before the unlabelled part was added. The files are checked
by size (a whole number of images, as many labels as images, labels 1..10),
not by md5: hashing 2.6 GB on every load costs seconds and the archive's md5 is
checked when it is downloaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from engine.data import Cancel, DataError, ImageData, Progress, TEST, TRAIN, check_cancel

NAMES = ("CIFAR10", "CIFAR100", "MNIST", "FashionMNIST", "STL10")
DEFAULT_ROOT = Path("~/.cache/pretext/torchvision")


def load(name: str = "CIFAR10", root: Path = DEFAULT_ROOT, download: bool = True,
         progress: Progress | None = None, cancel: Cancel | None = None) -> ImageData:
    if name not in NAMES:
        raise DataError(f"torchvision: unknown data set {name!r} (choose from {', '.join(NAMES)})")
    root = Path(root).expanduser()
    if name == "STL10":
        return load_stl10(root, download, progress, cancel)
    try:
        import torchvision.datasets as tvd  # deferred: importing torch takes seconds
    except ImportError as e:
        raise DataError(f"torchvision is not installed ({e}); import an image folder instead") from None
    _make_folder(root, name)

    parts: list[tuple[np.ndarray, np.ndarray]] = []
    class_names: list[str] = []
    for step, split in enumerate(("train", "test")):
        check_cancel(cancel)
        if progress is not None:
            progress(step, 2)
        try:
            ds = getattr(tvd, name)(str(root), download=download, train=split == "train")
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


def _make_folder(root: Path, name: str) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the folder {root} for {name} ({e.strerror or e})") from None


def _arrays(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, C) uint8 images and (N,) labels from a torchvision data set's
    in-memory arrays (far faster than indexing it item by item)."""
    data = ds.data
    data = data.numpy() if hasattr(data, "numpy") else np.asarray(data)
    if data.ndim == 3:                                  # MNIST, Fashion-MNIST: (N, H, W)
        data = data[..., None]
    targets = ds.targets
    targets = targets.numpy() if hasattr(targets, "numpy") else np.asarray(targets)
    return np.ascontiguousarray(data, dtype=np.uint8), targets.astype(np.int64)


def _explain(name: str, root: Path, download: bool, error: Exception) -> str:
    reason = _reason(error)
    if download:
        return (f"could not download {name} to {root}: no internet connection? ({reason}). "
                "Put the files there by hand or import an image folder instead.")
    return (f"{name} is not in {root} and downloading is off ({reason}). Turn download on, "
            "put the files there by hand, or import an image folder instead.")


def _reason(error: Exception) -> str:
    reason = " ".join(str(error).split()) or type(error).__name__
    return reason[:297] + "..." if len(reason) > 300 else reason


# --- STL-10 -------------------------------------------------------------------

STL10_FOLDER = "stl10_binary"
STL10_URL = "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"   # torchvision's STL10.url
STL10_SIDE = 96
STL10_IMAGE_BYTES = 3 * STL10_SIDE * STL10_SIDE
# (images file, labels file or None, split, item name prefix), in item order.
STL10_PARTS = (("train_X.bin", "train_y.bin", TRAIN, "train"),
               ("test_X.bin", "test_y.bin", TEST, "test"),
               ("unlabeled_X.bin", None, TRAIN, "unlabeled"))
STL10_FILES = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin")
# The order of class_names.txt in the official archive, for a folder without that file.
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


class StackedImages:
    """Several ``(n_i, H, W, C)`` uint8 arrays (memmap views) read as one
    ``(N, H, W, C)`` array without joining them: joining memmaps would read
    every file into memory. Indexing with an int, a slice, an integer array or
    a boolean mask (optionally followed by more indices, as in
    ``images[i, :, :, 0]``) returns a real numpy array and reads only the
    parts, and within them only the items, it needs.
    """

    def __init__(self, parts: Sequence[np.ndarray]):
        if not parts:
            raise ValueError("StackedImages needs at least one part")
        tail = parts[0].shape[1:]
        if any(p.shape[1:] != tail or p.dtype != np.uint8 for p in parts):
            raise ValueError("StackedImages: every part must be uint8 with the same item shape")
        self.parts = list(parts)
        # starts[k] is the first item of part k; starts[-1] is the total.
        self.starts = np.cumsum([0] + [len(p) for p in parts])
        self.shape = (int(self.starts[-1]),) + tuple(int(s) for s in tail)
        self.dtype = np.dtype(np.uint8)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"StackedImages(shape={self.shape}, parts={[len(p) for p in self.parts]})"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        # np.asarray(images) works, but reads everything: callers that can
        # should index in chunks instead.
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = (key[0], key[1:]) if key else (slice(None), ())
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (n if key < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {int(key)} is out of bounds for {n} images")
            k = int(np.searchsorted(self.starts, i, side="right")) - 1
            out = np.array(self.parts[k][i - self.starts[k]])
            return out[rest] if rest else out
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            out = self._range(start, stop) if step == 1 else self._take(np.arange(start, stop, step))
        else:
            out = self._take(self._positions(key))
        return out[(slice(None),) + rest] if rest else out

    def _positions(self, key: Any) -> np.ndarray:
        index = np.asarray(key)
        if index.dtype == bool:
            if index.shape != (self.shape[0],):
                raise IndexError(f"boolean mask of shape {index.shape} for {self.shape[0]} images")
            return np.flatnonzero(index)
        if index.ndim != 1 or not (index.dtype.kind in "iu" or index.size == 0):
            raise IndexError(f"StackedImages takes an int, a slice or a 1-D integer array, not {key!r}")
        index = index.astype(np.int64)
        index = np.where(index < 0, index + self.shape[0], index)
        if index.size and (index.min() < 0 or index.max() >= self.shape[0]):
            raise IndexError(f"an index is out of bounds for {self.shape[0]} images")
        return index

    def _range(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((max(0, stop - start),) + self.shape[1:], np.uint8)
        for k, part in enumerate(self.parts):
            lo, hi = max(start, self.starts[k]), min(stop, self.starts[k + 1])
            if lo < hi:
                out[lo - start:hi - start] = part[lo - self.starts[k]:hi - self.starts[k]]
        return out

    def _take(self, index: np.ndarray) -> np.ndarray:
        out = np.empty((len(index),) + self.shape[1:], np.uint8)
        which = np.searchsorted(self.starts, index, side="right") - 1
        for k in np.unique(which):
            chosen = which == k
            out[chosen] = self.parts[k][index[chosen] - self.starts[k]]
        return out


def load_stl10(root: Path, download: bool = True, progress: Progress | None = None,
               cancel: Cancel | None = None) -> ImageData:
    """STL-10 from ``root/stl10_binary``: see the module docstring."""
    folder = root / STL10_FOLDER
    total = len(STL10_PARTS) + 1
    check_cancel(cancel)
    if progress is not None:
        progress(0, total)
    missing = [f for f in STL10_FILES if not (folder / f).is_file()]
    if missing and download:
        _make_folder(root, "STL10")
        try:
            # deferred: importing torch takes seconds. torchvision checks the archive's md5.
            from torchvision.datasets import utils as tv_utils
            tv_utils.download_and_extract_archive(STL10_URL, str(root), filename="stl10_binary.tar.gz",
                                                  md5="91f7769df0f17e558f3565bffb0c7dfb")
        except Exception as e:  # ImportError, urllib, OSError, a bad archive: all mean "no files"
            raise DataError(_explain_stl10(root, True, missing, e)) from None
        check_cancel(cancel)
        missing = [f for f in STL10_FILES if not (folder / f).is_file()]
        if missing:
            raise DataError(_explain_stl10(root, True, missing, None))
    elif missing:
        raise DataError(_explain_stl10(root, False, missing, None))

    class_names = _stl10_class_names(folder)
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    split: list[np.ndarray] = []
    item_names: list[str] = []
    for step, (images_file, labels_file, part_split, prefix) in enumerate(STL10_PARTS, start=1):
        check_cancel(cancel)
        raw = _stl10_images(folder / images_file)
        n = len(raw)
        if labels_file is None:
            part_labels = np.full(n, -1, np.int64)
        else:
            part_labels = _stl10_labels(folder / labels_file, n, len(class_names))
        # Each image is stored channel by channel, each channel column by column:
        # raw[i, c, x, y] is the pixel at row y, column x, so (N, H, W, C) is
        # this transposed view (no bytes are read here).
        images.append(raw.transpose(0, 3, 2, 1))
        labels.append(part_labels)
        split.append(np.full(n, part_split, np.uint8))
        digits = len(str(max(n - 1, 0)))
        item_names += [f"STL10/{prefix}/{i:0{digits}d}" for i in range(n)]
        if progress is not None:
            progress(step, total)

    n_unlabelled = sum(int(np.sum(part == -1)) for part in labels)
    return ImageData(
        name="STL10",
        images=StackedImages(images),  # type: ignore[arg-type]  # array-like, read in chunks
        labels=np.concatenate(labels),
        class_names=class_names,
        attributes={},
        captions=None,
        item_names=item_names,
        split=np.concatenate(split),
        skipped=[],
        info={"source": "torchvision STL10", "root": str(root), "n_unlabelled": n_unlabelled},
    )


def _stl10_images(path: Path) -> np.ndarray:
    """The file as a read-only memmap of shape (n, 3, 96, 96)."""
    size = path.stat().st_size
    if size == 0 or size % STL10_IMAGE_BYTES:
        raise DataError(f"{path}: {size:,} bytes is not a whole number of 96×96 RGB images "
                        f"({STL10_IMAGE_BYTES:,} bytes each); the file is damaged or cut short. "
                        f"Delete it and download {STL10_URL} again.")
    return np.memmap(path, dtype=np.uint8, mode="r",
                     shape=(size // STL10_IMAGE_BYTES, 3, STL10_SIDE, STL10_SIDE))


def _stl10_labels(path: Path, n: int, n_classes: int) -> np.ndarray:
    """The labels file (one byte per image, 1..10) as 0-based int64."""
    raw = np.fromfile(path, dtype=np.uint8)
    if len(raw) != n:
        raise DataError(f"{path}: {len(raw):,} labels for {n:,} images; the files do not belong "
                        f"together. Delete the folder and download {STL10_URL} again.")
    if n and (raw.min() < 1 or raw.max() > n_classes):
        raise DataError(f"{path}: labels must be 1..{n_classes}, found {raw.min()}..{raw.max()}")
    return raw.astype(np.int64) - 1


def _stl10_class_names(folder: Path) -> list[str]:
    path = folder / "class_names.txt"
    if not path.is_file():
        return list(STL10_CLASSES)
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path} ({e})") from None
    if not names:
        raise DataError(f"{path} lists no class names")
    return names


def _explain_stl10(root: Path, download: bool, missing: list[str], error: Exception | None) -> str:
    folder = root / STL10_FOLDER
    by_hand = (f"download {STL10_URL} (2.6 GB) and unpack it in {root}, so that {folder} holds "
               f"{', '.join(STL10_FILES)} and class_names.txt")
    if download:
        why = "" if error is None else f" ({_reason(error)})"
        return (f"could not download STL10 to {root}: no internet connection?{why}. "
                f"Missing in {folder}: {', '.join(missing)}. To add it by hand, {by_hand}; "
                "or import an image folder instead.")
    return (f"STL10 is not in {folder} and downloading is off (missing: {', '.join(missing)}). "
            f"Turn download on, or {by_hand}; or import an image folder instead.")
