"""Every image method on the same CPU budget: kNN and linear-probe accuracy beside
the raw-pixel and random-init baselines, and training images/s.

Small CNN for every method (MAE: its tiny ViT; PCA: closed form), the CIFAR-10
subset (10,000 / 2,000, seeded, class-balanced) and MNIST (8,000 / 2,000) from
../shared/data, each method trained through ``main.py train``.

    .venv/bin/python bench/methods.py [--minutes 3] [--only cifar|mnist] [--methods simclr,byol] [--keep F]

``--keep F`` keeps the project (runs and all) in file F, e.g. for
``bench/label_efficiency.py --from-project F``, which then measures few labels on these runs
instead of training its own.
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path

from _budget import DATA, add_cifar_subset, add_mnist, cli, train_for


def main() -> None:
    from engine.methods import METHODS
    image_methods = [n for n, m in METHODS.items() if m.card.family in ("bottleneck", "siamese", "masking")]
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0, help="training budget per method and dataset")
    ap.add_argument("--only", choices=("cifar", "mnist"))
    ap.add_argument("--methods", default=",".join(image_methods))
    ap.add_argument("--keep", type=Path, help="keep the project in this (new) file")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"methods: skipped, {DATA} is absent")
        return
    if args.keep is not None and args.keep.exists():
        raise SystemExit(f"methods: {args.keep} exists; --keep wants a new file")
    with (contextlib.nullcontext(None) if args.keep else tempfile.TemporaryDirectory()) as tmp:
        project = args.keep.resolve() if args.keep else Path(tmp) / "bench.pretext"
        cli("new", project, "--empty")
        sets = []
        if args.only in (None, "cifar"):
            sets.append(("cifar10-subset", add_cifar_subset(project)))
        if args.only in (None, "mnist"):
            sets.append(("mnist", add_mnist(project)))
        for dataset, n_train in sets:
            print(f"methods on {dataset} ({n_train} train), {args.minutes:g} CPU-minutes each:", flush=True)
            for name in args.methods.split(","):
                # Evaluated once, at the end: the budget is training time (train_for counts
                # images/s of training steps), and per-epoch evaluations only add wall time.
                m = train_for(project, dataset, name, args.minutes, n_train, ["eval_every=0"])
                above = m["knn"] > max(m["raw_knn"], m.get("random_knn", 0)) and \
                    m["linear"] > max(m["raw_linear"], m.get("random_linear", 0))
                print(f"methods {dataset} {name:22s} knn {m['knn']:.3f} linear {m['linear']:.3f} | raw "
                      f"{m['raw_knn']:.3f}/{m['raw_linear']:.3f} | random init "
                      f"{m.get('random_knn', float('nan')):.3f}/{m.get('random_linear', float('nan')):.3f} | "
                      f"{m['images_per_s']:.0f} img/s, {m['epochs']} epochs, {m['minutes']:.1f} min | "
                      f"{'above both baselines' if above else 'NOT above both baselines'}", flush=True)


if __name__ == "__main__":
    main()
