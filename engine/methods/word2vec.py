"""word2vec: skip-gram and CBOW with negative sampling (or a full softmax).

Skip-gram predicts each word of a context window from the centre word's input
vector; CBOW predicts the centre word from the mean (or sum) of the context's
input vectors. The exact objective is a softmax over the vocabulary,

    −log p(w_O | w_I) = −f_O + log Σ_l exp f_l,   f_l = u_lᵀ v_I,

which costs O(V) per pair, so word2vec approximates it with negative sampling:

    −log σ(u_Oᵀ v_I) − Σ_{k noise words} log σ(−u_kᵀ v_I),  noise ~ unigram^0.75.

Frequent words are subsampled: a word of count c is kept with probability
(√(c / (s·T)) + 1) · s·T / c (s = ``sample``, T = training words), and the
window is shrunk uniformly at random per centre word, both as in the
original C tool. The learning rate falls linearly from ``lr`` to ``min_lr``
over the whole run.

The CPU path is a numba kernel that releases the GIL; the corpus is cut into
steps of ``words_per_step`` words and each step into one contiguous block of
sentences per thread, which update the shared matrices without locks
(Hogwild, like the C tool and gensim). Every random draw comes from a
generator seeded with (seed, step, thread), so one thread gives the same
vectors on every run, and a resumed run the same as an uninterrupted one.
The torch GPU path is not written yet: word2vec trains on the CPU.

Mikolov, Chen, Corrado, Dean 2013, "Efficient Estimation of Word Representations
in Vector Space"; Mikolov, Sutskever, Chen, Corrado, Dean 2013, "Distributed
Representations of Words and Phrases and their Compositionality".
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..config import ConfigError, param
from ..maps import numba_cache_dir
from .base import MethodCard, TextMethod

numba_cache_dir()            # before numba is imported: compiled kernels are cached on disk
import numba  # noqa: E402

MAX_EXP = 6.0
TABLE_SIZE = 1000
MAX_SENTENCE = 10000          # longer sentences are cut, as gensim does
SOFTMAX_MAX_VOCAB = 20000     # the full softmax costs O(V) per pair

_LCG_MUL = np.uint64(25214903917)   # the C tool's linear congruential generator
_LCG_ADD = np.uint64(11)
_SHIFT = np.uint64(16)
_MASK24 = np.uint64(0xFFFFFF)


def _tables() -> tuple[np.ndarray, np.ndarray]:
    """σ(x) and log σ(x) at TABLE_SIZE points of [−MAX_EXP, MAX_EXP)."""
    x = (np.arange(TABLE_SIZE) / TABLE_SIZE * 2 - 1) * MAX_EXP
    sig = 1 / (1 + np.exp(-x))
    return sig.astype(np.float32), np.log(sig).astype(np.float32)


@dataclass
class Word2VecConfig:
    arch: str = param("skipgram", "skipgram predicts the context from the word; cbow the word from "
                      "its context", choices=("skipgram", "cbow"))
    dim: int = param(100, "Vector size", min=2, max=2048)
    window: int = param(5, "Largest distance between the word and a context word (shrunk at random "
                        "per word, as in word2vec)", min=1, max=100)
    objective: str = param("negative", "negative sampling, or the exact softmax over the vocabulary "
                           f"(small vocabularies only, at most {SOFTMAX_MAX_VOCAB:,} words)",
                           choices=("negative", "softmax"))
    negative: int = param(5, "Noise words per positive pair (negative sampling)", min=1, max=100)
    noise_power: float = param(0.75, "Noise distribution: unigram counts to this power", min=0.0, max=1.0,
                               advanced=True)
    cbow_mean: bool = param(True, "CBOW: mean of the context vectors (otherwise their sum)")
    sample: float = param(1e-3, "Subsampling threshold of frequent words (0: off)", min=0.0, max=1.0)
    min_count: int = param(5, "Ignore words seen fewer times than this in the training sentences",
                           min=1, max=10**9)
    max_vocab: int = param(0, "Keep at most this many of the most frequent words (0: all)", min=0,
                           max=10**8, advanced=True)
    min_lr: float = param(1e-4, "The learning rate falls linearly from lr to this", min=0.0, max=1.0,
                          advanced=True)
    words_per_step: int = param(50000, "Words per training step (the unit of progress, stop and "
                                "checkpoint)", min=100, max=10**8, advanced=True)
    threads: int = param(0, "CPU threads (0: all cores; 1 is deterministic)", min=0, max=256)
    top_n: int = param(10000, "Most frequent words saved as the run's embeddings (for the map)",
                       min=10, max=10**7)
    analogies: str = param("", "Analogy file evaluated every epoch (questions-words.txt format); "
                           "empty: none")
    similarity: str = param("", "Word-similarity files evaluated every epoch (wordsim353.tsv / "
                            "simlex999.txt format), comma-separated; empty: none")

    def __post_init__(self):
        if self.objective == "negative" and self.negative < 1:
            raise ConfigError({"negative": "needs at least one noise word"})


# --------------------------------------------------------------------------------------
# The vocabulary and the sampling distributions


def build_vocab(counts_per_id: np.ndarray, min_count: int, max_vocab: int = 0) -> np.ndarray:
    """Dataset word ids kept by the model, most frequent first (ties by id)."""
    keep = np.flatnonzero(counts_per_id >= min_count)
    order = np.argsort(-counts_per_id[keep], kind="stable")
    kept = keep[order]
    return kept[:max_vocab] if max_vocab else kept


def keep_probabilities(counts: np.ndarray, sample: float) -> np.ndarray:
    """P(keep) per word: (√(c/(s·T)) + 1)·(s·T)/c capped at 1, T the total count."""
    counts = np.asarray(counts, dtype=np.float64)
    if sample <= 0:
        return np.ones(len(counts), np.float32)
    threshold = sample * counts.sum()
    p = (np.sqrt(counts / threshold) + 1) * threshold / np.maximum(counts, 1)
    return np.minimum(p, 1.0).astype(np.float32)


def noise_distribution(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """P(noise word) ∝ count^power."""
    w = np.asarray(counts, dtype=np.float64) ** power
    return w / w.sum()


def alias_table(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias method: draw from ``p`` with one uniform index and one coin."""
    n = len(p)
    scaled = np.asarray(p, np.float64) * n
    prob = np.zeros(n, np.float64)
    alias = np.zeros(n, np.int32)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        prob[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    for i in small + large:          # what is left is 1 up to rounding
        prob[i], alias[i] = 1.0, i
    return prob.astype(np.float32), alias


# --------------------------------------------------------------------------------------
# The numba kernels


@numba.njit(inline="always")
def _next(r):
    return r * _LCG_MUL + _LCG_ADD


@numba.njit(inline="always")
def _uniform(r):
    return np.float32(((r >> _SHIFT) & _MASK24)) / np.float32(16777216.0)


@numba.njit(inline="always")
def _below(r, n):
    """An integer uniform in [0, n < 2³²) from the state's top 32 bits (an LCG's best):
    a multiply and a shift (Lemire) rather than a 64-bit division, which costs more
    than the rest of a noise draw."""
    # np.uint64(r): a state handed back through Python comes back as int64.
    return np.int64(((np.uint64(r) >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32))


@numba.njit(nogil=True, cache=True, fastmath=True)
def _sample_noise(r, prob, alias):
    r = _next(r)
    i = _below(r, len(prob))
    r = _next(r)
    if _uniform(r) >= prob[i]:
        i = alias[i]
    return r, i


@numba.njit(nogil=True, cache=True)
def subsample(tokens, start, stop, keep, sen, r):
    """Copy the kept words of tokens[start:stop] into ``sen``: unknown words (−1)
    always go, word w stays with probability keep[w]. Returns (count, r)."""
    n = 0
    for t in range(start, stop):
        w = tokens[t]
        if w < 0:
            continue
        if keep[w] < 1.0:
            r = _next(r)
            if keep[w] < _uniform(r):
                continue
        sen[n] = w
        n += 1
    return n, r


@numba.njit(nogil=True, cache=True)
def window_span(pos, n, window, r):
    """The context positions [lo, hi) around ``pos``: the window shrunk by a uniform
    0..window−1, so distance d is used with probability (window − d + 1) / window."""
    r = _next(r)
    shrink = _below(r, window)
    return max(0, pos - window + shrink), min(n, pos + window + 1 - shrink), r


@numba.njit(nogil=True, cache=True, fastmath=True)
def _predict(h, target_word, out, lr, negative, softmax, prob, alias, sig, logsig, neu1e, scores, r):
    """One prediction of ``target_word`` from hidden vector ``h``: updates the output
    vectors in place, adds the gradient for ``h`` to ``neu1e``; returns (loss, r)."""
    dim = h.shape[0]
    loss = 0.0
    if softmax:
        # Exact: p_l = softmax(f)_l, gradient (1[l = O] − p_l) for every output word.
        vocab = out.shape[0]
        top = -1e30
        for l in range(vocab):
            f = np.float32(0.0)
            for d in range(dim):
                f += h[d] * out[l, d]
            scores[l] = f
            if f > top:
                top = f
        total = 0.0
        for l in range(vocab):
            scores[l] = math.exp(scores[l] - top)
            total += scores[l]
        loss = -math.log(max(scores[target_word] / total, 1e-30))
        for l in range(vocab):
            g = np.float32(((1.0 if l == target_word else 0.0) - scores[l] / total) * lr)
            for d in range(dim):
                neu1e[d] += g * out[l, d]
                out[l, d] += g * h[d]
        return loss, r
    for k in range(negative + 1):
        if k == 0:
            target = target_word
            label = np.float32(1.0)
        else:
            r, target = _sample_noise(r, prob, alias)
            if target == target_word:
                continue
            label = np.float32(0.0)
        f = np.float32(0.0)
        for d in range(dim):
            f += h[d] * out[target, d]
        # As the C tool: saturated σ outside ±MAX_EXP, a table inside.
        if f > MAX_EXP:
            g = (label - np.float32(1.0)) * lr
            loss += 0.0 if label > 0 else f
        elif f < -MAX_EXP:
            g = label * lr
            loss += -f if label > 0 else 0.0
        else:
            j = int((f + MAX_EXP) * (TABLE_SIZE / MAX_EXP / 2))
            g = (label - sig[j]) * lr
            loss -= logsig[j] if label > 0 else logsig[TABLE_SIZE - 1 - j]
        for d in range(dim):
            neu1e[d] += g * out[target, d]
            out[target, d] += g * h[d]
    return loss, r


@numba.njit(nogil=True, cache=True, fastmath=True)
def train_block(tokens, offsets, s_begin, s_end, syn0, out, keep, prob, alias, sig, logsig,
                skipgram, cbow_mean, window, negative, softmax, lr0, lr1, seed):
    """Train on sentences [s_begin, s_end): returns (loss sum, predictions, raw words).

    ``tokens`` holds model word ids, −1 for words outside the vocabulary (dropped
    before the window is laid, as word2vec does). The learning rate moves
    linearly from lr0 to lr1 across the block's words."""
    dim = syn0.shape[1]
    neu1 = np.zeros(dim, np.float32)
    neu1e = np.zeros(dim, np.float32)
    scores = np.zeros(out.shape[0] if softmax else 1, np.float64)
    sen = np.empty(MAX_SENTENCE, np.int32)
    r = np.uint64(seed)
    total = offsets[s_end] - offsets[s_begin]
    done = 0
    loss = 0.0
    n_pred = 0
    for s in range(s_begin, s_end):
        a, b = offsets[s], offsets[s + 1]
        for start in range(a, b, MAX_SENTENCE):
            stop = min(b, start + MAX_SENTENCE)
            lr = np.float32(lr0 + (lr1 - lr0) * (done / max(total, 1)))
            done += stop - start
            # Subsampling first, then the windows over what is left (as word2vec).
            n, r = subsample(tokens, start, stop, keep, sen, r)
            for pos in range(n):
                lo, hi, r = window_span(pos, n, window, r)
                word = sen[pos]
                if skipgram:
                    for c in range(lo, hi):
                        if c == pos:
                            continue
                        ctx = sen[c]
                        neu1e[:] = 0.0
                        l, r = _predict(syn0[ctx], word, out, lr, negative, softmax, prob, alias, sig,
                                        logsig, neu1e, scores, r)
                        loss += l
                        n_pred += 1
                        for d in range(dim):
                            syn0[ctx, d] += neu1e[d]
                else:
                    neu1[:] = 0.0
                    cw = 0
                    for c in range(lo, hi):
                        if c != pos:
                            cw += 1
                            # A row view, not syn0[sen[c], d]: numba would reload sen[c] for
                            # every d (a store to syn0 might have changed it), and the loop
                            # would not vectorise: CBOW ran half as fast.
                            row = syn0[sen[c]]
                            for d in range(dim):
                                neu1[d] += row[d]
                    if cw == 0:
                        continue
                    if cbow_mean:
                        inv = np.float32(1.0 / cw)
                        for d in range(dim):
                            neu1[d] *= inv
                    neu1e[:] = 0.0
                    l, r = _predict(neu1, word, out, lr, negative, softmax, prob, alias, sig, logsig,
                                    neu1e, scores, r)
                    loss += l
                    n_pred += 1
                    for c in range(lo, hi):
                        if c != pos:
                            row = syn0[sen[c]]
                            for d in range(dim):
                                row[d] += neu1e[d]
    return loss, n_pred, total


# --------------------------------------------------------------------------------------
# The method


@dataclass(frozen=True)
class SentenceSpan:
    """One word2vec step: sentences [begin, end) of a corpus of model word ids (−1 = not
    in the vocabulary) with its sentence ``offsets``, the lr falling from ``lr`` to ``lr_end``."""
    tokens: np.ndarray
    offsets: np.ndarray
    begin: int
    end: int
    lr: float
    lr_end: float


class Word2Vec(TextMethod):
    """Input vectors ``syn0`` (the embeddings) and output vectors ``out``, as buffers:
    they are trained by the kernel, not by autograd. ``vocab_ids`` maps the
    model's word index to the dataset's vocabulary and ``counts`` holds the
    training counts, so a checkpoint is self-contained."""

    name = "word2vec"
    Config = Word2VecConfig
    trained_by = "word2vec"
    has_word_vectors = True
    cpu_only = True              # the kernel is numba on the CPU's threads
    #: Its own SGD with a linearly falling lr replaces the optimiser settings.
    ignores_settings = TextMethod.ignores_settings + ("batch_size", "optimizer", "weight_decay",
                                                      "warmup_epochs", "amp", "max_train_items")
    train_defaults = {"epochs": 5, "lr": 0.025, "checkpoint_every": 100}
    card = MethodCard(
        title="word2vec (skip-gram / CBOW)", family="text",
        learns="A vector per word such that words used in similar contexts lie close together: "
               "neighbours, analogies (king − man + woman ≈ queen).",
        loss="−log σ(u_Oᵀv_I) − Σ_k log σ(−u_kᵀv_I), noise ~ unigram^0.75  "
             "(approximates the softmax −f_O + log Σ_l exp f_l)",
        paper="Mikolov et al. 2013, Efficient Estimation of Word Representations in Vector Space; "
              "Distributed Representations of Words and Phrases and their Compositionality",
        url="https://arxiv.org/abs/1310.4546")

    def __init__(self, cfg: Word2VecConfig, vocab_ids: np.ndarray | None = None,
                 counts: np.ndarray | None = None, seed: int = 0):
        """``vocab_ids``: the dataset vocabulary index of each model word, most frequent
        first; ``counts``: their training counts; ``seed``: the initial vectors'."""
        super().__init__(cfg)
        vocab_ids = np.zeros(0, np.int64) if vocab_ids is None else np.asarray(vocab_ids, np.int64)
        counts = np.zeros(len(vocab_ids), np.int64) if counts is None else np.asarray(counts, np.int64)
        v = len(vocab_ids)
        if cfg.objective == "softmax" and v > SOFTMAX_MAX_VOCAB:
            raise ConfigError({"objective": f"the full softmax is for small vocabularies (at most "
                                            f"{SOFTMAX_MAX_VOCAB:,} words; this one has {v:,}): use "
                                            "negative sampling or a larger min_count"})
        # word2vec's initialisation: inputs uniform in ±0.5/dim, outputs zero.
        rng = np.random.default_rng(seed)
        syn0 = ((rng.random((v, cfg.dim), dtype=np.float32) - 0.5) / cfg.dim).astype(np.float32)
        self.register_buffer("syn0", torch.from_numpy(syn0))
        self.register_buffer("out", torch.zeros(v, cfg.dim))
        self.register_buffer("vocab_ids", torch.from_numpy(vocab_ids.copy()))
        self.register_buffer("counts", torch.from_numpy(counts.copy()))
        self._pool: ThreadPoolExecutor | None = None
        self._sampling()

    def _sampling(self) -> None:
        counts = self.counts.numpy()
        if len(counts) == 0:
            self._keep = np.ones(0, np.float32)
            self._prob, self._alias = np.ones(0, np.float32), np.zeros(0, np.int32)
            return
        self._keep = keep_probabilities(counts, self.cfg.sample)
        self._prob, self._alias = alias_table(noise_distribution(counts, self.cfg.noise_power))
        self._sig, self._logsig = _tables()

    @classmethod
    def from_state(cls, cfg: Word2VecConfig, state: dict[str, torch.Tensor]) -> "Word2Vec":
        if "syn0" not in state or "vocab_ids" not in state:
            raise ValueError("this state has no word vectors (keys 'syn0', 'vocab_ids'): not a word2vec checkpoint")
        model = cls(cfg, state["vocab_ids"].numpy(), state["counts"].numpy())
        model.load_state_dict(state)
        model._sampling()             # the sampling tables follow the loaded counts
        return model

    def training_step(self, batch: SentenceSpan, seed: int) -> tuple[float, dict[str, float], int]:
        """Train on ``batch`` (the kernel updates the vectors itself): (loss per prediction, {}, words)."""
        loss, n_pred, words = self.train_sentences(batch.tokens, batch.offsets, batch.begin, batch.end,
                                                   batch.lr, batch.lr_end, seed)
        return loss / max(1, n_pred), {}, words

    @property
    def threads(self) -> int:
        return self.cfg.threads or os.cpu_count() or 1

    def train_sentences(self, tokens: np.ndarray, offsets: np.ndarray, s_begin: int, s_end: int,
                        lr0: float, lr1: float, seed: int) -> tuple[float, int, int]:
        """Train on sentences [s_begin, s_end) of ``tokens`` (model ids, −1 = unknown)
        with the lr falling from lr0 to lr1; one block of sentences per thread.
        Returns (loss sum, predictions, raw words)."""
        cfg = self.cfg
        syn0, out = self.syn0.numpy(), self.out.numpy()
        threads = max(1, min(self.threads, s_end - s_begin))
        # Blocks of about equal word counts.
        cuts = np.searchsorted(offsets, np.linspace(offsets[s_begin], offsets[s_end], threads + 1))
        cuts = np.clip(cuts, s_begin, s_end)
        cuts[0], cuts[-1] = s_begin, s_end
        span = max(1, offsets[s_end] - offsets[s_begin])
        jobs = []
        for t in range(threads):
            a, b = int(cuts[t]), int(cuts[t + 1])
            if b <= a:
                continue
            la = lr0 + (lr1 - lr0) * (offsets[a] - offsets[s_begin]) / span
            lb = lr0 + (lr1 - lr0) * (offsets[b] - offsets[s_begin]) / span
            args = (tokens, offsets, a, b, syn0, out, self._keep, self._prob, self._alias, self._sig,
                    self._logsig, cfg.arch == "skipgram", cfg.cbow_mean, cfg.window, cfg.negative,
                    cfg.objective == "softmax", float(la), float(lb), np.uint64(mix_seed(seed, t)))
            jobs.append(args)
        if len(jobs) == 1:
            results = [train_block(*jobs[0])]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="word2vec")
            results = [f.result() for f in [self._pool.submit(train_block, *j) for j in jobs]]
        loss = sum(r[0] for r in results)
        n_pred = sum(r[1] for r in results)
        words = sum(r[2] for r in results)
        return float(loss), int(n_pred), int(words)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Input vectors of model word indices."""
        return self.syn0[x.long()]

    def vectors(self) -> np.ndarray:
        return self.syn0.numpy()


def mix_seed(*parts: int) -> int:
    """A well-spread 64-bit seed from small integers (splitmix64 steps)."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x | 1
