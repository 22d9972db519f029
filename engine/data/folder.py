"""The ``image-folder`` data set: a person's own images, from a folder or a .zip.

Layout conventions, all optional:

* ``<class>/<file>``: images in sub-folders are labelled by the first
  sub-folder's name (class names sorted);
* ``train/…`` and ``test/…`` (also ``training``, ``testing``, ``val``,
  ``valid``, ``validation``) at the top become the train/test split, with the
  classes one level further down — the layout of the shared CIFAR-10 zip;
* a .zip whose contents all sit in one wrapper folder is read as if the
  wrapper were not there, so zipping a folder or its contents gives the same
  data set.

Every image is centre-cropped to a square and resized to ``size × size``.
Files that cannot be used are skipped and listed with a reason, never fatal,
unless nothing usable is left. Zip members are decoded straight from the
archive; nothing is extracted to disk.
"""
from __future__ import annotations

import csv
import io
import json
import os
import stat
import warnings
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Callable

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from engine.data import (Cancel, DataError, ImageData, Progress, TEST, TRAIN, check_cancel,
                         stratified_split)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
SPLIT_FOLDERS = {"train": TRAIN, "training": TRAIN, "test": TEST, "testing": TEST,
                 "val": TEST, "valid": TEST, "validation": TEST}
# Refuse images above 64 megapixels before decoding them: a tiny file can
# claim a huge size ("decompression bomb") and a 64 MP photo is already far
# more than a 32×32 training image needs.
MAX_PIXELS = 64_000_000
# A zip member that inflates beyond this is not a sane image either (zip bomb).
MAX_MEMBER_BYTES = 512 * 1024 * 1024
# How many ignored files are named in the dataset's stats (all are counted).
MAX_LISTED_IGNORED = 1000
PROGRESS_EVERY = 256
# Transparent pixels are shown over white, as most image viewers show them.
ALPHA_BACKGROUND = (255, 255, 255)
LIMIT_SEED = 0


class _Skip(Exception):
    """A file cannot be used; the message is the reason shown to the person."""


@dataclass
class _Entry:
    """One candidate image file: where it is and how to open it."""

    name: str                       # item name: path inside the folder or zip, with "/"
    parts: tuple[str, ...]          # path parts used for labels and split (wrapper removed)
    opener: Callable[[], IO[bytes]]  # raises _Skip when the bytes cannot be had


def load(path: Path, size: int = 32, channels: str = "auto", captions: Path | None = None,
         limit: int | None = None, progress: Progress | None = None,
         cancel: Cancel | None = None) -> ImageData:
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such folder or file")
    # Read the captions first: a wrong captions path should fail before a long decode.
    table, bad_rows = _read_captions(Path(captions).expanduser(), path) if captions is not None else (None, 0)
    skipped: list[tuple[str, str]] = []
    # Files left out on purpose (not images, hidden), with why: reported, so a
    # user can tell a misnamed photo from a notes file.
    ignored: list[tuple[str, str]] = []
    archive: zipfile.ZipFile | None = None
    if path.is_dir():
        entries = _list_folder(path, skipped, ignored)
        name = path.resolve().name or str(path)
    elif zipfile.is_zipfile(path):
        try:
            archive = zipfile.ZipFile(path)
        except (OSError, zipfile.BadZipFile) as e:
            raise DataError(f"{path}: cannot open the zip file ({e})") from None
        entries = _list_zip(archive, ignored)
        name = path.stem
    else:
        raise DataError(f"{path}: not a folder or a .zip file")

    try:
        if not entries:
            also = f"; {_summary(skipped)}" if skipped else ""
            raise DataError(f"{path}: no usable images (no image files found; looked for "
                            f"{', '.join(IMAGE_EXTENSIONS)}{also})")
        splits, classes = _layout(entries)
        chosen = _sample(entries, splits, classes, limit) if limit is not None else np.arange(len(entries))
        images, kept = _decode_all([entries[i] for i in chosen], size, channels == "gray",
                                   skipped, progress, cancel)
    finally:
        if archive is not None:
            archive.close()
    if len(kept) == 0:
        raise DataError(f"{path}: no usable images ({_summary(skipped)})")
    chosen = chosen[kept]
    if len(kept) < len(images):
        images = images[: len(kept)].copy()  # do not keep the skipped files' rows alive
    if channels == "auto" and _all_gray(images):
        images = np.ascontiguousarray(images[..., :1])

    item_names = [entries[i].name for i in chosen]
    labels = class_names = None
    if classes is not None:
        class_names = sorted({classes[i] for i in chosen})
        index = {c: k for k, c in enumerate(class_names)}
        labels = np.array([index[classes[i]] for i in chosen], dtype=np.int64)
    info: dict = {"source": str(path), "n_ignored_files": len(ignored),
                  "ignored_files": [list(pair) for pair in ignored[:MAX_LISTED_IGNORED]]}
    if splits is not None and len(set(splits[i] for i in chosen)) == 2:
        split = np.array([splits[i] for i in chosen], dtype=np.uint8)
        info["split_from"] = "folders"
    else:
        split = stratified_split(labels, len(chosen), seed=0)
        info["split_from"] = "seeded 80/20"
    if limit is not None:
        info["limit"] = limit

    caption_list = None
    if table is not None:
        caption_list, caption_info = _match_captions(table, [entries[i] for i in chosen])
        info.update(caption_info, n_caption_rows_bad=bad_rows)

    return ImageData(name=name, images=images, labels=labels, class_names=class_names,
                     attributes={}, captions=caption_list, item_names=item_names, split=split,
                     skipped=skipped, info=info)


