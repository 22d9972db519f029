"""Shared by the quality benchmarks: train through the real CLI for a fixed CPU budget.

``train_for(project, dataset, method, minutes, n_train, overrides)`` measures the
method's images/s in a short calibration run on the same data, picks the number
of epochs that fills the budget, trains with ``main.py train`` and returns the
run's final metrics (kNN, linear probe, raw-pixel and random-init baselines).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))


def cli(*args) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"main.py {' '.join(map(str, args))} failed:\n{out.stderr}")
    return out.stdout


def last_run(project: Path) -> dict:
    return json.loads(cli("runs", "--project", project, "--json"))[-1]


def images_per_second(project: Path, dataset: str, method: str, overrides: list[str]) -> float:
    """Median training throughput of a short calibration run."""
    cli("train", "--project", project, "--dataset", dataset, "--method", method, "--epochs", 1,
        "max_train_items=1536", "eval_every=0", "--quiet", *overrides)
    from engine.store import Project
    with Project.open(project, read_only=True) as p:
        ips = [m.value for m in p.metrics(last_run(project)["id"], "images_per_s")]
    return sorted(ips)[len(ips) // 2] if ips else 0.0


def train_for(project: Path, dataset: str, method: str, minutes: float, n_train: int,
              overrides: list[str]) -> dict:
    """Train ``method`` for about ``minutes``; returns metrics plus epochs, wall time and images/s."""
    ips = images_per_second(project, dataset, method, overrides)
    epochs = max(1, int(minutes * 60 * ips / n_train)) if ips else 1
    t0 = time.perf_counter()
    cli("train", "--project", project, "--dataset", dataset, "--method", method, "--epochs", epochs,
        "--quiet", *overrides)
    run = last_run(project)
    return {**run["metrics"], "epochs": epochs, "minutes": (time.perf_counter() - t0) / 60,
            "images_per_s": ips, "run": run["id"]}


def add_mnist(project: Path, name: str = "mnist") -> int:
    """MNIST's 10k file: first 8,000 train, last 2,000 test. Returns the train count."""
    mnist = DATA / "mnist"
    cli("datasets", "add", "--project", project, "--name", name, "mnist-idx",
        f"images={mnist / 't10k-images-idx3-ubyte.gz'}", f"labels={mnist / 't10k-labels-idx1-ubyte.gz'}",
        "test_last=2000")
    return 8000


def add_cifar_subset(project: Path, name: str = "cifar10-subset") -> int:
    """A seeded, class-balanced 12,000-image sample of the CIFAR-10 zip, keeping its
    train/test folders: 10,000 train / 2,000 test. Returns the train count."""
    cli("datasets", "add", "--project", project, "--name", name, "image-folder",
        f"path={DATA / 'cifar10' / 'cifar10-jpeg.zip'}", "limit=12000")
    return 10000
