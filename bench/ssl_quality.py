"""SimCLR quality for a fixed CPU budget, through the real code path (main.py train).

MNIST (first 8,000 train / last 2,000 test of the 10k file) and a seeded,
class-balanced CIFAR-10 subset (10,000 train / 2,000 test) from ../shared/data.
Each line gives kNN and linear-probe accuracy beside the raw-pixel and
random-init baselines that the same run measured, and the ratio to the numbers
a throwaway script reached in the same budget here (small CNN of 0.39 M
parameters, batch 256, Adam, 10 CPU-minutes: CIFAR kNN 0.50 / linear 0.54,
MNIST linear 0.985).

    .venv/bin/python bench/ssl_quality.py [--minutes 10] [--mnist-minutes 5] [--only cifar|mnist]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _budget import DATA, add_cifar_subset, add_mnist, cli, train_for

REFERENCE = {"cifar": {"knn": 0.50, "linear": 0.54}, "mnist": {"linear": 0.985}}


def report(name: str, m: dict) -> None:
    ref = REFERENCE[name]
    ratios = " ".join(f"{k} {m[k] / v:.2f}x" for k, v in ref.items())
    print(f"ssl_quality {name}: SimCLR small-cnn {m['epochs']} epochs in {m['minutes']:.1f} min "
          f"({m['images_per_s']:.0f} img/s): knn {m['knn']:.3f} linear {m['linear']:.3f} | raw pixels "
          f"{m['raw_knn']:.3f}/{m['raw_linear']:.3f} | random init {m['random_knn']:.3f}/"
          f"{m['random_linear']:.3f} | vs reference {ref}: {ratios}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0, help="CIFAR-10 training budget")
    ap.add_argument("--mnist-minutes", type=float, default=5.0)
    ap.add_argument("--only", choices=("cifar", "mnist"))
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"ssl_quality: skipped, {DATA} is absent")
        return
    recipe = ["batch_size=256"]
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "bench.pretext"
        cli("new", project, "--empty")
        if args.only in (None, "mnist"):
            n = add_mnist(project)
            report("mnist", train_for(project, "mnist", "simclr", args.mnist_minutes, n, recipe))
        if args.only in (None, "cifar"):
            n = add_cifar_subset(project)
            report("cifar", train_for(project, "cifar10-subset", "simclr", args.minutes, n, recipe))


if __name__ == "__main__":
    main()
