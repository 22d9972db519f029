"""Image data sets: one in-memory type, a registry of kinds, one loader entry point.

Every image source (the built-in ``digits`` and ``shapes``, a folder or .zip of
the user's files, an IDX file, a torchvision download) ends up as an
:class:`ImageData`: a uint8 ``(N, H, W, C)`` array plus labels, extra attribute
label sets, captions, a name per item and a train/test split. Training, the
maps and the evaluators only ever see this type, so a new source is one module
that returns it plus one entry in :data:`DATASET_KINDS`.

``load_images(kind, progress=..., cancel=..., **params)`` is the only call the
GUI and the CLI need; :class:`DatasetKind.params <ParamSpec>` describe the
parameters so a form or ``key=value`` arguments can be built from them.
"""
from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = [
    "ImageData", "DataError", "DataCancelled", "ParamSpec", "DatasetKind", "DATASET_KINDS",
    "load_images", "stratified_split", "Progress", "Cancel", "picture",
]

Progress = Callable[[int, int], None]
Cancel = Callable[[], bool]

TRAIN, TEST = 0, 1


class DataError(ValueError):
    """A data set could not be loaded; the message is meant for a person."""


class DataCancelled(DataError):
    """The caller's ``cancel()`` returned True; ``str(err) == "cancelled"``.

    A subclass so the GUI can tell "stopped on request" from a failure while
    code that only knows :class:`DataError` still catches it.
    """

    def __init__(self) -> None:
        super().__init__("cancelled")


