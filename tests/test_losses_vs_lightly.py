"""Our losses against lightly's implementations, on random inputs, to 1e-5.

lightly (a dev/test-only dependency) is the reference library the design notes
point to; where its conventions differ from ours, the comparison says how
and matches them exactly.
"""
import pytest
import torch
import torch.nn.functional as F

from engine.losses import (byol_loss, info_nce, negative_cosine, nt_xent, simsiam_loss, sinkhorn_knopp,
                           swav_loss)
from engine.methods import DataInfo
from engine.methods.moco import MoCo, MoCoConfig

lightly_loss = pytest.importorskip(
    "lightly.loss", reason="lightly is not installed (pip install lightly, or the project's dev extras)")
from lightly.loss.swav_loss import sinkhorn as lightly_sinkhorn  # noqa: E402

TOL = 1e-5


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("n,d,tau", [(8, 16, 0.5), (32, 128, 0.2), (5, 3, 0.1)])
def test_nt_xent_equals_lightly(n, d, tau):
    z1, z2 = _randn(n, d, seed=1), _randn(n, d, seed=2)
    ref = lightly_loss.NTXentLoss(temperature=tau, memory_bank_size=0)(z1, z2)
    assert abs(float(nt_xent(z1, z2, tau)) - float(ref)) < TOL


def test_negative_cosine_equals_lightly():
    p, z = _randn(16, 64, seed=3), _randn(16, 64, seed=4)
    ref = lightly_loss.NegativeCosineSimilarity()(p, z)
    assert abs(float(negative_cosine(p, z)) - float(ref)) < TOL


def test_simsiam_loss_equals_lightly_value_and_gradients():
    # lightly's SimSiam: loss = 0.5 (D(p0, z1) + D(p1, z0)) with z detached in the model's forward.
    z1, z2 = _randn(16, 32, seed=5).requires_grad_(), _randn(16, 32, seed=6).requires_grad_()
    p1, p2 = _randn(16, 32, seed=7).requires_grad_(), _randn(16, 32, seed=8).requires_grad_()
    ours = simsiam_loss(p1, p2, z1, z2)
    ours.backward()
    ours_grads = [p1.grad.clone(), p2.grad.clone()]
    assert z1.grad is None and z2.grad is None          # the stop-gradient
    p1.grad = p2.grad = None
    ncs = lightly_loss.NegativeCosineSimilarity()
    ref = 0.5 * (ncs(p1, z2.detach()) + ncs(p2, z1.detach()))
    ref.backward()
    assert abs(float(ours.detach()) - float(ref.detach())) < TOL
    for a, b in zip(ours_grads, [p1.grad, p2.grad]):
        assert torch.allclose(a, b, atol=TOL)


def test_byol_loss_is_lightlys_negative_cosine_rescaled():
    # BYOL's paper loss 2 − 2cos per direction, summed; lightly's BYOL uses −cos per direction
    # (averaged), which has the same minimiser: ours = 4 + 2·(ncs(p1, t2) + ncs(p2, t1)).
    p1, p2, t1, t2 = (_randn(16, 32, seed=s) for s in range(10, 14))
    ncs = lightly_loss.NegativeCosineSimilarity()
    ref = 4.0 + 2.0 * (ncs(p1, t2) + ncs(p2, t1))
    assert abs(float(byol_loss(p1, p2, t1, t2)) - float(ref)) < TOL


def _scores(b, k, d=32, seed=0):
    """Realistic SwAV scores: cosine similarities of unit embeddings with unit prototypes."""
    z = F.normalize(_randn(b, d, seed=seed), dim=1)
    c = F.normalize(_randn(k, d, seed=seed + 100), dim=1)
    return z @ c.t()


@pytest.mark.parametrize("b,k,iters,eps", [(64, 10, 3, 0.05), (16, 30, 3, 0.05), (32, 8, 5, 0.1)])
def test_sinkhorn_equals_lightly(b, k, iters, eps):
    s = _scores(b, k)
    ref = lightly_sinkhorn(s, iterations=iters, epsilon=eps)
    ours = sinkhorn_knopp(s, iterations=iters, epsilon=eps)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("n_small", [0, 2])
def test_swav_loss_equals_lightly(n_small):
    b, k, tau = 24, 12, 0.1
    high = [_scores(b, k, seed=s) for s in (1, 2)]
    low = [_scores(b, k, seed=s) for s in range(3, 3 + n_small)]
    ref = lightly_loss.SwaVLoss(temperature=tau, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)(high, low)
    codes = [sinkhorn_knopp(h, 3, 0.05) for h in high]
    ours = swav_loss(high + low, codes, tau)
    assert abs(float(ours.detach()) - float(ref.detach())) < TOL


def test_swav_loss_with_a_queue_equals_lightly():
    # The queue's scores join the Sinkhorn step only; their codes are dropped (SwAV's code; lightly).
    b, k, q, tau = 16, 12, 48, 0.1
    high = [_scores(b, k, seed=s) for s in (1, 2)]
    queue = [_scores(q, k, seed=s) for s in (20, 21)]
    ref = lightly_loss.SwaVLoss(temperature=tau)(high, [], queue)
    codes = [sinkhorn_knopp(torch.cat([h, qs]), 3, 0.05)[:b] for h, qs in zip(high, queue)]
    assert abs(float(swav_loss(high, codes, tau)) - float(ref)) < TOL


def test_moco_info_nce_and_queue_equal_lightlys_memory_bank():
    """lightly's NTXentLoss with a memory bank is MoCo's loss: out0 is the query, out1 the
    positive key; the negatives are the bank (K, d) of earlier normalised out1 rows, read
    before this batch is enqueued; logits = [q·k₊, q·bank]/τ, label 0 — exactly info_nce.
    The bank is updated (this batch's keys written at the pointer) only when out0 requires a
    gradient, as in training. Its pointer wrap drops the part of a batch that does not fit
    instead of wrapping it around, so the two agree when K is a multiple of the batch (MoCo's
    own requirement); here K = 2B and three steps go once around."""
    b, d, size, tau = 8, 16, 16, 0.2
    ref_loss = lightly_loss.NTXentLoss(temperature=tau, memory_bank_size=(size, d))
    moco = MoCo(MoCoConfig(projection_dim=d, queue_size=size, temperature=tau), DataInfo("t", 1, 8, 8, 64))
    moco.queue[0].copy_(ref_loss.memory_bank.bank)          # the same random initial negatives
    for step in range(3):
        q = _randn(b, d, seed=30 + step).requires_grad_()
        k = _randn(b, d, seed=40 + step)
        ref = ref_loss(q, k)
        ours = info_nce(q, k, moco.queue[0].clone(), tau)
        moco._enqueue(F.normalize(k, dim=1)[None])
        assert abs(float(ours.detach()) - float(ref.detach())) < TOL, step
        assert torch.allclose(moco.queue[0], ref_loss.memory_bank.bank, atol=1e-6)
        assert int(moco.queue_ptr) == int(ref_loss.memory_bank.bank_ptr)
