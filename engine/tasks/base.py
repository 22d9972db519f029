"""The interface between the training loop (:mod:`engine.loop`) and one kind of training."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..data.text import TextData
from ..train import DistInfo, RunConfig, lr_at


class Task:
    """One kind of training, as the loop drives it.

    The loop calls :meth:`setup` once (with the checkpoint's state when it resumes),
    then for every epoch :meth:`batches` and for every step :meth:`learning_rate` and
    :meth:`step`; between steps :meth:`state` (checkpoints), :meth:`evaluate` (the
    evaluation schedule) and at the end :meth:`final_embeddings`. Only the main
    process writes to the project, and the loop does all of its writing except what
    a task names itself (images: timeline embeddings and reconstruction grids).
    """
    #: What ``n_train`` counts (``Started.items``), the throughput's unit and its metric.
    items = "images"
    rate = "img/s"
    rate_metric = "images_per_s"
    #: Whether it trains across the processes of a torchrun job (the text tasks use threads).
    distributed = True

    def __init__(self, run_config: RunConfig, data, dist: DistInfo | None = None, project=None, record=None):
        self.run_config = run_config
        self.train_config = run_config.train
        self.data = data
        self.dist = dist or DistInfo()
        #: Where the task writes what only it writes; None for a dry run (estimate, benchmark).
        self.project = project if self.dist.is_main else None
        self.record = record
        # Set by setup():
        self.device = torch.device("cpu")
        self.n_train = 0
        self.steps_per_epoch = 1
        self.total_steps = 1

    def setup(self, state: dict | None) -> None:
        """Build the method, its optimiser and the data; restore ``state`` (a checkpoint's)."""
        raise NotImplementedError

    def batches(self, epoch: int) -> Sequence:
        """The ``steps_per_epoch`` batches of ``epoch`` (a pure function of the seed and
        the epoch, so a resumed run takes the same ones), as :meth:`step` takes them."""
        raise NotImplementedError

    def learning_rate(self, step: int) -> float:
        """The shared schedule: linear warm-up, then cosine decay to zero."""
        return lr_at(step, self.total_steps, self.steps_per_epoch, self.train_config)

    def step(self, step: int, batch, lr: float) -> tuple[float | None, dict[str, float], int]:
        """Train on ``batch``: (loss, logs, items trained on). A non-finite loss is
        returned before any update; None is a closed-form fit, which has no loss."""
        raise NotImplementedError

    def state(self) -> dict:
        """What a checkpoint keeps: {"model": state dict, "optim": state dict or {}}."""
        raise NotImplementedError

    def baselines(self) -> dict[str, float] | None:
        """Metrics at step 0 of a new run (e.g. the untrained network), or None."""
        return None

    def late_baselines(self) -> dict[str, float] | None:
        """Step-0 metrics left for after the final evaluation (too slow to delay the first
        step), or None."""
        return None

    def evaluate(self, epoch: float, final: bool) -> dict[str, float]:
        """The metrics of an evaluation (``final``: the last one)."""
        return {}

    def on_checkpoint(self, step: int) -> None:
        """Called in the main process after a checkpoint is saved."""

    def final_embeddings(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """(split, ids, vectors) of each embedding set a finished run keeps; the first
        is the run's main one. Called after the final evaluation."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what :meth:`setup` started (threads); called when the loop ends."""


def require_text(run_config: RunConfig, data) -> None:
    """The text tasks' first check: a corpus, not images."""
    if not isinstance(data, TextData):
        raise ValueError(f"{run_config.method} trains on text, and dataset {data.name!r} holds images: "
                         "add a text corpus (main.py datasets add --project P text path=corpus.txt)")
