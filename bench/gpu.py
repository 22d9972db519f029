"""The GPU check (issue 13): SimCLR ResNet-18 in memory and streamed, beside lightly's pipeline.

One script, at most about 8 minutes, for a CUDA machine (never part of ``make test``):

1. **In memory**: SimCLR with a ResNet-18 (CIFAR stem) on CIFAR-10, the whole uint8
   set on the device, views made there; images/s, then kNN on the test split after
   the time budget. CIFAR-10 comes from ../shared/data or torchvision's cache when
   present, else 50,000 + 10,000 built-in shapes at 32 px stand in (the output says which).
2. **Streamed** at 96 px: synthetic 320×240 photos kept encoded (as a project keeps
   them), decoded by DataLoader worker processes, views on the device; images/s.
3. **lightly** beside each: its per-image pipeline (PIL decode + SimCLRTransform in
   DataLoader workers, then to the device), the same backbone, head and NT-Xent.

It uses only the engine's image task (no Qt, no SQLAlchemy, no project file), so a
bare machine with torch, torchvision, numpy, Pillow and scikit-learn can run it.

    python bench/gpu.py [--budget 90] [--device cuda] [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

CIFAR_ZIP = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.zip"


def cifar_or_standin(quick: bool):
    """CIFAR-10 (train 50,000 / test 10,000) if it is on this machine, else shapes at 32 px."""
    from engine.data import load_images
    limit = 6000 if quick else None
    if CIFAR_ZIP.exists():
        return load_images("image-folder", path=CIFAR_ZIP, size=32, limit=limit), "CIFAR-10 (shared zip)"
    tv_root = Path("~/.cache/pretext/torchvision").expanduser()
    if (tv_root / "cifar-10-batches-py").exists():
        data = load_images("torchvision", name="CIFAR10", root=tv_root, download=False)
        return (data.subset(np.arange(limit)) if limit else data), "CIFAR-10 (torchvision cache)"
    data = load_images("shapes", n=6000 if quick else 60_000, size=32, seed=0)
    return data, "built-in shapes 32 px (CIFAR-10 is not on this machine)"


def simclr_task(data, device: str, overrides: dict):
    from engine.tasks.images import ImageTask
    from engine.train import default_run_config
    cfg = default_run_config("simclr", data, {"device": device, "eval_every": "0", **overrides})
    task = ImageTask(cfg, data)
    task.setup(None)
    return task, cfg


def timed_steps(task, seconds: float, max_steps: int = 10**9) -> tuple[float, int]:
    """Train for about ``seconds`` (after 3 warm-up steps): (images/s, steps)."""
    sync = torch.cuda.synchronize if task.device.type == "cuda" else (lambda: None)
    step, epoch, items, t0 = 0, 0, 0, None
    while True:
        batches = task.batches(epoch)
        for b in range(len(batches)):
            if step == 3:
                sync()
                t0, items = time.perf_counter(), 0
            _, _, n = task.step(step, batches[b], task.learning_rate(step))
            items += n
            step += 1
            if t0 is not None and (time.perf_counter() - t0 > seconds or step >= max_steps):
                sync()
                return items / (time.perf_counter() - t0), step
        epoch += 1


def lightly_rate(images, size: int, batch: int, seconds: float, device: str, workers: int,
                 backbone: str) -> str:
    """lightly's per-image recipe on PIL images (decoded from files or arrays)."""
    try:
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead
        from lightly.transforms import SimCLRTransform
    except ImportError:
        return "lightly not installed"
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    from engine.augment import MEAN, STD
    from engine.nets import build_backbone

    class Items(Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            item = images[i]
            im = Image.open(item).convert("RGB") if isinstance(item, (str, Path)) else Image.fromarray(item)
            return transform(im)

    transform = SimCLRTransform(input_size=size, cj_prob=0.8, cj_strength=0.5, min_scale=0.2, random_gray_scale=0.2,
                                gaussian_blur=0.5 if size >= 64 else 0.0, hf_prob=0.5,
                                normalize={"mean": [MEAN] * 3, "std": [STD] * 3})
    loader = DataLoader(Items(), batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                        pin_memory=device == "cuda", persistent_workers=workers > 0)
    torch.manual_seed(0)
    net = build_backbone(backbone, 3, size).to(device)
    with torch.no_grad():
        dim = net(torch.zeros(2, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)).shape[1]
    head = SimCLRProjectionHead(dim, 512, 128).to(device)
    criterion = NTXentLoss(temperature=0.2)
    opt = torch.optim.AdamW(list(net.parameters()) + list(head.parameters()), lr=1e-3)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    step, items, t0 = 0, 0, None
    while True:
        for x0, x1 in loader:
            if step == 3:
                sync()
                t0, items = time.perf_counter(), 0
            x0 = x0.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            x1 = x1.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = criterion(head(net(x0)), head(net(x1)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            items += len(x0)
            step += 1
            if t0 is not None and time.perf_counter() - t0 > seconds:
                sync()
                return f"{items / (time.perf_counter() - t0):.0f} img/s"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=75.0, help="seconds of training per measurement")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="small data and budgets (a CPU smoke test)")
    ap.add_argument("--photos", type=int, default=20_000, help="synthetic photos for the streamed part")
    args = ap.parse_args(argv)
    budget = 5.0 if args.quick else args.budget
    workers = min(8, os.cpu_count() or 1)
    dev = args.device
    name = torch.cuda.get_device_name(0) if dev == "cuda" else "cpu"
    print(f"bench/gpu.py: torch {torch.__version__} on {name}, {os.cpu_count()} CPU cores, "
          f"budget {budget:.0f} s per measurement", flush=True)
    backbone, batch = ("resnet18-cifar", 512) if not args.quick else ("small-cnn", 64)

    # 1. CIFAR-size data, the whole set on the device.
    t0 = time.perf_counter()
    data, what = cifar_or_standin(args.quick)
    print(f"data: {what}: {data.n} images {data.height}x{data.width} loaded in {time.perf_counter() - t0:.0f} s",
          flush=True)
    task, cfg = simclr_task(data, dev, {"backbone": backbone, "batch_size": str(batch), "epochs": "1000"})
    on_device = task.feed.cache is not None and task.feed.cache.device.type == dev
    rate, steps = timed_steps(task, budget)
    t0 = time.perf_counter()
    knn = task.evaluate(1.0, final=False).get("knn", float("nan"))
    print(f"in memory (whole set on {task.feed.cache.device if task.feed.cache is not None else 'host'}"
          f"{'' if on_device else ', NOT on the device'}): simclr {backbone} batch {batch}: {rate:.0f} img/s, "
          f"{steps} steps; kNN after the budget {knn:.4f} (evaluation {time.perf_counter() - t0:.1f} s)", flush=True)
    train = np.flatnonzero(data.split == 0)[:20_000]
    pictures = [data.images[i] for i in train]
    print(f"lightly, same data ({workers} workers): {lightly_rate(pictures, 32, batch, budget, dev, workers, backbone)}",
          flush=True)
    task.close()
    del task, data

    # 2. Streamed at 96 px from encoded photos.
    from scale import make_photos

    from engine.data import load_images
    folder = Path(tempfile.gettempdir()) / "pretext-gpu-bench"
    n_photos = 1000 if args.quick else args.photos
    t0 = time.perf_counter()
    photos = make_photos(folder, n_photos)
    data = load_images("image-folder", path=photos, size=96)
    print(f"photos: {data.n} at 320x240 kept encoded, ready in {time.perf_counter() - t0:.0f} s", flush=True)
    backbone96 = "resnet18-auto" if not args.quick else "small-cnn"
    batch96 = 256 if not args.quick else 32
    task, _ = simclr_task(data, dev, {"backbone": backbone96, "batch_size": str(batch96), "epochs": "1000",
                                      "cache_mb": "0", "data_workers": str(workers)})
    rate, steps = timed_steps(task, budget)
    print(f"streamed 96 px ({workers} decoding workers, no cache): simclr {backbone96} batch {batch96}: "
          f"{rate:.0f} img/s, {steps} steps", flush=True)
    task.close()
    files = [photos / n for n in data.item_names]
    print(f"lightly, same files ({workers} workers): "
          f"{lightly_rate(files, 96, batch96, budget, dev, workers, backbone96)}", flush=True)


if __name__ == "__main__":
    main()
