"""MoCo v2, BYOL, SimSiam and SwAV: the mechanics each paper relies on.

Momentum targets (EMA math, BYOL's cosine schedule, no gradient to the
target), MoCo's queue, Sinkhorn's marginals, SwAV's prototypes, that BYOL and
SimSiam do not collapse on small data, and one short end-to-end run per
method through the workbench (with an exact resume for the stateful ones).
"""
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine import workbench
from engine.augment import default_views, make_view_pair, normalize
from engine.data import load_images
from engine.evaluate import collapse_metrics, knn_accuracy
from engine.losses import sinkhorn_knopp
from engine.methods import METHODS, DataInfo
from engine.methods.momentum import cosine_momentum, ema_update, frozen_copy
from engine.store.tensors import pack_state, unpack_state
from engine.train import Finished, RunControl, Step, images_tensor

SIAMESE = ("moco", "byol", "simsiam", "swav")
INFO = DataInfo("digits", 1, 8, 8, 64)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on a small shared CPU, two threads fighting other processes
    for two cores make these small networks several times slower, not faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _batch(n=16, c=1, h=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, h), generator=g, dtype=torch.uint8)


def _method(name, **cfg):
    cls = METHODS[name]
    torch.manual_seed(0)
    return cls(cls.Config(width=8, **cfg), INFO)


# --------------------------------------------------------------------------- momentum helpers

