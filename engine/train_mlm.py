"""The training loop of the masked language model, as a generator of the same
events as :mod:`engine.train` (the CLI and the GUI follow every loop alike).

The model trains on the training sentences of a
:class:`~engine.data.text.TextData` (in document order, so "the next sentence"
is real), ``batch_size`` sentence pairs per step, with AdamW, the shared
warm-up + cosine schedule and gradient clipping. Batches and masks of step s
come from a generator seeded with (seed, step), so a run resumed from its
checkpoint takes exactly the steps an uninterrupted run would. The tokenizer is
trained when the run starts and travels in every checkpoint (as tensors), so a
resumed run keeps the vocabulary it started with.

Per epoch: masked-token accuracy and perplexity on the held-out sentences beside
the unigram baseline, and next-sentence accuracy. At the end the mean-pooled
sentence embeddings of up to ``MAP_SENTENCES`` sentences are stored (split
"sentences", ids = sentence indices) with a PCA map.
"""
from __future__ import annotations

import time
from typing import Iterator

import numpy as np
import torch

from .data.text import HELDOUT, TRAIN, TextData
from .methods.mlm import MaskedLanguageModel, build, step_generator
from .train import (CheckpointSaved, EmbeddingsSaved, Evaluation, Event, Finished, RunConfig, RunControl,
                    Started, Step, utc_now, epoch_order, forget_retaken_steps, lr_at, make_optimizer, pause_point,
                    pick_device)

MAP_SENTENCES = 10_000        # sentences embedded for the map at the end (evenly spread)
EVAL_SENTENCES = 2_000        # held-out sentences scored at each evaluation
EVAL_SEED = 12_345            # the same masks at every evaluation: curves compare like with like


