"""The training loop, as a generator of small immutable events.

``train(...)`` runs one stored run and yields events (started, step,
evaluation, checkpoint, paused, finished, failed). The CLI prints them; the GUI
wraps the same generator in a worker thread. Only numbers, strings and numpy
arrays travel in events, so they cross threads safely.

Reproducibility: the data order of epoch e comes from a generator seeded with
(seed, e) and every random choice of step s (views, masks, noise) from one
seeded with (seed, s), so a run resumed from a checkpoint at step s takes
exactly the steps an uninterrupted run would have taken.
"""
from __future__ import annotations

import contextlib
import math
import platform
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from . import augment, config as cfgmod, evaluate
from .augment import ViewConfig
from .config import param
from .data import ImageData
from .methods import DataInfo, Method, get_method

# --------------------------------------------------------------------------------------
# Configuration


@dataclass
class TrainConfig:
    epochs: int = param(10, "Passes over the training images", min=1, max=100000)
    batch_size: int = param(256, "Images per step (per process when distributed)", min=2, max=65536)
    optimizer: str = param("adamw", "Optimiser", choices=("adamw", "adam", "sgd"))
    lr: float = param(2e-3, "Peak learning rate", min=0.0, max=10.0)
    weight_decay: float = param(1e-4, "Weight decay", min=0.0, max=1.0)
    warmup_epochs: float = param(0.5, "Linear warm-up before the cosine decay", min=0.0, max=1000.0)
    seed: int = param(0, "Random seed: same seed, same run", min=0, max=2**31 - 1)
    device: str = param("auto", "Where to train: auto picks CUDA, then MPS, then the CPU",
                        choices=("auto", "cpu", "cuda", "mps"))
    amp: bool = param(True, "Mixed precision (bf16) on CUDA; ignored on the CPU")
    eval_every: int = param(1, "Evaluate (kNN, collapse) every this many epochs; 0 = only at the end",
                            min=0, max=100000)
    linear_probe_every_eval: bool = param(False, "Also fit the linear probe at every evaluation "
                                                 "(it always runs at the end)")
    knn_k: int = param(200, "Neighbours in the kNN evaluation", min=1, max=10000, advanced=True)
    checkpoint_every: int = param(200, "Save a checkpoint every this many steps (and at each epoch end)",
                                  min=1, max=10**7)
    log_every: int = param(1, "Report the loss every this many steps", min=1, max=100000, advanced=True)
    max_train_items: int = param(0, "Train on at most this many images (0 = all)", min=0, max=10**9,
                                 advanced=True)
    threads: int = param(0, "CPU threads for torch (0 = as many as there are cores); 1 can be "
                            "much faster when other work keeps the cores busy", min=0, max=1024, advanced=True)
    timeline_items: int = param(2000, "Items embedded at every evaluation for the map timeline "
                                      "(0 = none)", min=0, max=10**6, advanced=True)


@dataclass
class RunConfig:
    """Everything a run stores as JSON: the loop's, the method's and the views' settings."""
    method: str
    train: TrainConfig = field(default_factory=TrainConfig)
    method_config: object = None
    views: ViewConfig = field(default_factory=ViewConfig)

    def to_dict(self) -> dict:
        return {"method": self.method, "train": cfgmod.to_dict(self.train),
                "method_config": cfgmod.to_dict(self.method_config), "views": cfgmod.to_dict(self.views)}

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        m = get_method(d["method"])
        return cls(method=d["method"], train=cfgmod.from_dict(TrainConfig, d.get("train"), strict=False),
                   method_config=cfgmod.from_dict(m.Config, d.get("method_config"), strict=False),
                   views=cfgmod.from_dict(ViewConfig, d.get("views"), strict=False))


