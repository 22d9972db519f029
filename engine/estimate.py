"""How long a run will take and how much memory it needs, from a few dry-run steps.

``estimate_run`` sets up the training loop's own image task (:mod:`engine.tasks.images`:
the same data preparation, method and step), takes a warm-up step and then
``steps`` real training steps (augmented views, forward, backward, optimiser
step) on a throw-away copy, and times them. Nothing is
written to the project: the run, its weights and its metrics only exist for the
length of the call.

Memory:

* on CUDA it is measured: ``torch.cuda.max_memory_allocated`` during the dry
  run, less what was allocated before it (the training images are moved to the
  GPU as the loop does, so they count);
* elsewhere (CPU, MPS) it is counted, because a process's resident size says
  little in a GUI that has already loaded data sets and models: parameters,
  gradients, optimiser state, the tensors autograd keeps for the backward pass
  (seen through ``torch.autograd.graph.saved_tensors_hooks``, each storage
  counted once), the loop's decoded copy of the images and the features of one
  evaluation. Temporaries freed inside a layer are not counted, so it is a
  lower bound of the true peak, usually within a few tens of percent.

Image methods only: text methods (word2vec, the masked language model) answer
``available: False``; their throughput shows once they train.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from . import evaluate
from .methods import get_method
from .loop import task_steps
from .tasks.feed import PREFETCH
from .tasks.images import ImageTask, earlier_raw_baselines, raw_pixels, training_indices
from .train import RunConfig, default_run_config, embed_images, pick_device

#: Items embedded (and classified by kNN and the linear probe) to time one evaluation,
#: scaled up to the whole data set.
EVAL_SAMPLE = 512
#: Items a closed-form method (PCA) is fitted on to time its fit (scaled up linearly).
FIT_SAMPLE = 2000


class EstimateCancelled(Exception):
    """The caller's ``cancel()`` returned True between two steps."""

    def __init__(self):
        super().__init__("cancelled")


def estimate_run(project, dataset, method: str | None = None, overrides: dict | None = None, steps: int = 3,
                 *, run_config: RunConfig | None = None, cancel: Callable[[], bool] | None = None,
                 max_seconds: float | None = None) -> dict:
    """Time ``steps`` training steps (after one warm-up step) of ``method`` on ``dataset``.

    Give either ``method`` (+ ``overrides``, as ``create_run`` takes them) or a
    complete ``run_config``. ``cancel`` is polled between steps; when it returns
    True the call raises :class:`EstimateCancelled`. ``max_seconds`` ends the
    dry run early, once at least one step was timed, when the steps so far took
    that long (a big network on the CPU: one step is then the estimate).

    Returns a dict: ``available`` (False for text methods, with ``reason``),
    ``device``, ``seconds_per_step``, ``steps_per_epoch``, ``seconds_per_epoch``,
    ``seconds_per_evaluation`` (embedding every item and the kNN),
    ``seconds_linear_probe`` (one probe fit), ``seconds_baselines``
    (the raw-pixel kNN and probe of a data set's first run), ``evaluations``,
    ``epochs``, ``total_seconds``,
    ``batch_size``, ``peak_memory_bytes``,
    ``memory_method`` ("measured" or "counted") and ``memory_parts``.
    """
    from .workbench import load_dataset
    cancel = cancel or (lambda: False)
    rec = project.dataset(dataset)
    data = load_dataset(project, rec.id)
    if run_config is None:
        if method is None:
            raise ValueError("give a method or a run_config")
        run_config = default_run_config(method, data, overrides)
    m_cls = get_method(run_config.method)
    tcfg = run_config.train
    device = pick_device(tcfg.device)
    if m_cls.trained_by != "images" or getattr(data, "modality", "images") == "text":
        return {"available": False, "device": str(device),
                "reason": "no estimate for text methods: their words/s or tokens/s show once they train"}
    # The first run on a data set fits the raw-pixel baselines; later ones reuse them.
    from types import SimpleNamespace
    need_baselines = not earlier_raw_baselines(
        project, SimpleNamespace(id=-1, dataset_id=rec.id, fingerprint=rec.fingerprint), run_config.train.knn_k)

    # The global RNG is the training thread's too: keep this call from moving it.
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        return _estimate(data, run_config, m_cls, device, max(1, int(steps)), cancel, max_seconds,
                         need_baselines)


