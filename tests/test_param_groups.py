"""Optimiser parameter groups and per-view settings, as each method's paper uses them:
no weight decay on norms, biases, position embeddings, tokens and temperatures; SimSiam's
predictor at a fixed lr; MAE's AdamW betas; LARS; BYOL's asymmetric views; resuming a run
stored before the groups existed."""
import warnings

import pytest
import torch

from engine import augment, workbench
from engine.methods import DataInfo, get_method
from engine.methods.base import decay_groups, no_weight_decay
from engine.train import LARS, RunControl, Step, TrainConfig, make_optimizer

FAST = {"epochs": "2", "batch_size": "128", "width": "8", "checkpoint_every": "3", "timeline_items": "100"}


def _build(name, info=DataInfo("shapes", 3, 16, 16, 100), **cfg):
    m = get_method(name)
    return m(m.Config(**cfg), info)


def _names(method, groups):
    by_id = {id(p): n for n, p in method.named_parameters()}
    return [[by_id[id(p)] for p in g["params"]] for g in groups]


def _check_partition(method, groups):
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)), "a parameter in two groups"
    assert set(ids) == {id(p) for p in method.parameters()}, "a parameter in no group"


def test_default_groups_decay_weights_only():
    m = _build("byol", width=8)
    tcfg = TrainConfig(weight_decay=0.01)
    groups = m.param_groups(tcfg)
    _check_partition(m, groups)
    decay, keep = ({n for n in names} for names in _names(m, groups))
    assert [g["weight_decay"] for g in groups] == [0.01, 0.0]
    mods = dict(m.named_modules())
    checked = {"conv": 0, "linear": 0, "norm": 0}
    for name, p in m.named_parameters():
        mod = mods[name.rsplit(".", 1)[0]]
        if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
            assert name in keep, name
            checked["norm"] += 1
        elif name.endswith(".bias"):
            assert name in keep, name
        elif isinstance(mod, torch.nn.Conv2d):
            assert name in decay, name
            checked["conv"] += 1
        elif isinstance(mod, torch.nn.Linear):
            assert name in decay, name
            checked["linear"] += 1
    assert min(checked.values()) > 0, checked          # each kind was really seen
    # The optimiser built from them keeps each group's decay.
    opt = make_optimizer(groups, tcfg)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]


def test_the_rule_by_name_and_shape():
    mat, vec, scalar = torch.zeros(4, 4), torch.zeros(4), torch.zeros(())
    assert not no_weight_decay("backbone.fc.weight", mat)
    assert no_weight_decay("backbone.fc.bias", vec)
    assert no_weight_decay("log_scale", scalar)
    assert no_weight_decay("encoder.pos_embed", torch.zeros(1, 17, 8))
    assert no_weight_decay("encoder.cls_token", torch.zeros(1, 1, 8))
    assert no_weight_decay("mask_token", torch.zeros(1, 1, 8))
    assert no_weight_decay("text.pos", mat)
    assert not no_weight_decay("text.embed.weight", mat)          # a token table is decayed
    groups = decay_groups([("a.weight", torch.nn.Parameter(mat))], 0.1)
    assert [g["name"] for g in groups] == ["decay"]                # empty groups are left out


def test_mae_tokens_undecayed_and_betas():
    m = _build("mae", DataInfo("digits", 1, 8, 8, 100))
    groups = m.param_groups(TrainConfig(weight_decay=0.05))
    _check_partition(m, groups)
    decay, keep = _names(m, groups)
    assert "mask_token" in keep and "encoder.cls_token" in keep
    assert any(n.endswith("qkv.weight") for n in decay)
    assert not any("norm" in n for n in decay)
    opt = make_optimizer(groups, TrainConfig(optimizer="adamw"), m.optimizer_options(TrainConfig(optimizer="adamw")))
    assert isinstance(opt, torch.optim.AdamW)
    assert all(g["betas"] == (0.9, 0.95) for g in opt.param_groups)
    # SGD takes no betas: the options follow the optimiser.
    sgd = TrainConfig(optimizer="sgd")
    assert m.optimizer_options(sgd) == {}
    assert isinstance(make_optimizer(groups, sgd, m.optimizer_options(sgd)), torch.optim.SGD)
    # Other methods keep Adam's defaults.
    other = _build("simclr", width=8)
    assert make_optimizer(other.param_groups(TrainConfig()), TrainConfig()).param_groups[0]["betas"] == (0.9, 0.999)


def test_clip_logit_scale_undecayed():
    m = _build("clip", DataInfo("shapes", 3, 16, 16, 10), width=4)
    groups = m.param_groups(TrainConfig())
    _check_partition(m, groups)
    decay, keep = _names(m, groups)
    assert "log_scale" in keep and "log_scale" not in decay


