"""The linear probe in torch against scikit-learn, on the same features in one run.

engine/evaluate.linear_probe_accuracy fits the probe with torch's L-BFGS
(``backend="torch"``); ``backend="sklearn"`` is scikit-learn's StandardScaler
+ LogisticRegression(L-BFGS), the same objective. Issue 13 asked for the
torch probe to be at least 10× faster on 50,000 × 512 features with 10
classes and to agree within 0.5 accuracy points; this prints both, e.g.

    linear probe 50000x512: torch 3.1 s acc 0.4123 | sklearn 61.0 s acc 0.4101 | speed 19.7x | diff +0.22 pts

Features: CIFAR-10 from ../shared/data when present — up to ``n_train``
training and ``n_test`` test JPEGs (a seeded sample when fewer than all),
raw pixels (engine.evaluate.raw_pixel_features) through a fixed seeded
random ReLU layer 3072 → ``dim`` — otherwise a seeded synthetic problem
(``dim`` features, a noisy random linear-plus-ReLU mix of class centres).
Both are deterministic. The first line of the output says which.

``compare_probes(...)`` returns the numbers as a dict, for other benchmarks.

Threads: ``--threads N`` gives both sides N threads (torch's, and the BLAS
threads scikit-learn's NumPy/SciPy use, through threadpoolctl); 0 leaves
both as they are. On a machine whose 2 cores are busy with other work,
torch's threads waiting for each other can make the torch probe several
times slower with 2 threads than with 1 (engine/loop.py's ``torch_threads``
has the same note for training), so say which was used when quoting numbers.

    .venv/bin/python bench/linear_probe.py [--train 50000] [--test 10000] [--dim 512]
                                           [--sklearn-max-iter 1000] [--threads 0] [--synthetic]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from engine.evaluate import linear_probe_accuracy, raw_pixel_features  # noqa: E402

CIFAR = ROOT.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg.zip"


def _cifar_split(zf: zipfile.ZipFile, split: str, n: int, rng: np.random.Generator):
    names = sorted(m for m in zf.namelist() if m.startswith(split + "/") and m.endswith(".jpg"))
    if n < len(names):
        names = [names[i] for i in sorted(rng.choice(len(names), n, replace=False))]
    classes = sorted({m.split("/")[1] for m in names})
    images = np.stack([np.asarray(Image.open(io.BytesIO(zf.read(m))).convert("RGB")) for m in names])
    labels = np.array([classes.index(m.split("/")[1]) for m in names])
    return images, labels


def cifar_features(n_train: int, n_test: int, dim: int, seed: int = 0):
    """Raw CIFAR-10 pixels through a seeded random ReLU layer: (xtr, ytr, xte, yte)."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(CIFAR) as zf:
        tr_img, ytr = _cifar_split(zf, "train", n_train, rng)
        te_img, yte = _cifar_split(zf, "test", n_test, rng)
    g = torch.Generator().manual_seed(seed)
    proj = torch.randn(tr_img[0].size, dim, generator=g) / tr_img[0].size ** 0.5
    bias = torch.randn(dim, generator=g) * 0.1

    def layer(images):
        with torch.no_grad():
            return torch.relu(torch.from_numpy(raw_pixel_features(images)) @ proj + bias).numpy()

    return layer(tr_img), ytr, layer(te_img), yte


def synthetic_features(n_train: int, n_test: int, dim: int, n_classes: int = 10, seed: int = 0):
    """Overlapping classes: noisy class centres in 64 dims through a random ReLU layer."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = rng.integers(0, n_classes, n)
    latent = rng.normal(size=(n_classes, 64))[y] * 0.35 + rng.normal(size=(n, 64))
    x = np.maximum(latent @ rng.normal(size=(64, dim)) / 8 + rng.normal(size=dim) * 0.1, 0)
    x += rng.normal(size=x.shape) * 0.1
    x = x.astype(np.float32)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def features(n_train: int, n_test: int, dim: int, synthetic: bool = False, seed: int = 0):
    """(xtr, ytr, xte, yte, description)."""
    if CIFAR.is_file() and not synthetic:
        xtr, ytr, xte, yte = cifar_features(n_train, n_test, dim, seed)
        return xtr, ytr, xte, yte, f"CIFAR-10 raw pixels ({CIFAR.name}) through a seeded random ReLU layer 3072->{dim}"
    xtr, ytr, xte, yte = synthetic_features(n_train, n_test, dim, seed=seed)
    return xtr, ytr, xte, yte, f"synthetic: seeded 10-class problem, {dim} features"


@contextlib.contextmanager
def _threads(n: int):
    """torch and BLAS limited to ``n`` threads (0: as they are)."""
    if not n:
        yield
        return
    from threadpoolctl import threadpool_limits
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


def compare_probes(n_train: int = 50_000, dim: int = 512, n_test: int = 10_000, *,
                   sklearn_max_iter: int = 1000, threads: int = 0, synthetic: bool = False, seed: int = 0,
                   data=None) -> dict:
    """Time and score both probes on the same features, torch first.

    Returns ``{"n_train", "n_test", "dim", "data", "threads", "torch_s",
    "torch_acc", "sklearn_s", "sklearn_acc", "speedup", "diff_pts", "line"}``;
    ``diff_pts`` is torch minus scikit-learn in accuracy points, ``threads``
    the torch threads used. ``data`` can be a ready ``(xtr, ytr, xte, yte,
    description)`` to skip building features.
    """
    xtr, ytr, xte, yte, what = data if data is not None else features(n_train, n_test, dim, synthetic, seed)
    with _threads(threads):
        used = torch.get_num_threads()
        # Untimed first calls: loading scikit-learn and torch's linear algebra
        # takes seconds once per process, not once per probe.
        wx, wy = np.random.default_rng(0).normal(size=(40, 4)), np.arange(40) % 2
        for backend in ("torch", "sklearn"):
            linear_probe_accuracy(wx, wy, wx, wy, backend=backend)
        t0 = time.perf_counter()
        acc_t = linear_probe_accuracy(xtr, ytr, xte, yte)
        s_t = time.perf_counter() - t0
        t0 = time.perf_counter()
        acc_s = linear_probe_accuracy(xtr, ytr, xte, yte, backend="sklearn", max_iter=sklearn_max_iter)
        s_s = time.perf_counter() - t0
    n, d = xtr.shape
    line = (f"linear probe {n}x{d}: torch {s_t:.1f} s acc {acc_t:.4f} | sklearn {s_s:.1f} s acc {acc_s:.4f}"
            f" | speed {s_s / s_t:.1f}x | diff {100 * (acc_t - acc_s):+.2f} pts")
    return {"n_train": n, "n_test": len(xte), "dim": d, "data": what, "threads": used,
            "torch_s": s_t, "torch_acc": acc_t,
            "sklearn_s": s_s, "sklearn_acc": acc_s, "speedup": s_s / s_t,
            "diff_pts": 100 * (acc_t - acc_s), "line": line}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=50_000)
    ap.add_argument("--test", type=int, default=10_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--sklearn-max-iter", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=0, help="threads for both sides (0: as they are)")
    ap.add_argument("--synthetic", action="store_true", help="the synthetic problem even when CIFAR-10 is present")
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = features(args.train, args.test, args.dim, args.synthetic)
    print(f"features: {data[4]}; {len(data[0])} train / {len(data[2])} test, built in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    r = compare_probes(args.train, args.dim, args.test, sklearn_max_iter=args.sklearn_max_iter,
                       threads=args.threads, data=data)
    print(f"{r['line']} | {r['threads']} thread(s)")


if __name__ == "__main__":
    main()