# --- finding the files -------------------------------------------------------

def _hidden(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _why_hidden(part: str) -> str:
    return "macOS resource fork" if part == "__MACOSX" else "hidden"


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _list_folder(root: Path, skipped: list[tuple[str, str]],
                 ignored: list[tuple[str, str]]) -> list[_Entry]:
    entries: list[_Entry] = []

    def walk_error(err: OSError) -> None:
        rel = os.path.relpath(err.filename, root) if err.filename else str(root)
        skipped.append((rel.replace(os.sep, "/") + "/", f"cannot list folder ({err.strerror})"))

    # Symlinked folders are not followed: they can loop, or leave the folder.
    for dirpath, dirnames, filenames in os.walk(root, onerror=walk_error):
        rel_dir = Path(dirpath).relative_to(root).parts
        for d in sorted(dirnames):
            if _hidden(d):
                ignored.append(("/".join((*rel_dir, d)) + "/", f"{_why_hidden(d)} folder"))
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        for fname in sorted(filenames):
            if _hidden(fname):
                ignored.append(("/".join((*rel_dir, fname)), _why_hidden(fname)))
                continue
            if not _is_image_name(fname):
                ignored.append(("/".join((*rel_dir, fname)), "not an image"))
                continue
            parts = (*rel_dir, fname)
            full = os.path.join(dirpath, fname)
            entries.append(_Entry("/".join(parts), parts, partial(_open_file, full)))
    entries.sort(key=lambda e: e.name)
    return entries


def _open_file(full: str) -> IO[bytes]:
    try:
        st = os.lstat(full)
        if stat.S_ISLNK(st.st_mode):
            if not os.path.exists(full):
                raise _Skip("broken symlink")
            st = os.stat(full)
        if not stat.S_ISREG(st.st_mode):
            raise _Skip("not a regular file")
        if st.st_size == 0:
            raise _Skip("zero bytes")
        return open(full, "rb")
    except PermissionError:
        raise _Skip("unreadable (permission denied)") from None
    except FileNotFoundError:
        raise _Skip("file disappeared while loading") from None
    except OSError as e:
        raise _Skip(f"unreadable ({e.strerror or e})") from None


def _list_zip(archive: zipfile.ZipFile, ignored: list[tuple[str, str]]) -> list[_Entry]:
    members = []
    # Plain string handling: this loop runs once per member (60,000 for CIFAR-10).
    for info in archive.infolist():
        if info.filename.endswith("/"):
            continue
        parts = tuple(p for p in info.filename.replace("\\", "/").split("/") if p and p != ".")
        if not parts:
            continue
        hidden = next((p for p in parts if _hidden(p)), None)
        if hidden is not None:  # dotfiles, dot-folders and macOS resource forks
            ignored.append(("/".join(parts), _why_hidden(hidden)))
            continue
        if not _is_image_name(parts[-1]):
            ignored.append(("/".join(parts), "not an image"))
            continue
        members.append((info, parts))
    # Zipping a folder (rather than its contents) adds one wrapper folder
    # around everything; drop it so both zips read like the folder itself.
    if members and all(len(p) > 1 for _, p in members):
        tops = {p[0] for _, p in members}
        if len(tops) == 1 and next(iter(tops)).lower() not in SPLIT_FOLDERS:
            members = [(info, p[1:]) for info, p in members]
    entries = [_Entry(info.filename, parts, partial(_open_member, archive, info))
               for info, parts in members]
    entries.sort(key=lambda e: e.name)
    return entries


def _open_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> IO[bytes]:
    if info.file_size == 0:
        raise _Skip("zero bytes")
    if info.file_size > MAX_MEMBER_BYTES:
        raise _Skip(f"too large ({info.file_size / 2**20:.0f} MB unpacked)")
    try:
        return io.BytesIO(archive.read(info))
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as e:
        # Bad CRC, encryption, an unsupported compression method, a cut-off archive.
        raise _Skip(f"cannot read from the zip ({e})") from None


def _layout(entries: list[_Entry]) -> tuple[list[int] | None, list[str] | None]:
    """Split (from train/test folders) and class (from sub-folders) per entry,
    each None when the layout does not give it for every file."""
    parts = [e.parts for e in entries]
    splits = None
    if all(len(p) > 1 and p[0].lower() in SPLIT_FOLDERS for p in parts):
        splits = [SPLIT_FOLDERS[p[0].lower()] for p in parts]
        parts = [p[1:] for p in parts]
    classes = [p[0] for p in parts] if all(len(p) > 1 for p in parts) else None
    return splits, classes


def _sample(entries: list[_Entry], splits: list[int] | None, classes: list[str] | None,
            limit: int) -> np.ndarray:
    """A seeded sample of ``limit`` entries, proportional over (split, class).

    Each group is shuffled and its members ranked (i + 0.5) / group size; taking
    the lowest ranks overall takes the same fraction of every group, so a
    2,000-image sample of CIFAR-10 keeps all ten classes and both splits.
    """
    n = len(entries)
    if limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(LIMIT_SEED)
    keys = [(splits[i] if splits else 0, classes[i] if classes else "") for i in range(n)]
    groups: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    rank = np.empty(n)
    for members in groups.values():
        order = rng.permutation(members)
        rank[order] = (np.arange(len(order)) + 0.5) / len(order)
    tiebreak = rng.random(n)
    chosen = np.lexsort((tiebreak, rank))[:limit]
    return np.sort(chosen)


# --- decoding ----------------------------------------------------------------

def _decode_all(entries: list[_Entry], size: int, gray: bool, skipped: list[tuple[str, str]],
                progress: Progress | None, cancel: Cancel | None) -> tuple[np.ndarray, np.ndarray]:
    """Decode every entry into one array; return it and the positions that worked."""
    total = len(entries)
    out = np.empty((total, size, size, 1 if gray else 3), dtype=np.uint8)
    kept: list[int] = []
    # Truncated files must be skipped, not loaded half grey, even if some other
    # library switched Pillow to lenient loading; put its setting back after.
    lenient = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        _decode_into(entries, out, kept, size, gray, skipped, progress, cancel)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = lenient
    return out, np.array(kept, dtype=np.int64)


def _decode_into(entries: list[_Entry], out: np.ndarray, kept: list[int], size: int, gray: bool,
                 skipped: list[tuple[str, str]], progress: Progress | None,
                 cancel: Cancel | None) -> None:
    total = len(entries)
    with warnings.catch_warnings():
        # Pillow warns (rather than raises) between 89 and 179 megapixels; make
        # that an error so it lands in `skipped`. Other Pillow warnings (odd
        # EXIF and the like) do not stop a file from loading and would only be noise.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        for k, entry in enumerate(entries):
            if k % PROGRESS_EVERY == 0:
                check_cancel(cancel)
                if progress is not None and k:
                    progress(k, total)
            try:
                with entry.opener() as fp:
                    out[len(kept)] = _decode(fp, size, gray)
            except Exception as e:  # Pillow's plugins raise many types on corrupt data
                skipped.append((entry.name, _reason(e)))
                continue
            kept.append(k)
    if progress is not None:
        progress(total, total)


def _reason(e: Exception) -> str:
    if isinstance(e, _Skip):
        return str(e)
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"decompression bomb (over the {MAX_PIXELS // 1_000_000}-megapixel limit)"
    if isinstance(e, UnidentifiedImageError):
        return "not an image (or a format Pillow cannot read)"
    text = str(e) or type(e).__name__
    if isinstance(e, OSError) and "truncated" in text.lower():
        return "truncated file"
    return f"cannot decode ({type(e).__name__}: {text})"


def _decode(fp: IO[bytes], size: int, gray: bool) -> np.ndarray:
    """One file → (size, size, 1 or 3) uint8: convert, centre-crop, resize."""
    with Image.open(fp) as im:
        w, h = im.size
        if w * h > MAX_PIXELS:
            raise _Skip(f"decompression bomb ({w}×{h} pixels, over the "
                        f"{MAX_PIXELS // 1_000_000}-megapixel limit)")
        if im.format in ("JPEG", "MPO"):  # MPO: a camera's multi-picture JPEG
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (never below `size`) and
            # produce luma directly for gray output: several times faster for photos.
            im.draft("L" if gray else None, (size, size))
        im.load()
        im = _upright(im)
        im = _to_rgb_or_l(im)
        if gray and im.mode != "L":
            im = im.convert("L")
        w, h = im.size
        side = min(w, h)
        if w != h:
            # Crop first: resize(box=...) would let the filter reach past the
            # box and bleed the cropped-away borders into the edge pixels.
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side))
        if side != size:
            im = im.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0)
        arr = np.asarray(im)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if not gray and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return arr


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (phone photos are often stored sideways)."""
    if im.format not in ("JPEG", "MPO", "TIFF", "WEBP", "PNG"):
        return im
    if im.format != "TIFF" and "exif" not in im.info:
        return im  # no EXIF block: skip parsing it, this runs for every file
    orientation = im.getexif().get(0x0112, 1)
    if orientation == 1:
        return im
    from PIL import ImageOps
    return ImageOps.exif_transpose(im)


def _to_rgb_or_l(im: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit "RGB" or "L"."""
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
        raise _Skip(f"colour mode {mode} is not supported") from None


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


