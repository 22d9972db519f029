"""The masked language model as a task of the training loop (:mod:`engine.loop`).

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

import numpy as np
import torch

from ..data.text import HELDOUT, TRAIN
from ..methods.mlm import MaskedLanguageModel, SentenceBatch, build, step_generator, step_seed
from ..train import epoch_order, make_optimizer, pick_device
from .base import Task, require_text

MAP_SENTENCES = 10_000        # sentences embedded for the map at the end (evenly spread)
EVAL_SENTENCES = 2_000        # held-out sentences scored at each evaluation
EVAL_SEED = 12_345            # the same masks at every evaluation: curves compare like with like


class MLMTask(Task):
    items, rate, rate_metric = "sentences", "tokens/s", "tokens_per_s"
    distributed = False

    def setup(self, state: dict | None) -> None:
        tcfg, data, cfg = self.train_config, self.data, self.run_config.method_config
        require_text(self.run_config, data)
        self.device = pick_device(tcfg.device)
        self.sentences = np.asarray(data.sentences, dtype=object)
        self.train_sentences = list(self.sentences[data.split == TRAIN])
        self.held_out = list(self.sentences[data.split == HELDOUT][:EVAL_SENTENCES])
        if tcfg.max_train_items:
            self.train_sentences = self.train_sentences[:tcfg.max_train_items]
        if len(self.train_sentences) < 2:
            raise ValueError(f"dataset {data.name!r} has {len(self.train_sentences)} training sentences; "
                             "next-sentence pairs need at least 2")
        self.n_train = len(self.train_sentences)
        self.batch = min(tcfg.batch_size, self.n_train)
        self.steps_per_epoch = max(1, self.n_train // self.batch)
        self.total_steps = self.steps_per_epoch * tcfg.epochs
        if state is not None:
            self.model = MaskedLanguageModel.from_state(cfg, state["model"])
        else:
            self.model = build(cfg, self.train_sentences, seed=tcfg.seed)     # tokenizer + token counts
        self.model.to(self.device)
        self.optimizer = make_optimizer(self.model.param_groups(tcfg), tcfg, self.model.optimizer_options(tcfg))
        if state is not None and state.get("optim"):
            self.optimizer.load_state_dict(state["optim"])
        self.model.train()

    def batches(self, epoch: int):
        order = epoch_order(self.n_train, self.train_config.seed, epoch)
        return [order[b * self.batch:(b + 1) * self.batch] for b in range(self.steps_per_epoch)]

    def step(self, step: int, indices: torch.Tensor, lr: float):
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss, logs, n_tokens = self.model(SentenceBatch(self.train_sentences, indices),
                                          step_seed(self.train_config.seed, step))
        value = float(loss.detach())
        if not np.isfinite(value):
            return value, {}, 0
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        return value, {k: float(v) for k, v in logs.items()}, n_tokens

    def state(self) -> dict:
        return {"model": self.model.state_dict(), "optim": self.optimizer.state_dict()}

    def baselines(self) -> dict[str, float] | None:
        """The untrained model beside the unigram baseline."""
        return self.evaluate(0.0, final=False) if self.held_out else None

    def evaluate(self, epoch: float, final: bool) -> dict[str, float]:
        if not self.held_out:
            return {}
        out = self.model.evaluate(self.held_out, step_generator(EVAL_SEED, 0, self.device))
        return {k: float(v) for k, v in out.items() if k not in ("masked_tokens", "sentences")}

    def final_embeddings(self):
        n = len(self.sentences)
        ids = np.unique(np.linspace(0, n - 1, min(MAP_SENTENCES, n)).astype(np.int64))
        return [("sentences", ids, self.model.embed_sentences([self.sentences[i] for i in ids]))]
