"""Label efficiency (engine/label_efficiency.py) and which images to label (engine/selection.py)."""
import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from engine import augment
from engine.label_efficiency import (Budget, balanced_subset, classifier_accuracy, fresh_copy,
                                     label_efficiency, metric_name, train_classifier)
from engine.selection import coverage_radius, select, typicality


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A project with one finished SimCLR run on digits (1 epoch, width 4): (path, run id)."""
    from engine.store import Project
    from engine.workbench import create_run, import_dataset, run_training
    path = tmp_path_factory.mktemp("le") / "le.pretext"
    with Project.create(path) as p:
        import_dataset(p, "digits", "digits")
        run = create_run(p, "digits", "simclr", {"epochs": "1", "batch_size": "128", "width": "4",
                                                 "eval_every": "0", "timeline_items": "0"})
        events = list(run_training(p, run))
        assert type(events[-1]).__name__ == "Finished", events[-1]
    return path, run


def test_subsets_are_class_balanced_seeded_and_skip_unlabelled():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 4, size=400)            # -1: no label
    pool = np.flatnonzero(labels >= 0)
    a = balanced_subset(labels, pool, 5, seed=0)
    assert len(a) == 20 and np.bincount(labels[a]).tolist() == [5, 5, 5, 5]
    assert np.array_equal(a, balanced_subset(labels, pool, 5, seed=0))
    assert not np.array_equal(a, balanced_subset(labels, pool, 5, seed=1))
    assert (labels[a] >= 0).all() and set(a) <= set(pool)
    with pytest.raises(ValueError, match="ask for at most"):
        balanced_subset(labels, pool, 500, seed=0)


class PlantedNet(nn.Module):
    """One linear map from pixels to 10 features: the "method" of the planted problem."""

    def __init__(self, cfg, info):
        super().__init__()
        self.cfg, self.info = cfg, info
        self.lin = nn.Linear(info, 10)

    def embed(self, x):
        return self.lin(x.flatten(1))


def _planted(n_per_class, rng, templates):
    y = np.repeat(np.arange(10), n_per_class)
    x = 128 + 20 * templates[y] + rng.normal(0, 40, size=(len(y), 1, 16, 16))
    return torch.from_numpy(np.clip(x, 0, 255).astype(np.uint8)), y


def test_good_representation_beats_scratch_at_one_label_per_class():
    # Ten ±1 templates buried in pixel noise twice as strong: an encoder that
    # correlates with the templates separates the classes; from 1 noisy example per
    # class a network of the same shape trained from scratch cannot find them.
    rng = np.random.default_rng(0)
    templates = rng.choice([-1.0, 1.0], size=(10, 1, 16, 16))
    xtr, ytr = _planted(1, rng, templates)
    xte, yte = _planted(50, rng, templates)
    good = PlantedNet(None, 256)
    with torch.no_grad():
        good.lin.weight.copy_(torch.from_numpy(templates.reshape(10, -1)).float())
        good.lin.bias.zero_()
    budget = Budget(steps=60, batch_size=10)
    views = augment.identity()
    tuned, n_tuned = train_classifier(good, xtr, ytr, 10, views, budget, seed=0)
    scratch, n_scratch = train_classifier(fresh_copy(good, 0), xtr, ytr, 10, views, budget, seed=0,
                                          pretrained=False)
    acc_good, acc_scratch = classifier_accuracy(tuned, xte, yte), classifier_accuracy(scratch, xte, yte)
    assert n_tuned == n_scratch == {"steps": 60, "examples": 600}
    assert acc_good > 0.9 and acc_good > acc_scratch + 0.25, (acc_good, acc_scratch)

    # A pretrained encoder learns at encoder_lr_scale of the head's rate (0: frozen); scratch at the full rate.
    frozen = Budget(steps=5, batch_size=10, encoder_lr_scale=0.0)
    for pretrained in (True, False):
        net = fresh_copy(good, 1)
        before = [p.detach().clone() for p in net.parameters()]
        model, _ = train_classifier(net, xtr, ytr, 10, views, frozen, seed=0, pretrained=pretrained)
        same = all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
        assert same == pretrained
        assert model.head.weight.abs().sum() > 0


def test_finetune_and_scratch_get_the_same_budget_and_store_metrics(tiny_run, monkeypatch):
    from engine import label_efficiency as le
    from engine.store import Project
    calls = []
    real = le.train_classifier

    def spy(method, x, y, n_classes, views, budget, seed, pretrained):
        model, counted = real(method, x, y, n_classes, views, budget, seed, pretrained)
        calls.append((len(x), counted, pretrained))
        return model, counted

    monkeypatch.setattr(le, "train_classifier", spy)
    path, run = tiny_run
    with Project.open(path) as p:
        out = label_efficiency(p, run, per_class=(1,), seeds=2, budget=Budget(steps=4, batch_size=8),
                               modes=("finetune", "scratch"))
        stored = {m.name: m.value for m in p.metrics(run) if m.name.startswith("label_eff/")}
    # 2 seeds × (finetune, scratch), each on the same 10 items, 4 steps of 8 examples.
    assert calls == [(10, {"steps": 4, "examples": 32}, True), (10, {"steps": 4, "examples": 32}, False)] * 2
    assert out["trained"] == {"finetune": {"steps": 4, "examples": 32}, "scratch": {"steps": 4, "examples": 32}}
    row = out["label_efficiency"][0]
    assert row["per_class"] == 1 and row["n_seeds"] == 2 and 0 <= row["finetune"] <= 1
    assert stored[metric_name("finetune", 1)] == row["finetune"]
    assert stored["label_eff/scratch@1_std"] == row["std"]["scratch"]


def test_finetune_starts_from_the_trained_encoder_and_scratch_does_not(tiny_run):
    from engine.store import Project
    from engine.workbench import load_trained_method
    path, run = tiny_run
    with Project.open(path) as p:
        method, _ = load_trained_method(p, run, device="cpu")
    trained = dict(method.named_parameters())
    fresh = dict(fresh_copy(method, 0).named_parameters())
    assert fresh.keys() == trained.keys()
    assert any(not torch.equal(fresh[k], trained[k]) for k in trained)
    again = dict(fresh_copy(method, 0).named_parameters())
    assert all(torch.equal(fresh[k], again[k]) for k in fresh)        # seeded


def _mixture(rng, sizes, dim=16):
    centres = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:len(sizes)] * 10
    x = np.concatenate([c + rng.normal(0, 1.5, size=(n, dim)) for c, n in zip(centres, sizes)])
    return x.astype(np.float32), np.repeat(np.arange(len(sizes)), sizes)


def test_kcenter_covers_better_than_random():
    rng = np.random.default_rng(1)
    x, _ = _mixture(rng, [400, 200, 100, 50, 20, 10, 5, 5])
    k = coverage_radius(x, select(x, 8, "kcenter", seed=0))
    randoms = [coverage_radius(x, select(x, 8, "random", seed=s)) for s in range(5)]
    assert k < min(randoms), (k, randoms)
    assert len(set(select(x, 8, "kcenter", seed=0))) == 8


def test_typiclust_picks_the_densest_point_of_each_cluster():
    rng = np.random.default_rng(2)
    sizes = [300, 200, 120, 80, 60]
    x, cluster = _mixture(rng, sizes)
    picked = select(x, 5, "typiclust", seed=0)
    assert sorted(cluster[picked].tolist()) == [0, 1, 2, 3, 4]       # one per cluster
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    for p in picked:
        members = np.flatnonzero(cluster == cluster[p])
        # Brute force: 1 / mean distance to the 20 nearest others of the cluster.
        d = np.linalg.norm(unit[members, None] - unit[None, members], axis=2)
        typ = 1 / np.sort(d, axis=1)[:, 1:21].mean(axis=1)
        assert members[typ.argmax()] == p
        assert np.allclose(typicality(torch.from_numpy(unit[members])).numpy(), typ, rtol=1e-3)
    assert np.array_equal(picked, select(x, 5, "typiclust", seed=0))


def test_text_runs_are_refused_with_the_analogue_named():
    from engine.label_efficiency import _check_image_run
    with pytest.raises(ValueError, match="sentence-classification probe"):
        _check_image_run(None, SimpleNamespace(id=3, method="word2vec"))


def test_cli_prints_the_json_stores_metrics_and_exports_the_selection(tiny_run, tmp_path, capsys):
    from engine.cli import main
    from engine.store import Project
    path, run = tiny_run
    code = main(["eval", "-p", str(path), "-r", str(run), "--labels-per-class", "1,3", "--seeds", "2",
                 "--modes", "probe,raw", "--select", "typiclust", "--select-csv", str(tmp_path / "s.csv"),
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)
    assert result["select"] == "typiclust" and result["run"] == run and result["class_balanced"] is False
    rows = result["label_efficiency"]
    assert [r["per_class"] for r in rows] == [1, 3]
    assert set(rows[0]) >= {"per_class", "probe", "raw", "n_seeds", "std"} and rows[0]["n_seeds"] == 2
    assert set(rows[0]["std"]) == {"probe", "raw"} and 0 < rows[1]["probe"] <= 1
    with Project.open(path) as p:
        stored = {m.name: m.value for m in p.metrics(run)}
    assert stored["label_eff/probe@3/typiclust"] == rows[1]["probe"]
    assert stored["label_eff/raw@1_std/typiclust"] == rows[0]["std"]["raw"]
    names = [r[0] for r in csv.reader((tmp_path / "s.csv").open())]
    assert names[0] == "name" and len(names) == 1 + 3 * 10 and names[1].startswith("digits/")

    code = main(["eval", "-p", str(path), "-r", str(run), "--labels-per-class", "1,500", "--modes", "probe"])
    _, err = capsys.readouterr()
    assert code == 2 and "more than the smallest class has" in err
    code = main(["eval", "-p", str(path), "-r", str(run), "--labels-per-class", "1", "--seeds", "1",
                 "--modes", "probe,raw"])
    out, _ = capsys.readouterr()
    assert code == 0 and "probe" in out.splitlines()[1] and " ± " in out.splitlines()[2]
