"""A run's life inside one process (issue #11): the loop's claim and heartbeat, what a
closed loop leaves, and the checks that keep a run that cannot start from being written
(the app's Start goes through the same ``workbench.create_run``)."""
import dataclasses
import json
import sqlite3
import time

import pytest

from engine import workbench
from engine.config import ConfigError
from engine.data import load_images
from engine.store import ownership
from engine.train import Evaluation, RunControl, Started, Step, default_run_config

FAST = {"epochs": "3", "batch_size": "128", "width": "8", "eval_every": "0", "timeline_items": "0", "threads": "1"}


def test_heartbeat_interval_is_within_the_issue_limit():
    assert ownership.HEARTBEAT_INTERVAL_S <= 10 < ownership.HEARTBEAT_STALE_S


def test_heartbeat_goes_on_while_the_loop_is_held_up(project, monkeypatch):
    """The heartbeat comes from its own thread: a step (here: the consumer) that takes
    longer than the interval does not stop it."""
    monkeypatch.setattr(ownership, "HEARTBEAT_INTERVAL_S", 0.2)
    run_id = workbench.create_run(project, "digits", "simclr", FAST)
    beats = []
    events = workbench.run_training(project, run_id)
    for ev in events:
        if isinstance(ev, Step) and ev.step == 1:
            before = project.run(run_id).heartbeat_at
            time.sleep(1.0)                       # the loop is suspended here, mid-run
            beats = [before, project.run(run_id).heartbeat_at]
            assert project.run(run_id).status == "running"
    assert beats[1] > beats[0]
    r = project.run(run_id)
    assert (r.status, r.owner) == ("finished", None)


def test_a_loop_closed_mid_run_leaves_it_interrupted_and_resumable(project):
    run_id = workbench.create_run(project, "digits", "simclr", FAST)
    events = workbench.run_training(project, run_id)
    for ev in events:
        if isinstance(ev, Step):
            assert project.run(run_id).owner is not None
            break
    events.close()                       # as when a caller drops the generator
    r = project.run(run_id)
    assert (r.status, r.owner) == ("interrupted", None)
    last = list(workbench.run_training(project, run_id))[-1]
    assert last.status == "finished" and project.run(run_id).status == "finished"


def test_a_run_that_fails_after_it_started_stays_failed(project, monkeypatch):
    from engine.methods.simclr import SimCLR

    def broken(*_args, **_kwargs):
        raise RuntimeError("the GPU fell off")
    monkeypatch.setattr(SimCLR, "training_step", broken)
    run_id = workbench.create_run(project, "digits", "simclr", FAST)
    last = list(workbench.run_training(project, run_id))[-1]
    assert "the GPU fell off" in last.error
    r = project.run(run_id)
    assert (r.status, r.owner) == ("failed", None)


@pytest.mark.parametrize("section,field,value,needle", [
    ("train", "lr", float("nan"), "lr: must be a finite number, not nan"),
    ("method_config", "temperature", float("nan"), "temperature: must be a finite number, not nan"),
    ("views", "flip_p", float("inf"), "flip_p: must be a finite number, not inf"),
    ("train", "device", "cuda", "device: device=cuda was asked for, but no CUDA GPU is available here"),
    ("train", "device", "mps", "device: device=mps was asked for"),
    ("train", "batch_size", 1, "batch_size: must be at least 2"),
])
def test_start_from_a_form_checks_before_writing(project, section, field, value, needle):
    """The app builds a RunConfig from its forms and calls create_run with it."""
    cfg = default_run_config("simclr", load_images("digits"))
    setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **{field: value}))
    with pytest.raises(ConfigError, match=needle):
        workbench.create_run(project, "digits", "simclr", run_config=cfg)
    assert project.runs() == []


def test_method_must_fit_the_data(project):
    shapes = workbench.import_dataset(project, "shapes-captions", "captions", n=50)[0]
    for dataset, method, needle in (("digits", "word2vec", "word2vec trains on text"),
                                    ("digits", "clip", "has no captions"),
                                    (shapes, "byol", "byol trains on images")):
        with pytest.raises(ConfigError, match=needle):
            workbench.create_run(project, dataset, method, {})
    assert project.runs() == []


def test_stored_configs_are_valid_json(project):
    run_id = workbench.create_run(project, "digits", "simclr", FAST)
    conn = sqlite3.connect(project.path)
    (config,) = conn.execute("SELECT config FROM runs WHERE id = ?", (run_id,)).fetchone()
    conn.close()
    json.loads(config, parse_constant=lambda c: pytest.fail(f"{c} in a stored config"))


def test_a_stop_right_after_an_epoch_end_saves_one_checkpoint(project):
    run_id = workbench.create_run(project, "digits", "simclr", FAST)
    control = RunControl()
    for ev in workbench.run_training(project, run_id, control):
        if isinstance(ev, Started):
            per_epoch = ev.steps_per_epoch
        if isinstance(ev, Step) and ev.step == per_epoch:      # the epoch's last step
            control.stop()
    assert project.run(run_id).status == "stopped"
    assert [step for _, step, _ in project.checkpoints(run_id)] == [per_epoch]


def test_every_step_is_logged_once_after_a_restart_from_step_0(project):
    """Stopped before its first step (checkpoint at step 0), the run computes its step-0
    baselines again when resumed: the first ones are dropped, not kept twice."""
    run_id = workbench.create_run(project, "digits", "simclr", FAST)
    control = RunControl()
    for ev in workbench.run_training(project, run_id, control):
        if isinstance(ev, Evaluation) and ev.step == 0:
            control.stop()
    assert project.run(run_id).status == "stopped"
    assert [step for _, step, _ in project.checkpoints(run_id)] == [0]
    baselines = sorted(m.name for m in project.metrics(run_id) if m.step == 0)
    assert "raw_knn" in baselines
    assert list(workbench.run_training(project, run_id))[-1].status == "finished"
    assert sorted(m.name for m in project.metrics(run_id) if m.step == 0) == baselines
    losses = [m.step for m in project.metrics(run_id, "loss")]
    assert losses == list(range(1, len(losses) + 1))