def default_run_config(method: str, data: ImageData, overrides: dict[str, str] | None = None) -> RunConfig:
    """Defaults for ``method`` on ``data``, then ``overrides`` ({"lr": "0.01",
    "temperature": "0.1", "views.flip_p": "0"}) routed to the config that owns each key.

    On a CUDA machine the method's ``gpu_defaults`` (bigger backbone, batch,
    more epochs) come between its CPU defaults and the user's overrides.
    """
    m = get_method(method)
    views = (ViewConfig() if getattr(data, "modality", "images") == "text"   # text: no image views
             else augment.default_views(data.name, data.height, data.channels))
    run = RunConfig(method=method, train=TrainConfig(), method_config=m.Config(), views=views)
    overrides = {k: str(v) for k, v in (overrides or {}).items()}
    wants_gpu = overrides.get("device", "auto") in ("auto", "cuda") and torch.cuda.is_available()
    layers = [m.train_defaults, m.gpu_defaults if wants_gpu else {}, overrides]
    train_keys = {f.name for f in cfgmod.fields(TrainConfig)}
    method_keys = {f.name for f in cfgmod.fields(m.Config)}
    for layer in layers:
        groups: dict[str, dict] = {"train": {}, "method_config": {}, "views": {}}
        for key, value in layer.items():
            if key.startswith("views."):
                groups["views"][key[6:]] = value
            elif key in method_keys:
                groups["method_config"][key] = value
            elif key in train_keys:
                groups["train"][key] = value
            else:
                known = sorted(train_keys | method_keys)
                raise cfgmod.ConfigError({key: f"is not a setting of {method} or of training "
                                               f"(known: {', '.join(known)}; views.<name> for views)"})
        run.train = cfgmod.with_overrides(run.train, groups["train"])
        run.method_config = cfgmod.with_overrides(run.method_config, groups["method_config"])
        try:
            run.views = cfgmod.with_overrides(run.views, groups["views"])
        except cfgmod.ConfigError as e:     # name the setting as it was typed: views.flip_p
            raise cfgmod.ConfigError({f"views.{k}": v for k, v in e.problems.items()}) from None
    return run


def check_runnable(run: RunConfig, data) -> None:
    """Raise :class:`~engine.config.ConfigError` (one line) for a run that cannot start
    here: a setting out of range or not finite, a method that does not fit the data
    (text, images, captions), or a device this machine does not have. Both front ends
    call it (through ``workbench.create_run``) before a run row is written."""
    for part in (run.train, run.method_config, run.views):
        if part is not None:
            cfgmod.check(part)
    m = get_method(run.method)
    holds = getattr(data, "modality", "images")
    if m.modality != holds:
        hint = ("add a text corpus (main.py datasets add --project P text path=corpus.txt)" if m.modality == "text"
                else "choose an image dataset")
        raise cfgmod.ConfigError({"method": f"{run.method} trains on {m.modality}, and dataset {data.name!r} "
                                            f"holds {holds}: {hint}"})
    if m.needs_captions and not any((c or "").strip() for c in (getattr(data, "captions", None) or [])):
        raise cfgmod.ConfigError({"method": f"{run.method} learns from image–caption pairs, and dataset "
                                            f"{data.name!r} has no captions: use the built-in shapes, or an image "
                                            "folder imported with captions=captions.csv"})
    device = run.train.device
    from .methods.mlm import MaskedLanguageModel
    if m.modality == "text" and not issubclass(m, MaskedLanguageModel) and device in ("cuda", "mps"):
        raise cfgmod.ConfigError({"device": f"{run.method} trains on the CPU only (device={device} was asked "
                                            "for): use device=cpu or auto"})
    try:
        pick_device(device)
    except RuntimeError as e:
        raise cfgmod.ConfigError({"device": str(e)}) from None


# --------------------------------------------------------------------------------------
# Events


@dataclass(frozen=True)
class Started:
    run_id: int
    device: str
    total_steps: int
    steps_per_epoch: int
    n_train: int
    start_step: int
    items: str = "images"       # what n_train counts, and what the Step throughput is per second
    rate: str = "img/s"


@dataclass(frozen=True)
class Step:
    run_id: int
    step: int
    epoch: float
    loss: float
    lr: float
    images_per_s: float
    logs: dict


@dataclass(frozen=True)
class Evaluation:
    run_id: int
    step: int
    epoch: float
    metrics: dict


@dataclass(frozen=True)
class CheckpointSaved:
    run_id: int
    step: int
    epoch: int


@dataclass(frozen=True)
class Paused:
    run_id: int
    step: int


@dataclass(frozen=True)
class EmbeddingsSaved:
    run_id: int
    embedding_id: int
    projection_id: int


@dataclass(frozen=True)
class Finished:
    run_id: int
    status: str          # "finished" or "stopped"
    step: int
    metrics: dict


