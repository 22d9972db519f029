"""The ``mnist-idx`` data set: images (and labels) in the IDX format.

IDX is the format MNIST and Fashion-MNIST are published in: a four-byte magic
number ``0, 0, dtype code, number of dimensions``, then one big-endian uint32
per dimension, then the values in C order. Files may be gzip-compressed
(recognised by their content, not their name).
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from engine.data import Cancel, DataError, ImageData, Progress, TEST, check_cancel

# IDX type codes → big-endian numpy dtypes.
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"
# Guards against a corrupt header asking for an absurd allocation.
MAX_BYTES = 8 * 1024 ** 3


def read_idx(path: Path) -> np.ndarray:
    """The array stored in an IDX file (plain or gzip), with a clear DataError
    for anything that is not a well-formed IDX file."""
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: broken gzip file ({e})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(raw)} bytes)")
    zero1, zero2, code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero1 != 0 or zero2 != 0 or code not in IDX_DTYPES or ndim == 0:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()}; expected "
                        "00 00, a type code 08/09/0b/0c/0d/0e and a dimension count)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header cut short ({len(raw)} bytes, needs {header})")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.float64)) * dtype.itemsize
    if expected > MAX_BYTES:
        raise DataError(f"{path}: IDX header claims {dims}, which is implausibly large")
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX header says {'×'.join(map(str, dims))} values of "
                        f"{dtype.itemsize} byte(s) ({expected} bytes) but the file holds "
                        f"{len(raw) - header} bytes after the header")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def load(images: Path, labels: Path | None = None, test_last: int = 0,
         progress: Progress | None = None, cancel: Cancel | None = None) -> ImageData:
    images = Path(images).expanduser()
    check_cancel(cancel)
    arr = read_idx(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[3] not in (1, 3) or arr.shape[0] == 0:
        raise DataError(f"{images}: expected images of shape (N, H, W) or (N, H, W, 1|3), "
                        f"found {arr.shape}")
    pixels = _to_uint8(arr)
    n = len(pixels)
    check_cancel(cancel)

    label_ids = class_names = None
    if labels is not None:
        labels = Path(labels).expanduser()
        lab = read_idx(labels)
        if lab.ndim != 1 or lab.dtype.kind not in "iu":
            raise DataError(f"{labels}: expected a 1-D array of integer labels, found "
                            f"{lab.dtype} {lab.shape}")
        if len(lab) != n:
            raise DataError(f"{labels}: {len(lab)} labels for the {n} images in {images.name}")
        if lab.min() < 0:
            raise DataError(f"{labels}: negative label {int(lab.min())}")
        label_ids = lab.astype(np.int64)
        # MNIST and Fashion-MNIST label files carry no names; the numbers are the names.
        class_names = [str(k) for k in range(int(label_ids.max()) + 1)]

    if not 0 <= test_last <= n:
        raise DataError(f"mnist-idx: test_last={test_last} but the file has only {n} images")
    split = np.zeros(n, dtype=np.uint8)
    if test_last:
        split[n - test_last:] = TEST
    if progress is not None:
        progress(n, n)
    stem = images.name[:-3] if images.name.endswith(".gz") else images.name
    return ImageData(
        name=stem,
        images=pixels,
        labels=label_ids,
        class_names=class_names,
        attributes={},
        captions=None,
        item_names=[f"{stem}/{i}" for i in range(n)],
        split=split,
        skipped=[],
        info={"source": str(images), "test_last": test_last},
    )


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """IDX pixels of any type → uint8 0..255 (MNIST is already uint8)."""
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    a = arr.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    if arr.dtype.kind == "f" and lo >= 0 and hi <= 1:
        a = a * 255.0
    elif lo < 0 or hi > 255:
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)
