"""Images kept encoded (JPEG/PNG/WebP bytes) and decoded on demand, at any size.

A collection of 100,000 photos does not fit in memory decoded (100,000 × 96 ×
96 × 3 bytes is 2.8 GB, at 224 px 15 GB), nor in one SQLite blob (1 GB). So an
image data set is a sequence of encoded items — one per image, each the file's
own bytes when they are already small enough, else a re-encoded copy — and
:class:`EncodedImages` presents them as an array of shape ``(N, S, S, C)``:
indexing decodes just the items asked for, centre-cropped and resized to ``S``.
Everything that reads ``ImageData.images`` by index (thumbnails, the map's
hover, reconstructions) works unchanged; training streams batches from it
(engine/tasks/feed.py) and decodes in worker processes.

Where the bytes come from is an :class:`ItemSource`: memory (tests, small
loads), a spool file written during an import (bounded memory at any number of
files), the project file (engine.store), or the user's own files (link mode).

Codec (issue 13): a file is kept as it is when it is a JPEG, PNG or WebP whose
shorter side is at most ``store_size`` (default 256); otherwise it is stored as
a JPEG at quality 90 with full-resolution colour (4:4:4), its shorter side
resized to ``store_size`` (a small BMP/TIFF/GIF becomes a PNG of the same pixels). Pixels that are already decoded arrays (built-in,
torchvision, IDX data, old projects) are stored as lossless PNG, so they train
exactly as before. bench/scale.py measures the effect of the JPEG copy on kNN.
"""
from __future__ import annotations

import hashlib
import io
import os
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterable, Iterator, Protocol, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps

__all__ = ["EncodedImages", "ItemSource", "MemoryItems", "SpoolItems", "decode", "encode_array",
           "encode_for_storage", "strict_decoding", "BadImage", "LinkedItems", "LinkError", "STORE_SIZE", "JPEG_QUALITY", "decode_many"]

STORE_SIZE = 256
JPEG_QUALITY = 90
KEEP_FORMATS = ("JPEG", "PNG", "WEBP")
# Transparent pixels are shown over white, as most image viewers show them.
ALPHA_BACKGROUND = (255, 255, 255)


class ItemSource(Protocol):
    """Encoded bytes of items 0..n-1 of a collection."""

    def __len__(self) -> int: ...

    def read(self, index: Sequence[int]) -> list[bytes]:
        """The encoded bytes of the items at ``index``, in that order."""