def _estimate(data, run_config: RunConfig, m_cls, device: torch.device, steps: int,
              cancel: Callable[[], bool], max_seconds: float | None, need_baselines: bool) -> dict:
    tcfg = run_config.train
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base_allocated = torch.cuda.memory_allocated(device)

    n_train = len(training_indices(data, tcfg.max_train_items))
    epochs = tcfg.epochs if m_cls.iterative else 1
    if not m_cls.iterative:
        # A closed-form fit (PCA) on a sample, scaled linearly to the whole training set.
        sample = min(n_train, FIT_SAMPLE)
        run_config = dataclasses.replace(run_config, train=dataclasses.replace(tcfg, max_train_items=sample))
    # The loop's own task: the same data preparation, method and step.
    task = ImageTask(run_config, data)
    task.setup(None)
    method, feed = task.method, task.feed
    n_items, item_bytes = feed.n, int(np.prod(feed.shape[1:]))
    # uint8 in memory: the whole decoded set (or the cache filling up to it), else the
    # batches the DataLoader workers decode ahead.
    data_bytes = n_items * item_bytes if feed.cache is not None else \
        task.global_batch * item_bytes * PREFETCH * max(1, tcfg.data_workers)

    parts: dict[str, int] = {}
    warning = ""
    steps_done = task_steps(task)
    if not m_cls.iterative:
        t0 = time.perf_counter()
        next(steps_done)
        if cuda:
            torch.cuda.synchronize(device)
        seconds_per_step = (time.perf_counter() - t0) * n_train / sample
        steps_per_epoch = 1
        timed_steps = 0
        parts["normalised images"] = n_train * item_bytes * 4
        parts["parameters"] = _tensor_bytes(method.parameters()) + _tensor_bytes(method.buffers())
    else:
        steps_per_epoch = task.steps_per_epoch
        param_storages = {_storage_key(p) for p in method.parameters()}
        saved_peak = 0
        times: list[float] = []
        t_start = time.perf_counter()
        for i in range(steps + 1):               # step 0 warms up (lazy inits, allocator, kernels)
            if cancel():
                raise EstimateCancelled()
            if times and max_seconds is not None and time.perf_counter() - t_start > max_seconds:
                break
            saved: dict[tuple, int] = {}

            def pack(t: torch.Tensor, saved=saved):
                key = _storage_key(t)
                if key not in param_storages:
                    saved[key] = t.untyped_storage().nbytes()
                return t

            if cuda:
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                done = next(steps_done, None)
            if done is None:                     # a whole (tiny) run is shorter than the dry run
                break
            if cuda:
                torch.cuda.synchronize(device)
            if i > 0:
                times.append(time.perf_counter() - t0)
            if not math.isfinite(done.loss):
                warning = "the loss was not finite in the dry run: try a lower learning rate"
            saved_peak = max(saved_peak, sum(saved.values()))
        seconds_per_step = statistics.median(times) if times else 0.0
        timed_steps = len(times)
        parts["parameters"] = _tensor_bytes(method.parameters()) + _tensor_bytes(method.buffers())
        parts["gradients"] = _tensor_bytes(p for p in method.parameters() if p.requires_grad)
        parts["optimiser state"] = _tensor_bytes(v for s in task.optimizer.state.values() for v in s.values()
                                                 if isinstance(v, torch.Tensor))
        parts["saved activations"] = saved_peak
    steps_done.close()
    amp, batch = task.amp, task.global_batch

    # An evaluation embeds every item and classifies the test split by kNN; the last one
    # also fits the linear probe. Time them on a sample and scale to the whole data set.
    if cancel():
        raise EstimateCancelled()
    sample = min(n_items, EVAL_SAMPLE)
    t0 = time.perf_counter()
    feats = embed_images(method, feed.take(np.arange(sample)), device, amp=amp)
    if cuda:
        torch.cuda.synchronize(device)
    seconds_per_evaluation = (time.perf_counter() - t0) * n_items / max(1, sample)
    seconds_linear_probe = seconds_baselines = 0.0
    tr, te = data.split[:sample] == 0, data.split[:sample] == 1
    if data.labels is not None and tr.sum() >= 2 and te.sum() >= 1:
        y = data.labels[:sample]
        n_tr, n_te = int((data.split == 0).sum()), int((data.split == 1).sum())
        knn_scale = n_tr * n_te / (tr.sum() * te.sum())      # kNN compares every test item with every training item
        t0 = time.perf_counter()
        evaluate.knn_accuracy(feats[tr], y[tr], feats[te], y[te], k=tcfg.knn_k)
        seconds_per_evaluation += (time.perf_counter() - t0) * knn_scale
        t0 = time.perf_counter()
        evaluate.linear_probe_accuracy(feats[tr], y[tr], feats[te], y[te])
        seconds_linear_probe = (time.perf_counter() - t0) * n_tr / tr.sum()
        if need_baselines:
            # kNN and the linear probe on the raw pixels, once per data set.
            raw = evaluate.raw_pixel_features(raw_pixels(data.images, np.arange(sample)))
            t0 = time.perf_counter()
            evaluate.knn_accuracy(raw[tr], y[tr], raw[te], y[te], k=tcfg.knn_k)
            seconds_baselines = (time.perf_counter() - t0) * knn_scale
            t0 = time.perf_counter()
            evaluate.linear_probe_accuracy(raw[tr], y[tr], raw[te], y[te])
            seconds_baselines += (time.perf_counter() - t0) * n_tr / tr.sum()
    parts["images (the loop's copy)"] = int(data_bytes)
    parts["evaluation features"] = int(n_items * (feats.shape[1] if feats.ndim == 2 else 0) * 4)

    # Embeddings the run computes: the final one, the untrained baseline (labelled data),
    # and one per `eval_every` epochs before the last (see ``total_seconds``).
    labelled = data.labels is not None and bool((data.split == 1).any())
    fixed_evaluations = 1 + (1 if labelled and m_cls.iterative else 0)
    seconds_per_epoch = seconds_per_step * steps_per_epoch

    if cuda:
        peak = int(torch.cuda.max_memory_allocated(device) - base_allocated)
        memory_method = "measured"
    else:
        peak = int(sum(parts.values()))
        memory_method = "counted"
    out = {"available": True, "device": _device_name(device), "method": run_config.method,
           "seconds_per_step": float(seconds_per_step), "steps_per_epoch": int(steps_per_epoch),
           "seconds_per_epoch": float(seconds_per_epoch), "seconds_per_evaluation": float(seconds_per_evaluation),
           "seconds_linear_probe": float(seconds_linear_probe), "seconds_baselines": float(seconds_baselines),
           "fixed_evaluations": int(fixed_evaluations), "iterative": bool(m_cls.iterative),
           "timed_steps": timed_steps, "batch_size": int(batch), "n_train": int(n_train), "peak_memory_bytes": peak,
           "memory_method": memory_method, "memory_parts": {k: int(v) for k, v in parts.items()},
           "warning": warning}
    out["evaluations"] = evaluations(out, tcfg.epochs, tcfg.eval_every)
    out["epochs"] = int(epochs)
    out["total_seconds"] = total_seconds(out, tcfg.epochs, tcfg.eval_every, tcfg.linear_probe_every_eval)
    del method, feed, task
    if cuda:
        torch.cuda.empty_cache()
    return out


