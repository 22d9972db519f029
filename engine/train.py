"""What a run is and what training says while it runs: the settings (``TrainConfig``,
``RunConfig``, their defaults and the checks before a run row is written), the
events the loop yields (started, step, evaluation, checkpoint, paused, embeddings,
finished, failed), ``RunControl`` for pause and stop from another thread, and the
helpers every task shares (device, schedule, optimiser, seeded generators,
embedding images).

The loop itself is :mod:`engine.loop`; what each kind of training does is a task
in :mod:`engine.tasks`. The CLI prints the events; the GUI wraps the same
generator in a worker thread. Only numbers, strings and numpy arrays travel in
events, so they cross threads safely.
"""
from __future__ import annotations

import math
import platform
import threading
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import torch

from . import augment, config as cfgmod
from .augment import ViewConfig
from .config import param
from .data import ImageData
from .methods import Method, get_method

# --------------------------------------------------------------------------------------
# Configuration


@dataclass
class TrainConfig:
    epochs: int = param(10, "Passes over the training images", min=1, max=100000)
    batch_size: int = param(256, "Images per step (per process when distributed)", min=2, max=65536)
    optimizer: str = param("adamw", "Optimiser (lars: SGD with layer-wise trust ratios, for large batches)",
                           choices=("adamw", "adam", "sgd", "lars"))
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
    cache_mb: int = param(2048, "Memory for decoded images (MB): a stored collection that fits is decoded "
                                "once, during the first epoch, then read from memory; a larger one is "
                                "decoded batch by batch in every epoch", min=0, max=10**7, advanced=True)
    data_workers: int = param(2, "Processes that decode stored images ahead of training (0: decode in "
                                 "the training thread)", min=0, max=64, advanced=True)
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


#: From this side (px), a CPU run's default batch shrinks with the image area (:func:`cpu_batch_size`).
LARGE_IMAGE_PX = 64
#: The smallest default batch that shrinking gives (SimCLR still sees 2 × 64 − 2 negatives).
MIN_CPU_BATCH = 64


def cpu_batch_size(batch: int, side: int) -> int:
    """A CPU run's default batch for images of ``side`` px: ``batch`` up to 63 px, then
    ``batch × (32 / side)²`` (the same pixels per step as at 32 px), at least MIN_CPU_BATCH.
    Measured (issue 13): at 96 px the loop's batch 256 took 5–7 s per step with the small CNN
    and held ~2.3 GB of activations, so a run's first step came ~15 s after Start."""
    if side < LARGE_IMAGE_PX:
        return batch
    return min(batch, max(MIN_CPU_BATCH, int(batch * (32 / side) ** 2)))


def default_run_config(method: str, data: ImageData, overrides: dict[str, str] | None = None) -> RunConfig:
    """Defaults for ``method`` on ``data``, then ``overrides`` ({"lr": "0.01",
    "temperature": "0.1", "views.flip_p": "0"}) routed to the config that owns each key.

    On a CUDA machine the method's ``gpu_defaults`` (bigger backbone, batch,
    more epochs) come between its CPU defaults and the user's overrides. On the CPU a
    default batch shrinks for images of 64 px and more (:func:`cpu_batch_size`).
    """
    m = get_method(method)
    images = getattr(data, "modality", "images") != "text"
    views = (m.default_views(augment.default_views(data.name, data.height, data.channels)) if images
             else ViewConfig())                                              # text: no image views
    run = RunConfig(method=method, train=TrainConfig(), method_config=m.Config(), views=views)
    overrides = {k: str(v) for k, v in (overrides or {}).items()}
    wants_gpu = overrides.get("device", "auto") in ("auto", "cuda") and torch.cuda.is_available()
    layers = [m.train_defaults, m.gpu_defaults if wants_gpu else {}, overrides]
    if images and not wants_gpu and "batch_size" not in overrides:
        batch = int(m.train_defaults.get("batch_size", run.train.batch_size))
        layers.insert(1, {"batch_size": cpu_batch_size(batch, int(getattr(data, "height", 0)))})
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
    if m.cpu_only and device in ("cuda", "mps"):
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


