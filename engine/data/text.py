"""Text corpora: one in-memory type and the loaders that build it.

A corpus ends up as a :class:`TextData`: the original sentences as strings (one
per line, or per sentence of free text), a seeded train / held-out split per
sentence, and the tokenised corpus as a vocabulary (words sorted by frequency)
plus one flat ``int32`` array of word ids with sentence offsets into it. The
word-level methods (word2vec) train on the ids; subword methods (the masked
language model) tokenise ``sentences`` themselves.

Sources: a ``.txt`` file, a folder of them or a ``.zip`` of them (``text``),
and the built-in captions of the ``shapes`` data set (``shapes-captions``),
small but with visible colour and shape neighbours.

Reading is strict on purpose: UTF-8 (a BOM is fine, UTF-16 with a BOM too) or
a clear error naming the file and the byte offset, unless the user chooses
latin-1; binary files, empty files and runaway lines are errors too, so a
wrong file never trains silently on garbage.
"""
from __future__ import annotations

import codecs
import hashlib
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from engine.data import Cancel, DataError, Progress, check_cancel

TRAIN, HELDOUT = 0, 1
HELDOUT_BLOCK = 20     # consecutive sentences held out together (see heldout_blocks)
TEXT_SUFFIXES = (".txt", ".text")

# Words keep inner apostrophes and hyphens ("don't", "over-all"); every other
# non-space character that is not part of a word is a token of its own.
_WORD_OR_PUNCT = re.compile(r"\w+(?:['’\-]\w+)*|[^\w\s]")
_WORD = re.compile(r"\w+(?:['’\-]\w+)*")
# Free text: a sentence ends at . ! or ? (with closing quotes) followed by space.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+")


@dataclass(eq=False)  # compare by identity: field-wise == is ambiguous for arrays
class TextData:
    """A tokenised corpus with its original sentences.

    ``vocab`` lists the words sorted by descending ``counts`` (ties in order of
    first appearance), so id 0 is the most frequent word and "the top N words"
    are ``vocab[:N]``. ``tokens`` holds the ids of every kept token, sentence
    after sentence; sentence ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``.
    Words rarer than the import's ``min_count`` (or beyond ``max_vocab``) are
    left out of ``tokens``, as word2vec leaves them out. ``split`` is 0 (train)
    or 1 (held out) per sentence.
    """

    name: str
    sentences: list[str]
    split: np.ndarray
    vocab: list[str]
    counts: np.ndarray
    tokens: np.ndarray
    offsets: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    modality = "text"

    def __post_init__(self) -> None:
        n = len(self.sentences)
        self.split = np.asarray(self.split, dtype=np.uint8)
        self.counts = np.asarray(self.counts, dtype=np.int64)
        self.tokens = np.asarray(self.tokens, dtype=np.int32)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        if self.split.shape != (n,):
            raise DataError(f"{self.name}: split has shape {self.split.shape}, expected ({n},)")
        if self.offsets.shape != (n + 1,) or (n and (self.offsets[0] != 0 or self.offsets[-1] != len(self.tokens))):
            raise DataError(f"{self.name}: sentence offsets do not match {n} sentences of {len(self.tokens)} tokens")
        if len(self.counts) != len(self.vocab):
            raise DataError(f"{self.name}: {len(self.counts)} counts for {len(self.vocab)} words")
        if len(self.tokens) and (self.tokens.min() < 0 or self.tokens.max() >= len(self.vocab)):
            raise DataError(f"{self.name}: token ids outside the vocabulary")

    @property
    def n(self) -> int:
        """Items of the data set: its sentences."""
        return len(self.sentences)

    # What the map view and the exports read of an item: for text, the items
    # shown on a map are words (embedding ids are vocabulary indices).
    labels = None
    class_names = None
    captions = None

    @property
    def item_names(self) -> list[str]:
        return self.vocab

    @property
    def n_tokens(self) -> int:
        return int(len(self.tokens))

    def word_index(self) -> dict[str, int]:
        return {w: i for i, w in enumerate(self.vocab)}

    def sentence_ids(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]

    def fingerprint(self) -> str:
        """sha256 over the sentences, the vocabulary and the token ids (see ImageData)."""
        h = hashlib.sha256()

        def part(tag: bytes, payload: bytes) -> None:
            h.update(tag + len(payload).to_bytes(8, "little") + payload)

        part(b"text-sentences", "\n".join(self.sentences).encode("utf-8"))
        part(b"vocab", "\n".join(self.vocab).encode("utf-8"))
        part(b"tokens", np.ascontiguousarray(self.tokens, dtype="<i4").tobytes())
        part(b"offsets", np.ascontiguousarray(self.offsets, dtype="<i8").tobytes())
        return h.hexdigest()

    def stats(self) -> dict[str, Any]:
        """A JSON-able summary: tokens, types, sentence lengths, split."""
        lengths = np.diff(self.offsets)
        out: dict[str, Any] = {
            "name": self.name, "modality": "text", "n": self.n, "n_sentences": self.n,
            "n_tokens": self.n_tokens, "n_types": len(self.vocab),
            "sentence_length": {
                "mean": float(lengths.mean()) if len(lengths) else 0.0,
                "median": float(np.median(lengths)) if len(lengths) else 0.0,
                "p95": float(np.percentile(lengths, 95)) if len(lengths) else 0.0,
                "max": int(lengths.max()) if len(lengths) else 0},
            "top_words": list(self.vocab[:20]),
            "n_skipped": len(self.skipped),
            "split": {"train": int(np.sum(self.split == TRAIN)), "heldout": int(np.sum(self.split == HELDOUT))},
        }
        out.update(self.info)
        return out

    # Storage in a project file: arrays and string lists, nothing pickled.
    def payload(self) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
        arrays = {"tokens": self.tokens, "offsets": self.offsets, "counts": self.counts, "split": self.split}
        strings = {"sentences": list(self.sentences), "vocab": list(self.vocab), "name": [self.name]}
        return arrays, strings

    @classmethod
    def from_payload(cls, name: str, arrays: dict[str, np.ndarray], strings) -> "TextData":
        """Rebuild from :meth:`payload`; ``strings(key)`` returns a stored list."""
        missing = [k for k in ("tokens", "offsets", "counts", "split") if k not in arrays]
        if missing:
            raise DataError(f"text dataset {name!r} lacks stored {', '.join(missing)}")
        return cls(name=(strings("name") or [name])[0], sentences=strings("sentences"), split=arrays["split"],
                   vocab=strings("vocab"), counts=arrays["counts"], tokens=arrays["tokens"],
                   offsets=arrays["offsets"])


