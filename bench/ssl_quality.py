"""SimCLR quality for a fixed CPU budget, through the real code path (main.py train).

MNIST (first 8,000 train / last 2,000 test of the 10k file) and a seeded,
class-balanced CIFAR-10 subset (10,000 train / 2,000 test) from ../shared/data.
Each run prints kNN and linear-probe accuracy beside the raw-pixel and
random-init baselines that the same run measured, and the ratio to the
reference numbers a throwaway script reached in the same budget here (small
CNN of 0.39 M parameters, batch 256, Adam, 10 CPU-minutes: CIFAR kNN 0.50 /
linear 0.54, MNIST linear 0.985).

    .venv/bin/python bench/ssl_quality.py [--minutes 10] [--mnist-minutes 5] [--only cifar|mnist]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
REFERENCE = {"cifar": {"knn": 0.50, "linear": 0.54}, "mnist": {"linear": 0.985}}


def cli(*args) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"main.py {' '.join(map(str, args))} failed:\n{out.stderr}")
    return out.stdout


def last_run(project: Path) -> dict:
    return json.loads(cli("runs", "--project", project, "--json"))[-1]


def images_per_second(project: Path, dataset: str, recipe: list[str]) -> float:
    """A short calibration run on the same data and recipe."""
    cli("train", "--project", project, "--dataset", dataset, "--method", "simclr", "--epochs", 1,
        "max_train_items=1536", "eval_every=0", "--quiet", *recipe)
    run = last_run(project)
    from engine.store import Project
    with Project.open(project, read_only=True) as p:
        ips = [m.value for m in p.metrics(run["id"], "images_per_s")]
    return sorted(ips)[len(ips) // 2]


def bench(project: Path, name: str, dataset: str, n_train: int, minutes: float, recipe: list[str]) -> None:
    ips = images_per_second(project, dataset, recipe)
    epochs = max(1, int(minutes * 60 * ips / n_train))
    t0 = time.perf_counter()
    cli("train", "--project", project, "--dataset", dataset, "--method", "simclr", "--epochs", epochs,
        "--quiet", *recipe)
    wall = time.perf_counter() - t0
    m = last_run(project)["metrics"]
    ref = REFERENCE[name]
    ratios = " ".join(f"{k} {m[k] / v:.2f}x" for k, v in ref.items())
    print(f"ssl_quality {name}: SimCLR small-cnn {epochs} epochs in {wall / 60:.1f} min "
          f"({ips:.0f} img/s): knn {m['knn']:.3f} linear {m['linear']:.3f} | raw pixels "
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
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "bench.pretext"
        cli("new", project, "--empty")
        recipe = ["batch_size=256", "lr=2e-3"]
        if args.only in (None, "mnist"):
            mnist = DATA / "mnist"
            cli("datasets", "add", "--project", project, "mnist-idx", "--name", "mnist",
                f"images={mnist / 't10k-images-idx3-ubyte.gz'}", f"labels={mnist / 't10k-labels-idx1-ubyte.gz'}",
                "test_last=2000")
            bench(project, "mnist", "mnist", 8000, args.mnist_minutes, recipe)
        if args.only in (None, "cifar"):
            cli("datasets", "add", "--project", project, "image-folder", "--name", "cifar10-subset",
                f"path={DATA / 'cifar10' / 'cifar10-jpeg.zip'}", "limit=12000")
            bench(project, "cifar", "cifar10-subset", 10000, args.minutes, recipe)


if __name__ == "__main__":
    main()