def evaluations(est: dict, epochs: int, eval_every: int) -> int:
    """How many times a run of ``epochs`` embeds every item (the loop evaluates every
    ``eval_every`` epochs before the last, then once at the end)."""
    if not est.get("iterative", True):
        return int(est["fixed_evaluations"])
    return int(est["fixed_evaluations"]) + ((epochs - 1) // eval_every if eval_every else 0)


def time_split(est: dict, epochs: int, eval_every: int, linear_every_eval: bool = False) -> dict:
    """The whole run's time from an estimate, split into its two parts so that a reader can
    check the sum: training (``epochs`` × ``seconds_per_epoch``) and evaluation
    (``evaluations`` × ``seconds_each_evaluation``, an average that spreads the linear probe
    fits and a data set's first-run raw-pixel baselines over the evaluations).
    ``training_seconds + evaluation_seconds == total_seconds``."""
    epochs = epochs if est.get("iterative", True) else 1
    n_eval = evaluations(est, epochs, eval_every)
    # The linear probe: on the untrained network (labelled data) and at the end, or at every evaluation.
    probes = n_eval if linear_every_eval else int(est["fixed_evaluations"])
    training = float(est["seconds_per_epoch"] * epochs)
    evaluation = float(est["seconds_per_evaluation"] * n_eval + est.get("seconds_linear_probe", 0.0) * probes
                       + est.get("seconds_baselines", 0.0))
    return {"epochs": int(epochs), "seconds_per_epoch": float(est["seconds_per_epoch"]),
            "training_seconds": training, "evaluations": n_eval, "linear_probes": probes,
            "seconds_each_evaluation": evaluation / n_eval if n_eval else 0.0,
            "evaluation_seconds": evaluation, "total_seconds": training + evaluation}


def total_seconds(est: dict, epochs: int, eval_every: int, linear_every_eval: bool = False) -> float:
    """The whole run's time from an estimate, for any number of epochs: the step time
    does not depend on them, so a new epoch count needs no new dry run."""
    return time_split(est, epochs, eval_every, linear_every_eval)["total_seconds"]


def _storage_key(t: torch.Tensor) -> tuple:
    storage = t.untyped_storage()
    return (t.device.type, t.device.index, storage.data_ptr())


def _tensor_bytes(tensors) -> int:
    seen, total = set(), 0
    for t in tensors:
        key = _storage_key(t)
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)
