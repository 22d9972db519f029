"""Label efficiency: how good a run's representation is with a few labels per class.

``label_efficiency(project, run_id, per_class=(1, 10, 100), seeds=5, select="random")``
draws, for each count k and each seed, a labelled subset of the train split and scores
every mode on the whole labelled test split (items labelled -1 are never used):

- ``probe``: the linear probe (:func:`engine.evaluate.linear_probe_accuracy`) on the run's
  frozen final embeddings;
- ``finetune``: the run's trained encoder (``method.embed``) plus a linear head, trained
  together with cross-entropy for :data:`FINETUNE_BUDGET` (a fixed number of steps of a
  fixed batch drawn with replacement from the subset, light crop + flip views);
- ``scratch``: the same network freshly initialised (seeded), trained exactly as
  ``finetune`` (same steps, examples, optimiser and views; every layer at the head's rate,
  where the pretrained encoder of ``finetune`` learns at a tenth of it);
- ``raw``: the linear probe on raw pixels (:func:`engine.evaluate.raw_pixel_features`).

Subsets: with ``select="random"`` k items of every class, drawn with
``numpy.random.default_rng((seed, k))`` (same seed, same items). With ``select`` one of
``kcenter`` / ``typiclust`` (:mod:`engine.selection`), ``k × n_classes`` items are chosen
from the train split's embedding alone — NOT class-balanced, since the labels are unknown
before selection (that is the point of selecting) — and the modes train on their true labels;
the seed then varies only what is random in the strategy.

Stored metrics (``project.log_metrics`` at the run's last step; the GUI reads exactly these):

- ``label_eff/{mode}@{k}``: mean accuracy over seeds, mode in probe, finetune, scratch, raw;
- ``label_eff/{mode}@{k}_std``: its standard deviation over seeds (numpy's, ddof=0);
- ``label_eff/n_seeds@{k}``: how many seeds the mean is over;

each name with ``/{select}`` appended when the selection is not random, e.g.
``label_eff/probe@10/typiclust`` and ``label_eff/probe@10_std/typiclust``.

Text runs (word2vec, the masked language model) are refused: the analogue would be a
sentence-classification probe on a labelled corpus, which Pretext does not offer yet.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import augment, evaluate
from .selection import STRATEGIES
from .selection import select as select_items

MODES = ("probe", "finetune", "scratch", "raw")
METRIC_PREFIX = "label_eff/"


class LabelEfficiencyCancelled(Exception):
    """``cancel()`` returned True between two fits."""


@dataclass(frozen=True)
class Budget:
    """What ``finetune`` and ``scratch`` each get, whatever the subset's size: ``steps``
    Adam steps on batches of ``batch_size`` items drawn with replacement from the subset
    (so both see ``steps × batch_size`` examples).

    ``finetune``'s pretrained encoder learns at ``lr × encoder_lr_scale`` and its new head at
    ``lr``; ``scratch`` trains every layer at ``lr`` (a fresh network has nothing to keep).
    A lower backbone rate is the usual fine-tuning practice; here it is also measured: with
    every layer at 1e-3, 200 steps over 10 CIFAR images (1 per class) pulled BYOL's encoder
    below its own frozen probe (finetune 0.151 vs probe 0.164)."""
    steps: int = 200
    batch_size: int = 64
    lr: float = 1e-3
    encoder_lr_scale: float = 0.1


#: The fine-tuning (and scratch) budget: 200 steps × 64 examples, Adam at 1e-3 (a pretrained
#: encoder at 1e-4).
FINETUNE_BUDGET = Budget()


def metric_name(mode: str, k: int, select: str = "random", std: bool = False) -> str:
    """The stored name of one number, e.g. ``label_eff/probe@10`` or ``label_eff/probe@10_std/typiclust``."""
    name = f"{METRIC_PREFIX}{mode}@{int(k)}" + ("_std" if std else "")
    return name if select == "random" else f"{name}/{select}"


def balanced_subset(labels: np.ndarray, pool: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` positions of every class among ``pool`` (positions into ``labels``), seeded; sorted."""
    rng = np.random.default_rng((int(seed), int(k)))
    pool = np.sort(np.asarray(pool, dtype=np.int64))
    out = []
    for c in np.unique(labels[pool]):
        members = pool[labels[pool] == c]
        if len(members) < k:
            raise ValueError(f"class {c} has only {len(members)} labelled training items, fewer than {k} "
                             f"per class; ask for at most {len(members)}")
        out.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(out))


