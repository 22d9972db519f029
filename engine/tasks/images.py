"""The image methods as a task of the training loop (:mod:`engine.loop`).

Training images are the train split (at most ``max_train_items``), kept as uint8
on the training device; a step takes ``batch_size`` of them per process, in an
order seeded by (seed, epoch), and the method's random choices (views, masks,
noise) come from a generator seeded by (seed, step, rank). Evaluations embed
every image: kNN (and the linear probe at the end) on the test split, collapse
metrics, the method's own extras, and timeline embeddings for the map. A
closed-form method (PCA) is one step: its fit.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import augment, evaluate
from ..images import grid_png
from ..methods import DataInfo, ImageMethod, get_method
from ..train import embed_images, epoch_order, make_optimizer, pick_device, step_generator
from .feed import EpochBatches, ImageFeed
from .base import Task


# The baselines of a data set up to this size decoded (the built-in sets: 6 MB) are computed
# before the first step; those of larger ones after the run: embedding every image with the
# untrained network and fitting two probes takes minutes on thousands of photos.
EARLY_BASELINE_BYTES = 20_000_000
RAW_SIDE = 32


def raw_pixels(images, index: np.ndarray | None = None):
    """The images (those at ``index``) at most RAW_SIDE px on a side, for
    evaluate.raw_pixel_features: stored images decoded at that size (a fraction of the
    work of full size) and a chunk at a time; arrays as they are (it shrinks them)."""
    if isinstance(images, np.ndarray):
        return images if index is None else images[index]
    if index is not None:
        images = images.take(index) if hasattr(images, "take") else np.asarray(images[index])
    if hasattr(images, "at_size") and images.shape[1] > RAW_SIDE:
        images = images.at_size(RAW_SIDE)
    if isinstance(images, np.ndarray) or not hasattr(images, "chunks"):
        return np.asarray(images)
    return images.chunks(2048)          # raw_pixel_features takes the chunks one by one


class ImageTask(Task):
    items, rate, rate_metric = "images", "img/s", "images_per_s"

    def setup(self, state: dict | None) -> None:
        tcfg, dist, data = self.train_config, self.dist, self.data
        if dist.world_size > 1:
            self.device = (torch.device("cuda", dist.local_rank) if tcfg.device in ("auto", "cuda")
                           and torch.cuda.is_available() else torch.device("cpu"))
        else:
            self.device = pick_device(tcfg.device)
        self.amp = tcfg.amp and self.device.type == "cuda"

        check_linked_files(data.images)
        # Data: train split only for training; everything for evaluation and maps. The feed
        # holds the decoded set in memory (on the GPU there) or streams it (engine/tasks/feed.py).
        self.feed = ImageFeed(data.images, self.device, tcfg.cache_mb, tcfg.data_workers)
        train_idx = training_indices(data, tcfg.max_train_items)
        self.train_index = torch.from_numpy(train_idx)     # position in the training set → dataset index
        self.n_train = len(train_idx)
        per_rank = max(1, min(tcfg.batch_size * dist.world_size, self.n_train) // dist.world_size)
        self.global_batch = per_rank * dist.world_size

        # Build the method with a seeded init, so the same seed gives the same network.
        torch.manual_seed(tcfg.seed)
        m_cls = get_method(self.run_config.method)
        self.iterative = m_cls.iterative
        info = DataInfo(data.name, data.channels, data.height, data.width, self.n_train)
        method: ImageMethod = m_cls(self.run_config.method_config, info)
        method.prepare(data)          # once, before any restore: e.g. CLIP tokenises the captions
        self.method = method.to(self.device)
        # A closed-form fit is one step, its only epoch.
        self.steps_per_epoch = max(1, self.n_train // self.global_batch) if self.iterative else 1
        self.total_steps = self.steps_per_epoch * tcfg.epochs if self.iterative else 1
        self.optimizer = make_optimizer(method.param_groups(tcfg), tcfg, method.optimizer_options(tcfg)) if self.iterative and \
            any(p.requires_grad for p in method.parameters()) else None
        if state is not None:
            method.load_state_dict(state["model"])
            if self.optimizer is not None and state.get("optim"):
                self.optimizer.load_state_dict(state["optim"])
        self.model = method
        if dist.world_size > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                method, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        # Items without a label (-1, e.g. STL-10's unlabelled split) train but are not evaluated.
        labelled = np.ones(data.n, bool) if data.labels is None else data.labels >= 0
        self.test_idx = np.flatnonzero((data.split == 1) & labelled)
        self.eval_train = (data.split == 0) & labelled
        self.can_eval = data.labels is not None and len(self.test_idx) > 0 and self.eval_train.any()
        self.features = None
        self.late, self.initial_state = False, None
        method.train()

    def batches(self, epoch: int):
        if not self.iterative:
            return [None]
        order = epoch_order(self.n_train, self.train_config.seed, epoch)
        gb, dist = self.global_batch, self.dist
        positions = [order[b * gb:(b + 1) * gb][dist.rank::dist.world_size] for b in range(self.steps_per_epoch)]
        return EpochBatches(self.feed, positions, self.train_index)

    def learning_rate(self, step: int) -> float:
        return super().learning_rate(step) if self.iterative else 0.0

    def step(self, step: int, idx, lr: float):
        tcfg, device = self.train_config, self.device
        if not self.iterative:
            x = augment.normalize(self.feed.take(self.train_index.numpy()).to(device))
            with torch.no_grad():
                logs = self.method.fit(x)
            return None, {k: float(v) for k, v in logs.items()}, self.n_train
        idx, x = idx
        x = x.to(device, non_blocking=True)
        for group in self.optimizer.param_groups:
            if not group.get("fixed_lr"):      # a method's fixed-lr group (SimSiam's predictor) keeps its own
                group["lr"] = lr
        gen = step_generator(tcfg.seed, step, self.dist.rank, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp):
            loss, logs = self.model(x, self.run_config.views, gen, index=self.train_index[idx].to(device))
        value = mean_over_ranks(loss.detach(), self.dist)
        if not np.isfinite(value):
            return value, {}, 0
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.method.after_step(step, self.total_steps)
        z = logs.pop("z", None)
        floats = {k: float(v) for k, v in logs.items()}
        if z is not None and (step + 1) % max(tcfg.log_every, 10) == 0:
            floats.update({f"collapse_{k}": v for k, v in evaluate.collapse_metrics(z.float().cpu().numpy()).items()
                           if k in ("std_ratio", "rank_ratio")})
        return value, floats, len(x) * self.dist.world_size

    def state(self) -> dict:
        return {"model": self.method.state_dict(),
                "optim": self.optimizer.state_dict() if self.optimizer is not None else {}}

    def on_checkpoint(self, step: int) -> None:
        # Reconstructions of a fixed sample at every checkpoint, so a viewer can show
        # how they sharpen over training.
        if self.project is not None:
            save_reconstructions(self.project, self.record.id, self.method, self.feed, self.device,
                                 self.train_config.seed, step)

    def baselines(self) -> dict[str, float] | None:
        """Beside every result: raw pixels, and this very network before training.

        Computed now when that is quick (small data); otherwise after the run
        (:meth:`late_baselines`), so that no baseline delays the first step: on
        10,000 photos they once took 20 minutes (issue 13). Raw pixels are
        taken at most 32×32 and reused from an earlier run on the same data."""
        if self.project is None or not self.can_eval:
            return None
        data = self.data
        if data.n * data.height * data.width * data.channels > EARLY_BASELINE_BYTES:
            self.late = True
            if self.iterative:      # the untrained network, kept for its baseline after the run
                self.initial_state = {k: v.detach().to("cpu", copy=True) for k, v in self.method.state_dict().items()}
            return None
        return self._baselines(self.iterative)

    def late_baselines(self) -> dict[str, float] | None:
        """The baselines that :meth:`baselines` left for after the run (or that a resumed
        run never got), once the final evaluation is done."""
        if self.project is None or not self.can_eval or not self.dist.is_main:
            return None
        if not self.late and any(m.step == 0 for m in self.project.metrics(self.record.id, "raw_knn")):
            return None
        trained = None
        if self.initial_state is not None:
            trained = {k: v.detach().clone() for k, v in self.method.state_dict().items()}
            self.method.load_state_dict(self.initial_state)
        try:
            return self._baselines(with_random=self.initial_state is not None)
        finally:
            if trained is not None:
                self.method.load_state_dict(trained)

    def _baselines(self, with_random: bool) -> dict[str, float]:
        data, tcfg, labels = self.data, self.train_config, self.data.labels
        tr, te = self.eval_train, self.test_idx
        base = earlier_raw_baselines(self.project, self.record, tcfg.knn_k)
        if not base:
            raw = evaluate.raw_pixel_features(raw_pixels(data.images))
            base = evaluate.evaluate_features(raw[tr], labels[tr], raw[te], labels[te], prefix="raw_", k=tcfg.knn_k)
        if with_random:
            init = embed_images(self.method, self.feed, self.device, amp=self.amp)
            base.update(evaluate.evaluate_features(init[tr], labels[tr], init[te], labels[te],
                                                   prefix="random_", k=tcfg.knn_k))
        return base

    def evaluate(self, epoch: float, final: bool) -> dict[str, float]:
        if not self.dist.is_main:
            return {}          # only rank 0 reports and writes: the others would evaluate for nothing
        data, tcfg, labels, te = self.data, self.train_config, self.data.labels, self.test_idx
        feats = embed_images(self.method, self.feed, self.device, amp=self.amp)
        out = {}
        if self.can_eval:
            which = ("knn", "linear") if (final or tcfg.linear_probe_every_eval) else ("knn",)
            tr = self.eval_train
            out.update(evaluate.evaluate_features(feats[tr], labels[tr], feats[te], labels[te],
                                                  k=tcfg.knn_k, which=which))
        for k, v in evaluate.collapse_metrics(feats[:4096]).items():
            out[f"feature_{k}"] = v
        out.update(self.method.evaluate_extra(data, feats, final=final))
        if final:
            self.features = feats
        elif tcfg.timeline_items and self.project is not None:
            sel = np.arange(min(tcfg.timeline_items, len(feats)))
            self.project.save_embeddings(self.record.id, "timeline", sel, feats[sel], epoch=int(round(epoch)),
                                         dtype="float16")
        return out

    def final_embeddings(self):
        feats = self.features
        extra = self.method.extra_embeddings(self.data)      # e.g. CLIP's captions
        return [("all", np.arange(len(feats)), feats)] + [(split, ids, v) for split, (ids, v) in extra.items()]


def check_linked_files(images) -> None:
    """A ``link=true`` collection whose files moved or changed stops the run before its
    first step, naming them, rather than halfway through an epoch (one stat per file)."""
    problems = getattr(getattr(images, "source", None), "problems", None)
    found = problems(limit=20) if problems is not None else []
    if found:
        listed = "; ".join(f"{path} ({why})" for path, why in found[:5])
        more = " and more" if len(found) > 5 else ""
        raise ValueError(f"{len(found) if len(found) < 20 else 'at least 20'} linked image files are missing "
                         f"or changed since the import: {listed}{more}. Put them back, or import the folder again")


def training_indices(data, max_items: int = 0) -> np.ndarray:
    """Dataset indices of the images a run trains on: the train split, at most ``max_items`` (0: all)."""
    idx = np.flatnonzero(data.split == 0)
    if max_items:
        idx = idx[:max_items]
    if len(idx) < 2:
        raise ValueError(f"dataset {data.name!r} has {len(idx)} training images; at least 2 are needed")
    return idx


def mean_over_ranks(value: torch.Tensor, dist) -> float:
    """The loss averaged over all processes, so every rank logs the global batch's loss
    (and every rank sees a non-finite one)."""
    if dist.world_size > 1:
        value = value.clone().float()
        torch.distributed.all_reduce(value)
        value /= dist.world_size
    return float(value)


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


def save_reconstructions(project, run_id: int, method: ImageMethod, images,
                         device: torch.device, seed: int, step: int, n: int = 16) -> None:
    """A PNG grid, one row per picture kind (original / input / reconstruction...),
    for a method that reconstructs; nothing for the others."""
    if method.reconstructs is None:
        return
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(images) if isinstance(images, torch.Tensor) else images.n, generator=g)[:n]
    sample = (images[pick] if isinstance(images, torch.Tensor) else images.take(pick.numpy())).to(device)
    was_training = method.training
    method.eval()
    with torch.no_grad():
        rec = method.reconstruct(sample, step_generator(seed, 0, 0, device))
    method.train(was_training)
    names = list(rec)        # original, input, reconstruction (and e.g. MAE's "pasted")
    project.save_artifact(run_id, "reconstructions", "png", grid_png([rec[k] for k in names]), step=step,
                          meta={"rows": names, "n": len(sample)})
