"""The training loop of the text methods, as a generator of the same events as
:mod:`engine.train` (the CLI and the GUI follow both alike).

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

import time
import traceback
from pathlib import Path
from typing import Iterator

import numpy as np

from .data.text import TRAIN, TextData
from .methods import DataInfo, get_method
from .methods.mlm import MaskedLanguageModel
from .train import (CheckpointSaved, DistInfo, EmbeddingsSaved, Evaluation, Event, Failed, Finished,
                    RunConfig, RunControl, Started, Step, utc_now, readable_error, forget_retaken_steps,
                    pause_point)

# The built-in check on the shapes captions: is a colour's nearest word a colour, a shape's a shape?
SHAPES_GROUPS = {
    "colour": ["red", "green", "blue", "yellow", "purple", "orange", "white", "cyan"],
    "shape": ["circle", "square", "triangle", "star", "cross"],
    "size": ["small", "medium", "large"],
}


def train_text(project, run_id: int, data, control: RunControl | None = None,
               dist: DistInfo | None = None) -> Iterator[Event]:
    """Train (or resume) stored text run ``run_id`` on ``data``; errors become ``Failed``."""
    control = control or RunControl()
    try:
        if dist is not None and dist.world_size > 1:
            raise ValueError("text methods train in one process (threads, not torchrun): use --nproc 1")
        if get_method(project.run(run_id).method) is MaskedLanguageModel:
            from .train_mlm import train_mlm
            yield from train_mlm(project, run_id, data, control)
        else:
            yield from _train_text(project, run_id, data, control)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none is lost
        details = traceback.format_exc()
        message = readable_error(exc)
        try:
            project.update_run(run_id, status="failed", error=f"{message}\n\n{details}", finished_at=utc_now())
        except Exception:  # noqa: BLE001 - the file itself may be the problem
            pass
        yield Failed(run_id, message, details)


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
        from . import text_eval
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
        from . import text_eval
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
    from .text_eval import WordVectors
    ids = method.vocab_ids.numpy()
    return WordVectors([data.vocab[i] for i in ids], method.syn0.numpy(), method.counts.numpy())


def build_method(run_cfg: RunConfig, data: TextData, tokens: np.ndarray):
    """The method with its vocabulary (counts over the training sentences)."""
    cfg = run_cfg.method_config
    m_cls = get_method(run_cfg.method)
    from .methods.word2vec import build_vocab
    counts = np.bincount(tokens, minlength=len(data.vocab)).astype(np.int64)
    vocab_ids = build_vocab(counts, cfg.min_count, cfg.max_vocab)
    if len(vocab_ids) < 2:
        raise ValueError(f"dataset {data.name!r}: {len(vocab_ids)} words occur min_count={cfg.min_count} "
                         "times in the training sentences; lower min_count")
    info = DataInfo(data.name, 0, 0, 0, int(len(tokens)))
    return m_cls(cfg, info, vocab_ids, counts[vocab_ids], seed=run_cfg.train.seed)


def _train_text(project, run_id: int, data, control: RunControl) -> Iterator[Event]:
    from .methods.word2vec import mix_seed
    record = project.run(run_id)
    run_cfg = RunConfig.from_dict(record.config)
    tcfg, cfg = run_cfg.train, run_cfg.method_config
    if not isinstance(data, TextData):
        raise ValueError(f"{run_cfg.method} trains on text, and dataset {data.name!r} holds images: "
                         "add a text corpus (main.py datasets add --project P text path=corpus.txt)")
    if tcfg.device in ("cuda", "mps"):
        raise ValueError(f"{run_cfg.method} trains on the CPU only for now (device={tcfg.device} was asked for)")

    tokens, offsets = train_corpus(data)
    if len(offsets) < 2 or offsets[-1] == 0:
        raise ValueError(f"dataset {data.name!r} has no training sentences")
    method = build_method(run_cfg, data, tokens)
    remap = np.full(len(data.vocab), -1, np.int32)
    remap[method.vocab_ids.numpy()] = np.arange(len(method.vocab_ids), dtype=np.int32)
    model_tokens = remap[tokens]                  # −1: not in the model's vocabulary
    bounds = step_bounds(offsets, cfg.words_per_step)
    steps_per_epoch = len(bounds) - 1
    total_steps = steps_per_epoch * tcfg.epochs
    n_words = int(offsets[-1])
    evaluator = TextEvaluator(cfg, [data.vocab[i] for i in method.vocab_ids.numpy()])

    start_step = 0
    resumed = project.latest_checkpoint(run_id)
    if resumed is not None:
        ck_step, _, state = resumed
        method.load_state_dict(state["model"])
        start_step = ck_step
    forget_retaken_steps(project, run_id, start_step)

    project.update_run(run_id, status="running", device="cpu", error=None, started_at=record.started_at or utc_now())
    yield Started(run_id, "cpu", total_steps, steps_per_epoch, n_words, start_step,
                  items="words", rate="words/s")

    metrics_buffer: list[tuple[int, float, str, float]] = []

    def flush():
        if metrics_buffer:
            project.log_metrics(run_id, metrics_buffer)
        metrics_buffer.clear()

    def evaluation(step: int, epoch: float) -> dict:
        out = evaluator(word_vectors(method, data))
        metrics_buffer.extend((step, epoch, k, v) for k, v in out.items())
        flush()
        return out

    last_checkpoint = start_step if resumed is not None else None

    def checkpoint(step: int, epoch: int) -> CheckpointSaved:
        nonlocal last_checkpoint
        last_checkpoint = step
        project.save_checkpoint(run_id, step, epoch, {"model": method.state_dict(), "optim": {}, "step": step})
        return CheckpointSaved(run_id, step, epoch)

    def lr_at(step: int) -> float:
        # Linear decay from lr to min_lr over the whole run, as word2vec.
        return tcfg.lr - (tcfg.lr - cfg.min_lr) * min(1.0, step / max(1, total_steps))

    step, stopped = start_step, False
    t_last, words_since, loss_sum, pred_sum = time.perf_counter(), 0, 0.0, 0
    try:
        while step < total_steps:
            epoch = step // steps_per_epoch
            for b in range(step % steps_per_epoch, steps_per_epoch):
                if control.paused:
                    flush()
                    yield from pause_point(project, run_id, control, step)
                    t_last, words_since = time.perf_counter(), 0
                if control.stop_requested:
                    stopped = True
                    break
                lr0, lr1 = lr_at(step), lr_at(step + 1)
                loss, n_pred, words = method.train_sentences(model_tokens, offsets, int(bounds[b]),
                                                             int(bounds[b + 1]), lr0, lr1, mix_seed(tcfg.seed, step))
                if not np.isfinite(loss):
                    raise FloatingPointError(f"the loss became {loss} at step {step}: try a lower learning rate")
                step += 1
                words_since += words
                loss_sum += loss
                pred_sum += n_pred
                if step % tcfg.log_every == 0 or step == total_steps or b == steps_per_epoch - 1:
                    now = time.perf_counter()
                    wps = words_since / max(now - t_last, 1e-9)
                    mean_loss = loss_sum / max(1, pred_sum)
                    ep = step / steps_per_epoch
                    metrics_buffer.extend([(step, ep, "loss", mean_loss), (step, ep, "lr", lr0),
                                           (step, ep, "words_per_s", wps)])
                    if len(metrics_buffer) > 200:
                        flush()
                    yield Step(run_id, step, ep, mean_loss, lr0, wps, {"words_per_s": wps})
                    t_last, words_since, loss_sum, pred_sum = time.perf_counter(), 0, 0.0, 0
                if step % tcfg.checkpoint_every == 0 and step % steps_per_epoch != 0:
                    flush()
                    yield checkpoint(step, epoch)
                    t_last, words_since = time.perf_counter(), 0
            if stopped:
                break
            done_epochs = step // steps_per_epoch
            flush()
            yield checkpoint(step, done_epochs)
            if tcfg.eval_every and done_epochs % tcfg.eval_every == 0 and step < total_steps:
                yield Evaluation(run_id, step, float(done_epochs), evaluation(step, float(done_epochs)))
            t_last, words_since = time.perf_counter(), 0
    finally:
        method.close()

    if stopped:
        flush()
        if last_checkpoint != step:        # a stop right after an epoch's checkpoint has one already
            yield checkpoint(step, step // steps_per_epoch)
        project.update_run(run_id, status="stopped")
        yield Finished(run_id, "stopped", step, {})
        return

    metrics = evaluation(step, float(tcfg.epochs))
    yield Evaluation(run_id, step, float(tcfg.epochs), metrics)
    n_top = min(cfg.top_n, len(method.vocab_ids))
    ids = method.vocab_ids.numpy()[:n_top]
    vectors = method.syn0.numpy()[:n_top]
    emb_id = project.save_embeddings(run_id, "all", ids, vectors, epoch=int(tcfg.epochs))
    from .maps import pca_2d
    proj_id = project.save_projection(emb_id, "pca", {}, pca_2d(vectors))
    flush()
    project.update_run(run_id, status="finished", finished_at=utc_now())
    yield EmbeddingsSaved(run_id, emb_id, proj_id)
    yield Finished(run_id, "finished", step, metrics)
