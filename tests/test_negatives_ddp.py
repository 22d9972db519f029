"""Negatives and codes across processes: a 2-process step (torchrun, gloo on the CPU)
of SimCLR and SwAV gives the loss and every gradient of one process on the whole
batch, so SimCLR's negatives and SwAV's Sinkhorn codes come from the global batch."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import _negatives_ddp_worker as worker  # noqa: E402

from engine.losses import nt_xent, sinkhorn_knopp  # noqa: E402
from engine.methods import simclr, swav  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# The worker's shards: rows 0, 2, …, 14 on rank 0, then 1, 3, …, 13 on rank 1.
RANK_ORDER = torch.cat([torch.arange(0, 15, 2), torch.arange(1, 15, 2)])


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The worker's results, run once for the file's tests."""
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch build has no gloo backend for CPU processes")
    from safetensors.torch import load_file
    out = tmp_path_factory.mktemp("ddp") / "negatives.safetensors"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(Path(__file__).parent / "_negatives_ddp_worker.py"), str(out)]
    done = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return load_file(str(out))


def one_process_step(name, monkeypatch):
    """The worker's step for ``name`` in this process, on the whole batch of 15."""
    monkeypatch.setattr(simclr, "make_view_pair", worker.fixed_views)
    monkeypatch.setattr(swav, "make_view_pair", worker.fixed_views)
    method, images, batch = worker.ddp_setup(name)
    loss, _ = method(images[batch], None, torch.Generator().manual_seed(0), index=batch)
    loss.backward()
    return method, images, batch, loss


def assert_same_step(got, name, method, loss):
    assert got[f"{name}.own_rows"].item() == 8                   # rank 0 of 8 + 7: uneven shards
    assert abs(float(got[f"{name}.loss"][0]) - loss.item()) < 1e-5
    grads = {n: p.grad for n, p in method.named_parameters() if p.grad is not None}
    assert len(grads) == len(list(method.parameters()))          # every parameter is compared
    assert {f"{name}.grad.{n}" for n in grads} == {k for k in got if k.startswith(f"{name}.grad.")}
    for n, g in grads.items():
        assert float(g.abs().max()) > 0, n
        torch.testing.assert_close(got[f"{name}.grad.{n}"], g, rtol=1e-4, atol=1e-6, msg=n)


def test_simclr_negatives_come_from_every_process(two_processes, monkeypatch):
    method, images, batch, loss = one_process_step("simclr", monkeypatch)
    assert_same_step(two_processes, "simclr", method, loss)
    # Each process alone (its own 8 or 7 images as negatives) gives another loss:
    # the equality above is not a property of NT-Xent on any split.
    with torch.no_grad():
        z = [method.head(method.backbone(v)) for v in worker.fixed_views(images[batch], None, None)]
        alone = sum(nt_xent(z[0][r::2], z[1][r::2], method.cfg.temperature) * len(z[0][r::2]) / 15
                    for r in range(2))
    assert abs(float(alone) - loss.item()) > 1e-2


def test_swav_codes_and_queue_are_global(two_processes, monkeypatch):
    before = worker.ddp_setup("swav")[0].queue.clone()
    method, _, _, loss = one_process_step("swav", monkeypatch)
    assert_same_step(two_processes, "swav", method, loss)
    # The batch's 15 large-crop embeddings replaced the queue's first 15 rows, in the
    # ranks' order there; row 15 is still the one from before the step.
    queue = two_processes["swav.queue"]
    torch.testing.assert_close(queue[:, :15], method.queue[:, RANK_ORDER], rtol=1e-5, atol=1e-6)
    assert torch.equal(queue[:, 15], before[:, 15]) and not torch.equal(queue[:, :15], before[:, :15])


def test_sinkhorn_codes_over_processes_equal_one_process(two_processes):
    scores = worker.fixed_scores()
    alone = sinkhorn_knopp(scores, 3, 0.05)
    torch.testing.assert_close(two_processes["codes"], alone[RANK_ORDER], rtol=1e-6, atol=1e-7)
    # Each process on its own rows alone gives other codes (equal shares within the shard).
    split = torch.cat([sinkhorn_knopp(scores[r::2], 3, 0.05) for r in range(2)])
    assert float((split - alone[RANK_ORDER]).abs().max()) > 1e-2
