"""MAE training-step time at mask ratio 0.75 against 0.0: what encoding only the visible patches buys.

The same model (tiny ViT, width 128, 4 blocks; decoder width 64, 2 blocks;
patch 4 → 64 patches) on synthetic 32×32 RGB uint8 images, batch 256; one step
is the method's training step as the loop runs it (crop + flip views, masking,
encoder, decoder, loss), backward and an AdamW update. At ratio 0.75 the
encoder gets 1 + 16 tokens, at 0.0 all 1 + 64; the decoder sees 1 + 64 in both.
Both ratios are measured in the same run, interleaved (A B A B …) so a busy
machine slows both alike; each round times ``--steps`` steps after ``--warmup``
untimed ones, and the best round counts.

    .venv/bin/python bench/mae_speed.py [--batch 256] [--steps 5] [--rounds 3] [--threads 1] [--device cpu]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.augment import default_views  # noqa: E402
from engine.methods import DataInfo  # noqa: E402
from engine.methods.mae import MAEConfig, MaskedAutoencoder  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (0 = torch's default). One by default: on a shared 2-core "
                         "machine a second intra-op thread mostly waits for a core (a step was 3-4x "
                         "slower with 2 threads under load), which measures the neighbours, not MAE")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    model = MaskedAutoencoder(MAEConfig(size="tiny", patch=4), DataInfo("bench", 3, args.size, args.size,
                                                                          args.batch)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1.5e-4, weight_decay=0.05)
    views = default_views("cifar10", args.size, 3)
    views.jitter_p = views.grayscale_p = views.blur_p = 0.0          # MAE's views: crop + flip
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(0, 256, (args.batch, 3, args.size, args.size), generator=g, device=device,
                      dtype=torch.uint8)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def steps(ratio: float, n: int) -> float:
        model.cfg.mask_ratio = ratio
        sync()
        t = time.perf_counter()
        for _ in range(n):
            loss, _ = model(x, views, g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync()
        return (time.perf_counter() - t) / n

    ratios = (0.75, 0.0)
    for r in ratios:
        steps(r, args.warmup)
    best = {r: float("inf") for r in ratios}
    for _ in range(args.rounds):
        for r in ratios:
            best[r] = min(best[r], steps(r, args.steps))
    a, b = best[0.75] * 1e3, best[0.0] * 1e3
    print(f"mae_speed: ratio 0.75 {a:.1f} ms/step | ratio 0.0 {b:.1f} ms/step | speed-up {b / a:.2f} x "
          f"(batch {args.batch}, {args.size}×{args.size}, tiny ViT patch 4, {device}, "
          f"{torch.get_num_threads()} threads, best of {args.rounds}×{args.steps} steps)")


if __name__ == "__main__":
    main()
