"""The training loop, as a generator of the events of :mod:`engine.train`.

``train(project, run_id, data)`` trains (or resumes) one stored run. The loop
owns what every kind of training shares: the run's claim and heartbeat, resume
from the latest checkpoint, pause and stop between two steps, the logging
cadence and throughput, checkpoints (every ``checkpoint_every`` steps, at each
epoch end, and once on stop), the evaluation schedule, failures (a ``Failed``
event and the run marked failed) and the final embeddings with their PCA map.
What differs (the method, its data, one step, what an evaluation measures) is a
task from :mod:`engine.tasks`: images, word2vec or the masked language model.

Reproducibility: a task's batches of epoch e and its random draws at step s
depend only on (seed, e) and (seed, s), so a run resumed at step s takes exactly
the steps an uninterrupted run would have taken.

Only the main process of a torchrun job (``DistInfo.is_main``) writes to the
project; the others train their shard and follow the same schedule.
"""
from __future__ import annotations

import contextlib
import math
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Iterator

import torch

from .maps import pca_2d
from .methods import get_method
from .store import ownership
from .tasks.base import Task
from .tasks.images import ImageTask
from .tasks.mlm import MLMTask
from .tasks.word2vec import Word2VecTask
from .train import (CheckpointSaved, DistInfo, EmbeddingsSaved, Evaluation, Event, Failed, Finished, Paused,
                    RunConfig, RunControl, Started, Step, readable_error, utc_now)


#: The task of each kind of training, by the name a method declares as its ``trained_by``.
TASKS: dict[str, type[Task]] = {"images": ImageTask, "word2vec": Word2VecTask, "mlm": MLMTask}


def make_task(run_config: RunConfig, data, dist: DistInfo | None = None, project=None, record=None) -> Task:
    """The task that trains ``run_config``'s method (``project``/``record``: where it may
    write what only it writes; None for a dry run)."""
    task = TASKS[get_method(run_config.method).trained_by]
    if dist is not None and dist.world_size > 1 and not task.distributed:
        raise ValueError("text methods train in one process (threads, not torchrun): use --nproc 1")
    return task(run_config, data, dist, project, record)


def train(project, run_id: int, data, control: RunControl | None = None,
          dist: DistInfo | None = None) -> Iterator[Event]:
    """Train (or resume) stored run ``run_id`` on ``data``, yielding events.

    ``project`` is the open Project; only the main process writes to it.
    Errors become a ``Failed`` event and the run's status "failed" with the
    error text, so the caller's window or terminal keeps working.

    The main process first claims the run (``Project.claim_run``): a run that
    another live process trains raises ``RunBusyError`` here, before anything
    is written, and is not marked failed. While the loop runs, a heartbeat
    thread tells readers it is alive; when the generator ends (finished,
    stopped, failed, closed or interrupted by a second Ctrl+C) the claim is
    released, so a run left marked running then reads "interrupted".
    """
    control = control or RunControl()
    dist = dist or DistInfo()
    owns = dist.is_main
    if owns:
        project.claim_run(run_id)
    heartbeat = Heartbeat(project, run_id) if owns else None
    try:
        try:
            threads = int(project.run(run_id).config.get("train", {}).get("threads") or 0)
        except Exception:  # noqa: BLE001 - the loop below reports what is wrong
            threads = 0
        with torch_threads(threads):
            yield from _reporting_failures(project, run_id, data, control, dist)
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        if owns:
            with contextlib.suppress(Exception):   # the file may be the problem; the pid check still works
                project.release_run(run_id)


def _reporting_failures(project, run_id: int, data, control: RunControl, dist: DistInfo) -> Iterator[Event]:
    task = None
    try:
        record = project.run(run_id)
        task = make_task(RunConfig.from_dict(record.config), data, dist, project, record)
        yield from run_task(project, record, task, control, dist)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none is lost
        details = traceback.format_exc()
        message = readable_error(exc)
        if dist.is_main:
            try:
                project.update_run(run_id, status="failed", error=f"{message}\n\n{details}", finished_at=utc_now())
            except Exception:  # noqa: BLE001 - the file itself may be the problem
                pass
        yield Failed(run_id, message, details)
    finally:
        if task is not None:
            task.close()


@dataclass(frozen=True)
class StepDone:
    """One step a task took: ``step`` counts the steps done so far (the one just taken included)."""
    step: int
    lr: float
    loss: float | None
    logs: dict
    items: int