def make_optimizer(params, cfg: TrainConfig, options: dict | None = None) -> torch.optim.Optimizer:
    """The run's optimiser over ``params``: tensors, or the parameter groups a method declares
    (:meth:`Method.param_groups`; a group's own ``weight_decay`` overrides the run's).
    ``options``: the method's extra keyword arguments (:meth:`Method.optimizer_options`).

    A stored optimiser state whose groups do not match (a run saved before its method split
    its parameters into groups) is not restored: the optimiser starts afresh, with a warning,
    and the weights load as usual."""
    options = dict(options or {})
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **{"momentum": 0.9, **options})
    elif cfg.optimizer == "lars":
        opt = LARS(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **options)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **options)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **options)
    opt.register_load_state_dict_pre_hook(_fresh_if_groups_differ)
    return opt


def _fresh_if_groups_differ(optimizer: torch.optim.Optimizer, state: dict) -> dict | None:
    """load_state_dict pre-hook: a stored state with other groups (their number, or the
    parameters in each) would make ``load_state_dict`` raise; load the optimiser's own
    fresh state instead."""
    stored = [len(g["params"]) for g in state.get("param_groups", [])]
    now = [len(g["params"]) for g in optimizer.param_groups]
    if stored == now:
        return None
    warnings.warn(f"the stored optimiser state has parameter groups of {stored} tensors, this optimiser "
                  f"{now} (a run saved before the method declared its groups): the optimiser starts "
                  "afresh (momentum and moments reset); the weights are restored", RuntimeWarning)
    return optimizer.state_dict()


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017),
    as SimCLR and BYOL train with large batches.

    Per parameter tensor, the update d = g + wd·w is scaled by the trust ratio
    η‖w‖ / ‖d‖ (1 where either norm is 0), so every layer moves by about η·lr of its own
    norm whatever its gradient's scale; then heavy-ball momentum, w ← w − lr·v with
    v ← μv + d. Groups marked ``no_decay`` (biases, norms: :func:`engine.methods.base.decay_groups`)
    are excluded from the adaptation as from the decay, as in both papers."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, eta: float = 0.001):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            adapt = not group.get("no_decay", False)
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else p.grad.clone()
                if adapt:
                    w_norm, d_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(d)
                    ok = (w_norm > 0) & (d_norm > 0)
                    d.mul_(torch.where(ok, group["eta"] * w_norm / d_norm.clamp(min=1e-30), 1.0))
                buf = self.state[p].get("momentum_buffer")
                if buf is None:
                    buf = self.state[p]["momentum_buffer"] = d
                else:
                    buf.mul_(group["momentum"]).add_(d)
                p.add_(buf, alpha=-group["lr"])
        return loss


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 9_973 + rank * 7_919) % (2**63 - 1))
    return g


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator()
    g.manual_seed(seed * 7_777_777 + epoch)
    return torch.randperm(n, generator=g)


@torch.no_grad()
def embed_images(method: Method, images, device: torch.device, batch: int = 512,
                 amp: bool = False) -> np.ndarray:
    """Representations of uint8 (N, C, H, W) images — a tensor, or an ImageFeed
    (engine/tasks/feed.py) that streams them — no augmentation, in eval mode."""
    was_training = method.training
    method.eval()
    out = []
    chunks = images.chunks(batch) if not isinstance(images, torch.Tensor) else \
        (images[i:i + batch] for i in range(0, len(images), batch))
    for x in chunks:
        x = augment.normalize(x.to(device, non_blocking=True))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out.append(method.embed(x).float().cpu())
    method.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def images_tensor(data: ImageData) -> torch.Tensor:
    """(N, H, W, C) uint8 numpy → (N, C, H, W) uint8 torch, without copying twice."""
    return torch.from_numpy(np.ascontiguousarray(data.images)).permute(0, 3, 1, 2).contiguous()


def readable_error(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return f"Out of memory: try a smaller batch size or backbone. ({exc})"
    return text


def utc_now() -> datetime:
    return datetime.now(timezone.utc)
