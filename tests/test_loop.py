"""engine.loop and engine.tasks: the schedule the loop owns, shown with a task written
here (logging cadence, checkpoints, evaluations, stop and resume, a non-finite loss), and
the three real tasks against the Task interface."""
import math

import numpy as np
import pytest
import torch

from engine import workbench
from engine.loop import make_task, run_task
from engine.tasks.base import Task
from engine.train import (CheckpointSaved, DistInfo, EmbeddingsSaved, Evaluation, Finished, RunConfig, RunControl,
                          Started, Step, TrainConfig, default_run_config)


class CountingTask(Task):
    """Four steps an epoch; the weight counts the steps taken; step s's loss is 1/(s+1)."""
    items, rate, rate_metric = "things", "things/s", "things_per_s"

    def __init__(self, train_config: TrainConfig, losses: dict | None = None):
        super().__init__(RunConfig("pca", train_config), data=None)
        self.losses = losses or {}

    def setup(self, state):
        self.steps_per_epoch, self.n_train = 4, 8
        self.total_steps = 4 * self.train_config.epochs
        self.w = torch.zeros(1) if state is None else state["model"]["w"].clone()
        self.taken = []

    def batches(self, epoch):
        return [(epoch, b) for b in range(4)]

    def step(self, step, batch, lr):
        self.taken.append(batch)
        self.w += 1
        return self.losses.get(step, 1.0 / (step + 1)), {"w": float(self.w)}, 2

    def state(self):
        return {"model": {"w": self.w.clone()}, "optim": {}}

    def evaluate(self, epoch, final):
        return {"w_eval": float(self.w)}

    def final_embeddings(self):
        return [("all", np.arange(3), np.eye(3, dtype=np.float32))]


def _record(project):
    return project.run(workbench.create_run(project, "digits", "pca", {}))


def test_the_loop_owns_the_schedule(project):
    record = _record(project)
    task = CountingTask(TrainConfig(epochs=3, log_every=3, checkpoint_every=5, eval_every=2))
    events = list(run_task(project, record, task, RunControl(), DistInfo()))
    started = events[0]
    assert isinstance(started, Started) and (started.total_steps, started.steps_per_epoch) == (12, 4)
    assert (started.items, started.rate, started.start_step) == ("things", "things/s", 0)
    # Reports every third step and at each epoch end; the loss is the mean since the last report.
    steps = [e for e in events if isinstance(e, Step)]
    assert [e.step for e in steps] == [3, 4, 6, 8, 9, 12]
    assert steps[0].loss == pytest.approx((1 + 1 / 2 + 1 / 3) / 3) and steps[1].loss == pytest.approx(1 / 4)
    assert steps[0].logs["w"] == 3.0 and steps[0].images_per_s > 0
    assert [m.step for m in project.metrics(record.id, "things_per_s")] == [3, 4, 6, 8, 9, 12]
    # Checkpoints every fifth step and at each epoch end; an evaluation every second epoch and the final one.
    assert [e.step for e in events if isinstance(e, CheckpointSaved)] == [4, 5, 8, 10, 12]
    assert [(e.step, e.epoch, e.metrics) for e in events if isinstance(e, Evaluation)] == \
        [(8, 2.0, {"w_eval": 8.0}), (12, 3.0, {"w_eval": 12.0})]
    assert task.taken == [(e, b) for e in range(3) for b in range(4)]
    assert isinstance(events[-2], EmbeddingsSaved)
    assert events[-1] == Finished(record.id, "finished", 12, {"w_eval": 12.0})
    assert project.run(record.id).status == "finished"


def test_a_stopped_task_resumes_where_it_stopped(project):
    record = _record(project)
    control = RunControl()
    first = CountingTask(TrainConfig(epochs=3, checkpoint_every=100, eval_every=0))
    for ev in run_task(project, record, first, control, DistInfo()):
        if isinstance(ev, Step) and ev.step == 6:
            control.stop()
    assert project.run(record.id).status == "stopped" and project.latest_checkpoint(record.id)[0] == 6
    again = CountingTask(TrainConfig(epochs=3, checkpoint_every=100, eval_every=0))
    events = list(run_task(project, project.run(record.id), again, RunControl(), DistInfo()))
    assert events[0].start_step == 6 and again.taken[0] == (1, 2)      # epoch 1, its third batch
    assert events[-1].metrics == {"w_eval": 12.0}
    assert [m.step for m in project.metrics(record.id, "loss")] == list(range(1, 13))


def test_a_non_finite_loss_stops_the_loop(project):
    task = CountingTask(TrainConfig(epochs=2), losses={5: float("nan")})
    with pytest.raises(FloatingPointError, match="the loss became nan at step 5"):
        list(run_task(project, _record(project), task, RunControl(), DistInfo()))


@pytest.fixture
def captions(project):
    workbench.import_dataset(project, "shapes-captions", "captions", n=300)
    return workbench.load_dataset(project, "captions")


@pytest.mark.parametrize("method,overrides,units", [
    ("simclr", {"width": "4", "batch_size": "64"}, ("images", "img/s", "images_per_s")),
    ("word2vec", {"threads": "1"}, ("words", "words/s", "words_per_s")),
    ("mlm", {"tokenizer": "word", "vocab_size": "60", "dim": "16", "depth": "1", "heads": "2", "max_len": "24",
             "batch_size": "32"}, ("sentences", "tokens/s", "tokens_per_s")),
])
def test_each_task_keeps_the_interface(project, captions, method, overrides, units):
    data = workbench.load_dataset(project, "digits") if method == "simclr" else captions
    cfg = default_run_config(method, data, {"epochs": "2", **overrides})
    task = make_task(cfg, data)
    task.setup(None)
    try:
        assert (task.items, task.rate, task.rate_metric) == units
        assert task.total_steps == 2 * task.steps_per_epoch and task.n_train > 0
        batches = task.batches(1)
        assert len(batches) == task.steps_per_epoch
        assert repr(batches) == repr(task.batches(1)), "an epoch's batches depend only on the seed and the epoch"
        loss, logs, items = task.step(0, task.batches(0)[0], task.learning_rate(0))
        assert math.isfinite(loss) and items > 0 and all(type(v) is float for v in logs.values())
        state = task.state()
        assert set(state) == {"model", "optim"}
        restored = make_task(cfg, data)
        restored.setup(state)
        for key, value in state["model"].items():
            assert torch.equal(restored.state()["model"][key], value), key
        restored.close()
        assert task.evaluate(1.0, final=True) is not None
        (split, ids, vectors), *_ = task.final_embeddings()
        assert len(ids) == len(vectors) > 0
    finally:
        task.close()
