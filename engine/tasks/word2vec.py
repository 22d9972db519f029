"""word2vec as a task of the training loop (:mod:`engine.loop`).

word2vec trains on the training sentences of a :class:`~engine.data.text.TextData`
in steps of about ``words_per_step`` words, in corpus order (as word2vec and
gensim do). The learning rate falls linearly over the whole run and each step's
random draws come from a generator seeded with (seed, step, thread), so a run
resumed from a checkpoint at step s takes exactly the steps an uninterrupted one
would (bit for bit with one thread). Metrics per step: loss (per prediction),
lr, words/s; per epoch: analogy accuracy and word-similarity Spearman for the
files named in the config, and on the shapes captions a built-in neighbour
check. At the end the vectors of the ``top_n`` most frequent words are stored
as the run's embeddings (ids = dataset vocabulary indices) with a PCA map.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import text_eval
from ..data.text import TRAIN, TextData
from ..methods import get_method
from ..methods.word2vec import SentenceSpan, build_vocab, mix_seed
from ..train import RunConfig
from .base import Task, require_text

# The built-in check on the shapes captions: is a colour's nearest word a colour, a shape's a shape?
SHAPES_GROUPS = {
    "colour": ["red", "green", "blue", "yellow", "purple", "orange", "white", "cyan"],
    "shape": ["circle", "square", "triangle", "star", "cross"],
    "size": ["small", "medium", "large"],
}


class Word2VecTask(Task):
    items, rate, rate_metric = "words", "words/s", "words_per_s"
    distributed = False

    def setup(self, state: dict | None) -> None:
        run_cfg, data, tcfg = self.run_config, self.data, self.train_config
        self.cfg = run_cfg.method_config
        require_text(run_cfg, data)
        if tcfg.device in ("cuda", "mps"):
            raise ValueError(f"{run_cfg.method} trains on the CPU only for now (device={tcfg.device} was asked for)")
        tokens, self.offsets = train_corpus(data)
        if len(self.offsets) < 2 or self.offsets[-1] == 0:
            raise ValueError(f"dataset {data.name!r} has no training sentences")
        self.method = build_method(run_cfg, data, tokens)
        remap = np.full(len(data.vocab), -1, np.int32)
        remap[self.method.vocab_ids.numpy()] = np.arange(len(self.method.vocab_ids), dtype=np.int32)
        self.model_tokens = remap[tokens]                  # −1: not in the model's vocabulary
        self.bounds = step_bounds(self.offsets, self.cfg.words_per_step)
        self.steps_per_epoch = len(self.bounds) - 1
        self.total_steps = self.steps_per_epoch * tcfg.epochs
        self.n_train = int(self.offsets[-1])
        self.evaluator = TextEvaluator(self.cfg, [data.vocab[i] for i in self.method.vocab_ids.numpy()])
        if state is not None:
            self.method.load_state_dict(state["model"])

    def batches(self, epoch: int):
        """Every epoch the same: sentence ranges of about ``words_per_step`` words, in corpus order."""
        return list(zip(self.bounds[:-1].tolist(), self.bounds[1:].tolist()))

    def learning_rate(self, step: int) -> float:
        # Linear decay from lr to min_lr over the whole run, as word2vec.
        tcfg = self.train_config
        return tcfg.lr - (tcfg.lr - self.cfg.min_lr) * min(1.0, step / max(1, self.total_steps))

    def step(self, step: int, sentences: tuple[int, int], lr: float):
        span = SentenceSpan(self.model_tokens, self.offsets, sentences[0], sentences[1], lr,
                            self.learning_rate(step + 1))
        return self.method.training_step(span, mix_seed(self.train_config.seed, step))

    def state(self) -> dict:
        return {"model": self.method.state_dict(), "optim": {}}

    def evaluate(self, epoch: float, final: bool) -> dict[str, float]:
        return self.evaluator(word_vectors(self.method, self.data))

    def final_embeddings(self):
        n_top = min(self.cfg.top_n, len(self.method.vocab_ids))
        return [("all", self.method.vocab_ids.numpy()[:n_top], self.method.syn0.numpy()[:n_top])]

    def close(self) -> None:
        self.method.close()


def train_corpus(data: TextData) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and sentence offsets of the training sentences only."""
    lengths = np.diff(data.offsets)
    keep = data.split == TRAIN
    per_token = np.repeat(keep, lengths)
    offsets = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
    return np.ascontiguousarray(data.tokens[per_token]), offsets


def step_bounds(offsets: np.ndarray, words_per_step: int) -> np.ndarray:
    """Sentence indices where the steps of an epoch start (and the last ends)."""
    n = len(offsets) - 1
    targets = np.arange(0, offsets[-1], max(1, words_per_step))
    starts = np.unique(np.searchsorted(offsets, targets, side="left").clip(0, n))
    return np.append(starts[starts < n], n).astype(np.int64)


class TextEvaluator:
    """The per-epoch evaluations a run's config asks for, files read once."""

    def __init__(self, cfg, vocab: list[str]):
        self.analogies = text_eval.read_analogies(_existing(cfg.analogies, "analogies")) if cfg.analogies else None
        self.pairs = {}
        for path in filter(None, (p.strip() for p in cfg.similarity.split(","))):
            self.pairs[Path(path).stem] = text_eval.read_pairs(_existing(path, "similarity"))
        words = set(vocab)
        self.groups = None
        if sum(w in words for w in SHAPES_GROUPS["colour"]) >= 4 and \
                sum(w in words for w in SHAPES_GROUPS["shape"]) >= 3:
            self.groups = SHAPES_GROUPS

    def __call__(self, wv) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.analogies:
            res = text_eval.evaluate_analogies(wv, self.analogies)
            out["analogy"] = res["accuracy"]
            out["analogy_cosmul"] = res["accuracy_cosmul"]
            out["analogy_coverage"] = res["n_questions"] / max(1, res["n_total"])
            for name, sec in res["sections"].items():
                if sec["n_questions"]:
                    out[f"analogy/{name}"] = sec["accuracy"]
        for stem, pairs in self.pairs.items():
            res = text_eval.evaluate_similarity(wv, pairs)
            out[f"spearman_{stem}"] = res["spearman"]
            out[f"oov_{stem}"] = res["oov"]
        if self.groups:
            out["neighbour_purity"] = text_eval.category_purity(wv, self.groups)
        return {k: float(v) for k, v in out.items()}


def _existing(path: str, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"the {what} file {p} does not exist")
    return p


def word_vectors(method, data: TextData):
    """The run's vectors as :class:`~engine.text_eval.WordVectors` (most frequent first)."""
    ids = method.vocab_ids.numpy()
    return text_eval.WordVectors([data.vocab[i] for i in ids], method.syn0.numpy(), method.counts.numpy())


def build_method(run_cfg: RunConfig, data: TextData, tokens: np.ndarray):
    """The method with its vocabulary (counts over the training sentences)."""
    cfg = run_cfg.method_config
    m_cls = get_method(run_cfg.method)
    counts = np.bincount(tokens, minlength=len(data.vocab)).astype(np.int64)
    vocab_ids = build_vocab(counts, cfg.min_count, cfg.max_vocab)
    if len(vocab_ids) < 2:
        raise ValueError(f"dataset {data.name!r}: {len(vocab_ids)} words occur min_count={cfg.min_count} "
                         "times in the training sentences; lower min_count")
    return m_cls(cfg, vocab_ids, counts[vocab_ids], seed=run_cfg.train.seed)
