"""Queries and evaluations of word vectors.

Queries (all exclude the query words, as word2vec does): nearest neighbours
by cosine, analogies a : b :: c : ? by 3CosAdd (argmax cos(x, b − a + c) over
unit vectors) or 3CosMul (Levy & Goldberg 2014), odd-one-out, the vector of a
phrase. Evaluations follow gensim's ``evaluate_word_analogies`` and
``evaluate_word_pairs``: case-insensitive, analogies restricted to the 30,000
most frequent words (a question with a word outside them does not count),
Spearman correlation of cosine with the human scores over the pairs in the
vocabulary, plus the rate of pairs that are not.

Scores. Trained word vectors share a large common direction (and a few
dominant ones), so on a small corpus every raw cosine can be 0.99: the ranking
is right but the numbers say nothing. The queries can score on post-processed
vectors instead (``scores=``): "centred" subtracts the mean vector, "abtt"
("all-but-the-top", Mu & Viswanath, ICLR 2018) also removes the projections on
the top D principal directions (D = dim/100 rounded, at least 1). The
evaluations stay on raw cosines, as gensim computes them.

The files: ``questions-words.txt`` (": section" lines, then "a b c d"), and
tab-separated ``word1 word2 score`` with "#" comment lines (wordsim353.tsv,
simlex999.txt).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


#: How the queries score words: (label, explanation), by the name the code and the CLI use.
SCORE_MODES = {
    "raw": ("raw cosine", "the cosine of the trained vectors as they are"),
    "centred": ("centred cosine", "the cosine after subtracting the mean vector of the vocabulary"),
    "abtt": ("all-but-the-top", "the cosine after subtracting the mean vector and removing the top "
                                "principal direction(s) all words share (Mu & Viswanath 2018)"),
}
#: The default for people reading scores (the app, the CLI). Centring removes only the
#: one direction every word shares, so it keeps every learned distinction yet spreads
#: the scores; all-but-the-top also drops the strongest principal direction, which on a
#: small vocabulary (a few dozen words, D = 1) can be a real distinction (colours vs shapes).
DEFAULT_SCORES = "centred"


def abtt_components(dim: int) -> int:
    """How many principal directions all-but-the-top removes: D ≈ dim / 100, at least 1."""
    return max(1, round(dim / 100))


def remove_common_directions(vectors: np.ndarray, mode: str = "centred",
                             n_components: int | None = None) -> np.ndarray:
    """The vectors with their common direction(s) removed: ``mode`` "raw" (unchanged),
    "centred" (minus the mean vector) or "abtt" (all-but-the-top: minus the mean, then
    minus the projections on the top ``n_components`` principal directions, by default
    :func:`abtt_components`). Returns float32 (n, d)."""
    if mode not in SCORE_MODES:
        raise ValueError(f"scores must be one of {', '.join(SCORE_MODES)}, not {mode!r}")
    x = np.asarray(vectors, dtype=np.float64)
    if mode == "raw" or len(x) == 0:
        return x.astype(np.float32)
    x = x - x.mean(axis=0)
    if mode == "abtt":
        d = abtt_components(x.shape[1]) if n_components is None else int(n_components)
        d = min(d, x.shape[1])
        # Principal directions from the d×d scatter matrix (cheap for any vocabulary size).
        eigenvalues, eigenvectors = np.linalg.eigh(x.T @ x)
        top = eigenvectors[:, np.argsort(eigenvalues)[::-1][:d]]      # (dim, d)
        x = x - (x @ top) @ top.T
    return x.astype(np.float32)


class WordVectors:
    """Words with their vectors, most frequent first (the order the restrict uses)."""

    def __init__(self, words: list[str], vectors: np.ndarray, counts: np.ndarray | None = None):
        if len(words) != len(vectors):
            raise ValueError(f"{len(words)} words for {len(vectors)} vectors")
        self.words = list(words)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.counts = None if counts is None else np.asarray(counts)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.unit = _unit_rows(self.vectors)
        self._units = {"raw": self.unit}          # unit vectors per score mode, made on first use
        self._baselines: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def _ids(self, words) -> list[int]:
        missing = [w for w in words if w not in self.index]
        if missing:
            raise KeyError(f"not in the vocabulary: {', '.join(missing)}")
        return [self.index[w] for w in words]

    def units(self, scores: str = "raw") -> np.ndarray:
        """Unit vectors after :func:`remove_common_directions` (``scores``: a key of SCORE_MODES)."""
        if scores not in self._units:
            self._units[scores] = _unit_rows(remove_common_directions(self.vectors, scores))
        return self._units[scores]

    def random_pair_score(self, scores: str = "raw") -> float:
        """The mean cosine of two different words, under ``scores``: what "unrelated" scores.

        Exact and cheap: the sum over all pairs of u_i·u_j is ‖Σu‖² − n for unit u."""
        if scores not in self._baselines:
            u, n = self.units(scores), len(self.words)
            total = float(np.square(u.astype(np.float64).sum(0)).sum())
            self._baselines[scores] = (total - n) / (n * (n - 1)) if n > 1 else float("nan")
        return self._baselines[scores]

    def _top(self, scores: np.ndarray, exclude: list[int], k: int) -> list[tuple[str, float]]:
        scores = scores.copy()
        scores[exclude] = -np.inf
        k = min(k, len(scores) - len(set(exclude)))
        best = np.argpartition(-scores, k - 1)[:k] if k > 0 else np.zeros(0, int)
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.words[i], float(scores[i])) for i in best]

    def neighbours(self, word: str, k: int = 10, scores: str = "raw") -> list[tuple[str, float]]:
        """The k words of largest cosine to ``word`` (itself excluded), on the vectors of ``scores``."""
        (i,) = self._ids([word])
        u = self.units(scores)
        return self._top(u @ u[i], [i], k)

    def analogy(self, a: str, b: str, c: str, k: int = 5, method: str = "add",
                scores: str = "raw") -> list[tuple[str, float]]:
        """a : b :: c : ?  (king − man + woman: analogy("man", "king", "woman"))."""
        ia, ib, ic = self._ids([a, b, c])
        u = self.units(scores)
        if method == "add":
            q = u[ib] - u[ia] + u[ic]
            values = u @ (q / max(np.linalg.norm(q), 1e-12))
        elif method == "mul":
            ca, cb, cc = ((u @ u[i] + 1) / 2 for i in (ia, ib, ic))
            values = cb * cc / (ca + 1e-3)
        else:
            raise ValueError(f"analogy method must be 'add' or 'mul', not {method!r}")
        return self._top(values, [ia, ib, ic], k)

    def odd_one_out(self, words: list[str], scores: str = "raw") -> str:
        """The word least similar to the mean of the others' unit vectors (gensim's doesnt_match)."""
        ids = self._ids(words)
        if len(ids) < 3:
            raise ValueError("odd-one-out needs at least three words")
        u = self.units(scores)[ids]
        mean = u.mean(0)
        mean /= max(np.linalg.norm(mean), 1e-12)
        return words[int(np.argmin(u @ mean))]

    def phrase_vector(self, phrase: str | list[str], scores: str = "raw") -> np.ndarray:
        """Mean unit vector of the phrase's known words (unknown words are skipped)."""
        words = phrase.split() if isinstance(phrase, str) else list(phrase)
        ids = [self.index[w] for w in words if w in self.index]
        if not ids:
            raise KeyError(f"no word of {' '.join(words)!r} is in the vocabulary")
        v = self.units(scores)[ids].mean(0)
        return v / max(np.linalg.norm(v), 1e-12)

    def phrase_neighbours(self, phrase: str | list[str], k: int = 10,
                          scores: str = "raw") -> list[tuple[str, float]]:
        words = phrase.split() if isinstance(phrase, str) else list(phrase)
        v = self.phrase_vector(words, scores)
        return self._top(self.units(scores) @ v, [self.index[w] for w in words if w in self.index], k)

    def similarity(self, a: str, b: str) -> float:
        ia, ib = self._ids([a, b])
        return float(self.unit[ia] @ self.unit[ib])

    # gensim's case-insensitive view: the most frequent spelling of each upper-cased word.
    def _folded(self, restrict: int) -> tuple[dict[str, int], np.ndarray]:
        n = min(restrict, len(self.words)) if restrict else len(self.words)
        folded: dict[str, int] = {}
        for i in range(n - 1, -1, -1):
            folded[self.words[i].upper()] = i
        group = np.array([folded[self.words[i].upper()] for i in range(n)], np.int64)
        return folded, group


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------------------
# Files