class MemoryItems:
    """Encoded items held in a list (small collections and tests)."""

    def __init__(self, items: list[bytes]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def read(self, index: Sequence[int]) -> list[bytes]:
        return [self.items[int(i)] for i in index]


class SpoolItems:
    """Encoded items appended to a temporary file: an import of any size keeps
    only their offsets (8 bytes each) in memory until the project stores them.

    The file is deleted when the object is garbage collected (or at exit)."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="pretext-import-", buffering=0)   # pread sees every write
        self._offsets: list[int] = [0]
        self._hashes: list[bytes] = []

    def append(self, data: bytes) -> None:
        self._file.seek(0, io.SEEK_END)
        self._file.write(data)
        self._offsets.append(self._offsets[-1] + len(data))
        self._hashes.append(hashlib.sha256(data).digest())

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def sha256(self, index: Sequence[int]) -> list[bytes]:
        return [self._hashes[int(i)] for i in index]

    def read(self, index: Sequence[int]) -> list[bytes]:
        out = []
        for i in index:
            start, end = self._offsets[int(i)], self._offsets[int(i) + 1]
            out.append(os.pread(self._file.fileno(), end - start, start))
        return out


class LinkedItems:
    """Items that stay in the user's files (``link=true`` imports): the project keeps
    each file's path, size and sha256, and reads the file when the item is needed.

    A file that moved, vanished or changed since the import is never used
    silently: reading it raises :class:`LinkError` naming it, and
    :meth:`problems` lists every such file for a report before training.
    """

    def __init__(self, root: str, paths: list[str], sizes: list[int], sha256: list[bytes]):
        self.root, self.paths, self.sizes, self.hashes = str(root), paths, sizes, sha256

    def __len__(self) -> int:
        return len(self.paths)

    def full_path(self, i: int) -> str:
        return os.path.join(self.root, self.paths[int(i)])

    def sha256(self, index: Sequence[int]) -> list[bytes]:
        return [self.hashes[int(i)] for i in index]

    def read(self, index: Sequence[int]) -> list[bytes]:
        out = []
        for i in index:
            path = self.full_path(i)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                raise LinkError(f"{path}: moved or deleted since it was imported (link mode)") from None
            if len(data) != self.sizes[int(i)] or hashlib.sha256(data).digest() != self.hashes[int(i)]:
                raise LinkError(f"{path}: changed since it was imported (link mode); re-import the folder")
            out.append(data)
        return out

    def problems(self, check_contents: bool = False, limit: int = 1000) -> list[tuple[str, str]]:
        """``(path, "missing" | "changed")`` for files that cannot be used as imported.

        By default a quick check of existence and size (one stat per file);
        ``check_contents`` also compares every file's sha256."""
        found: list[tuple[str, str]] = []
        for i in range(len(self)):
            path = self.full_path(i)
            try:
                size = os.stat(path).st_size
            except OSError:
                found.append((path, "missing"))
            else:
                if size != self.sizes[i]:
                    found.append((path, "changed"))
                elif check_contents:
                    try:
                        self.read([i])
                    except LinkError:
                        found.append((path, "changed"))
            if len(found) >= limit:
                break
        return found


class LinkError(ValueError):
    """A linked file is missing or changed; the message names it."""


class EncodedImages:
    """An array-like ``(N, size, size, channels)`` uint8 view of encoded items.

    ``images[i]``, ``images[a:b]`` and ``images[[i, j]]`` decode those items;
    ``np.asarray(images)`` decodes them all (use it only when they fit in
    memory). ``take(index)`` and ``at_size(s)`` make new views without decoding.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, source: ItemSource, size: int, channels: int,
                 index: np.ndarray | None = None, threads: int = 0):
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {channels}")
        self.source = source
        self.size = int(size)
        self.channels = int(channels)
        self.index = None if index is None else np.asarray(index, dtype=np.int64)
        self.threads = threads or min(8, os.cpu_count() or 1)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.size, self.size, self.channels)

    @property
    def nbytes(self) -> int:
        return len(self) * self.size * self.size * self.channels

    def __len__(self) -> int:
        return len(self.source) if self.index is None else len(self.index)

    def positions(self, key) -> np.ndarray:
        """Item numbers in the source of ``key`` (an int, a slice, an int array or a mask)."""
        n = len(self)
        if isinstance(key, slice):
            pos = np.arange(n)[key]
        else:
            pos = np.asarray(key)
            if pos.dtype == bool:
                if pos.shape != (n,):
                    raise IndexError(f"boolean mask of shape {pos.shape} for {n} items")
                pos = np.flatnonzero(pos)
            pos = pos.astype(np.int64, copy=False)
            if pos.size and (pos.max() >= n or pos.min() < -n):
                raise IndexError(f"index out of range for {n} items")
            pos = np.where(pos < 0, pos + n, pos)
        return pos if self.index is None else self.index[pos]

    def encoded(self, key) -> list[bytes]:
        """The stored bytes of the items at ``key``."""
        return self.source.read(self.positions(key).reshape(-1))

    def __getitem__(self, key) -> np.ndarray:
        if key is Ellipsis:
            key = slice(None)
        if isinstance(key, tuple):                      # images[i, :, :, 0], images[..., 0]
            if not key or key[0] is Ellipsis:
                return self[:][key]
            head = self[key[0]]
            one_item = not isinstance(key[0], slice) and np.ndim(key[0]) == 0
            return head[key[1:]] if one_item else head[(slice(None),) + key[1:]]
        pos = self.positions(key)
        out = decode_many(self.source.read(pos.reshape(-1)), self.size, self.channels, self.threads)
        return out[0] if pos.ndim == 0 else out

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self), 256):
            yield from self[start:start + 256]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def original(self, i: int) -> np.ndarray:
        """Item ``i`` at its stored resolution (centre-cropped to a square): what a person
        looks at in a thumbnail or the map's hover, sharper than the training size."""
        data = self.source.read(self.positions(np.asarray([int(i)])))[0]
        return decode(data, None, self.channels)

    def take(self, index) -> EncodedImages:
        return EncodedImages(self.source, self.size, self.channels, self.positions(index), self.threads)

    def at_size(self, size: int) -> EncodedImages:
        return EncodedImages(self.source, size, self.channels, self.index, self.threads)

    def chunks(self, rows: int = 1024) -> Iterator[np.ndarray]:
        """All items decoded, ``rows`` at a time: memory O(rows) at any size."""
        for start in range(0, len(self), rows):
            yield self[start:start + rows]

    def __repr__(self) -> str:
        return f"EncodedImages(n={len(self)}, size={self.size}, channels={self.channels})"


# --- decoding ---------------------------------------------------------------------------


def decode(data: bytes, size: int | None, channels: int) -> np.ndarray:
    """Encoded bytes → ``(size, size, channels)`` uint8: upright, centre-cropped, resized
    (``size=None``: not resized, the side of the stored image).

    The same steps as the folder import has always used (draft decoding of
    JPEGs at 1/2…1/8 scale, EXIF orientation, alpha over white, LANCZOS), so a
    stored file decodes to the pixels an import at that size gave before.
    """
    with Image.open(io.BytesIO(data)) as im:
        gray = channels == 1
        if im.format in ("JPEG", "MPO") and size is not None:
            im.draft("L" if gray else None, (size, size))
        im.load()
        im = upright(im)
        im = to_rgb_or_l(im)
        if gray and im.mode != "L":
            im = im.convert("L")
        w, h = im.size
        side = min(w, h)
        if w != h:
            # Crop first: resize(box=...) would let the filter reach past the
            # box and bleed the cropped-away borders into the edge pixels.
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side))
        if size is not None and side != size:
            im = im.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
        arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if not gray and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return arr