@dataclass(frozen=True)
class Failed:
    run_id: int
    error: str
    details: str


Event = Started | Step | Evaluation | CheckpointSaved | Paused | EmbeddingsSaved | Finished | Failed


class RunControl:
    """Cooperative stop and pause, set from any thread, polled by the loop."""

    def __init__(self):
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()          # a paused loop must wake up to stop

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self, timeout: float = 0.1) -> None:
        self._running.wait(timeout)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a torchrun job."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# --------------------------------------------------------------------------------------
# Helpers


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for, but no CUDA GPU is available here")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise RuntimeError("device=mps was asked for, but Apple's MPS is not available here")
    return torch.device(name)


def environment_versions() -> dict[str, str]:
    import sklearn
    import torchvision
    return {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__,
            "scikit-learn": sklearn.__version__, "platform": platform.platform()}


def lr_at(step: int, total_steps: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero — a pure function of the step."""
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    if warmup and step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 9_973 + rank * 7_919) % (2**63 - 1))
    return g


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator()
    g.manual_seed(seed * 7_777_777 + epoch)
    return torch.randperm(n, generator=g)


@torch.no_grad()
def embed_images(method: Method, images: torch.Tensor, device: torch.device, batch: int = 512,
                 amp: bool = False) -> np.ndarray:
    """Representations of uint8 (N, C, H, W) images, no augmentation, in eval mode."""
    was_training = method.training
    method.eval()
    out = []
    for i in range(0, len(images), batch):
        x = augment.normalize(images[i:i + batch].to(device, non_blocking=True))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(method.embed(x).float().cpu())
    method.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def images_tensor(data: ImageData) -> torch.Tensor:
    """(N, H, W, C) uint8 numpy → (N, C, H, W) uint8 torch, without copying twice."""
    return torch.from_numpy(np.ascontiguousarray(data.images)).permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------------------
# The loop


def train(project, run_id: int, data: ImageData, control: RunControl | None = None,
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
    heartbeat = _Heartbeat(project, run_id) if owns else None
    try:
        try:
            record = project.run(run_id)
            text = get_method(record.method).modality == "text"
            threads = int(record.config.get("train", {}).get("threads") or 0)
        except Exception:  # noqa: BLE001 - the image loop below reports what is wrong
            text, threads = False, 0
        with _torch_threads(threads):
            if text:
                from .train_text import train_text
                yield from train_text(project, run_id, data, control, dist)
            else:
                yield from _train_reporting_failures(project, run_id, data, control, dist)
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        if owns:
            with contextlib.suppress(Exception):   # the file may be the problem; the pid check still works
                project.release_run(run_id)


class _Heartbeat:
    """Writes the run's heartbeat every ``HEARTBEAT_INTERVAL_S`` from a daemon thread,
    so a long step or evaluation never makes a live run look dead. Its writes go
    through the Project's write lock and SQLite's busy timeout, so they queue
    behind the loop's own writes instead of colliding with them."""

    def __init__(self, project, run_id: int):
        from .store.ownership import HEARTBEAT_INTERVAL_S
        self._project, self._run_id, self._every = project, run_id, HEARTBEAT_INTERVAL_S
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
def _torch_threads(n: int):
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


def _train_reporting_failures(project, run_id: int, data, control: RunControl, dist: DistInfo) -> Iterator[Event]:
    try:
        yield from _train(project, run_id, data, control, dist)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, none is lost
        details = traceback.format_exc()
        message = readable_error(exc)
        if dist.is_main:
            try:
                project.update_run(run_id, status="failed", error=f"{message}\n\n{details}",
                                   finished_at=utc_now())
            except Exception:  # noqa: BLE001 - the file itself may be the problem
                pass
        yield Failed(run_id, message, details)


def pause_point(project, run_id: int, control: RunControl, step: int, write: bool = True) -> Iterator[Event]:
    """Mark the run paused, yield :class:`Paused`, and block until resumed or stopped
    (every loop pauses here, between two steps)."""
    if write:
        project.update_run(run_id, status="paused")
    yield Paused(run_id, step)
    while control.paused:
        control.wait_while_paused()
    if write and not control.stop_requested:
        project.update_run(run_id, status="running")


def _mean_over_ranks(value: torch.Tensor, dist: DistInfo) -> float:
    """The loss averaged over all processes, so every rank logs the global batch's loss."""
    if dist.world_size > 1:
        value = value.clone().float()
        torch.distributed.all_reduce(value)
        value /= dist.world_size
    return float(value)


def readable_error(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return f"Out of memory: try a smaller batch size or backbone. ({exc})"
    return text


def utc_now():
    from datetime import datetime, timezone
    return datetime.now(timezone.utc)


def _train(project, run_id: int, data: ImageData, control: RunControl, dist: DistInfo) -> Iterator[Event]:
    record = project.run(run_id)
    run_cfg = RunConfig.from_dict(record.config)
    tcfg = run_cfg.train
    if dist.world_size > 1:
        device = (torch.device("cuda", dist.local_rank) if tcfg.device in ("auto", "cuda")
                  and torch.cuda.is_available() else torch.device("cpu"))
    else:
        device = pick_device(tcfg.device)
    amp = tcfg.amp and device.type == "cuda"
    is_main = dist.is_main

    # Data: train split only for training; everything for evaluation and maps.
    images = images_tensor(data)
    train_idx = np.flatnonzero(data.split == 0)
    if tcfg.max_train_items:
        train_idx = train_idx[:tcfg.max_train_items]
    if len(train_idx) < 2:
        raise ValueError(f"dataset {data.name!r} has {len(train_idx)} training images; at least 2 are needed")
    train_index = torch.from_numpy(train_idx)     # position in the training set → dataset index
    train_images = images[train_index]
    if device.type == "cuda":
        train_images = train_images.to(device)     # the whole uint8 set fits on any GPU we target
    n_train = len(train_idx)
    global_batch = min(tcfg.batch_size * dist.world_size, n_train)
    per_rank = max(1, global_batch // dist.world_size)
    global_batch = per_rank * dist.world_size
    steps_per_epoch = max(1, n_train // global_batch)

    # Build the method with a seeded init, so the same seed gives the same network.
    torch.manual_seed(tcfg.seed)
    m_cls = get_method(run_cfg.method)
    info = DataInfo(data.name, data.channels, data.height, data.width, n_train)
    method: Method = m_cls(run_cfg.method_config, info)
    method.prepare(data)          # once, before any restore: e.g. CLIP tokenises the captions
    method = method.to(device)
    total_steps = steps_per_epoch * tcfg.epochs if m_cls.iterative else 1

    optimizer = make_optimizer(method.parameters(), tcfg) if m_cls.iterative and \
        any(p.requires_grad for p in method.parameters()) else None
    start_step = 0
    resumed = project.latest_checkpoint(run_id)
    if resumed is not None:
        ck_step, _, state = resumed
        method.load_state_dict(state["model"])
        if optimizer is not None and state.get("optim"):
            optimizer.load_state_dict(state["optim"])
        start_step = ck_step
    if dist.is_main:
        forget_retaken_steps(project, run_id, start_step)

    model = method
    if dist.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            method, device_ids=[device.index] if device.type == "cuda" else None)

    if is_main:
        project.update_run(run_id, status="running", device=str(device), error=None,
                           started_at=record.started_at or utc_now())
    yield Started(run_id, str(device), total_steps, steps_per_epoch, n_train, start_step)

    labels = data.labels
    test_idx = np.flatnonzero(data.split == 1)
    can_eval = labels is not None and len(test_idx) > 0
    metrics_buffer: list[tuple[int, float, str, float]] = []

    def flush():
        if is_main and metrics_buffer:
            project.log_metrics(run_id, metrics_buffer)
        metrics_buffer.clear()

    def run_evaluation(step: int, epoch: float, final: bool) -> tuple[dict, np.ndarray | None]:
        if not is_main:
            return {}, None          # only rank 0 reports and writes: the others would evaluate for nothing
        feats = embed_images(method, images, device, amp=amp)
        out = {}
        if can_eval:
            which = ("knn", "linear") if (final or tcfg.linear_probe_every_eval) else ("knn",)
            out.update(evaluate.evaluate_features(feats[data.split == 0], labels[data.split == 0],
                                                  feats[test_idx], labels[test_idx],
                                                  k=tcfg.knn_k, which=which))
        for k, v in evaluate.collapse_metrics(feats[:4096]).items():
            out[f"feature_{k}"] = v
        out.update(method.evaluate_extra(data, feats, final=final))
        if is_main:
            metrics_buffer.extend((step, epoch, k, float(v)) for k, v in out.items())
            flush()
            if tcfg.timeline_items and not final:
                sel = np.arange(min(tcfg.timeline_items, len(feats)))
                project.save_embeddings(run_id, "timeline", sel, feats[sel], epoch=int(round(epoch)),
                                        dtype="float16")
        return out, feats

    # Baselines beside every result: raw pixels, and this very network before training.
    if is_main and start_step == 0 and can_eval:
        tr, te = data.split == 0, test_idx
        base = earlier_raw_baselines(project, record, tcfg.knn_k)
        if not base:
            raw = evaluate.raw_pixel_features(data.images)
            base = evaluate.evaluate_features(raw[tr], labels[tr], raw[te], labels[te], prefix="raw_",
                                              k=tcfg.knn_k)
        if m_cls.iterative:
            init = embed_images(method, images, device, amp=amp)
            base.update(evaluate.evaluate_features(init[tr], labels[tr], init[te], labels[te],
                                                   prefix="random_", k=tcfg.knn_k))
        metrics_buffer.extend((0, 0.0, k, float(v)) for k, v in base.items())
        flush()
        yield Evaluation(run_id, 0, 0.0, base)

    last_checkpoint = start_step if resumed is not None else None

    def checkpoint(step: int, epoch: int):
        nonlocal last_checkpoint
        last_checkpoint = step
        if is_main:
            state = {"model": method.state_dict(),
                     "optim": optimizer.state_dict() if optimizer is not None else {},
                     "step": step}
            project.save_checkpoint(run_id, step, epoch, state)
            # Reconstructions of a fixed sample at every checkpoint, so a viewer
            # can show how they sharpen over training.
            _save_reconstructions(project, run_id, method, images, device, tcfg.seed, step)
        return CheckpointSaved(run_id, step, epoch)

    step = start_step
    stopped = False
    if not m_cls.iterative:
        if start_step == 0:
            x = augment.normalize(train_images.to(device))
            with torch.no_grad():
                logs = method.fit(x)
            step = 1
            metrics_buffer.extend((1, 1.0, k, float(v)) for k, v in logs.items())
            yield Step(run_id, 1, 1.0, 0.0, 0.0, 0.0, logs)
            yield checkpoint(1, 1)
    else:
        method.train()
        t_last, n_since = time.perf_counter(), 0
        while step < total_steps:
            epoch = step // steps_per_epoch
            order = epoch_order(n_train, tcfg.seed, epoch)
            for b in range(step % steps_per_epoch, steps_per_epoch):
                if control.paused:
                    flush()
                    yield from pause_point(project, run_id, control, step, write=is_main)
                    t_last, n_since = time.perf_counter(), 0
                if control.stop_requested:
                    stopped = True
                    break
                idx = order[b * global_batch:(b + 1) * global_batch][dist.rank::dist.world_size]
                x = train_images[idx.to(train_images.device)].to(device, non_blocking=True)
                lr = lr_at(step, total_steps, steps_per_epoch, tcfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                gen = step_generator(tcfg.seed, step, dist.rank, device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                    loss, logs = model(x, run_cfg.views, gen, index=train_index[idx].to(device))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"the loss became {loss.item()} at step {step}: "
                                             "try a lower learning rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                method.after_step(step, total_steps)
                step += 1
                n_since += len(x) * dist.world_size
                if step % tcfg.log_every == 0 or step == total_steps:
                    now = time.perf_counter()
                    ips = n_since / max(now - t_last, 1e-9)
                    t_last, n_since = now, 0
                    z = logs.pop("z", None)
                    floats = {k: float(v) for k, v in logs.items()}
                    if z is not None and step % max(tcfg.log_every, 10) == 0:
                        floats.update({f"collapse_{k}": v for k, v in
                                       evaluate.collapse_metrics(z.float().cpu().numpy()).items()
                                       if k in ("std_ratio", "rank_ratio")})
                    ep = step / steps_per_epoch
                    loss_value = _mean_over_ranks(loss.detach(), dist)
                    metrics_buffer.extend([(step, ep, "loss", loss_value), (step, ep, "lr", lr),
                                           (step, ep, "images_per_s", ips)]
                                          + [(step, ep, k, v) for k, v in floats.items()])
                    if len(metrics_buffer) > 200:
                        flush()
                    yield Step(run_id, step, ep, loss_value, lr, ips, floats)
                if step % tcfg.checkpoint_every == 0 and step % steps_per_epoch != 0:
                    flush()
                    yield checkpoint(step, epoch)
                    t_last, n_since = time.perf_counter(), 0   # throughput counts training only
            if stopped:
                break
            # End of an epoch.
            done_epochs = step // steps_per_epoch
            flush()
            yield checkpoint(step, done_epochs)
            if (tcfg.eval_every and done_epochs % tcfg.eval_every == 0 and step < total_steps):
                metrics, _ = run_evaluation(step, float(done_epochs), final=False)
                yield Evaluation(run_id, step, float(done_epochs), metrics)
            t_last, n_since = time.perf_counter(), 0

    if stopped:
        flush()
        if last_checkpoint != step:        # a stop right after an epoch's checkpoint has one already
            yield checkpoint(step, step // steps_per_epoch)
        if is_main:
            project.update_run(run_id, status="stopped")
        yield Finished(run_id, "stopped", step, {})
        return

    final_epoch = float(tcfg.epochs if m_cls.iterative else 1)
    metrics, feats = run_evaluation(step, final_epoch, final=True)
    yield Evaluation(run_id, step, final_epoch, metrics)
    if is_main:
        emb_id = project.save_embeddings(run_id, "all", np.arange(len(feats)), feats,
                                         epoch=int(final_epoch))
        from .maps import pca_2d
        proj_id = project.save_projection(emb_id, "pca", {}, pca_2d(feats))
        for split, (ids, vectors) in method.extra_embeddings(data).items():   # e.g. CLIP's captions
            extra_id = project.save_embeddings(run_id, split, ids, vectors, epoch=int(final_epoch))
            project.save_projection(extra_id, "pca", {}, pca_2d(vectors))
        flush()
        project.update_run(run_id, status="finished", finished_at=utc_now())
        yield EmbeddingsSaved(run_id, emb_id, proj_id)
    yield Finished(run_id, "finished", step, metrics)


def forget_retaken_steps(project, run_id: int, start_step: int) -> None:
    """Drop the metrics of the steps a (re)started run takes again: those after the
    checkpoint it resumes from, or all of them when it starts from step 0 (killed
    before its first checkpoint, or stopped at step 0: its step-0 baselines are
    computed again), so that every step is logged once."""
    project.delete_metrics_after(run_id, start_step if start_step > 0 else -1)


def earlier_raw_baselines(project, record, knn_k: int) -> dict[str, float]:
    """The raw-pixel baselines of an earlier run on the same data and kNN setting.

    They depend only on the dataset, and the raw-pixel linear probe is often the
    slowest part of a short run: comparing ten methods should not fit it ten times."""
    for other in reversed(project.runs(record.dataset_id)):
        if other.id == record.id or other.fingerprint != record.fingerprint or \
                other.config.get("train", {}).get("knn_k") != knn_k:
            continue
        found = {name: rows[0].value for name in ("raw_knn", "raw_linear")
                 if (rows := [m for m in project.metrics(other.id, name) if m.step == 0])}
        if len(found) == 2:
            return found
    return {}


def _save_reconstructions(project, run_id: int, method: Method, images: torch.Tensor,
                          device: torch.device, seed: int, step: int, n: int = 16) -> None:
    """A PNG grid, one row per picture kind (original / input / reconstruction...),
    for methods that reconstruct; nothing for the others."""
    g = torch.Generator().manual_seed(seed)
    sample = images[torch.randperm(len(images), generator=g)[:n]].to(device)
    was_training = method.training
    method.eval()
    with torch.no_grad():
        rec = method.reconstruct(sample, step_generator(seed, 0, 0, device))
    method.train(was_training)
    if rec is None:
        return
    from .images import grid_png
    names = list(rec)        # original, input, reconstruction (and e.g. MAE's "pasted")
    project.save_artifact(run_id, "reconstructions", "png", grid_png([rec[k] for k in names]), step=step,
                          meta={"rows": names, "n": len(sample)})
