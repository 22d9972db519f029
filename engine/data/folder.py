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

Every file is read and decoded once, in parallel, to check it; the project
keeps its bytes (re-encoded when it is larger than ``store_size``; see
engine/data/encoded.py), or with ``link=true`` only its path, size and sha256.
``size`` is the side the images are decoded to (centre-cropped to a square)
when a run reads them; the stored copies serve any size up to ``store_size``.
Files that cannot be used are skipped and listed with a reason, never fatal,
unless nothing usable is left. Zip members are decoded straight from the
archive; nothing is extracted to disk.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO, Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from engine.data import (Cancel, DataError, ImageData, Progress, TEST, TRAIN, check_cancel,
                         stratified_split)
from engine.data.encoded import (MAX_PIXELS, STORE_SIZE, BadImage, EncodedImages, LinkedItems, SpoolItems,
                                 encode_for_storage, strict_decoding)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
SPLIT_FOLDERS = {"train": TRAIN, "training": TRAIN, "test": TEST, "testing": TEST,
                 "val": TEST, "valid": TEST, "validation": TEST}
# A zip member that inflates beyond this is not a sane image either (zip bomb).
MAX_MEMBER_BYTES = 512 * 1024 * 1024
# How many ignored files are named in the dataset's stats (all are counted).
MAX_LISTED_IGNORED = 1000
# Files read and checked at a time by the thread pool: bounds the import's memory.
WINDOW = 256
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
         limit: int | None = None, store_size: int = STORE_SIZE, link: bool = False,
         progress: Progress | None = None,
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
    elif link:
        raise DataError(f"{path}: link=true keeps references to files in a folder; "
                        "a .zip must be imported (copied) instead")
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
        items, kept, all_gray = _store_all([entries[i] for i in chosen], store_size, skipped,
                                           progress, cancel, link_root=path.resolve() if link else None)
    finally:
        if archive is not None:
            archive.close()
    if len(kept) == 0:
        raise DataError(f"{path}: no usable images ({_summary(skipped)})")
    chosen = chosen[kept]
    gray = channels == "gray" or (channels == "auto" and all_gray)
    images = EncodedImages(items, size, 1 if gray else 3)

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

def _store_all(entries: list[_Entry], store_size: int, skipped: list[tuple[str, str]],
               progress: Progress | None, cancel: Cancel | None,
               link_root: Path | None = None) -> tuple[SpoolItems | LinkedItems, np.ndarray, bool]:
    """Read and check every entry, in parallel, into a spool of stored bytes.

    Returns the spool, the positions of the entries that worked and whether
    every kept image is gray. Files are handled a window at a time by a thread
    pool (Pillow releases the GIL while it decodes), so memory stays bounded at
    any number of files and progress and cancel are checked between windows.
    With ``link_root`` nothing is copied: the result records each file's path,
    size and sha256 (every file is still decoded once, to check it).
    """
    spool = SpoolItems()
    paths: list[str] = []
    sizes: list[int] = []
    hashes: list[bytes] = []
    kept: list[int] = []
    all_gray = True
    total = len(entries)
    threads = min(8, os.cpu_count() or 1)
    with strict_decoding(), ThreadPoolExecutor(threads) as pool:
        for start in range(0, total, WINDOW):
            check_cancel(cancel)
            if progress is not None and start:
                progress(start, total)
            window = entries[start:start + WINDOW]
            for k, result in enumerate(pool.map(partial(_store_one, store_size=store_size, link=link_root is not None), window)):
                if isinstance(result, str):
                    skipped.append((window[k].name, result))
                    continue
                data, gray = result
                if link_root is None:
                    spool.append(data)
                else:
                    paths.append(window[k].name)
                    sizes.append(len(data))
                    hashes.append(hashlib.sha256(data).digest())
                kept.append(start + k)
                all_gray = all_gray and gray
    if progress is not None:
        progress(total, total)
    items = spool if link_root is None else LinkedItems(str(link_root), paths, sizes, hashes)
    return items, np.array(kept, dtype=np.int64), all_gray


def _store_one(entry: _Entry, store_size: int, link: bool = False) -> tuple[bytes, bool] | str:
    """One file → (bytes to store, is gray), or the reason it cannot be used; with
    ``link`` the file's own bytes (to hash), whatever their size."""
    try:
        with entry.opener() as fp:
            data = fp.read()
        if link:
            return data, encode_for_storage(data, store_size)[1]
        return encode_for_storage(data, store_size)
    except Exception as e:  # Pillow's plugins raise many types on corrupt data
        return _reason(e)


def _reason(e: Exception) -> str:
    if isinstance(e, (_Skip, BadImage)):
        return str(e)
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"decompression bomb (over the {MAX_PIXELS // 1_000_000}-megapixel limit)"
    if isinstance(e, UnidentifiedImageError):
        return "not an image (or a format Pillow cannot read)"
    text = str(e) or type(e).__name__
    if isinstance(e, OSError) and "truncated" in text.lower():
        return "truncated file"
    return f"cannot decode ({type(e).__name__}: {text})"


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
