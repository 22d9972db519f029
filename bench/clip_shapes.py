"""CLIP on the built-in shapes (20,000 images, 32×32) for a fixed CPU budget.

Trains the CLIP method (engine/methods/clip.py: small CNN + bag-of-words text
tower, the seed's loss) for a fixed wall-clock budget with two (colour, shape)
combinations held out of training, then prints one line per number with its
goal (and chance level) beside it: zero-shot accuracy on shape, colour and size
from the class names alone, recall@1/5 both ways on 1,000 test images, and
zero-shot accuracy on the held-out combinations beside the seen ones — the
numbers a run reports (``evaluate_extra``).

The steps run in this process rather than through ``main.py train``: the loop
would first fit its raw-pixel linear-probe baseline on 16,000 × 3,072 pixels,
minutes that have nothing to do with CLIP. The learning rate follows a cosine
over the time budget (after 30 warm-up steps), so the schedule ends with it.

The recipe (measured with a fixed number of steps and the same seed, so the
shared machine's load could not sway it): shape is the slow attribute — colour
and size are near 1.0 after 150 steps, shape needs about 600 steps of 128.
 - One torch thread. On the shared 2-core machine (load 5–8) a width-16 step
   at batch 256 took 1.2–2 s with two threads and 0.2–0.3 s with one: the two
   OpenMP threads wait for each other at every layer. The earlier 156-step run
   (zero-shot shape 0.60) was this, not the recipe.
 - Batch 128: 2–2.5× faster per step than 256 on this CPU (measured),
   and at equal images seen better (300 steps: shape 0.79 vs 0.73 at 150×256).
   Batch 64 was no better per image (600×64: 0.76).
 - Weight decay 0.1 (CLIP's order of magnitude) over 1e-4: shape 0.82 vs 0.79
   at 300 steps, 0.97 vs 0.95 at 600; held-out combinations 0.97 vs 0.93.
 - Width 16: width 32 costs 2–3× per step for +0.07 shape at 300 steps; width
   8 is 3× cheaper but colour and held-out combinations suffer. A peak lr of
   6e-3 instead of 3e-3 changed nothing.
No image views: the method uses none (flips or crops would contradict the
position words, colour jitter the colour words).

    .venv/bin/python bench/clip_shapes.py [--minutes 5] [--n 20000] [--threads 1] [key=value ...]

Needs nothing from ../shared/data: shapes is generated.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HELD_OUT = "red circle,blue square"
# (metric, what, goal or None, chance)
LINES = [
    ("zs_shape", "zero-shot shape", 0.90, 1 / 5),
    ("zs_colour", "zero-shot colour", 0.90, 1 / 8),
    ("zs_size", "zero-shot size", None, 1 / 3),
    ("i2t_r1", "image→text R@1", None, None),
    ("i2t_r5", "image→text R@5", None, None),
    ("t2i_r1", "text→image R@1", None, None),
    ("t2i_r5", "text→image R@5", None, None),
    ("zs_combo_heldout", f"zero-shot colour+shape, held-out combos ({HELD_OUT})", 0.70, 1 / 40),
    ("zs_combo_seen", "zero-shot colour+shape, seen combos", None, 1 / 40),
    ("zs_colour_heldout", "zero-shot colour on held-out combos", None, 1 / 8),
    ("zs_shape_heldout", "zero-shot shape on held-out combos", None, 1 / 5),
]


def main() -> None:
    import torch
    from engine.config import with_overrides
    from engine.data import load_images
    from engine.methods import METHODS, DataInfo
    from engine.train import embed_images, images_tensor
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0, help="training budget (wall clock, CPU)")
    ap.add_argument("--n", type=int, default=20000, help="shapes images (80 %% train)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--wd", type=float, default=0.1, help="AdamW weight decay")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (a small CNN on a shared 2-core machine is fastest on one; 0 = torch's choice)")
    ap.add_argument("overrides", nargs="*", help="CLIP settings key=value (e.g. width=32 text_encoder=transformer)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_images("shapes", n=args.n, size=32, seed=0)
    cls = METHODS["clip"]
    cfg = with_overrides(cls.Config(width=16, held_out=HELD_OUT),
                         dict(o.split("=", 1) for o in args.overrides))
    train = np.flatnonzero(data.split == 0)
    torch.manual_seed(0)
    method = cls(cfg, DataInfo(data.name, 3, 32, 32, len(train)))
    method.prepare(data)
    images = images_tensor(data)
    opt = torch.optim.AdamW(method.parameters(), lr=args.lr, weight_decay=args.wd)
    rng = np.random.default_rng(0)
    budget, warmup = args.minutes * 60, 30
    order, pos, step, seen = rng.permutation(train), 0, 0, 0
    t0 = time.perf_counter()
    method.train()
    while (elapsed := time.perf_counter() - t0) < budget:
        if pos + args.batch > len(order):
            order, pos = rng.permutation(train), 0
        idx = torch.from_numpy(order[pos:pos + args.batch])
        pos += args.batch
        lr = args.lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * elapsed / budget))
        for group in opt.param_groups:
            group["lr"] = lr
        loss, logs = method(images[idx], None, torch.Generator().manual_seed(step), index=idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.after_step(step, 0)
        step, seen = step + 1, seen + len(idx)
    minutes = (time.perf_counter() - t0) / 60
    feats = embed_images(method, images, torch.device("cpu"))
    m = method.evaluate_extra(data, feats, final=True)
    print(f"clip_shapes: {step} steps of {args.batch} ({seen / len(train):.1f} epochs of {len(train)} images) "
          f"in {minutes:.1f} min, {seen / (minutes * 60):.0f} images/s; {cfg.backbone} width {cfg.width}, "
          f"{cfg.text_encoder} text, lr {args.lr:g}, wd {args.wd:g}, {torch.get_num_threads()} thread(s); final loss {loss.item():.3f}, logit scale {logs['logit_scale']:.1f}")
    for key, what, goal, chance in LINES:
        value = m.get(key, float("nan"))
        beside = [f"goal ≥ {goal:.2f} {'met' if value >= goal else 'SHORT'}"] if goal is not None else []
        if chance is not None:
            beside.append(f"chance {chance:.3f}")
        print(f"clip_shapes: {what:66s} {value:.3f}" + (f"   ({', '.join(beside)})" if beside else ""))


if __name__ == "__main__":
    main()
