"""Batched on-device views vs a per-image torchvision.transforms.v2 pipeline.

Synthetic 32×32 RGB uint8 images, batch 256, SimCLR-like CIFAR views (crop
scale (0.2, 1), flip, colour jitter 0.8 × (0.4, 0.4, 0.4, 0.1), grayscale 0.2,
normalise). The reference is the same operations per image with
torchvision.transforms.v2 inside a DataLoader (num_workers 0 and 2, same batch
size), measured in the same run. Each pipeline runs a warm-up pass, then
``--reps`` timed passes over the data; the best pass counts (other processes
on a shared machine only ever slow a pass down).

    .venv/bin/python bench/augment.py [--images 8192] [--batch 256] [--reps 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402
from torchvision.transforms import v2  # noqa: E402

from engine.augment import MEAN, STD, default_views, make_views  # noqa: E402


class Images(Dataset):
    def __init__(self, x: torch.Tensor, transform):
        self.x, self.transform = x, transform

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.transform(self.x[i])


def per_image_transform(cfg):
    size = cfg.out_size or 32
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(cfg.crop_scale_min, cfg.crop_scale_max),
                             ratio=(cfg.crop_ratio_min, cfg.crop_ratio_max), antialias=True),
        v2.RandomHorizontalFlip(cfg.flip_p),
        v2.RandomApply([v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)],
                       p=cfg.jitter_p),
        v2.RandomGrayscale(cfg.grayscale_p),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize([MEAN] * 3, [STD] * 3),
    ])


def time_batched(x, cfg, batch, seed=0):
    g = torch.Generator(device=x.device).manual_seed(seed)
    t = time.perf_counter()
    n = 0
    for i in range(0, len(x), batch):
        v = make_views(x[i:i + batch], cfg, g)
        n += len(v)
    if x.is_cuda:
        torch.cuda.synchronize()
    return n, time.perf_counter() - t


def time_loader(loader):
    t = time.perf_counter()
    n = 0
    for v in loader:
        n += len(v)
    return n, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    x_cpu = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8)
    x = x_cpu.to(args.device)
    cfg = default_views("cifar10", 32, 3)

    ds = Images(x_cpu, per_image_transform(cfg))
    loaders = {w: DataLoader(ds, batch_size=args.batch, shuffle=False, num_workers=w,
                             persistent_workers=w > 0) for w in (0, 2)}

    best = {"batched": float("inf"), 0: float("inf"), 2: float("inf")}
    counts = {}
    # warm-up (worker start-up, first-call allocations) excluded
    time_batched(x, cfg, args.batch)
    for w, dl in loaders.items():
        time_loader(dl)
    for _ in range(args.reps):
        n, dt = time_batched(x, cfg, args.batch)
        counts["batched"], best["batched"] = n, min(best["batched"], dt)
        for w, dl in loaders.items():
            n, dt = time_loader(dl)
            counts[w], best[w] = n, min(best[w], dt)

    rate = {k: counts[k] / best[k] for k in best}
    print(f"augment: {args.images} synthetic 32x32 RGB images, batch {args.batch}, "
          f"torch threads {args.threads}, device {args.device}, best of {args.reps}")
    print(f"augment: batched {rate['batched']:.0f} views/s | "
          f"per-image 0 workers {rate[0]:.0f} views/s ({rate['batched'] / rate[0]:.1f}x) | "
          f"per-image 2 workers {rate[2]:.0f} views/s ({rate['batched'] / rate[2]:.1f}x)")


if __name__ == "__main__":
    main()
