"""Label efficiency on the CIFAR-10 subset: a few labels on top of SimCLR and BYOL.

Each method trains through ``main.py train`` for ``--minutes`` CPU-minutes on the CIFAR-10
subset (10,000 / 2,000, seeded, class-balanced, from ../shared/data), then
engine/label_efficiency.py scores probe / finetune / scratch / raw with 1, 10 and 100
labels per class (mean ± std over ``--seeds`` class-balanced subsets; finetune and scratch
get the same budget, ``FINETUNE_BUDGET``). Goal: at 10 labels per class, probe and
finetune beat scratch by at least 10 points.

Then which images to label: the probe with k × 10 items chosen by TypiClust and by
k-center greedy from the run's embedding (no labels used to choose), against random
class-balanced subsets, at 1 and 10 labels per class. Goal: TypiClust at least 5 points
over random at 1 label per class.

    .venv/bin/python bench/label_efficiency.py [--minutes 3] [--seeds 5] [--methods simclr,byol]
    .venv/bin/python bench/label_efficiency.py --minutes 0.5 --seeds 2      # a quick look
    .venv/bin/python bench/label_efficiency.py --from-project F   # the runs of bench/methods.py --keep F
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from _budget import DATA, add_cifar_subset, cli, train_for


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3.0, help="training budget per method")
    ap.add_argument("--seeds", type=int, default=5, help="labelled subsets per count")
    ap.add_argument("--methods", default="simclr,byol")
    ap.add_argument("--counts", default="1,10,100", help="labels per class")
    ap.add_argument("--from-project", type=Path,
                    help="measure the latest finished cifar10-subset run of each method in this project "
                         "(bench/methods.py --keep) instead of training")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"label_efficiency: {DATA} is absent; this benchmark needs the CIFAR-10 zip there")
    from engine.label_efficiency import FINETUNE_BUDGET, label_efficiency
    from engine.store import Project
    counts = [int(c) for c in args.counts.split(",")]
    budget = (f"{args.seeds} seeds, finetune/scratch budget {FINETUNE_BUDGET.steps} steps × "
              f"{FINETUNE_BUDGET.batch_size} (encoder lr × {FINETUNE_BUDGET.encoder_lr_scale:g} in finetune)")
    with tempfile.TemporaryDirectory() as tmp:
        trained = {}
        if args.from_project:
            project = args.from_project.resolve()
            print(f"label_efficiency on the cifar10-subset runs of {project}, {budget}", flush=True)
            runs = json.loads(cli("runs", "--project", project, "--json"))
            for name in args.methods.split(","):
                mine = [r for r in runs if r["method"] == name and r["status"] == "finished"
                        and r["name"].endswith(" on cifar10-subset")]
                if not mine:
                    sys.exit(f"label_efficiency: no finished cifar10-subset {name} run in {project}")
                m = trained[name] = {**mine[-1]["metrics"], "run": mine[-1]["id"]}
                print(f"label_efficiency {name} run {m['run']}: knn {m['knn']:.3f} linear {m['linear']:.3f}",
                      flush=True)
        else:
            project = Path(tmp) / "bench.pretext"
            cli("new", project, "--empty")
            n_train = add_cifar_subset(project)
            print(f"label_efficiency on cifar10-subset ({n_train} train), {args.minutes:g} CPU-minutes per "
                  f"method, {budget}", flush=True)
            # Every run trains (in subprocesses) before this process opens the project: it then
            # keeps the data set's stored images open for reading, and a project written by
            # another process while this one held them once failed to open again ("database disk
            # image is malformed").
            for name in args.methods.split(","):
                m = trained[name] = train_for(project, "cifar10-subset", name, args.minutes, n_train, [])
                print(f"label_efficiency {name} trained: knn {m['knn']:.3f} linear {m['linear']:.3f}, "
                      f"{m['epochs']} epochs", flush=True)
        with Project.open(project) as p:
            for name, m in trained.items():
                t0 = time.perf_counter()
                out = label_efficiency(p, m["run"], per_class=counts, seeds=args.seeds)
                seconds = time.perf_counter() - t0
                for row in out["label_efficiency"]:
                    k = row["per_class"]
                    cells = " ".join(f"{mode} {row[mode]:.3f}±{row['std'][mode]:.3f}"
                                     for mode in ("probe", "finetune", "scratch", "raw"))
                    line = f"label_efficiency {name:7s} {k:3d}/class {cells}"
                    if k == 10:
                        margin = min(row["probe"], row["finetune"]) - row["scratch"]
                        line += (f" | goal probe & finetune ≥ scratch + 0.10: "
                                 f"{'met' if margin >= 0.10 else 'NOT met'} ({margin:+.3f})")
                    print(line, flush=True)
                print(f"label_efficiency {name} curve took {seconds:.0f} s", flush=True)

                probe = {}
                for select in ("random", "typiclust", "kcenter"):
                    sel = label_efficiency(p, m["run"], per_class=(1, 10),
                                           seeds=args.seeds, select=select, modes=("probe",))
                    probe[select] = {r["per_class"]: r["probe"] for r in sel["label_efficiency"]}
                for k in (1, 10):
                    line = (f"label_efficiency {name:7s} select {k:2d}/class probe random {probe['random'][k]:.3f} "
                            f"typiclust {probe['typiclust'][k]:.3f} ({probe['typiclust'][k] - probe['random'][k]:+.3f}) "
                            f"kcenter {probe['kcenter'][k]:.3f} ({probe['kcenter'][k] - probe['random'][k]:+.3f})")
                    if k == 1:
                        gain = probe["typiclust"][1] - probe["random"][1]
                        line += f" | goal typiclust ≥ random + 0.05: {'met' if gain >= 0.05 else 'NOT met'}"
                    print(line, flush=True)


if __name__ == "__main__":
    main()