def test_frozen_copy_is_equal_and_never_requires_grad():
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    target = frozen_copy(online)
    for a, b in zip(online.parameters(), target.parameters()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
        assert a.requires_grad and not b.requires_grad


def test_ema_update_matches_hand_computation():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    target = frozen_copy(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
        online[1].running_mean.add_(5.0)
    old_t = [p.clone() for p in target.parameters()]
    old_buffers = [b.clone() for b in target.buffers()]
    m = 0.9
    ema_update(target, online, m)
    for t, t0, o in zip(target.parameters(), old_t, online.parameters()):
        assert torch.allclose(t, m * t0 + (1 - m) * o, atol=1e-7)
    # Only parameters move: the target's BN statistics are its own.
    assert all(torch.equal(a, b) for a, b in zip(target.buffers(), old_buffers))
    # m = 1 keeps the target, m = 0 copies the online network.
    ema_update(target, online, 1.0)
    assert all(torch.allclose(t, m * t0 + (1 - m) * o) for t, t0, o in
               zip(target.parameters(), old_t, online.parameters()))
    ema_update(target, online, 0.0)
    assert all(torch.equal(t, o) for t, o in zip(target.parameters(), online.parameters()))


def test_cosine_momentum_schedule():
    base, K = 0.99, 100
    assert cosine_momentum(0, K, base) == pytest.approx(base)
    assert cosine_momentum(K, K, base) == pytest.approx(1.0)
    assert cosine_momentum(K // 2, K, base) == pytest.approx(1 - (1 - base) / 2)   # cos(π/2) = 0
    for k in (1, 13, 37, 99):
        # τ = 1 − (1 − τ_base)(cos(πk/K) + 1)/2, written out by hand
        expected = 1.0 - 0.01 * (math.cos(math.pi * k / 100) + 1.0) / 2.0
        assert cosine_momentum(k, K, base) == pytest.approx(expected, abs=1e-12)
    values = [cosine_momentum(k, K, base) for k in range(K + 1)]
    assert all(a <= b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("name,target_attrs,online_attrs", [
    ("moco", ("key_backbone", "key_head"), ("backbone", "head")),
    ("byol", ("target_backbone", "target_projector"), ("backbone", "projector")),
])
def test_target_gets_no_gradient_and_follows_the_online_network(name, target_attrs, online_attrs):
    m = _method(name, queue_size=64) if name == "moco" else _method(name)
    views = default_views("digits", 8, 1)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    loss, _ = m(_batch(16), views, torch.Generator().manual_seed(0))
    loss.backward()
    targets = [p for a in target_attrs for p in getattr(m, a).parameters()]
    onlines = [p for a in online_attrs for p in getattr(m, a).parameters()]
    assert all(p.grad is None and not p.requires_grad for p in targets)
    assert all(p.grad is not None for p in onlines)
    before = [p.clone() for p in targets]
    opt.step()
    assert all(torch.equal(p, b) for p, b in zip(targets, before)), "the optimiser moved the target"
    total = 10
    m.after_step(3, total)
    rate = m.cfg.momentum if name == "moco" else cosine_momentum(3, total, m.cfg.tau_base)
    for t, t0, o in zip(targets, before, onlines):
        assert torch.allclose(t, rate * t0 + (1 - rate) * o, atol=1e-6)


# --------------------------------------------------------------------------- MoCo's queue

def test_moco_queue_wraps_and_holds_the_enqueued_keys():
    B, K = 16, 24                     # not a multiple: the second batch wraps around the end
    m = _method("moco", queue_size=K)
    views = default_views("digits", 8, 1)
    q0 = m.queue.clone()
    assert torch.allclose(q0.norm(dim=-1), torch.ones(1, K))            # random unit vectors at first

    def expected_keys(x, seed):
        _, v2 = make_view_pair(x, views, torch.Generator().manual_seed(seed))
        with torch.no_grad():
            return F.normalize(m.key_head(m.key_backbone(v2)), dim=1)

    x1, x2 = _batch(B, seed=1), _batch(B, seed=2)
    k1 = expected_keys(x1, 10)
    m(x1, views, torch.Generator().manual_seed(10))
    assert int(m.queue_ptr) == B
    assert torch.allclose(m.queue[0, :B], k1, atol=1e-6) and torch.equal(m.queue[0, B:], q0[0, B:])
    m.after_step(0, 10)
    k2 = expected_keys(x2, 11)
    m(x2, views, torch.Generator().manual_seed(11))
    assert int(m.queue_ptr) == (2 * B) % K == 8
    assert torch.allclose(m.queue[0, B:], k2[:K - B], atol=1e-6)     # rows 16..23: the start of batch 2
    assert torch.allclose(m.queue[0, :8], k2[K - B:], atol=1e-6)     # rows 0..7: its end, wrapped
    assert torch.allclose(m.queue[0, 8:B], k1[8:], atol=1e-6)        # rows 8..15: still batch 1

    # The queue and its pointer are in the checkpoint: a restored model has the same negatives.
    clone = _method("moco", queue_size=K)
    clone.load_state_dict(unpack_state(pack_state({"m": m.state_dict()}))["m"])
    assert torch.equal(clone.queue, m.queue) and int(clone.queue_ptr) == 8


def test_moco_symmetric_keeps_one_queue_per_view_and_refuses_too_small_a_queue():
    m = _method("moco", queue_size=32, symmetric=True)
    views = default_views("digits", 8, 1)
    loss, logs = m(_batch(16), views, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and m.queue.shape == (2, 32, m.cfg.projection_dim)
    assert int(m.queue_ptr) == 16 and not torch.equal(m.queue[0, :16], m.queue[1, :16])
    small = _method("moco", queue_size=8)
    with pytest.raises(ValueError, match="queue"):
        small(_batch(16), views, torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------- Sinkhorn and SwAV

def test_sinkhorn_codes_have_the_right_marginals():
    B, K = 64, 16
    g = torch.Generator().manual_seed(0)
    scores = F.normalize(torch.randn(B, 8, generator=g), dim=1) @ F.normalize(torch.randn(K, 8, generator=g), dim=1).t()
    q = sinkhorn_knopp(scores, iterations=3, epsilon=0.05)
    assert q.shape == (B, K) and (q >= 0).all()
    # The last normalisation is over each sample: its codes are a distribution, exactly.
    assert torch.allclose(q.sum(dim=1), torch.ones(B), atol=1e-6)
    # Equipartition: every prototype gets B/K of the batch — approached with every iteration
    # (the paper's 3 are a compromise), exact in the limit.
    spread = [float((sinkhorn_knopp(scores, it, 0.05).sum(dim=0) - B / K).abs().max()) for it in (1, 3, 10, 50)]
    assert all(a > b for a, b in zip(spread, spread[1:])) and spread[1] < B / K, spread
    q_many = sinkhorn_knopp(scores, iterations=200, epsilon=0.05)
    assert torch.allclose(q_many.sum(dim=0), torch.full((K,), B / K), rtol=1e-3)
    assert torch.allclose(q_many.sum(dim=1), torch.ones(B), atol=1e-6)
    # Extreme scores and a small ε neither overflow nor give NaN.
    q_hard = sinkhorn_knopp(torch.cat([scores, -scores]) * 1.0, iterations=3, epsilon=0.01)
    assert torch.isfinite(q_hard).all() and torch.allclose(q_hard.sum(dim=1), torch.ones(2 * B), atol=1e-6)


def test_swav_prototypes_are_normalised_and_frozen_for_the_first_steps():
    m = _method("swav", freeze_prototypes_steps=2, n_prototypes=10)
    views = default_views("digits", 8, 1)
    opt = torch.optim.AdamW(m.parameters(), lr=0.01)
    with torch.no_grad():
        m.prototypes.weight.mul_(3.0)                     # not unit length any more
    for step in range(3):
        opt.zero_grad(set_to_none=True)
        loss, _ = m(_batch(16, seed=step), views, torch.Generator().manual_seed(step))
        w = m.prototypes.weight
        assert torch.allclose(w.norm(dim=1), torch.ones(10), atol=1e-6)       # normalised before the forward
        loss.backward()
        frozen = step < 2
        assert (w.grad is None) == frozen, step
        assert m.backbone.features[0][0].weight.grad is not None
        before = w.detach().clone()
        opt.step()
        assert torch.equal(w, before) == frozen, step                          # no update, no weight decay
        m.after_step(step, 10)
    assert int(m.step) == 3


def test_swav_multicrop_and_queue():
    B = 16
    m = _method("swav", n_small_crops=2, queue_size=2 * B, n_prototypes=10)
    views = default_views("digits", 8, 1)
    assert m.small_views(views).out_size == 4 and m.small_views(views).crop_scale_max == pytest.approx(0.14)
    seen = []
    m.backbone.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape)))
    for step in range(3):
        loss, logs = m(_batch(B, seed=step), views, torch.Generator().manual_seed(step))
        assert torch.isfinite(loss) and logs["z"].shape == (B, m.cfg.projection_dim)
        m.after_step(step, 10)
    # Both large crops in one forward, the small ones in another.
    assert seen[:2] == [(2 * B, 1, 8, 8), (2 * B, 1, 4, 4)]
    # The queue holds unit embeddings of both large crops, filled after two steps.
    assert int(m.queue_filled) == 2 * B
    assert torch.allclose(m.queue.norm(dim=-1), torch.ones(2, 2 * B), atol=1e-5)


# --------------------------------------------------------------------------- no collapse

@pytest.fixture(scope="module")
def digits():
    d = load_images("digits")
    return d, images_tensor(d)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["byol", "simsiam"])
def test_does_not_collapse_on_digits(name, digits):
    """300 steps of batch 64 (width 16, 5–15 s here): the l2-normalised outputs stay
    spread (SimSiam's std monitor, healthy ≈ 1, collapsed → 0), the projections keep many
    dimensions (without SimSiam's stop-gradient their effective rank falls below 4 by
    step 150), and the features sort digits far above chance."""
    data, images = digits
    train = images[torch.from_numpy(data.split == 0)]
    torch.manual_seed(0)
    cls = METHODS[name]
    m = cls(cls.Config(width=16), DataInfo("digits", 1, 8, 8, len(train)))
    views = default_views("digits", 8, 1)
    opt = torch.optim.AdamW(m.parameters(), lr=2e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(0)
    steps = 300
    for s in range(steps):
        idx = torch.randint(0, len(train), (64,), generator=g)
        loss, logs = m(train[idx], views, torch.Generator().manual_seed(s))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        m.after_step(s, steps)
    z = collapse_metrics(logs["z"])
    assert z["std_ratio"] > 0.3 and z["effective_rank"] > 8, z
    m.eval()
    with torch.no_grad():
        feats = m.embed(normalize(images)).numpy()
    f = collapse_metrics(feats)
    assert f["std_ratio"] > 0.3, f
    test = data.split == 1
    assert knn_accuracy(feats[~test], data.labels[~test], feats[test], data.labels[test], k=20) > 0.8


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize("name", SIAMESE)
def test_cpu_and_gpu_defaults_are_valid_settings(name, digits):
    from engine.train import TrainConfig, default_run_config
    m = METHODS[name]
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(m.train_defaults) <= train_keys          # the GUI reads them as loop settings
    run = default_run_config(name, digits[0], {k: str(v) for k, v in m.gpu_defaults.items()})
    assert run.method_config.backbone == "resnet18-auto"
    cfg = run.method_config
    if name == "moco":
        assert cfg.queue_size % run.train.batch_size == 0
    if name == "swav":
        assert cfg.queue_size % run.train.batch_size == 0


# --------------------------------------------------------------------------- end to end

FAST = {"epochs": "2", "batch_size": "128", "width": "8", "checkpoint_every": "100", "timeline_items": "100"}
STATEFUL = {"moco": {"queue_size": "512"},
            "byol": {},
            "swav": {"queue_size": "256", "queue_start_step": "1", "freeze_prototypes_steps": "6"}}


@pytest.mark.parametrize("name", SIAMESE)
def test_trains_end_to_end_through_the_workbench(project, name):
    run_id = workbench.create_run(project, "digits", name, FAST)
    events = list(workbench.run_training(project, run_id))
    assert isinstance(events[-1], Finished) and events[-1].status == "finished", events[-1]
    steps = [e for e in events if isinstance(e, Step)]
    assert steps and all(np.isfinite(e.loss) for e in steps)
    latest = project.latest_metrics(run_id)
    assert latest["knn"] > 0.3, latest                 # chance is 0.1
    assert "collapse_std_ratio" in latest              # the loop's monitor saw our z


@pytest.mark.parametrize("name", sorted(STATEFUL))
def test_resume_reaches_the_same_weights_queue_and_target(project, name):
    """Stopped mid-epoch and resumed, a run ends where an uninterrupted one does: the
    queues, pointers, step counters and targets are in the checkpoint."""
    cfg = {**FAST, **STATEFUL[name]}
    full = workbench.create_run(project, "digits", name, cfg)
    list(workbench.run_training(project, full))
    part = workbench.create_run(project, "digits", name, cfg)
    control = RunControl()
    for ev in workbench.run_training(project, part, control):
        if isinstance(ev, Step) and ev.step == 4:
            control.stop()
    assert list(workbench.run_training(project, part))[0].start_step == 4
    a = project.latest_checkpoint(full)[2]["model"]
    b = project.latest_checkpoint(part)[2]["model"]
    assert set(a) == set(b)
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