@dataclass(eq=False)  # compare by identity: field-wise == is ambiguous for arrays
class ImageData:
    """Images in memory with everything known about them.

    ``images`` is ``(N, H, W, C)`` uint8 with C = 1 (grayscale) or 3 (RGB): a numpy
    array, or an array-like that decodes on demand (:class:`~engine.data.encoded.
    EncodedImages`, a memory map) for collections too big to hold decoded.
    ``labels`` holds -1 for an item without a label (e.g. STL-10's unlabelled
    split): it trains, and evaluations leave it out.
    ``attributes`` holds extra label sets beside the main ``labels``, each as
    ``(ids, names)``: e.g. ``{"colour": (array([0, 3, ...]), ["red", ...])}``.
    ``split`` is 0 for train and 1 for test. ``skipped`` lists
    ``(file name, reason)`` for files that could not be read. ``info`` holds
    JSON-able extra facts from the loader (e.g. caption counts) that
    :meth:`stats` reports.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray | None
    class_names: list[str] | None
    attributes: dict[str, tuple[np.ndarray, list[str]]]
    captions: list[str] | None
    item_names: list[str]
    split: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked once here so every consumer can trust the shapes and dtypes.
        imgs = self.images
        if imgs.dtype != np.uint8 or imgs.ndim != 4 or imgs.shape[3] not in (1, 3):
            raise DataError(f"{self.name}: images must be uint8 (N, H, W, 1|3), "
                            f"got {imgs.dtype} {imgs.shape}")
        n = imgs.shape[0]
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
            if self.labels.shape != (n,):
                raise DataError(f"{self.name}: {len(self.labels)} labels for {n} images")
        for key, (ids, names) in self.attributes.items():
            if len(ids) != n:
                raise DataError(f"{self.name}: attribute {key!r} has {len(ids)} values for {n} images")
        if self.captions is not None and len(self.captions) != n:
            raise DataError(f"{self.name}: {len(self.captions)} captions for {n} images")
        if len(self.item_names) != n:
            raise DataError(f"{self.name}: {len(self.item_names)} item names for {n} images")
        self.split = np.asarray(self.split, dtype=np.uint8)
        if self.split.shape != (n,):
            raise DataError(f"{self.name}: split has shape {self.split.shape}, expected ({n},)")

    @property
    def n(self) -> int:
        return int(self.images.shape[0])

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    def fingerprint(self) -> str:
        """sha256 over the pixels, their shape, the labels and the captions.

        Recorded with every run so a result can be tied to the exact data. The
        name, item names and split are left out on purpose: renaming a folder
        does not change what a network learns from it. Every part is prefixed
        with a tag and its length so different contents cannot collide by
        concatenation.
        """
        h = hashlib.sha256()

        def part(tag: bytes, payload: bytes) -> None:
            h.update(tag + len(payload).to_bytes(8, "little") + payload)

        part(b"shape", repr(tuple(int(s) for s in self.images.shape)).encode())
        source = getattr(self.images, "source", None)
        if source is not None and hasattr(source, "sha256"):
            # Encoded items: the hash of each item's stored bytes, so a collection of
            # any size is fingerprinted without decoding it (or reading it twice).
            part(b"encoded", b"".join(source.sha256(self.images.positions(slice(None)))))
        elif source is not None:
            for chunk in range(0, self.n, 4096):
                for data in self.images.encoded(slice(chunk, chunk + 4096)):
                    part(b"item", hashlib.sha256(data).digest())
        else:
            # part(b"images", all the bytes), fed a chunk at a time: an array-like
            # (a memory map of 100,000 images) is never read whole.
            h.update(b"images" + (self.n * self.height * self.width * self.channels).to_bytes(8, "little"))
            for start in range(0, self.n, 4096):
                h.update(np.ascontiguousarray(self.images[start:start + 4096]).tobytes())
        if self.labels is not None:
            part(b"labels", np.ascontiguousarray(self.labels, dtype="<i8").tobytes())
        if self.captions is not None:
            h.update(b"captions")
            for c in self.captions:
                part(b"c", c.encode("utf-8"))
        return h.hexdigest()

    def subset(self, index: np.ndarray) -> ImageData:
        """The items at ``index`` (integer positions or a boolean mask).

        ``skipped`` and ``info`` describe the original load and are kept as is.
        """
        index = np.asarray(index)
        if index.dtype == bool:
            if index.shape != (self.n,):
                raise IndexError(f"boolean mask of shape {index.shape} for {self.n} items")
            index = np.flatnonzero(index)
        index = index.astype(np.int64, copy=False)
        return replace(
            self,
            images=self.images.take(index) if hasattr(self.images, "take") and not isinstance(
                self.images, np.ndarray) else self.images[index],
            labels=None if self.labels is None else self.labels[index],
            class_names=None if self.class_names is None else list(self.class_names),
            attributes={k: (ids[index], list(names)) for k, (ids, names) in self.attributes.items()},
            captions=None if self.captions is None else [self.captions[i] for i in index],
            item_names=[self.item_names[i] for i in index],
            split=self.split[index],
            skipped=list(self.skipped),
            info=dict(self.info),
        )

    def stats(self) -> dict[str, Any]:
        """A JSON-able summary for the data panel and the run record."""
        out: dict[str, Any] = {
            "name": self.name,
            "n": self.n,
            "size": [self.height, self.width],
            "channels": self.channels,
            "n_classes": None if self.class_names is None else len(self.class_names),
            "class_counts": None,
            "attributes": {},
            "n_captions": None if self.captions is None else sum(1 for c in self.captions if c),
            "n_skipped": len(self.skipped),
            "split": {"train": int(np.sum(self.split == TRAIN)), "test": int(np.sum(self.split == TEST))},
        }
        if self.labels is not None:
            out["class_counts"] = _counts(self.labels, self.class_names)
        for key, (ids, names) in self.attributes.items():
            out["attributes"][key] = _counts(ids, names)
        out.update(self.info)
        return out


def _counts(ids: np.ndarray, names: list[str] | None) -> dict[str, int]:
    ids = np.asarray(ids)
    ids = ids[ids >= 0]          # -1: no label
    k = int(ids.max()) + 1 if len(ids) else 0
    if names is not None:
        k = max(k, len(names))
    counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=k) if len(ids) else np.zeros(k, int)
    label = (lambda i: names[i] if names is not None and i < len(names) else str(i))
    return {label(i): int(c) for i, c in enumerate(counts)}


def stratified_split(labels: np.ndarray | None, n: int, seed: int = 0,
                     test_fraction: float = 0.2) -> np.ndarray:
    """A seeded train/test split (0/1 per item) for data sets without one.

    With labels, every class gets ``round(count * test_fraction)`` test items,
    so the test set has the same class balance as the whole; without labels a
    seeded random ``test_fraction`` of the items.
    """
    rng = np.random.default_rng(seed)
    split = np.zeros(n, dtype=np.uint8)
    groups = [np.arange(n)] if labels is None else [
        np.flatnonzero(labels == c) for c in np.unique(labels)]
    for members in groups:
        k = int(round(len(members) * test_fraction))
        split[rng.permutation(members)[:k]] = TEST
    return split


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a data set kind, enough to render a form field.

    ``type`` is ``int``, ``float``, ``str``, ``bool`` or ``pathlib.Path`` (a
    file or folder chooser). ``default=None`` with ``required=False`` means
    "optional, absent by default". ``min``/``max`` bound numbers.
    """

    name: str
    type: type
    default: Any
    help: str
    choices: tuple | None = None
    required: bool = False
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class DatasetKind:
    """A kind of image source. ``builtin`` kinds regenerate from their params
    alone (no user files), so a project can store just the params."""

    name: str
    title: str
    description: str
    params: list[ParamSpec]
    builtin: bool
    modality: str = "images"     # "text" kinds load a TextData (engine.data.text)