def task_steps(task: Task, start_step: int = 0) -> Iterator[StepDone]:
    """The task's steps from ``start_step`` to the end of its schedule, in the loop's
    order; the caller decides between two steps whether to go on."""
    step, per_epoch = start_step, task.steps_per_epoch
    while step < task.total_steps:
        batches = task.batches(step // per_epoch)
        for b in range(step % per_epoch, per_epoch):
            lr = task.learning_rate(step)
            loss, logs, items = task.step(step, batches[b], lr)
            step += 1
            yield StepDone(step, lr, loss, logs, items)


def run_task(project, record, task: Task, control: RunControl, dist: DistInfo) -> Iterator[Event]:
    """The loop proper: set ``task`` up (restoring the latest checkpoint) and train it."""
    run_id, tcfg, is_main = record.id, task.train_config, dist.is_main
    resumed = project.latest_checkpoint(run_id)
    task.setup(resumed[2] if resumed is not None else None)
    start_step = resumed[0] if resumed is not None else 0
    per_epoch, total = task.steps_per_epoch, task.total_steps
    if is_main:
        forget_retaken_steps(project, run_id, start_step)
        project.update_run(run_id, status="running", device=str(task.device), error=None,
                           started_at=record.started_at or utc_now())
    yield Started(run_id, str(task.device), total, per_epoch, task.n_train, start_step,
                  items=task.items, rate=task.rate)

    log = MetricsLog(project, run_id, write=is_main)
    if start_step == 0 and (base := task.baselines()) is not None:
        log.add(0, 0.0, base)
        log.flush()
        yield Evaluation(run_id, 0, 0.0, base)

    def evaluation(step: int, epoch: float, final: bool) -> Evaluation:
        metrics = task.evaluate(epoch, final)
        log.add(step, epoch, metrics)
        log.flush()
        return Evaluation(run_id, step, epoch, metrics)

    last_checkpoint = start_step if resumed is not None else None

    def checkpoint(step: int, epoch: int) -> CheckpointSaved:
        nonlocal last_checkpoint
        log.flush()
        last_checkpoint = step
        if is_main:
            project.save_checkpoint(run_id, step, epoch, {**task.state(), "step": step})
            task.on_checkpoint(step)
        return CheckpointSaved(run_id, step, epoch)

    step, stopped = start_step, False
    meter = Meter()

    def between_steps() -> Iterator[Event]:
        nonlocal stopped
        if control.paused:
            log.flush()
            yield from pause_point(project, run_id, control, step, write=is_main)
            meter.restart_clock()
        stopped = control.stop_requested

    yield from between_steps()
    for done in ([] if stopped else task_steps(task, start_step)):
        step = done.step
        if done.loss is not None and not math.isfinite(done.loss):
            raise FloatingPointError(f"the loss became {done.loss} at step {step - 1}: try a lower learning rate")
        meter.add(done.loss, done.items)
        epoch_end = step % per_epoch == 0
        if step % tcfg.log_every == 0 or step == total or epoch_end:
            yield report(run_id, task, log, meter, done, step / per_epoch)
        if epoch_end:
            done_epochs = step // per_epoch
            yield checkpoint(step, done_epochs)
            if tcfg.eval_every and done_epochs % tcfg.eval_every == 0 and step < total:
                yield evaluation(step, float(done_epochs), final=False)
            meter.restart_clock()
        elif step % tcfg.checkpoint_every == 0:
            yield checkpoint(step, step // per_epoch)
            meter.restart_clock()               # throughput counts training only
        if step < total:
            yield from between_steps()
            if stopped:
                break

    if stopped:
        log.flush()
        if last_checkpoint != step:        # a stop right after an epoch's checkpoint has one already
            yield checkpoint(step, step // per_epoch)
        if is_main:
            project.update_run(run_id, status="stopped")
        yield Finished(run_id, "stopped", step, {})
        return

    final_epoch = float(total // per_epoch)
    final = evaluation(step, final_epoch, final=True)
    yield final
    if (late := task.late_baselines()) is not None:
        log.add(0, 0.0, late)
        log.flush()
        yield Evaluation(run_id, 0, 0.0, late)
    if is_main:
        saved = []
        for split, ids, vectors in task.final_embeddings():
            emb_id = project.save_embeddings(run_id, split, ids, vectors, epoch=int(final_epoch))
            saved.append((emb_id, project.save_projection(emb_id, "pca", {}, pca_2d(vectors))))
        log.flush()
        project.update_run(run_id, status="finished", finished_at=utc_now())
        yield EmbeddingsSaved(run_id, *saved[0])
    yield Finished(run_id, "finished", step, final.metrics)


def report(run_id: int, task: Task, log: MetricsLog, meter: Meter, done: StepDone, epoch: float) -> Step:
    """The Step event of the steps since the last report, and its metrics rows: the mean
    loss, the learning rate, the throughput and the last step's logs."""
    if done.loss is None:      # a closed-form fit: no loss, learning rate or throughput to speak of
        log.add(done.step, epoch, done.logs)
        return Step(run_id, done.step, epoch, 0.0, 0.0, 0.0, done.logs)
    loss, rate = meter.take()
    log.add(done.step, epoch, {"loss": loss, "lr": done.lr, task.rate_metric: rate, **done.logs})
    if len(log) > 200:
        log.flush()
    return Step(run_id, done.step, epoch, loss, done.lr, rate, {**done.logs, task.rate_metric: rate})


class Meter:
    """The mean loss and the items per second of the steps since the last report; the
    clock restarts after work that is not training (checkpoints, evaluations, pauses)."""

    def __init__(self):
        self.restart_clock()
        self.loss_sum, self.steps = 0.0, 0

    def restart_clock(self) -> None:
        self.since, self.items = time.perf_counter(), 0

    def add(self, loss: float | None, items: int) -> None:
        self.loss_sum += loss or 0.0
        self.steps += 1
        self.items += items

    def take(self) -> tuple[float, float]:
        now = time.perf_counter()
        loss, rate = self.loss_sum / max(1, self.steps), self.items / max(now - self.since, 1e-9)
        self.loss_sum, self.steps = 0.0, 0
        self.since, self.items = now, 0
        return loss, rate


class MetricsLog:
    """Metric rows buffered and written in batches (only by the process that writes)."""

    def __init__(self, project, run_id: int, write: bool = True):
        self.project, self.run_id, self.write = project, run_id, write
        self.rows: list[tuple[int, float, str, float]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, step: int, epoch: float, values: dict) -> None:
        self.rows.extend((step, epoch, k, float(v)) for k, v in values.items())

    def flush(self) -> None:
        if self.write and self.rows:
            self.project.log_metrics(self.run_id, self.rows)
        self.rows = []


def pause_point(project, run_id: int, control: RunControl, step: int, write: bool = True) -> Iterator[Event]:
    """Mark the run paused, yield :class:`Paused`, and block until resumed or stopped."""
    if write:
        project.update_run(run_id, status="paused")
    yield Paused(run_id, step)
    while control.paused:
        control.wait_while_paused()
    if write and not control.stop_requested:
        project.update_run(run_id, status="running")


def forget_retaken_steps(project, run_id: int, start_step: int) -> None:
    """Drop the metrics of the steps a (re)started run takes again: those after the
    checkpoint it resumes from, or all of them when it starts from step 0 (killed
    before its first checkpoint, or stopped at step 0: its step-0 baselines are
    computed again), so that every step is logged once."""
    project.delete_metrics_after(run_id, start_step if start_step > 0 else -1)


def train_task(task: Task, max_seconds: float | None = None) -> dict:
    """Train a set-up ``task`` through its whole schedule with nothing stored (benchmarks,
    tests), or until ``max_seconds`` have passed. Returns the last step's logs plus steps,
    seconds and the throughput under the task's ``rate_metric``."""
    t0, items, done = time.perf_counter(), 0, None
    for done in task_steps(task):
        items += done.items
        if max_seconds is not None and time.perf_counter() - t0 > max_seconds:
            break
    seconds = time.perf_counter() - t0
    return {**(done.logs if done else {}), "steps": done.step if done else 0, "seconds": seconds,
            task.rate_metric: items / max(seconds, 1e-9)}


class Heartbeat:
    """Writes the run's heartbeat every ``HEARTBEAT_INTERVAL_S`` from a daemon thread,
    so a long step or evaluation never makes a live run look dead. Its writes go
    through the Project's write lock and SQLite's busy timeout, so they queue
    behind the loop's own writes instead of colliding with them."""

    def __init__(self, project, run_id: int):
        self._project, self._run_id, self._every = project, run_id, ownership.HEARTBEAT_INTERVAL_S
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"pretext-heartbeat-{run_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._done.wait(self._every):
            try:
                self._project.heartbeat_run(self._run_id)
            except Exception:  # noqa: BLE001 - a busy or closed file: try again next time
                pass

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=2.0)


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's CPU threads set to ``n`` (0: left as they are) while a run trains.
    On a machine whose cores are busy with other work, threads that wait for
    each other at every layer can make a small model several times slower than
    one thread does."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