def decode_many(items: list[bytes], size: int, channels: int, threads: int = 1) -> np.ndarray:
    """Several items into one ``(n, size, size, channels)`` array; Pillow releases the
    GIL while it decodes and resizes, so threads use the cores."""
    out = np.empty((len(items), size, size, channels), dtype=np.uint8)

    def one(k: int) -> None:
        out[k] = decode(items[k], size, channels)

    if threads > 1 and len(items) >= 16:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(len(items))))
    else:
        for k in range(len(items)):
            one(k)
    return out


def upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (phone photos are often stored sideways)."""
    if im.format not in ("JPEG", "MPO", "TIFF", "WEBP", "PNG"):
        return im
    if im.format != "TIFF" and "exif" not in im.info:
        return im  # no EXIF block: skip parsing it, this runs for every file
    orientation = im.getexif().get(0x0112, 1)
    if orientation == 1:
        return im
    return ImageOps.exif_transpose(im)


def to_rgb_or_l(im: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit "RGB" or "L" (16-bit gray scaled, alpha over white)."""
    mode = im.mode
    if mode in ("RGB", "L") and "transparency" not in im.info:
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(im), mode), "L")
    if mode == "1":
        return im.convert("L")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        back = Image.new("RGBA", im.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(back, rgba).convert("RGB")
    try:
        return im.convert("RGB")  # P, CMYK, YCbCr, HSV, …
    except ValueError:
        raise BadImage(f"colour mode {mode} is not supported") from None


class BadImage(ValueError):
    """A file that decodes but cannot be used; the message is the reason shown to a person."""


def _to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """High bit-depth gray → 0..255, keeping the meaning of the values.

    Pillow's own convert("L") clips 16-bit values at 255, which turns most
    16-bit images white; scale the full 16-bit range instead.
    """
    a = arr.astype(np.float64)
    if mode.startswith("I;16"):
        scaled = a / 257.0                       # 65535 → 255
    elif mode == "F" and a.size and a.min() >= 0 and a.max() <= 1:
        scaled = a * 255.0                       # floats in 0..1
    elif mode == "I" and a.size and a.min() >= 0 and a.max() <= 255:
        scaled = a                               # 8-bit values stored in 32 bits
    elif mode == "I" and a.size and a.min() >= 0 and a.max() <= 65535:
        scaled = a / 257.0                       # 16-bit values stored in 32 bits
    else:
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
        scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


# --- encoding ---------------------------------------------------------------------------


def encode_array(image: np.ndarray) -> bytes:
    """A decoded ``(H, W, 1|3)`` uint8 image → lossless PNG bytes (exact pixels back)."""
    arr = image[:, :, 0] if image.shape[2] == 1 else image
    buf = io.BytesIO()
    # compress_level 1: several times faster than the default 6, a few per cent larger.
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_arrays(images: Iterable[np.ndarray], threads: int = 0) -> list[bytes]:
    images = list(images)
    threads = threads or min(8, os.cpu_count() or 1)
    if threads > 1 and len(images) >= 16:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(encode_array, images))
    return [encode_array(a) for a in images]


