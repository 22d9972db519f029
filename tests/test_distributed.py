"""The same loop under torchrun: 2 CPU processes (gloo) match one process."""

import pytest

from engine import workbench
from engine.distributed import launch
from engine.store import Project

# The autoencoder's loss is a per-image mean, so with equal shards DDP's averaged
# gradient is the full batch's — except for batch norm, which (no SyncBatchNorm on
# the CPU) normalises each half-batch on its own: hence a tolerance, not equality.
CFG = {"epochs": "2", "batch_size": "128", "width": "8", "bottleneck": "16", "eval_every": "0",
       "timeline_items": "0"}


@pytest.mark.timeout(600)
def test_two_processes_match_one(tmp_path):
    path = tmp_path / "d.pretext"
    with Project.create(path) as p:
        workbench.import_dataset(p, "digits", "digits")
        single = workbench.create_run(p, "digits", "autoencoder", CFG)
        # Per process batch 64 × 2 processes = the single run's 128.
        double = workbench.create_run(p, "digits", "autoencoder", {**CFG, "batch_size": "64"})
        list(workbench.run_training(p, single))
    assert launch(path, double, 2, quiet=True) == 0
    with Project.open(path) as p:
        assert p.run(double).status == "finished"
        a = [m.value for m in p.metrics(single, "loss")]
        b = [m.value for m in p.metrics(double, "loss")]
        assert len(a) == len(b) > 10
        assert b[-1] < 0.7 * b[0]                          # it learned
        rel = [abs(x - y) / x for x, y in zip(a, b)]
        assert max(rel) < 0.05, rel
        ma, mb = p.latest_metrics(single), p.latest_metrics(double)
        assert abs(ma["knn"] - mb["knn"]) < 0.05