# --------------------------------------------------------------------------------------
# Tokenising


def tokenize(text: str, lowercase: bool = True, punctuation: str = "split") -> list[str]:
    """Words of one sentence.

    ``punctuation``: "split" makes each punctuation mark a token, "strip" drops
    it, "keep" only splits on white space (for pre-tokenised corpora such as
    Brown, where tokens are already separated by spaces).
    """
    if lowercase:
        text = text.lower()
    if punctuation == "keep":
        return text.split()
    if punctuation == "strip":
        return _WORD.findall(text)
    return _WORD_OR_PUNCT.findall(text)


def build_corpus(name: str, sentences: list[str], *, lowercase: bool = True, punctuation: str = "split",
                 min_count: int = 1, max_vocab: int = 0, heldout: float = 0.02, seed: int = 0,
                 skipped: list[tuple[str, str]] | None = None, info: dict | None = None,
                 cancel: Cancel | None = None) -> TextData:
    """Tokenise ``sentences`` and build the vocabulary and the id array."""
    token_lists: list[list[str]] = []
    counts: dict[str, int] = {}
    kept_sentences: list[str] = []
    for i, s in enumerate(sentences):
        if i % 20000 == 0:
            check_cancel(cancel)
        words = tokenize(s, lowercase, punctuation)
        if not words:
            continue
        kept_sentences.append(s)
        token_lists.append(words)
        for w in words:
            counts[w] = counts.get(w, 0) + 1
    if not token_lists:
        raise DataError(f"{name}: no words in the text (after tokenising with punctuation={punctuation})")
    # Sorted by count, ties in first-seen order (dicts keep insertion order, sorts are stable).
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    n_types_raw = len(ordered)
    ordered = [(w, c) for w, c in ordered if c >= min_count]
    if max_vocab:
        ordered = ordered[:max_vocab]
    if not ordered:
        raise DataError(f"{name}: no word occurs min_count={min_count} times")
    vocab = [w for w, _ in ordered]
    index = {w: i for i, w in enumerate(vocab)}
    ids: list[int] = []
    offsets = [0]
    for words in token_lists:
        ids.extend(index[w] for w in words if w in index)
        offsets.append(len(ids))
    n = len(kept_sentences)
    split = heldout_blocks(n, heldout, seed)
    raw_tokens = sum(counts.values())
    extra = dict(info or {})
    extra.update({"n_types_raw": n_types_raw, "n_tokens_raw": raw_tokens,
                  "n_tokens_dropped": raw_tokens - len(ids), "lowercase": lowercase,
                  "punctuation": punctuation, "min_count": min_count, "max_vocab": max_vocab})
    return TextData(name=name, sentences=kept_sentences, split=split, vocab=vocab,
                    counts=np.array([c for _, c in ordered], np.int64),
                    tokens=np.array(ids, np.int32), offsets=np.array(offsets, np.int64),
                    skipped=list(skipped or []), info=extra)


