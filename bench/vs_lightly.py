"""Training speed of our SimCLR, BYOL and SimSiam against lightly's standard recipe.

Ours: the method from engine.methods with on-device batched views
(engine.augment) made from the uint8 batch. lightly's: its ``SimCLRTransform``
per PIL image inside a torch ``DataLoader`` (num_workers 0 and 2), its heads
(``SimCLRProjectionHead``, ``BYOLProjectionHead``/``BYOLPredictionHead`` with
``update_momentum`` and ``cosine_schedule``, ``SimSiamProjectionHead``/
``SimSiamPredictionHead``) and losses (``NTXentLoss``,
``NegativeCosineSimilarity``), written as in lightly's examples. Both sides:
the same backbone (our small CNN, width 32), the same head sizes, the same
views (crop scale (0.2, 1), flip, colour jitter 0.8 × (0.4, 0.4, 0.4, 0.1),
grayscale 0.2, no blur at 32 px, normalisation), the same optimiser (AdamW),
batch 256, the same number of steps, measured in the same run. Both sides
forward the two views separately, as the papers' code does for BYOL and
SimSiam (and as our SimCLR and lightly's examples do).

Where the time goes (torch.profiler, small CNN width 32, batch 256, 32 px): our
views of both views of the batch take 10–20 ms of a 1–2 s step; the rest is
convolutions (forward and backward) and BatchNorm. What helped: keeping the
backbone's weights in channels_last (oneDNN's native layout), 1.4–1.5× on
the whole step, same arithmetic. What did not: one forward of both views as
a 2B batch was no faster on this CPU, and it would change the BatchNorm
statistics the papers' BYOL/SimSiam code uses (one view per forward), so the
methods keep separate forwards. On a loaded 2-core machine one torch thread
is often faster than two; ``--threads`` sets it for the main process.

Each pipeline runs ``--warmup`` untimed steps (DataLoader workers start, first
allocations), then ``--steps`` timed ones; the whole comparison is repeated
``--reps`` times, interleaved, and the best rep of each pipeline counts (other
processes on a shared machine only ever slow a rep down).

Data: 32×32 CIFAR-10 training images from ../shared/data when present
(a seeded class-balanced sample of ``--images``), otherwise seeded synthetic
32×32 RGB images.

    .venv/bin/python bench/vs_lightly.py [--methods simclr,byol,simsiam] [--steps 5] [--warmup 2]
                                         [--reps 2] [--batch 256] [--images 4096] [--threads 0]
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from engine.augment import MEAN, STD, default_views  # noqa: E402
from engine.methods import METHODS, DataInfo  # noqa: E402
from engine.nets import SmallCNN  # noqa: E402

CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.zip"
WIDTH = 32
LR, WD = 2e-3, 1e-4


def load_data(n: int) -> tuple[np.ndarray, str]:
    """(n, 32, 32, 3) uint8 images and where they came from."""
    if CIFAR.is_file():
        from engine.data import load_images
        data = load_images("image-folder", path=str(CIFAR), limit=n)
        return np.ascontiguousarray(data.images[:n]), f"CIFAR-10 ({len(data.images[:n])} images from {CIFAR.name})"
    rng = np.random.default_rng(0)
    # Smooth random images (a blurred, upsampled 8×8 noise), not white noise, so JPEG-like statistics.
    small = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    images = np.stack([np.asarray(Image.fromarray(s).resize((32, 32), Image.BILINEAR)) for s in small])
    return images, f"synthetic ({n} smooth random 32×32 RGB images)"


# ------------------------------------------------------------------------------------------------
# Ours


def run_ours(name: str, x: torch.Tensor, batch: int, warmup: int, steps: int, seed: int = 0,
             channels_last: bool = False) -> float:
    cls = METHODS[name]
    torch.manual_seed(seed)
    method = cls(cls.Config(backbone="small-cnn", width=WIDTH), DataInfo("cifar10", 3, 32, 32, len(x)))
    if channels_last:
        method.backbone.to(memory_format=torch.channels_last)
    method.train()
    views = default_views("cifar10", 32, 3)
    opt = torch.optim.AdamW(method.parameters(), lr=LR, weight_decay=WD)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    total = warmup + steps
    per_epoch = len(x) // batch
    t0 = time.perf_counter()
    for s in range(total):
        if s == warmup:
            t0 = time.perf_counter()
        b = s % per_epoch
        xb = x[order[b * batch:(b + 1) * batch]]
        loss, _ = method(xb, views, torch.Generator().manual_seed(seed * 100003 + s))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.after_step(s, total)
    return steps * batch / (time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------
# lightly's standard recipe (as in its examples)


class PILImages(Dataset):
    def __init__(self, images: list, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i])          # [view0, view1]


def lightly_model(name: str) -> nn.Module:
    from lightly.loss import NegativeCosineSimilarity, NTXentLoss
    from lightly.models.modules import (BYOLPredictionHead, BYOLProjectionHead, SimCLRProjectionHead,
                                        SimSiamPredictionHead, SimSiamProjectionHead)
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.utils.scheduler import cosine_schedule

    backbone = SmallCNN(3, WIDTH)
    dim = backbone.dim
    if name == "simclr":
        class SimCLRModel(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone, self.head = backbone, SimCLRProjectionHead(dim, 512, 128)
                self.criterion = NTXentLoss(temperature=0.2)

            def step(self, x0, x1, k, total):
                z0 = self.head(self.backbone(x0))
                z1 = self.head(self.backbone(x1))
                return self.criterion(z0, z1)
        return SimCLRModel()
    if name == "byol":
        class BYOLModel(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = backbone
                self.projection_head = BYOLProjectionHead(dim, 512, 128)
                self.prediction_head = BYOLPredictionHead(128, 512, 128)
                self.backbone_momentum = copy.deepcopy(self.backbone)
                self.projection_head_momentum = copy.deepcopy(self.projection_head)
                deactivate_requires_grad(self.backbone_momentum)
                deactivate_requires_grad(self.projection_head_momentum)
                self.criterion = NegativeCosineSimilarity()

            def forward(self, x):
                return self.prediction_head(self.projection_head(self.backbone(x)))

            def forward_momentum(self, x):
                return self.projection_head_momentum(self.backbone_momentum(x)).detach()

            def step(self, x0, x1, k, total):
                m = cosine_schedule(k, total, 0.99, 1.0)
                update_momentum(self.backbone, self.backbone_momentum, m=m)
                update_momentum(self.projection_head, self.projection_head_momentum, m=m)
                p0, z0 = self.forward(x0), self.forward_momentum(x0)
                p1, z1 = self.forward(x1), self.forward_momentum(x1)
                return 0.5 * (self.criterion(p0, z1) + self.criterion(p1, z0))
        return BYOLModel()
    if name == "simsiam":
        class SimSiamModel(nn.Module):
            def __init__(self):
                super().__init__()
                self.backbone = backbone
                self.projection_head = SimSiamProjectionHead(dim, 512, 512)
                self.prediction_head = SimSiamPredictionHead(512, 128, 512)
                self.criterion = NegativeCosineSimilarity()

            def forward(self, x):
                z = self.projection_head(self.backbone(x))
                return z.detach(), self.prediction_head(z)

            def step(self, x0, x1, k, total):
                z0, p0 = self.forward(x0)
                z1, p1 = self.forward(x1)
                return 0.5 * (self.criterion(z0, p1) + self.criterion(z1, p0))
        return SimSiamModel()
    raise ValueError(name)


def run_lightly(name: str, pil: list, batch: int, warmup: int, steps: int, workers: int, seed: int = 0) -> float:
    from lightly.transforms import SimCLRTransform
    torch.manual_seed(seed)
    transform = SimCLRTransform(input_size=32, cj_prob=0.8, cj_strength=0.5, min_scale=0.2,
                                random_gray_scale=0.2, gaussian_blur=0.0, hf_prob=0.5,
                                normalize={"mean": [MEAN] * 3, "std": [STD] * 3})
    loader = DataLoader(PILImages(pil, transform), batch_size=batch, shuffle=True, num_workers=workers,
                        drop_last=True, generator=torch.Generator().manual_seed(seed))
    model = lightly_model(name)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=WD)
    total = warmup + steps
    it = iter(loader)
    t0 = time.perf_counter()
    for s in range(total):
        if s == warmup:
            t0 = time.perf_counter()
        try:
            x0, x1 = next(it)
        except StopIteration:
            it = iter(loader)
            x0, x1 = next(it)
        loss = model.step(x0, x1, s, total)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    rate = steps * batch / (time.perf_counter() - t0)
    del it
    return rate


# ------------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="simclr,byol,simsiam")
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads in the main process (0 = torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    images, source = load_data(args.images)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    pil = [Image.fromarray(im) for im in images]
    import lightly
    print(f"data: {source}; batch {args.batch}; {args.warmup} warm-up + {args.steps} timed steps; best of "
          f"{args.reps}; torch {torch.__version__} ({torch.get_num_threads()} threads), lightly {lightly.__version__}")
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        # Our MoCo/BYOL/SimSiam/SwAV keep their backbone in channels_last; where a method's file
        # does not (yet), also measure it with that one change, labelled as such.
        probe = METHODS[name](METHODS[name].Config(width=4), DataInfo("c", 3, 8, 8, 2)).backbone
        conv = next(m for m in probe.modules() if isinstance(m, nn.Conv2d))
        variants = {"ours": False}
        if not conv.weight.is_contiguous(memory_format=torch.channels_last):
            variants["ours, backbone in channels_last (not in the method's file)"] = True
        best = dict.fromkeys([*variants, "l0", "l2"], 0.0)
        for _ in range(args.reps):
            for label, cl in variants.items():
                best[label] = max(best[label], run_ours(name, x, args.batch, args.warmup, args.steps,
                                                        channels_last=cl))
            best["l0"] = max(best["l0"], run_lightly(name, pil, args.batch, args.warmup, args.steps, 0))
            best["l2"] = max(best["l2"], run_lightly(name, pil, args.batch, args.warmup, args.steps, 2))
        for label in variants:
            o = best[label]
            print(f"vs_lightly {name}: {label} {o:.0f} img/s | lightly 0 workers {best['l0']:.0f} img/s "
                  f"({o / best['l0']:.2f}x) | lightly 2 workers {best['l2']:.0f} img/s "
                  f"({o / best['l2']:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