def _all_gray(images: np.ndarray, chunk: int = 4096) -> bool:
    """True when R == G == B in every pixel (grayscale stored as RGB)."""
    for s in range(0, len(images), chunk):
        block = images[s:s + chunk]
        if not (np.array_equal(block[..., 0], block[..., 1]) and np.array_equal(block[..., 0], block[..., 2])):
            return False
    return True


def _summary(skipped: list[tuple[str, str]], show: int = 5) -> str:
    """"3 files skipped: a.jpg zero bytes, …" for error messages."""
    listed = ", ".join(f"{name} {reason}" for name, reason in skipped[:show])
    more = f", and {len(skipped) - show} more" if len(skipped) > show else ""
    files = "file" if len(skipped) == 1 else "files"
    return f"{len(skipped)} {files} skipped: {listed}{more}"


# --- captions ----------------------------------------------------------------

def _read_captions(file: Path, source: Path) -> tuple[dict[str, list[str]], int]:
    """``{file name: [caption, ...]}`` from a CSV (file,caption), JSONL or
    COCO-style captions JSON file, and the number of bad rows skipped (no file
    name or an empty caption; rows naming a missing image are counted later,
    as unmatched).

    A relative path that does not exist is also looked up beside the images:
    inside the folder, or as a member of the zip.
    """
    text = None
    if file.is_file():
        text = file.read_bytes()
    elif not file.is_absolute():
        if source.is_dir() and (source / file).is_file():
            text = (source / file).read_bytes()
        elif zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as z:
                if file.as_posix() in z.namelist():
                    text = z.read(file.as_posix())
    if text is None:
        raise DataError(f"{file}: captions file not found")
    try:
        content = text.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{file}: captions file is not UTF-8 text") from None

    table: dict[str, list[str]] = {}
    bad = 0

    def add(key: str, caption: str) -> None:
        nonlocal bad
        key, caption = _norm(key), " ".join(caption.split())   # one line per caption
        if not key or not caption:
            bad += 1
        else:
            table.setdefault(key, []).append(caption)

    suffix = file.suffix.lower()
    first = content.lstrip()[:1]
    coco = None
    if suffix == ".json" or (suffix not in (".csv", ".tsv") and first == "{"):
        try:
            coco = json.loads(content)
        except ValueError:
            coco = None                 # JSON lines, not one document
    if isinstance(coco, dict) and "annotations" in coco:
        # COCO captions: {"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}
        try:
            names = {img["id"]: str(img["file_name"]) for img in coco.get("images", [])}
            for ann in coco["annotations"]:
                add(names.get(ann.get("image_id"), ""), str(ann.get("caption") or ""))
        except (TypeError, KeyError, AttributeError):
            raise DataError(f"{file}: not a COCO captions file (expected images with id and file_name, "
                            "annotations with image_id and caption)") from None
    elif suffix in (".jsonl", ".ndjson", ".json") or (suffix not in (".csv", ".tsv") and first == "{"):
        for lineno, line in enumerate(content.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key, caption = row["file"], row["caption"]
            except (ValueError, TypeError, KeyError):
                raise DataError(f"{file}, line {lineno}: expected "
                                '{"file": ..., "caption": ...}') from None
            add(str(key), str(caption))
    else:
        rows = csv.reader(io.StringIO(content), delimiter="\t" if suffix == ".tsv" else ",")
        for lineno, row in enumerate(rows, 1):
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if len(row) < 2:
                bad += 1
                continue
            if lineno == 1 and row[0].strip().lower() in ("file", "filename", "image", "path") \
                    and row[1].strip().lower() in ("caption", "text", "captions"):
                continue  # the header row
            add(row[0], row[1])
    if not table:
        raise DataError(f"{file}: no captions found (expected CSV rows file,caption "
                        'or JSON lines {"file": ..., "caption": ...})')
    return table, bad


def _norm(name: str) -> str:
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _match_captions(table: dict[str, list[str]], entries: list[_Entry]) -> tuple[list[str], dict]:
    """Each entry's captions, one per line ("" when none), matched by the
    path inside the folder or zip, else by the bare file name when unique."""
    by_base: dict[str, list[str]] = {}
    base_count: dict[str, int] = {}
    for key, caps in table.items():
        by_base.setdefault(PurePosixPath(key).name, caps)
    for e in entries:
        base_count[e.parts[-1]] = base_count.get(e.parts[-1], 0) + 1
    captions, used = [], set()
    total = several = 0
    for e in entries:
        caps = None
        for key in (e.name, "/".join(e.parts)):
            if key in table:
                caps = table[key]
                used.add(key)
                break
        if caps is None and base_count[e.parts[-1]] == 1 and e.parts[-1] in by_base:
            caps = by_base[e.parts[-1]]
            used.update(k for k in table if PurePosixPath(k).name == e.parts[-1])
        caps = caps or []
        captions.append("\n".join(caps))
        total += len(caps)
        several += len(caps) > 1
    info = {"n_captions_total": total,
            "n_items_with_several_captions": several,
            "n_items_without_caption": sum(1 for c in captions if not c),
            "n_caption_rows_unmatched": sum(len(v) for k, v in table.items() if k not in used)}
    return captions, info