def light_views(dataset_name: str, height: int, channels: int) -> augment.ViewConfig:
    """Crop + flip only (no flip where the data set's own views have none, e.g. digits)."""
    base = augment.default_views(dataset_name, height, channels)
    cfg = augment.identity()
    cfg.crop_scale_min, cfg.crop_scale_max = max(0.5, base.crop_scale_min), 1.0
    cfg.flip_p = base.flip_p
    return cfg


def _nchw(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.dim() == 3:
        x = x.unsqueeze(-1)
    return x.permute(0, 3, 1, 2).contiguous()


class Classifier(nn.Module):
    """An image method's ``embed`` followed by a linear head."""

    def __init__(self, method, dim: int, n_classes: int):
        super().__init__()
        self.method = method
        self.head = nn.Linear(dim, n_classes)
        # A zero head (MAE's fine-tuning starts its head near zero too): the first steps move
        # it towards the classes instead of undoing a random one, which a few hundred small
        # Adam steps cannot do on large features.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x):
        return self.head(self.method.embed(x))


def _feature_dim(method, x: torch.Tensor) -> int:
    was = method.training
    method.eval()
    with torch.no_grad():
        d = method.embed(augment.normalize(x[:2])).shape[1]
    method.train(was)
    return int(d)


def train_classifier(method, x: torch.Tensor, y: np.ndarray, n_classes: int, views: augment.ViewConfig,
                     budget: Budget, seed: int, pretrained: bool = True) -> tuple[Classifier, dict]:
    """Train ``method`` (in place) + a new head on uint8 (n, C, H, W) ``x`` with labels ``y``
    for exactly ``budget``; returns the classifier and {"steps", "examples"} as counted.
    ``pretrained``: the encoder learns at ``budget.encoder_lr_scale`` of the head's rate."""
    gen = torch.Generator().manual_seed(int(seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = Classifier(method, _feature_dim(method, x), n_classes)
    encoder = [p for p in model.method.parameters() if p.requires_grad]
    scale = budget.encoder_lr_scale if pretrained else 1.0
    opt = torch.optim.Adam([{"params": encoder, "lr": budget.lr * scale},
                            {"params": list(model.head.parameters()), "lr": budget.lr}])
    yt = torch.as_tensor(y, dtype=torch.long)
    model.train()
    steps = examples = 0
    for _ in range(budget.steps):
        idx = torch.randint(len(x), (budget.batch_size,), generator=gen)
        v = augment.make_views(x[idx], views, gen)
        loss = F.cross_entropy(model(v), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
        examples += len(idx)
    model.eval()
    return model, {"steps": steps, "examples": examples}


@torch.no_grad()
def classifier_accuracy(model: Classifier, x: torch.Tensor, y: np.ndarray, batch: int = 512) -> float:
    model.eval()
    pred = [model(augment.normalize(x[i:i + batch])).argmax(1) for i in range(0, len(x), batch)]
    return float((torch.cat(pred).numpy() == np.asarray(y)).mean())


def fresh_copy(method, seed: int):
    """The same architecture and config as ``method``, freshly initialised with ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return type(method)(method.cfg, method.info)


def _check_image_run(project, run) -> None:
    from .methods import get_method
    if get_method(run.method).modality == "text":
        raise ValueError(f"run {run.id} ({run.method}) learns from text: no few-label analogue is offered for "
                         "text yet (it would be a sentence-classification probe on a labelled corpus)")


def label_efficiency(project, run_id: int, per_class=(1, 10, 100), seeds: int = 5, select: str = "random",
                     modes=MODES, progress=None, cancel=None, budget: Budget = FINETUNE_BUDGET,
                     store: bool = True) -> dict:
    """Accuracy with ``k`` labels per class for each ``k`` of ``per_class``; see the module
    docstring. ``progress(done, total, text)`` after each fit; ``cancel()`` True stops with
    :class:`LabelEfficiencyCancelled`. Returns the JSON-able result and, with ``store``,
    logs every number as a metric of the run."""
    from .workbench import labelled_embeddings, load_trained_method
    modes = tuple(modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}")
    if select not in STRATEGIES:
        raise ValueError(f"unknown selection {select!r}; choose from {', '.join(STRATEGIES)}")
    counts = sorted({int(k) for k in per_class})
    if not counts or counts[0] < 1:
        raise ValueError("labels per class must be whole numbers of at least 1")
    if int(seeds) < 1:
        raise ValueError("seeds must be at least 1")
    run = project.run(run_id)
    _check_image_run(project, run)
    emb, data, ids, feats = labelled_embeddings(project, run)
    labels = np.asarray(data.labels)
    split = np.asarray(data.split)
    # Positions into (ids, feats) of labelled train and test items.
    item_labels = labels[ids]
    pool = np.flatnonzero((split[ids] == 0) & (item_labels >= 0))
    test = np.flatnonzero((split[ids] == 1) & (item_labels >= 0))
    if len(pool) == 0 or len(test) == 0:
        raise ValueError(f"the dataset of run {run.id} has no labelled {'train' if len(pool) == 0 else 'test'} items")
    classes = np.unique(item_labels[pool])
    n_classes = int(max(labels.max(), 0)) + 1
    smallest = min(int((item_labels[pool] == c).sum()) for c in classes)
    if select == "random" and counts[-1] > smallest:
        raise ValueError(f"{counts[-1]} labels per class is more than the smallest class has "
                         f"({smallest} labelled training items); ask for at most {smallest}")
    if counts[-1] * len(classes) > len(pool):
        raise ValueError(f"{counts[-1]} labels per class × {len(classes)} classes is more than the "
                         f"{len(pool)} labelled training items")

    need_images = any(m in modes for m in ("finetune", "scratch", "raw"))
    test_x = _nchw(data.images[ids[test]]) if need_images else None
    test_raw = evaluate.raw_pixel_features(data.images[ids[test]]) if "raw" in modes else None
    method = views = None
    if "finetune" in modes or "scratch" in modes:
        method, _ = load_trained_method(project, run.id, device="cpu")
        views = light_views(data.name, data.height, data.channels)

    total = len(counts) * int(seeds)
    done = 0
    trained: dict[str, dict] = {}
    rows = []
    for k in counts:
        scores = {m: [] for m in modes}
        for seed in range(int(seeds)):
            if cancel is not None and cancel():
                raise LabelEfficiencyCancelled()
            if select == "random":
                sub = balanced_subset(item_labels, pool, k, seed)
            else:
                sub = pool[select_items(feats[pool], k * len(classes), select, seed)]
            ytr = item_labels[sub]
            if "probe" in modes:
                scores["probe"].append(evaluate.linear_probe_accuracy(feats[sub], ytr, feats[test],
                                                                      item_labels[test], seed=seed))
            if "raw" in modes:
                raw = evaluate.raw_pixel_features(data.images[ids[sub]])
                scores["raw"].append(evaluate.linear_probe_accuracy(raw, ytr, test_raw, item_labels[test],
                                                                    seed=seed))
            if "finetune" in modes or "scratch" in modes:
                x = _nchw(data.images[ids[sub]])
                for mode in ("finetune", "scratch"):
                    if mode not in modes:
                        continue
                    net = copy.deepcopy(method) if mode == "finetune" else fresh_copy(method, seed)
                    model, counted = train_classifier(net, x, ytr, n_classes, views, budget, seed,
                                                      pretrained=mode == "finetune")
                    scores[mode].append(classifier_accuracy(model, test_x, item_labels[test]))
                    trained[mode] = counted
            done += 1
            if progress is not None:
                progress(done, total, f"{k} per class, seed {seed}")
        row = {"per_class": k, **{m: float(np.mean(scores[m])) for m in modes}, "n_seeds": int(seeds),
               "n_labelled": int(len(sub)), "std": {m: float(np.std(scores[m])) for m in modes}}
        rows.append(row)

    if store:
        last = max((m.step for m in project.metrics(run.id)), default=0)
        epoch = float(emb.epoch or 0)
        metrics = []
        for row in rows:
            k = row["per_class"]
            for m in modes:
                metrics.append((last, epoch, metric_name(m, k, select), row[m]))
                metrics.append((last, epoch, metric_name(m, k, select, std=True), row["std"][m]))
            metrics.append((last, epoch, metric_name("n_seeds", k, select), row["n_seeds"]))
        project.log_metrics(run.id, metrics)

    return {"label_efficiency": rows, "select": select, "run": run.id, "embedding": emb.id,
            "class_balanced": select == "random",
            "selection_note": None if select == "random" else
            f"{select} chose k × {len(classes)} items from the train embedding without labels: "
            "not class-balanced",
            "modes": list(modes), "budget": asdict(budget), "trained": trained}