def train_mlm(project, run_id: int, data, control: RunControl) -> Iterator[Event]:
    record = project.run(run_id)
    run_cfg = RunConfig.from_dict(record.config)
    tcfg, cfg = run_cfg.train, run_cfg.method_config
    if not isinstance(data, TextData):
        raise ValueError(f"{run_cfg.method} trains on text, and dataset {data.name!r} holds images: "
                         "add a text corpus (main.py datasets add --project P text path=corpus.txt)")
    device = pick_device(tcfg.device)
    sentences = np.asarray(data.sentences, dtype=object)
    train_sentences = list(sentences[data.split == TRAIN])
    held_out = list(sentences[data.split == HELDOUT][:EVAL_SENTENCES])
    if tcfg.max_train_items:
        train_sentences = train_sentences[:tcfg.max_train_items]
    if len(train_sentences) < 2:
        raise ValueError(f"dataset {data.name!r} has {len(train_sentences)} training sentences; "
                         "next-sentence pairs need at least 2")
    n_train = len(train_sentences)
    batch = min(tcfg.batch_size, n_train)
    steps_per_epoch = max(1, n_train // batch)
    total_steps = steps_per_epoch * tcfg.epochs

    start_step = 0
    resumed = project.latest_checkpoint(run_id)
    if resumed is not None:
        ck_step, _, state = resumed
        model = MaskedLanguageModel.from_state(cfg, state["model"])
        start_step = ck_step
    else:
        model = build(cfg, train_sentences, seed=tcfg.seed)     # tokenizer + token counts
    forget_retaken_steps(project, run_id, start_step)
    model.to(device)
    optimizer = make_optimizer(model.parameters(), tcfg)
    if resumed is not None and state.get("optim"):
        optimizer.load_state_dict(state["optim"])

    project.update_run(run_id, status="running", device=str(device), error=None,
                       started_at=record.started_at or utc_now())
    yield Started(run_id, str(device), total_steps, steps_per_epoch, n_train, start_step,
                  items="sentences", rate="tokens/s")

    metrics_buffer: list[tuple[int, float, str, float]] = []

    def flush():
        if metrics_buffer:
            project.log_metrics(run_id, metrics_buffer)
        metrics_buffer.clear()

    def evaluation(step: int, epoch: float) -> dict:
        if not held_out:
            return {}
        out = model.evaluate(held_out, step_generator(EVAL_SEED, 0, device))
        out = {k: float(v) for k, v in out.items() if k not in ("masked_tokens", "sentences")}
        metrics_buffer.extend((step, epoch, k, v) for k, v in out.items())
        flush()
        return out

    last_checkpoint = start_step if resumed is not None else None

    def checkpoint(step: int, epoch: int) -> CheckpointSaved:
        nonlocal last_checkpoint
        last_checkpoint = step
        project.save_checkpoint(run_id, step, epoch, {"model": model.state_dict(),
                                                      "optim": optimizer.state_dict(), "step": step})
        return CheckpointSaved(run_id, step, epoch)

    if start_step == 0 and held_out:     # the untrained model beside the unigram baseline
        yield Evaluation(run_id, 0, 0.0, evaluation(0, 0.0))

    model.train()
    step, stopped = start_step, False
    t_last, tokens_since = time.perf_counter(), 0
    while step < total_steps:
        epoch = step // steps_per_epoch
        order = epoch_order(n_train, tcfg.seed, epoch)
        for b in range(step % steps_per_epoch, steps_per_epoch):
            if control.paused:
                flush()
                yield from pause_point(project, run_id, control, step)
                t_last, tokens_since = time.perf_counter(), 0
            if control.stop_requested:
                stopped = True
                break
            lr = lr_at(step, total_steps, steps_per_epoch, tcfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            gen = step_generator(tcfg.seed, step, device)
            pairs = model.make_batch(train_sentences, batch, gen, indices=order[b * batch:(b + 1) * batch])
            loss, logs = model(pairs, gen)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {loss.item()} at step {step}: "
                                         "try a lower learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            tokens_since += int(pairs["n_tokens"])
            if step % tcfg.log_every == 0 or step == total_steps:
                now = time.perf_counter()
                tps = tokens_since / max(now - t_last, 1e-9)
                t_last, tokens_since = now, 0
                ep = step / steps_per_epoch
                value = float(loss.detach())
                metrics_buffer.extend([(step, ep, "loss", value), (step, ep, "lr", lr),
                                       (step, ep, "tokens_per_s", tps)]
                                      + [(step, ep, k, float(v)) for k, v in logs.items()])
                if len(metrics_buffer) > 200:
                    flush()
                yield Step(run_id, step, ep, value, lr, tps, {**logs, "tokens_per_s": tps})
            if step % tcfg.checkpoint_every == 0 and step % steps_per_epoch != 0:
                flush()
                yield checkpoint(step, epoch)
                t_last, tokens_since = time.perf_counter(), 0
        if stopped:
            break
        done_epochs = step // steps_per_epoch
        flush()
        yield checkpoint(step, done_epochs)
        if tcfg.eval_every and done_epochs % tcfg.eval_every == 0 and step < total_steps:
            yield Evaluation(run_id, step, float(done_epochs), evaluation(step, float(done_epochs)))
        t_last, tokens_since = time.perf_counter(), 0

    if stopped:
        flush()
        if last_checkpoint != step:        # a stop right after an epoch's checkpoint has one already
            yield checkpoint(step, step // steps_per_epoch)
        project.update_run(run_id, status="stopped")
        yield Finished(run_id, "stopped", step, {})
        return

    metrics = evaluation(step, float(tcfg.epochs))
    yield Evaluation(run_id, step, float(tcfg.epochs), metrics)
    ids = np.unique(np.linspace(0, len(sentences) - 1, min(MAP_SENTENCES, len(sentences))).astype(np.int64))
    vectors = model.embed_sentences([sentences[i] for i in ids])
    emb_id = project.save_embeddings(run_id, "sentences", ids, vectors, epoch=int(tcfg.epochs))
    from .maps import pca_2d
    proj_id = project.save_projection(emb_id, "pca", {}, pca_2d(vectors))
    flush()
    project.update_run(run_id, status="finished", finished_at=utc_now())
    yield EmbeddingsSaved(run_id, emb_id, proj_id)
    yield Finished(run_id, "finished", step, metrics)