def read_analogies(path: str | Path) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """[(section, [(a, b, c, d), ...]), ...] from a questions-words.txt file."""
    sections: list[tuple[str, list]] = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(":"):
            sections.append((line[1:].strip(), []))
            continue
        parts = line.split()
        if len(parts) != 4:
            raise ValueError(f"{path}:{n}: expected four words, got {line!r}")
        if not sections:
            sections.append(("analogies", []))
        sections[-1][1].append(tuple(parts))
    return sections


def read_pairs(path: str | Path) -> list[tuple[str, str, float]]:
    """[(word1, word2, score)] from a tab-separated similarity file ("#" comments)."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        try:
            out.append((parts[0].strip(), parts[1].strip(), float(parts[2])))
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{n}: expected 'word1<TAB>word2<TAB>score', got {line!r}") from None
    return out


# --------------------------------------------------------------------------------------
# Evaluations


def evaluate_analogies(wv: WordVectors, sections, restrict: int = 30000, batch: int = 256) -> dict:
    """3CosAdd and 3CosMul accuracy over the questions whose four words are among the
    ``restrict`` most frequent (case-insensitive); per section and overall.

    Returns {"accuracy", "accuracy_cosmul", "n_correct", "n_questions" (in vocabulary),
    "n_total", "sections": {name: {"accuracy", "n_questions"}}}."""
    folded, group = wv._folded(restrict)
    n = len(group)
    u = wv.unit[:n]
    out = {"sections": {}}
    all_add, all_mul, total = [], [], 0
    for name, questions in sections:
        total += len(questions)
        rows = [[folded.get(w.upper(), -1) for w in q] for q in questions]
        q = np.array([r for r in rows if min(r) >= 0], np.int64).reshape(-1, 4)
        add_ok = np.zeros(len(q), bool)
        mul_ok = np.zeros(len(q), bool)
        for s in range(0, len(q), batch):
            a, b, c, d = q[s:s + batch].T
            ca, cb, cc = u[a] @ u.T, u[b] @ u.T, u[c] @ u.T
            # The input words (in any spelling) are never an answer.
            ga, gb, gc = group[a][:, None], group[b][:, None], group[c][:, None]
            banned = (group[None, :] == ga) | (group[None, :] == gb) | (group[None, :] == gc)
            add = cb - ca + cc        # ∝ cos(x, b − a + c) for unit x
            add[banned] = -np.inf
            mul = ((cb + 1) / 2) * ((cc + 1) / 2) / ((ca + 1) / 2 + 1e-3)
            mul[banned] = -np.inf
            add_ok[s:s + batch] = group[np.argmax(add, 1)] == group[d]
            mul_ok[s:s + batch] = group[np.argmax(mul, 1)] == group[d]
        all_add.append(add_ok)
        all_mul.append(mul_ok)
        out["sections"][name] = {"accuracy": float(add_ok.mean()) if len(q) else float("nan"),
                                 "n_questions": int(len(q))}
    add_ok = np.concatenate(all_add) if all_add else np.zeros(0, bool)
    mul_ok = np.concatenate(all_mul) if all_mul else np.zeros(0, bool)
    out.update({"accuracy": float(add_ok.mean()) if len(add_ok) else float("nan"),
                "accuracy_cosmul": float(mul_ok.mean()) if len(mul_ok) else float("nan"),
                "n_correct": int(add_ok.sum()), "n_questions": int(len(add_ok)), "n_total": int(total)})
    return out


def evaluate_similarity(wv: WordVectors, pairs, restrict: int = 0) -> dict:
    """Spearman ρ between cosine and the human scores over the pairs in the
    vocabulary (case-insensitive), and the fraction of pairs that were not."""
    from scipy.stats import spearmanr
    folded, _ = wv._folded(restrict)
    ours, theirs = [], []
    for a, b, score in pairs:
        ia, ib = folded.get(a.upper()), folded.get(b.upper())
        if ia is None or ib is None:
            continue
        ours.append(float(wv.unit[ia] @ wv.unit[ib]))
        theirs.append(score)
    rho = float(spearmanr(ours, theirs).statistic) if len(ours) > 2 else float("nan")
    return {"spearman": rho, "oov": 1 - len(ours) / max(1, len(pairs)), "n_pairs": len(ours)}


def category_purity(wv: WordVectors, groups: dict[str, list[str]]) -> float:
    """Fraction of the listed words whose nearest neighbour is in the same group
    (a built-in check for small corpora such as the shapes captions)."""
    hits, n = 0, 0
    for members in groups.values():
        present = [w for w in members if w in wv]
        for w in present:
            n += 1
            hits += wv.neighbours(w, 1)[0][0] in present
    return hits / n if n else float("nan")


# --------------------------------------------------------------------------------------
# The word2vec file formats (the C tool's and gensim's)


def save_word2vec(path: str | Path, words: list[str], vectors: np.ndarray, binary: bool = False) -> Path:
    """Write "V D" then one word per line: its vector as text, or as raw float32 (binary)."""
    path = Path(path)
    vectors = np.asarray(vectors, dtype="<f4")
    for w in words:
        if not w or any(ch.isspace() for ch in w):
            raise ValueError(f"word {w!r} cannot be written in the word2vec format (white space)")
    with open(path, "wb") as f:
        f.write(f"{len(words)} {vectors.shape[1]}\n".encode())
        for w, v in zip(words, vectors):
            if binary:
                f.write(w.encode("utf-8") + b" " + v.tobytes() + b"\n")
            else:
                f.write((w + " " + " ".join(f"{x:.6g}" for x in v) + "\n").encode("utf-8"))
    return path


def load_word2vec(path: str | Path, binary: bool | None = None) -> tuple[list[str], np.ndarray]:
    """Read the word2vec text or binary format; ``binary=None`` guesses from the content."""
    data = Path(path).read_bytes()
    head, _, rest = data.partition(b"\n")
    try:
        n, dim = (int(x) for x in head.split())
    except ValueError:
        raise ValueError(f"{path}: not a word2vec file (first line {head[:60]!r})") from None
    if binary is None:
        binary = not _looks_textual(rest[:4096])
    words, vectors = [], np.zeros((n, dim), np.float32)
    pos = 0
    if binary:
        for i in range(n):
            space = rest.index(b" ", pos)
            words.append(rest[pos:space].decode("utf-8").lstrip("\n"))
            start = space + 1
            vectors[i] = np.frombuffer(rest, "<f4", dim, start)
            pos = start + 4 * dim
            if pos < len(rest) and rest[pos:pos + 1] == b"\n":
                pos += 1
    else:
        lines = rest.decode("utf-8").splitlines()
        for i in range(n):
            parts = lines[i].rstrip().split(" ")
            words.append(parts[0])
            vectors[i] = np.array(parts[1:1 + dim], np.float32)
    return words, vectors


def _looks_textual(sample: bytes) -> bool:
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(sample) - 4:       # a cut multi-byte character at the end is fine
            return False
    return all(b >= 32 or b in (9, 10, 13) for b in sample)