# The kinds and the module that loads each. Modules are imported on first use,
# so listing the kinds (the GUI's data menu) never pays for torchvision.
_LOADER_MODULES: dict[str, str] = {
    "digits": "engine.data.builtin",
    "shapes": "engine.data.shapes",
    "image-folder": "engine.data.folder",
    "mnist-idx": "engine.data.idx",
    "torchvision": "engine.data.tv",
    # "module:function" where one module loads several kinds.
    "text": "engine.data.text:load_files",
    "shapes-captions": "engine.data.text:load_shapes_captions",
    "text8": "engine.data.text:load_text8",
}

_SIZE = ParamSpec("size", int, 32, "Side of the square images in pixels.", min=4, max=512)

DATASET_KINDS: dict[str, DatasetKind] = {
    "digits": DatasetKind(
        "digits", "Handwritten digits (8×8)",
        "scikit-learn's 1,797 handwritten digits, 8×8 grayscale, labels 0–9. "
        "Tiny and instant: good for trying a method.",
        [], builtin=True),
    "shapes": DatasetKind(
        "shapes", "Shapes (built-in demo)",
        "Procedurally drawn coloured shapes on dark backgrounds, with shape, colour, "
        "size and position labels and a caption per image.",
        [ParamSpec("n", int, 2000, "Number of images.", min=1, max=1_000_000),
         replace(_SIZE, max=256),
         ParamSpec("seed", int, 0, "Random seed: the same seed draws the same images.", min=0)],
        builtin=True),
    "image-folder": DatasetKind(
        "image-folder", "Image folder or .zip",
        "Your own images from a folder or a .zip archive. Images in sub-folders are "
        "labelled by the sub-folder name; top-level train/ and test/ folders become the split. "
        "The project keeps a copy of each image (no bigger than store size), or with link only "
        "where the files are.",
        [ParamSpec("path", Path, None, "A folder of images or a .zip file.", required=True),
         _SIZE,
         ParamSpec("channels", str, "auto", "auto keeps grayscale data grayscale; rgb or gray forces one.",
                   choices=("auto", "rgb", "gray")),
         ParamSpec("captions", Path, None, "Optional CSV (file,caption) or JSONL "
                   '({"file": ..., "caption": ...}) file with captions.'),
         ParamSpec("limit", int, None, "Load at most this many images (a seeded sample "
                   "balanced over classes and splits).", min=1),
         ParamSpec("store_size", int, 256, "Files whose shorter side is larger are stored as a copy "
                   "of this size (JPEG, quality 90); smaller JPEG/PNG/WebP files are kept as they are. "
                   "Runs can use any image size up to it.", min=8, max=4096),
         ParamSpec("link", bool, False, "Keep only references (path, size, sha256) to the files "
                   "instead of a copy: for collections too big to copy. Moved or changed files "
                   "are reported, never used.")],
        builtin=False),
    "mnist-idx": DatasetKind(
        "mnist-idx", "IDX files (MNIST format)",
        "Images and labels in the IDX format used by MNIST and Fashion-MNIST (.gz is fine).",
        [ParamSpec("images", Path, None, "The IDX images file, e.g. train-images-idx3-ubyte.gz.",
                   required=True),
         ParamSpec("labels", Path, None, "The IDX labels file (optional)."),
         ParamSpec("test_last", int, 0, "Use the last K items as the test split (0: all train).",
                   min=0)],
        builtin=False),
    "torchvision": DatasetKind(
        "torchvision", "torchvision data set",
        "A standard data set downloaded by torchvision (needs internet the first time); "
        "its official train and test splits are kept.",
        [ParamSpec("name", str, "CIFAR10", "Which data set.",
                   choices=("CIFAR10", "CIFAR100", "MNIST", "FashionMNIST", "STL10")),
         ParamSpec("root", Path, Path("~/.cache/pretext/torchvision"),
                   "Folder where the files are downloaded and kept."),
         ParamSpec("download", bool, True, "Download the files if they are not in root.")],
        builtin=False),
    "text": DatasetKind(
        "text", "Text corpus (.txt, folder or .zip)",
        "A text corpus: a .txt file, a folder or a .zip of .txt files, one sentence or document "
        "per line (or free text with unit=sentence). UTF-8, or latin-1 when chosen.",
        [ParamSpec("path", Path, None, "A .txt file, a folder of .txt files or a .zip of them.", required=True),
         ParamSpec("encoding", str, "auto", "auto reads UTF-8 (or UTF-16 with a BOM) and stops at the first "
                   "invalid byte; latin-1 reads any byte.", choices=("auto", "utf-8", "latin-1")),
         ParamSpec("unit", str, "line", "line: one sentence per line; sentence: free text cut after . ! ?",
                   choices=("line", "sentence")),
         ParamSpec("lowercase", bool, True, "Lower-case every word."),
         ParamSpec("punctuation", str, "split", "split: punctuation marks become tokens; strip: dropped; "
                   "keep: split on spaces only (pre-tokenised text).", choices=("split", "strip", "keep")),
         ParamSpec("min_count", int, 1, "Drop words seen fewer times than this.", min=1),
         ParamSpec("max_vocab", int, 0, "Keep at most this many of the most frequent words (0: all).", min=0),
         ParamSpec("heldout", float, 0.02, "Fraction of sentences held out for evaluation (seeded).",
                   min=0.0, max=0.5),
         ParamSpec("seed", int, 0, "Seed of the held-out split.", min=0),
         ParamSpec("max_chars", int, 100_000, "Longest line or sentence accepted, in characters.", min=100)],
        builtin=False, modality="text"),
    "shapes-captions": DatasetKind(
        "shapes-captions", "Shapes captions (built-in text demo)",
        "The captions of the shapes data set (\"a small red triangle at the top left\"): a tiny corpus "
        "where neighbours and analogies of colours and shapes show up within seconds.",
        [ParamSpec("n", int, 2000, "Number of captions.", min=10, max=1_000_000),
         ParamSpec("seed", int, 0, "Random seed: the same seed writes the same captions.", min=0)],
        builtin=True, modality="text"),
    "text8": DatasetKind(
        "text8", "text8 (Wikipedia, 17 M words; downloaded)",
        "The first 10^8 bytes of English Wikipedia, cleaned to lower-case words (Mahoney), the "
        "classic word2vec corpus. Downloaded once (31 MB) when the machine has internet.",
        [ParamSpec("root", Path, Path("~/.cache/pretext/text8"), "Folder where text8.zip is kept."),
         ParamSpec("words_per_sentence", int, 1000, "text8 is one line: cut it into pieces of this "
                   "many words (gensim's Text8Corpus cuts at 10,000).", min=10, max=100_000),
         ParamSpec("max_words", int, 0, "Read only the first this many words (0: all 17 M).", min=0),
         ParamSpec("min_count", int, 5, "Drop words seen fewer times than this.", min=1),
         ParamSpec("heldout", float, 0.02, "Fraction of pieces held out for evaluation (seeded).",
                   min=0.0, max=0.5)],
        builtin=False, modality="text"),
}


