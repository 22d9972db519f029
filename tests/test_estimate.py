"""engine.estimate: time and memory of a run from a few dry-run steps, with nothing written."""
from __future__ import annotations

import pytest
import torch

from engine.estimate import EstimateCancelled, estimate_run, evaluations, total_seconds
from engine.methods import DataInfo, get_method
from engine.train import default_run_config
from engine.workbench import load_dataset


@pytest.fixture(autouse=True)
def small_eval_sample(monkeypatch):
    """Time the evaluations on 128 items (not 512): the tests check how they add up, not their speed."""
    monkeypatch.setattr("engine.estimate.EVAL_SAMPLE", 128)


def _param_bytes(module) -> tuple[int, int]:
    params = sum(p.numel() * p.element_size() for p in module.parameters())
    buffers = sum(b.numel() * b.element_size() for b in module.buffers())
    return params, buffers


def test_estimate_times_real_steps_and_counts_memory(project):
    rng_before = torch.get_rng_state()
    est = estimate_run(project, "digits", "simclr", {"batch_size": "64", "width": "4", "epochs": "3"}, steps=1)
    assert torch.equal(rng_before, torch.get_rng_state()), "the global RNG is the training thread's too"
    assert project.runs() == [], "a dry run records nothing"

    data = load_dataset(project, "digits")
    n_train = int((data.split == 0).sum())
    assert est["available"] and est["device"].startswith("cpu")
    assert est["n_train"] == n_train and est["batch_size"] == 64 and est["steps_per_epoch"] == n_train // 64
    assert est["timed_steps"] == 1 and 0 < est["seconds_per_step"] < 60
    assert est["seconds_per_epoch"] == pytest.approx(est["seconds_per_step"] * est["steps_per_epoch"])
    # Evaluations: the untrained baseline, after epochs 1 and 2, and the final one.
    assert est["evaluations"] == 4 and est["epochs"] == 3
    assert est["seconds_linear_probe"] > 0
    # The probe: on the untrained network and at the end; the raw-pixel baselines: this first run only.
    assert est["seconds_baselines"] > 0
    assert est["total_seconds"] == pytest.approx(3 * est["seconds_per_epoch"] + 4 * est["seconds_per_evaluation"]
                                                 + 2 * est["seconds_linear_probe"] + est["seconds_baselines"])

    # Memory, counted on the CPU: the parts are what an independent count gives.
    cfg = default_run_config("simclr", data, {"width": "4"})
    method = get_method("simclr")(cfg.method_config, DataInfo(data.name, 1, 8, 8, n_train))
    params, buffers = _param_bytes(method)
    parts = est["memory_parts"]
    assert est["memory_method"] == "counted" and est["peak_memory_bytes"] == sum(parts.values())
    assert parts["parameters"] == params + buffers
    assert parts["gradients"] == params
    n_tensors = len(list(method.parameters()))
    # AdamW keeps two moments per parameter (and a scalar step count per tensor).
    assert 2 * params <= parts["optimiser state"] <= 2 * params + 8 * n_tensors
    # The first convolution alone keeps its input, two views of 64 float images, for the backward pass.
    assert parts["saved activations"] > 2 * 64 * 8 * 8 * 4
    # One decoded copy of the whole set (the feed; issue 13 dropped the second, train-only copy).
    assert parts["images (the loop's copy)"] == data.images.nbytes


def test_memory_grows_with_the_batch_and_time_scales_with_epochs(project):
    small = estimate_run(project, "digits", "simclr", {"batch_size": "16", "width": "4"}, steps=1)
    big = estimate_run(project, "digits", "simclr", {"batch_size": "128", "width": "4"}, steps=1)
    assert small["memory_parts"]["parameters"] == big["memory_parts"]["parameters"]
    # Activations are linear in the batch (8× here); allow for per-step constants.
    ratio = big["memory_parts"]["saved activations"] / small["memory_parts"]["saved activations"]
    assert 5 < ratio < 10, ratio
    # Another epoch count needs no new dry run: the total follows from the estimate.
    epoch, evaluation, probe = big["seconds_per_epoch"], big["seconds_per_evaluation"], big["seconds_linear_probe"]
    base = big["seconds_baselines"]
    assert total_seconds(big, 10, 1) == pytest.approx(10 * epoch + 11 * evaluation + 2 * probe + base)
    assert total_seconds(big, 20, 0) == pytest.approx(20 * epoch + 2 * evaluation + 2 * probe + base)
    # A linear probe at every evaluation: untrained, 9 before the last epoch, the final one.
    assert total_seconds(big, 10, 1, True) == pytest.approx(10 * epoch + 11 * evaluation + 11 * probe + base)
    assert evaluations(big, 20, 5) == 2 + 3


def test_time_budget_cancel_and_closed_form(project):
    quick = estimate_run(project, "digits", "simclr", {"width": "4", "batch_size": "32"}, steps=5,
                         max_seconds=0.0)
    assert quick["timed_steps"] == 1          # the budget is spent after the first timed step
    calls = []
    with pytest.raises(EstimateCancelled):
        estimate_run(project, "digits", "simclr", {"width": "4"}, cancel=lambda: calls.append(1) or True)
    assert calls == [1], "cancel is polled before the first step"

    pca = estimate_run(project, "digits", "pca", steps=3)
    assert pca["available"] and pca["steps_per_epoch"] == 1 and pca["epochs"] == 1 and pca["timed_steps"] == 0
    assert pca["seconds_per_epoch"] > 0 and pca["evaluations"] == 1
    # One evaluation and one probe (no untrained network to compare with); the raw-pixel baselines.
    assert pca["total_seconds"] == pytest.approx(pca["seconds_per_epoch"] + pca["seconds_per_evaluation"]
                                                 + pca["seconds_linear_probe"] + pca["seconds_baselines"])
    assert pca["memory_parts"]["normalised images"] == int((load_dataset(project, "digits").split == 0).sum()) * 64 * 4
    assert project.runs() == []


def test_text_methods_are_not_estimated(project):
    from engine.workbench import import_dataset
    import_dataset(project, "shapes-captions", "captions")
    est = estimate_run(project, "captions", "word2vec")
    assert est == {"available": False, "device": est["device"], "reason": est["reason"]}
    assert "text" in est["reason"]