# --------------------------------------------------------------------------------------
# Reading files


def decode(raw: bytes, where: str, encoding: str = "auto") -> str:
    """Bytes of a text file → str, or a DataError a person can act on."""
    if not raw.strip():
        raise DataError(f"{where}: the file is empty")
    if encoding == "latin-1":
        return raw.decode("latin-1")
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as e:
            raise DataError(f"{where}: not valid UTF-16 at byte {e.start}") from None
    nul = raw.find(b"\x00", 0, 1 << 16)
    if nul >= 0:
        raise DataError(f"{where}: looks like a binary file, not text (a NUL byte at byte {nul})")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        bad = raw[e.start:e.start + 4].hex(" ")
        raise DataError(f"{where}: not valid UTF-8 at byte {e.start} (bytes {bad}); "
                        "if the file is Latin-1 / Windows-1252, import it with encoding=latin-1") from None


def heldout_blocks(n: int, fraction: float, seed: int, block: int = HELDOUT_BLOCK) -> np.ndarray:
    """A per-sentence split (0 train, 1 held out) holding out ``round(n · fraction)``
    sentences in seeded runs of ``block`` consecutive sentences, not one by one:
    a held-out sentence's neighbour is then usually held out too, which the
    masked language model's next-sentence test needs, and held-out text is
    whole passages the model never read around."""
    split = np.zeros(n, np.uint8)
    k = min(int(round(n * fraction)), n - 1)
    if k <= 0:
        return split
    starts = np.random.default_rng(seed).permutation(np.arange(0, n, block))
    chosen = 0
    for start in starts:
        take = min(block, n - start, k - chosen)
        split[start:start + take] = HELDOUT
        chosen += take
        if chosen == k:
            break
    return split


def split_sentences(text: str, where: str, unit: str = "line", max_chars: int = 100_000) -> list[str]:
    """One string per non-empty line (``unit="line"``), or per sentence of free
    text (``"sentence"``: lines of a paragraph are joined, then cut after . ! ?)."""
    if unit == "line":
        parts = [s.strip() for s in text.splitlines()]
    else:
        parts = []
        for para in re.split(r"\n\s*\n", text):
            flat = " ".join(para.split())
            parts.extend(p.strip() for p in _SENTENCE_END.split(flat))
    out = [p for p in parts if p]
    for i, p in enumerate(out):
        if len(p) > max_chars:
            what = "line" if unit == "line" else "sentence"
            raise DataError(f"{where}: {what} {i + 1} is {len(p):,} characters long (at most {max_chars:,}); "
                            + ("for free text without line breaks use unit=sentence, or break the text into lines"
                               if unit == "line" else "break the text into lines or sentences"))
    return out