def test_simsiam_predictor_lr_fixed_in_the_loop(project):
    m = _build("simsiam", width=8)
    tcfg = TrainConfig(lr=0.05)
    groups = m.param_groups(tcfg)
    _check_partition(m, groups)
    pred = {id(p) for p in m.predictor.parameters()}
    for g in groups:
        in_pred = {id(p) in pred for p in g["params"]}
        assert len(in_pred) == 1                             # a group is all predictor or none of it
        assert bool(g.get("fixed_lr")) == in_pred.pop()
        if g.get("fixed_lr"):
            assert g["lr"] == 0.05
    # In a real run: after each step the fixed groups still hold the peak lr, the others the schedule's.
    run_id = workbench.create_run(project, "digits", "simsiam", {**FAST, "lr": "0.01", "optimizer": "sgd"})
    seen = []
    for ev in workbench.run_training(project, run_id):
        if isinstance(ev, Step):
            seen.append(ev)
    state = project.latest_checkpoint(run_id)[2]["optim"]
    fixed = [g["lr"] for g in state["param_groups"] if g.get("fixed_lr")]
    scheduled = [g["lr"] for g in state["param_groups"] if not g.get("fixed_lr")]
    assert len(fixed) == 2 and len(scheduled) == 2
    assert fixed == [0.01, 0.01]
    assert scheduled[0] == scheduled[1] < 0.001            # the cosine has decayed to near zero
    assert len(seen) > 4


def test_lars_trust_ratio():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8, 4))
    b = torch.nn.Parameter(torch.randn(4))
    w0, b0 = w.detach().clone(), b.detach().clone()
    gw, gb = torch.randn(8, 4), torch.randn(4)
    opt = make_optimizer([{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0, "no_decay": True}],
                         TrainConfig(optimizer="lars", lr=0.5, weight_decay=0.1))
    assert isinstance(opt, LARS)
    w.grad, b.grad = gw.clone(), gb.clone()
    opt.step()
    d = gw + 0.1 * w0
    trust = 0.001 * w0.norm() / d.norm()
    assert torch.allclose(w.detach(), w0 - 0.5 * trust * d, atol=1e-6)
    assert torch.allclose(b.detach(), b0 - 0.5 * gb, atol=1e-6)       # excluded: plain SGD
    # Second step: momentum 0.9 on the scaled updates.
    w1 = w.detach().clone()
    w.grad, b.grad = gw.clone(), gb.clone()
    opt.step()
    d2 = gw + 0.1 * w1
    v = 0.9 * trust * d + 0.001 * w1.norm() / d2.norm() * d2
    assert torch.allclose(w.detach(), w1 - 0.5 * v, atol=1e-6)


def test_byol_views_differ_as_in_the_paper():
    byol = get_method("byol")
    views = augment.ViewConfig(blur_p=1.0, solarize_p=0.0)
    first, second = byol.views_for(views)
    assert (first.blur_p, first.solarize_p) == (1.0, 0.0)
    assert (second.blur_p, second.solarize_p) == pytest.approx((0.1, 0.2))
    # Other methods: the same settings for both views.
    assert get_method("simclr").views_for(views) == (views, views)
    # A new run's views: from 64 px (where the data set's views blur with p 0.5) BYOL's first view
    # always blurs and its second a tenth as often, as in the paper; at 32 px neither blurs.
    from types import SimpleNamespace
    from engine.train import default_run_config
    for side, want in ((96, (1.0, 0.1)), (64, (1.0, 0.1)), (32, (0.0, 0.0))):
        data = SimpleNamespace(name="photos", height=side, channels=3)
        run = default_run_config("byol", data)
        assert (run.views.blur_p, byol.views_for(run.views)[1].blur_p) == pytest.approx(want)
        assert default_run_config("simclr", data).views.blur_p == (0.5 if side >= 64 else 0.0)
    assert default_run_config("byol", data, {"views.blur_p": "0.3"}).views.blur_p == 0.3   # the user's wins
    # Measured: the first view (blur always) has less high-frequency energy than the second.
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), generator=g, dtype=torch.uint8)
    plain = augment.ViewConfig(crop_scale_min=1.0, flip_p=0.0, jitter_p=0.0, grayscale_p=0.0,
                               blur_p=1.0, blur_sigma_min=1.0, blur_sigma_max=2.0)
    v1, v2 = augment.make_view_pair(x, plain, torch.Generator().manual_seed(1),
                                    second=byol.views_for(plain)[1])

    def high_freq(v):
        return (v[..., 1:] - v[..., :-1]).pow(2).mean().item()
    assert high_freq(v1) < 0.25 * high_freq(v2), (high_freq(v1), high_freq(v2))
    # The first view is exactly the one a symmetric pair gives: only the second changed.
    s1, s2 = augment.make_view_pair(x, plain, torch.Generator().manual_seed(1))
    assert torch.equal(v1, s1) and not torch.equal(v2, s2)
    # Solarize p 0.2 on the second view only: some second views are solarized, no first view.
    sol = augment.identity()
    sol2 = byol.views_for(sol)[1]
    a, b = augment.make_view_pair(x, sol, torch.Generator().manual_seed(2), second=sol2)
    ref = augment.normalize(x)
    assert torch.equal(a, ref)
    changed = (b != ref).flatten(1).any(1).float().mean().item()
    assert 0.08 < changed < 0.35, changed
    # Settings other than probabilities cannot differ within one batch.
    with pytest.raises(ValueError, match="crop_scale_min"):
        augment.make_view_pair(x, plain, torch.Generator(), second=augment.ViewConfig(crop_scale_min=0.5))


