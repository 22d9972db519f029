"""The training loop: events, stop/pause, resume equals an uninterrupted run, failures."""
import threading

import numpy as np
import pytest
import torch

from engine import workbench
from engine.train import (CheckpointSaved, Failed, Finished, Paused, RunControl, Started, Step,
                          lr_at, TrainConfig)

FAST = {"epochs": "2", "batch_size": "128", "width": "8", "checkpoint_every": "3", "timeline_items": "100"}


def _weights(project, run_id):
    return project.latest_checkpoint(run_id)[2]["model"]


def test_events_metrics_and_baselines(project):
    run_id = workbench.create_run(project, "digits", "simclr", FAST)
    events = list(workbench.run_training(project, run_id))
    kinds = [type(e) for e in events]
    assert kinds[0] is Started and kinds[-1] is Finished and Failed not in kinds
    started = events[0]
    steps = [e for e in events if isinstance(e, Step)]
    assert len(steps) == started.total_steps == 2 * started.steps_per_epoch
    assert all(np.isfinite(e.loss) for e in steps)
    # The loss curve in the file is the one the events reported.
    stored = [m.value for m in project.metrics(run_id, "loss")]
    assert stored == pytest.approx([e.loss for e in steps])
    # Baselines beside the result, and the final numbers are real accuracies.
    latest = project.latest_metrics(run_id)
    for key in ("knn", "linear", "raw_knn", "raw_linear", "random_knn", "random_linear"):
        assert 0.0 <= latest[key] <= 1.0
    assert latest["raw_knn"] > 0.8          # digits are easy for raw pixels
    assert latest["knn"] > 0.3              # far above chance after two tiny epochs
    assert project.run(run_id).status == "finished"
    emb = workbench.final_embeddings(project, run_id)
    assert emb.n == 1797
    assert len(project.projections(emb.id)) == 1      # PCA at once


def test_raw_baselines_are_computed_once_per_dataset(project, monkeypatch):
    first = workbench.create_run(project, "digits", "pca", {})
    list(workbench.run_training(project, first))
    from engine import evaluate

    def fail(*_):
        raise AssertionError("raw-pixel features computed again")
    monkeypatch.setattr(evaluate, "raw_pixel_features", fail)
    second = workbench.create_run(project, "digits", "pca", {})
    assert isinstance(list(workbench.run_training(project, second))[-1], Finished)
    a, b = project.latest_metrics(first), project.latest_metrics(second)
    assert b["raw_knn"] == a["raw_knn"] > 0.8 and b["raw_linear"] == a["raw_linear"]
    # A different kNN setting is a different baseline: computed afresh.
    monkeypatch.undo()
    third = workbench.create_run(project, "digits", "pca", {"knn_k": "5"})
    list(workbench.run_training(project, third))
    assert project.latest_metrics(third)["raw_knn"] != a["raw_knn"]


def test_resume_reaches_the_same_weights(project):
    full = workbench.create_run(project, "digits", "simclr", FAST)
    list(workbench.run_training(project, full))

    part = workbench.create_run(project, "digits", "simclr", FAST)
    control = RunControl()
    for ev in workbench.run_training(project, part, control):
        if isinstance(ev, Step) and ev.step == 4:     # mid-epoch, after the step-3 checkpoint
            control.stop()
    assert project.run(part).status == "stopped"
    assert project.latest_checkpoint(part)[0] == 4
    events = list(workbench.run_training(project, part))
    assert events[0].start_step == 4
    a, b = _weights(project, full), _weights(project, part)
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    assert project.run(part).status == "finished"


def test_resume_after_a_kill_uses_the_last_checkpoint(project):
    run_id = workbench.create_run(project, "digits", "autoencoder", FAST)
    for ev in workbench.run_training(project, run_id):
        if isinstance(ev, CheckpointSaved) and ev.step == 6:
            break          # the generator is dropped: like a killed process
    assert project.latest_checkpoint(run_id)[0] == 6
    # Rows flushed after the checkpoint, just before the "crash", are taken again on resume.
    project.log_metrics(run_id, [(7, 0.6, "loss", 99.0)])
    events = list(workbench.run_training(project, run_id))
    assert events[0].start_step == 6 and isinstance(events[-1], Finished)
    steps = [m.step for m in project.metrics(run_id, "loss")]
    assert steps == list(range(1, events[0].total_steps + 1))
    assert 99.0 not in [m.value for m in project.metrics(run_id, "loss")]


def test_pause_and_resume_from_another_thread(project):
    run_id = workbench.create_run(project, "digits", "simclr", FAST)
    control = RunControl()
    seen = []
    for ev in workbench.run_training(project, run_id, control):
        seen.append(ev)
        if isinstance(ev, Step) and ev.step == 1:
            control.pause()
            threading.Timer(0.3, control.resume).start()
    paused = [e for e in seen if isinstance(e, Paused)]
    assert len(paused) == 1 and paused[0].step == 1
    assert isinstance(seen[-1], Finished) and seen[-1].status == "finished"


def test_a_failing_step_becomes_a_failed_event_and_run(project, monkeypatch):
    from engine.methods.simclr import SimCLR

    def boom(self, x, views, generator, index=None):
        raise RuntimeError("synthetic failure")
    monkeypatch.setattr(SimCLR, "training_step", boom)
    run_id = workbench.create_run(project, "digits", "simclr", FAST)
    events = list(workbench.run_training(project, run_id))
    assert isinstance(events[-1], Failed) and "synthetic failure" in events[-1].error
    run = project.run(run_id)
    assert run.status == "failed" and "synthetic failure" in run.error


def test_pca_baseline_runs_in_one_fit(project):
    run_id = workbench.create_run(project, "digits", "pca", {"dim": "16"})
    events = list(workbench.run_training(project, run_id))
    assert isinstance(events[-1], Finished)
    latest = project.latest_metrics(run_id)
    assert latest["explained_variance"] > 0.7 and latest["knn"] > 0.9
    assert project.artifacts(run_id, "reconstructions")


def test_learning_rate_schedule():
    cfg = TrainConfig(lr=1.0, warmup_epochs=1)
    assert lr_at(0, 100, 10, cfg) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, cfg) == pytest.approx(1.0)
    assert lr_at(100, 100, 10, cfg) == pytest.approx(0.0)
    assert lr_at(55, 100, 10, cfg) == pytest.approx(0.5)


def test_bad_overrides_are_reported(project):
    from engine.config import ConfigError
    with pytest.raises(ConfigError) as err:
        workbench.create_run(project, "digits", "simclr", {"temperature": "-1"})
    assert "temperature" in str(err.value)
    with pytest.raises(ConfigError):
        workbench.create_run(project, "digits", "simclr", {"no_such_key": "1"})


def test_threads_setting_applies_while_training_and_is_restored(project):
    before = torch.get_num_threads()
    seen = []
    run_id = workbench.create_run(project, "digits", "pca", {"threads": "1"})
    for _ in workbench.run_training(project, run_id):
        seen.append(torch.get_num_threads())
    assert set(seen) == {1}
    assert torch.get_num_threads() == before