def _text_files(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every text file at ``path``: a file, a folder or a .zip."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise DataError(f"{path}: no .txt files in this folder")
        for p in files:
            yield str(p.relative_to(path)), p.read_bytes()
    elif path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as z:
                names = sorted(i.filename for i in z.infolist() if not i.is_dir()
                               and i.filename.lower().endswith(TEXT_SUFFIXES)
                               and not i.filename.startswith("__MACOSX/"))
                if not names:
                    raise DataError(f"{path}: no .txt files in this archive")
                for name in names:
                    yield f"{path.name}:{name}", z.read(name)
        except zipfile.BadZipFile as e:
            raise DataError(f"{path}: not a readable .zip file ({e})") from None
    elif path.is_file():
        yield path.name, path.read_bytes()
    else:
        raise DataError(f"{path}: no such file or folder")


def load_files(path: Path, encoding: str = "auto", unit: str = "line", lowercase: bool = True,
               punctuation: str = "split", min_count: int = 1, max_vocab: int = 0, heldout: float = 0.02,
               seed: int = 0, max_chars: int = 100_000, progress: Progress | None = None,
               cancel: Cancel | None = None) -> TextData:
    """The ``text`` kind: a .txt file, a folder of them or a .zip of them."""
    path = Path(path).expanduser()
    sentences: list[str] = []
    skipped: list[tuple[str, str]] = []
    n_files = 0
    # A single file's problems are errors; one bad file among many is skipped and listed.
    single = path.is_file() and path.suffix.lower() != ".zip"
    files = list(_text_files(path))
    for i, (name, raw) in enumerate(files):
        check_cancel(cancel)
        where = str(path) if single else f"{path}/{name}" if path.is_dir() else f"{path.parent}/{name}"
        try:
            text = decode(raw, where, encoding)
            sentences.extend(split_sentences(text, where, unit, max_chars))
            n_files += 1
        except DataError as e:
            if single:
                raise
            skipped.append((name, str(e).split(": ", 1)[-1]))
        if progress is not None:
            progress(i + 1, len(files))
    if not sentences:
        why = "; ".join(f"{n}: {w}" for n, w in skipped[:3])
        raise DataError(f"{path}: no readable text" + (f" ({why})" if why else ""))
    name = path.stem if path.suffix else path.name
    return build_corpus(name, sentences, lowercase=lowercase, punctuation=punctuation, min_count=min_count,
                        max_vocab=max_vocab, heldout=heldout, seed=seed, skipped=skipped,
                        info={"n_files": n_files, "source": str(path), "unit": unit}, cancel=cancel)


def load_shapes_captions(n: int = 2000, seed: int = 0, progress: Progress | None = None,
                         cancel: Cancel | None = None) -> TextData:
    """The ``shapes-captions`` kind: the captions the ``shapes`` data set would
    draw for (n, seed), without drawing the images."""
    from engine.data.shapes import COLOURS, POSITIONS, SHAPES, SIZES, TEMPLATES, WHERE, layout
    check_cancel(cancel)
    lay = layout(n, 32, seed)          # the captions do not depend on the image size
    colours = list(COLOURS)
    captions = [TEMPLATES[t].format(shape=SHAPES[a], colour=colours[c], size=SIZES[z],
                                    where=WHERE[POSITIONS[p]])
                for t, a, c, z, p in zip(lay.template, lay.shape, lay.colour, lay.size, lay.position)]
    if progress is not None:
        progress(n, n)
    return build_corpus("shapes-captions", captions, lowercase=True, punctuation="strip", seed=seed,
                        heldout=0.05, info={"source": f"shapes n={n} seed={seed}"}, cancel=cancel)


TEXT8_URL = "http://mattmahoney.net/dc/text8.zip"


def load_text8(root: Path = Path("~/.cache/pretext/text8"), words_per_sentence: int = 1000,
               max_words: int = 0, min_count: int = 5, heldout: float = 0.02,
               progress: Progress | None = None, cancel: Cancel | None = None,
               url: str = TEXT8_URL) -> TextData:
    """The ``text8`` kind: downloaded once into ``root``, then read from there."""
    import urllib.request
    root = Path(root).expanduser()
    archive = root / "text8.zip"
    if not archive.is_file():
        root.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(".part")
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                while chunk := response.read(1 << 20):
                    check_cancel(cancel)
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None and total:
                        progress(done, total)
        except DataError:
            partial.unlink(missing_ok=True)
            raise
        except OSError as e:
            partial.unlink(missing_ok=True)
            raise DataError(f"could not download text8 from {url} to {root}: no internet connection? "
                            f"({' '.join(str(e).split())[:200]}). Put text8.zip there by hand, or "
                            "import a text file instead.") from None
        partial.replace(archive)      # only a whole download counts as there
    try:
        with zipfile.ZipFile(archive) as z:
            words = z.read("text8").decode("ascii").split()
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as e:
        raise DataError(f"{archive}: not the text8 archive ({e}); delete it to download again") from None
    if max_words:
        words = words[:max_words]
    sentences = [" ".join(words[i:i + words_per_sentence]) for i in range(0, len(words), words_per_sentence)]
    return build_corpus("text8", sentences, lowercase=False, punctuation="keep", min_count=min_count,
                        heldout=heldout, info={"source": url}, cancel=cancel)