def _coerce(kind: str, spec: ParamSpec, value: Any) -> Any:
    """Turn a form or command-line value into the parameter's type."""
    if value is None or (isinstance(value, str) and value.strip() == "" and spec.type is not str):
        if spec.required:
            raise DataError(f"{kind}: the parameter {spec.name!r} is required ({spec.help})")
        return None
    try:
        if spec.type is bool:
            if isinstance(value, str):
                low = value.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                value = low in ("1", "true", "yes", "on")
            elif not isinstance(value, (bool, np.bool_, int)):
                raise ValueError
            value = bool(value)
        elif spec.type is int:
            if isinstance(value, bool):
                raise ValueError
            number = float(value) if isinstance(value, str) else value
            if int(number) != number:
                raise ValueError
            value = int(number)
        elif spec.type is float:
            value = float(value)
        elif spec.type is Path:
            value = Path(value).expanduser()
        else:
            value = str(value)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{kind}: {spec.name}={value!r} is not a valid {spec.type.__name__}") from None
    if spec.choices is not None and value not in spec.choices:
        raise DataError(f"{kind}: {spec.name} must be one of {', '.join(map(str, spec.choices))}, "
                        f"not {value!r}")
    if spec.min is not None and value < spec.min:
        raise DataError(f"{kind}: {spec.name} must be at least {spec.min:g}, not {value}")
    if spec.max is not None and value > spec.max:
        raise DataError(f"{kind}: {spec.name} must be at most {spec.max:g}, not {value}")
    return value