def test_preview_shows_the_second_views_settings():
    import numpy as np
    imgs = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
    cfg = augment.identity()
    _, v1, v2 = augment.preview(imgs, cfg, n=8, seed=0, second=augment.identity())
    assert np.array_equal(v1, v2)
    _, v1, v2 = augment.preview(imgs, cfg, n=8, seed=0, second=get_method("byol").views_for(cfg)[1])
    assert np.array_equal(v1, imgs) and not np.array_equal(v2, imgs)


def test_same_groups_restore_the_optimiser_state():
    m = _build("simclr", width=8)
    tcfg = TrainConfig()
    opt = make_optimizer(m.param_groups(tcfg), tcfg)
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    again = make_optimizer(m.param_groups(tcfg), tcfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again.load_state_dict(opt.state_dict())
    assert len(again.state) == len(opt.state) > 0


def test_an_old_one_group_optimiser_state_is_not_restored():
    m = _build("simclr", width=8)
    tcfg = TrainConfig()
    old = torch.optim.AdamW(m.parameters(), lr=tcfg.lr, weight_decay=tcfg.weight_decay)   # before the groups
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    old.step()
    new = make_optimizer(m.param_groups(tcfg), tcfg)
    assert len(new.param_groups) == 2
    with pytest.warns(RuntimeWarning, match="starts afresh"):
        new.load_state_dict(old.state_dict())
    assert len(new.param_groups) == 2 and len(new.state) == 0
    assert [g["weight_decay"] for g in new.param_groups] == [tcfg.weight_decay, 0.0]


def test_resuming_a_run_stored_with_one_group(project):
    run_id = workbench.create_run(project, "digits", "simclr", FAST)
    control = RunControl()
    for ev in workbench.run_training(project, run_id, control):
        if isinstance(ev, Step) and ev.step == 4:
            control.stop()
    step, epoch, state = project.latest_checkpoint(run_id)
    assert step == 4 and len(state["optim"]["param_groups"]) == 2
    # Rewrite it as the loop stored it before the groups: one group over every parameter.
    n = sum(len(g["params"]) for g in state["optim"]["param_groups"])
    one = {k: v for k, v in state["optim"]["param_groups"][0].items() if k not in ("name", "params")}
    state["optim"] = {"state": {}, "param_groups": [{**one, "params": list(range(n))}]}
    project.save_checkpoint(run_id, step, epoch, state)
    assert len(project.latest_checkpoint(run_id)[2]["optim"]["param_groups"]) == 1
    with pytest.warns(RuntimeWarning, match="starts afresh"):
        events = list(workbench.run_training(project, run_id))
    assert events[0].start_step == 4
    assert project.run(run_id).status == "finished"


def test_cpu_default_batch_shrinks_with_large_images():
    """From 64 px a CPU run's default batch keeps the pixels per step of 32 px (at least 64):
    at 96 px the loop's 256 took 5–7 s a step. A batch the user or GPU defaults set is kept."""
    from types import SimpleNamespace
    from engine.train import cpu_batch_size, default_run_config

    def batch(method, side, overrides=None):
        data = SimpleNamespace(name="photos", height=side, channels=3)
        return default_run_config(method, data, overrides).train.batch_size

    assert [cpu_batch_size(256, s) for s in (8, 32, 63, 64, 96, 224)] == [256, 256, 256, 64, 64, 64]
    assert cpu_batch_size(2048, 64) == 512 and cpu_batch_size(32, 96) == 32
    assert batch("moco", 32) == 256 and batch("moco", 96) == 64          # the loop's default
    assert batch("simclr", 32) == 128 and batch("simclr", 224) == 64     # the method's CPU default
    assert batch("moco", 96, {"batch_size": "256"}) == 256               # the user's wins
    assert batch("moco", 96, {"device": "cpu", "batch_size": "200"}) == 200