@contextmanager
def strict_decoding() -> Iterator[None]:
    """Pillow settings for checking files, for the whole import: a truncated file fails
    (not loaded half grey, even if some library made Pillow lenient) and a decompression
    bomb warning is an error. They are process-wide, so they are set once here, in the
    thread that starts the decoding threads, not per file (threads would undo each other's)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        lenient = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = lenient


def encode_for_storage(data: bytes, store_size: int = STORE_SIZE) -> tuple[bytes, bool]:
    """What a project keeps of a file: ``(bytes, is_gray)``.

    Decodes the file completely (a truncated or corrupt file raises here, at
    import, never in the middle of training). The file's own bytes are kept
    when it is a JPEG/PNG/WebP whose shorter side is at most ``store_size``;
    a larger one becomes a JPEG (quality 90, 4:4:4) of the upright RGB or gray
    image with its shorter side resized to ``store_size``; a small file in
    another format (BMP, TIFF, GIF) becomes a PNG of the same pixels. ``is_gray`` says whether every
    pixel is gray, so a folder of gray photos can be stored one-channel. Call it inside
    :func:`strict_decoding` (once, around all the threads that call it).
    """
    with Image.open(io.BytesIO(data)) as im:
        fmt = im.format
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise BadImage(f"decompression bomb ({w}×{h} pixels, over the "
                           f"{MAX_PIXELS // 1_000_000}-megapixel limit)")
        keep = fmt in KEEP_FORMATS and min(w, h) <= store_size
        if not keep and fmt in ("JPEG", "MPO"):
            im.draft(None, (store_size, store_size))
        im.load()
        im = to_rgb_or_l(upright(im)).copy()      # a copy outlives the closed file
    gray = im.mode == "L" or _is_gray(np.asarray(im))
    if keep:
        return data, gray
    w, h = im.size
    buf = io.BytesIO()
    if min(w, h) > store_size:
        scale = store_size / min(w, h)
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS,
                       reducing_gap=3.0)
        im.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    else:
        # Small, in a format we do not keep (BMP, TIFF, GIF…): the same pixels as PNG.
        im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue(), gray


# Refuse images above 64 megapixels before decoding them: a tiny file can
# claim a huge size ("decompression bomb").
MAX_PIXELS = 64_000_000


def _is_gray(arr: np.ndarray) -> bool:
    if arr.ndim == 2 or arr.shape[2] == 1:
        return True
    return bool(np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]))