def load_images(kind: str, progress: Progress | None = None, cancel: Cancel | None = None,
                **params: Any) -> ImageData:
    """Load an image data set of ``kind`` with ``params`` (see DATASET_KINDS).

    ``progress(done, total)`` is called now and then during long loads;
    ``cancel()`` is polled at the same points and returning True stops the load
    with :class:`DataCancelled` (a :class:`DataError` whose message is
    "cancelled"). Values may be given as strings (from a form or the CLI); they
    are converted and checked against the parameter specs first.
    """
    spec = DATASET_KINDS.get(kind)
    if spec is None:
        raise DataError(f"unknown data set kind {kind!r} (known: {', '.join(DATASET_KINDS)})")
    known = {p.name: p for p in spec.params}
    unknown = sorted(set(params) - set(known))
    if unknown:
        listed = ", ".join(known) or "none"
        raise DataError(f"{kind}: unknown parameter(s) {', '.join(unknown)} (known: {listed})")
    values = {name: _coerce(kind, p, params.get(name, p.default)) for name, p in known.items()}
    module_name, _, function = _LOADER_MODULES[kind].partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, function or "load")(progress=progress, cancel=cancel, **values)


def picture(images, i: int) -> np.ndarray:
    """Item ``i`` for a person to look at: stored images at their stored resolution (up to
    the import's store_size, decoded now), arrays as they are."""
    original = getattr(images, "original", None)
    return original(i) if original is not None else images[i]


def check_cancel(cancel: Cancel | None) -> None:
    """Raise :class:`DataCancelled` when the caller asked to stop."""
    if cancel is not None and cancel():
        raise DataCancelled()
