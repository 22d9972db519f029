"""Round trips of the Project API on a fresh project file."""
import os
import shutil
import socket
import sqlite3
import subprocess
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
import torch

from engine.store import (ArtifactRecord, DatasetRecord, EmbeddingRecord, MetricRow, Project, ProjectError,
                          ProjectionRecord, RunBusyError, RunRecord, SCHEMA_VERSION)
from engine.store.ownership import HEARTBEAT_STALE_S, process_start_time


@pytest.fixture
def run_id(project):
    ds = project.add_dataset("digits", "digits", {"size": 8}, 1797, "fp")
    return project.create_run(ds, "simclr", {"lr": 0.1}, seed=3)


def test_new_file_is_marked_as_pretext_in_wal_mode(tmp_path):
    path = tmp_path / "new.pretext"
    Project.create(path).close()
    header = path.read_bytes()[:100]
    assert header.startswith(b"SQLite format 3\x00")
    assert header[68:72] == b"PRTX"  # PRAGMA application_id
    assert header[18] == header[19] == 2  # WAL
    conn = sqlite3.connect(path)
    assert dict(conn.execute("SELECT key, value FROM meta")) | {"created_at": ""} == {
        "app": "pretext", "schema_version": str(SCHEMA_VERSION), "created_at": ""}
    conn.close()


def test_create_refuses_to_overwrite(tmp_path):
    path = tmp_path / "x.pretext"
    path.write_bytes(b"precious")
    with pytest.raises(ProjectError, match="already exists") as err:
        Project.create(path)
    assert str(path) in str(err.value)
    assert path.read_bytes() == b"precious"


def test_open_or_create_and_reopen(tmp_path):
    path = tmp_path / "p.pretext"
    with Project.open_or_create(path) as p:
        ds = p.add_dataset("a", "shapes", {}, 10, "f")
    with Project.open_or_create(path) as p:
        assert [d.id for d in p.datasets()] == [ds]
    with Project.open(path, read_only=True) as p:
        assert p.dataset("a").n_items == 10
        assert p.read_only
        with pytest.raises(ProjectError, match="read-only"):
            p.add_dataset("b", "shapes", {}, 1, "")


def test_closed_project_refuses_calls(tmp_path):
    p = Project.create(tmp_path / "c.pretext")
    p.close()
    p.close()  # idempotent
    with pytest.raises(ProjectError, match="closed"):
        p.datasets()


def test_datasets_round_trip(project):
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(5, dtype=np.int64)
    ds = project.add_dataset("folder", "folder", {"path": "/x", "size": 8}, 5, "sha:1",
                             stats={"mean": [0.1, 0.2, 0.3]},
                             arrays={"images": images, "labels": labels, "weights": np.ones(5, np.float16)},
                             strings={"captions": ["a cat", "a dög", ""], "item_names": ["1.png"]})
    other = project.add_dataset("digits", "digits", {}, 1797, "sha:2")
    rec = project.dataset(ds)
    assert isinstance(rec, DatasetRecord)
    assert (rec.id, rec.name, rec.kind, rec.params, rec.n_items, rec.fingerprint, rec.stats) == (
        ds, "folder", "folder", {"path": "/x", "size": 8}, 5, "sha:1", {"mean": [0.1, 0.2, 0.3]})
    assert rec.created_at.tzinfo is not None
    assert abs(rec.created_at - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert project.dataset("digits").id == other
    assert [d.name for d in project.datasets()] == ["folder", "digits"]
    assert project.dataset("digits").stats == {}

    arrays = project.dataset_arrays(ds)
    assert list(arrays) == ["images", "labels", "weights"]
    assert arrays["images"].dtype == np.uint8 and arrays["images"].shape == (5, 8, 8, 3)
    assert np.array_equal(arrays["images"], images)
    assert np.array_equal(arrays["labels"], labels) and arrays["labels"].dtype == np.int64
    assert arrays["weights"].dtype == np.float16
    arrays["images"][0] = 0  # writable copies
    assert project.dataset_arrays(other) == {}
    assert project.dataset_strings(ds, "captions") == ["a cat", "a dög", ""]
    assert project.dataset_strings(ds, "item_names") == ["1.png"]
    assert project.dataset_strings(ds, "missing") == []


def test_dataset_names_are_unique_and_lookups_fail_clearly(project):
    project.add_dataset("x", "digits", {}, 1, "")
    with pytest.raises(ProjectError, match="already has a dataset named 'x'"):
        project.add_dataset("x", "shapes", {}, 1, "")
    with pytest.raises(ProjectError, match="no dataset 'nope'"):
        project.dataset("nope")
    with pytest.raises(ProjectError, match="no dataset 42"):
        project.dataset(42)
    with pytest.raises(ValueError):
        project.add_dataset("y", "folder", {}, 1, "", arrays={"bad": np.array(["text"], dtype=object)})
    assert [d.name for d in project.datasets()] == ["x"]  # the failed add left nothing


def test_runs_round_trip(project):
    ds = project.add_dataset("d", "digits", {}, 10, "fp")
    a = project.create_run(ds, "byol", {"lr": 0.2, "nested": {"k": [1, 2]}}, seed=7, device="cpu",
                           versions={"torch": torch.__version__}, fingerprint="fp", code_version="abc123",
                           name="first", tags=["baseline"])
    b = project.create_run(ds, "byol", {"lr": 0.2}, seed=8, parent_run_id=a, tags=["resumed", "long"])
    r = project.run(a)
    assert isinstance(r, RunRecord)
    assert (r.dataset_id, r.method, r.config, r.status, r.seed, r.device, r.versions, r.fingerprint,
            r.code_version, r.name, r.tags, r.parent_run_id, r.error) == (
        ds, "byol", {"lr": 0.2, "nested": {"k": [1, 2]}}, "created", 7, "cpu", {"torch": torch.__version__},
        "fp", "abc123", "first", ["baseline"], None, None)
    assert r.started_at is None and r.finished_at is None
    assert project.run(b).parent_run_id == a and project.run(b).tags == ["resumed", "long"]

    start = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    local_end = datetime(2024, 5, 1, 15, 30, tzinfo=timezone(timedelta(hours=2)))
    project.update_run(a, status="failed", error="NaN loss", started_at=start, finished_at=local_end,
                       device="cuda:0", config={"lr": 0.1}, name="renamed", tags=[])
    r = project.run(a)
    assert (r.status, r.error, r.device, r.config, r.name, r.tags) == (
        "failed", "NaN loss", "cuda:0", {"lr": 0.1}, "renamed", [])
    assert r.started_at == start and r.finished_at == local_end  # same instant, stored as UTC
    assert r.finished_at.tzinfo == timezone.utc
    project.update_run(a, status="finished")
    assert project.run(a).error == "NaN loss"  # None leaves a field alone

    assert [x.id for x in project.runs()] == [a, b]
    assert [x.id for x in project.runs(dataset_id=ds)] == [a, b]
    assert project.runs(dataset_id=ds + 1) == []
    with pytest.raises(ProjectError, match="no run 99"):
        project.run(99)
    with pytest.raises(ProjectError, match="no run 99"):
        project.update_run(99, status="x")
    with pytest.raises(ProjectError, match="no dataset 99"):
        project.create_run(99, "simclr", {}, 0)
    with pytest.raises(ProjectError, match="no run 99"):
        project.create_run(ds, "simclr", {}, 0, parent_run_id=99)


def test_metrics(project, run_id):
    rows = [(s, s / 4, "loss", 1.0 / (s + 1)) for s in range(8)] + [(7, 1.75, "knn_acc", 0.5)]
    project.log_metrics(run_id, rows)
    project.log_metrics(run_id, [(8, 2.0, "loss", float("nan")), (8, 2.0, "lr", np.float32(0.25)),
                                 (9, 2.25, "loss", torch.tensor(0.125))])
    project.log_metrics(run_id, [])
    every = project.metrics(run_id)
    assert all(isinstance(m, MetricRow) for m in every)
    assert [(m.step, m.epoch, m.name) for m in every[:2]] == [(0, 0.0, "loss"), (1, 0.25, "loss")]
    assert len(every) == 12 and every[1].value == 0.5
    assert [m.id for m in every] == sorted(m.id for m in every)
    loss = project.metrics(run_id, "loss")
    assert [m.step for m in loss] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert np.isnan(loss[8].value)  # SQLite would turn NaN into NULL; it comes back as NaN
    newer = project.metrics(run_id, since_id=every[8].id)
    assert [(m.name, m.step) for m in newer] == [("loss", 8), ("lr", 8), ("loss", 9)]
    assert project.metrics(run_id, since_id=every[-1].id) == []
    assert project.metric_names(run_id) == ["loss", "knn_acc", "lr"]
    assert project.latest_metrics(run_id) == {"loss": 0.125, "knn_acc": 0.5, "lr": 0.25}
    assert project.metrics(run_id + 1) == [] and project.latest_metrics(run_id + 1) == {}


def test_checkpoints_keep_the_latest(project, run_id):
    model = torch.nn.Linear(3, 2)
    for step in range(1, 6):
        with torch.no_grad():
            model.weight.fill_(step)
        project.save_checkpoint(run_id, step * 10, step, {"model": model.state_dict(), "step": step * 10,
                                                          "history": np.arange(step)}, keep_last=3)
    listed = project.checkpoints(run_id)
    assert [(s, e) for _, s, e in listed] == [(30, 3), (40, 4), (50, 5)]
    step, epoch, state = project.latest_checkpoint(run_id)
    assert (step, epoch, state["step"]) == (50, 5, 50)
    assert torch.equal(state["model"]["weight"], torch.full((2, 3), 5.0))
    assert isinstance(state["history"], np.ndarray) and list(state["history"]) == [0, 1, 2, 3, 4]
    oldest = project.load_checkpoint(listed[0][0])
    assert torch.equal(oldest["model"]["weight"], torch.full((2, 3), 3.0))
    project.save_checkpoint(run_id, 60, 6, {"x": 1}, keep_last=0)  # 0 keeps all
    assert len(project.checkpoints(run_id)) == 4
    assert project.latest_checkpoint(run_id + 1) is None
    with pytest.raises(ProjectError, match="no checkpoint 999"):
        project.load_checkpoint(999)


def test_adam_resume_from_project_gives_identical_next_step(project, run_id):
    torch.manual_seed(0)
    x = torch.randn(16, 6)

    def build():
        m = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
        return m, torch.optim.Adam(m.parameters(), lr=3e-3)

    def step(m, o):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()

    model, opt = build()
    for _ in range(3):
        step(model, opt)
    rng_at_save = torch.get_rng_state()
    project.save_checkpoint(run_id, 3, 0, {"model": model.state_dict(), "optim": opt.state_dict(),
                                           "rng": rng_at_save})
    step(model, opt)
    _, _, state = project.latest_checkpoint(run_id)
    model2, opt2 = build()
    model2.load_state_dict(state["model"])
    opt2.load_state_dict(state["optim"])
    step(model2, opt2)
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    assert state["rng"].dtype == torch.uint8 and torch.equal(state["rng"], rng_at_save)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_embeddings_and_projections(project, run_id, dtype):
    rng = np.random.default_rng(1)
    ids = np.arange(100, 100 + 500, dtype=np.int32)
    vectors = rng.standard_normal((500, 64)).astype(np.float64)
    eid = project.save_embeddings(run_id, "train", ids, vectors, epoch=3, dtype=dtype)
    project.save_embeddings(run_id, "test", ids[:10], vectors[:10])
    sets = project.embedding_sets(run_id)
    assert all(isinstance(s, EmbeddingRecord) for s in sets)
    assert [(s.split, s.epoch, s.n, s.dim, s.dtype) for s in sets] == [
        ("train", 3, 500, 64, dtype), ("test", None, 10, 64, "float32")]
    got_ids, got = project.load_embeddings(eid)
    assert got_ids.dtype == np.int64 and np.array_equal(got_ids, ids)
    assert got.dtype == np.float32 and got.shape == (500, 64)
    if dtype == "float32":
        assert np.array_equal(got, vectors.astype(np.float32))
    else:
        assert np.array_equal(got, vectors.astype(np.float16).astype(np.float32))
        assert np.abs(got - vectors).max() < 4e-3

    coords = rng.standard_normal((500, 2))
    pid = project.save_projection(eid, "umap", {"n_neighbors": 15}, coords)
    assert project.projections(eid) == [ProjectionRecord(pid, eid, "umap", {"n_neighbors": 15},
                                                         project.projections(eid)[0].created_at)]
    loaded = project.load_projection(pid)
    assert loaded.dtype == np.float32 and np.array_equal(loaded, coords.astype(np.float32))
    with pytest.raises(ValueError):
        project.save_projection(eid, "pca", {}, coords[:10])  # wrong n
    with pytest.raises(ValueError):
        project.save_embeddings(run_id, "train", ids, vectors, dtype="int8")
    with pytest.raises(ValueError):
        project.save_embeddings(run_id, "train", ids[:3], vectors)
    with pytest.raises(ProjectError, match="no embedding set 999"):
        project.load_embeddings(999)


def test_large_embeddings(project, run_id):
    vectors = np.random.default_rng(2).standard_normal((20_000, 256), dtype=np.float32)  # 20 MB
    ids = np.arange(20_000)
    eid = project.save_embeddings(run_id, "train", ids, vectors)
    got_ids, got = project.load_embeddings(eid)
    assert np.array_equal(got, vectors) and np.array_equal(got_ids, ids)


def test_artifacts(project, run_id):
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 10
    a = project.save_artifact(run_id, "reconstructions", "png", png, step=100, meta={"epoch": 2})
    b = project.save_artifact(run_id, "reconstructions", "png", b"second", step=200)
    c = project.save_artifact(run_id, "report", "text", bytearray(b"hi"))
    listed = project.artifacts(run_id)
    assert all(isinstance(x, ArtifactRecord) for x in listed)
    assert [(x.id, x.name, x.kind, x.step, x.meta) for x in listed] == [
        (a, "reconstructions", "png", 100, {"epoch": 2}), (b, "reconstructions", "png", 200, {}),
        (c, "report", "text", 0, {})]
    assert [x.id for x in project.artifacts(run_id, "reconstructions")] == [a, b]
    assert project.load_artifact(a) == png and project.load_artifact(c) == b"hi"


def test_deletes_cascade(project):
    ds = project.add_dataset("d", "folder", {}, 3, "", arrays={"x": np.zeros(3)}, strings={"s": ["a"]})
    keep = project.add_dataset("keep", "digits", {}, 3, "")
    run = project.create_run(ds, "simclr", {}, 0)
    child = project.create_run(keep, "simclr", {}, 0, parent_run_id=run)
    project.log_metrics(run, [(0, 0.0, "loss", 1.0)])
    project.save_checkpoint(run, 0, 0, {"w": torch.ones(1)})
    eid = project.save_embeddings(run, "train", np.arange(3), np.ones((3, 2)))
    pid = project.save_projection(eid, "pca", {}, np.zeros((3, 2)))
    aid = project.save_artifact(run, "a", "png", b"x")

    project.delete_dataset(ds)
    assert [d.name for d in project.datasets()] == ["keep"]
    assert [r.id for r in project.runs()] == [child]
    assert project.run(child).parent_run_id is None  # parent gone: SET NULL, the fork stays
    assert project.metrics(run) == [] and project.checkpoints(run) == [] and project.embedding_sets(run) == []
    assert project.dataset_arrays(ds) == {} and project.dataset_strings(ds, "s") == []
    for load, key in [(project.load_projection, pid), (project.load_artifact, aid)]:
        with pytest.raises(ProjectError):
            load(key)
    # nothing left behind in any table, checked beneath the API
    conn = sqlite3.connect(project.path)
    for table in ["metrics", "checkpoints", "embeddings", "projections", "artifacts", "dataset_arrays",
                  "dataset_strings"]:
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
    conn.close()

    project.save_artifact(child, "b", "png", b"y")
    project.delete_run(child)
    assert project.runs() == [] and project.artifacts(child) == []
    with pytest.raises(ProjectError, match="no run"):
        project.delete_run(child)
    with pytest.raises(ProjectError, match="no dataset"):
        project.delete_dataset(ds)


def test_ids_are_not_reused_after_delete(project):
    ds = project.add_dataset("d", "digits", {}, 1, "")
    first = project.create_run(ds, "simclr", {}, 0)
    project.delete_run(first)
    assert project.create_run(ds, "simclr", {}, 0) != first


def test_foreign_keys_are_enforced(project, run_id):
    with pytest.raises(ProjectError, match="FOREIGN KEY"):
        project.log_metrics(run_id + 100, [(0, 0.0, "loss", 1.0)])
    with pytest.raises(ProjectError, match="FOREIGN KEY"):
        project.save_artifact(run_id + 100, "a", "png", b"x")
    with pytest.raises(ProjectError, match="FOREIGN KEY"):
        project.save_checkpoint(run_id + 100, 0, 0, {})
    with pytest.raises(ProjectError, match="FOREIGN KEY"):
        project.save_embeddings(run_id + 100, "train", np.arange(2), np.ones((2, 2)))
    assert project.metrics(run_id + 100) == []


# --- run ownership and liveness (issue #11) ---------------------------------------

def _set_owner(project, run_id, **columns):
    """Write owner columns as another process would have (raw SQL, as a foreign writer)."""
    conn = sqlite3.connect(project.path)
    conn.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in columns)} WHERE id = ?",
                 [*columns.values(), run_id])
    conn.commit()
    conn.close()


def _utc_text(seconds_ago: float) -> str:
    when = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    return when.replace(tzinfo=None).isoformat(sep=" ")


def test_claim_marks_running_and_release_leaves_interrupted(project, run_id):
    assert project.run(run_id).status == "created" and project.run(run_id).owner is None
    project.claim_run(run_id)
    r = project.run(run_id)
    assert r.status == "running" and r.owner == f"pid {os.getpid()} on host {socket.gethostname()}"
    assert (datetime.now(timezone.utc) - r.heartbeat_at).total_seconds() < 5
    # A second claim from this very process (another thread) is refused while the first holds it.
    with pytest.raises(RunBusyError, match=rf"run {run_id} is being trained by pid {os.getpid()} on host"):
        project.claim_run(run_id)
    with pytest.raises(RunBusyError, match=f"pid {os.getpid()}"):
        project.delete_run(run_id)
    assert project.heartbeat_run(run_id) is True
    project.release_run(run_id)
    assert project.heartbeat_run(run_id) is False          # no longer ours
    r = project.run(run_id)
    assert (r.status, r.owner) == ("interrupted", None)    # still marked running, nobody holds it
    project.update_run(run_id, status="stopped")
    assert project.run(run_id).status == "stopped"


def test_run_of_a_dead_process_reads_interrupted(project, run_id):
    gone = subprocess.Popen(["true"])
    gone.wait()                                       # its pid is now free
    _set_owner(project, run_id, status="running", owner_host=socket.gethostname(), owner_pid=gone.pid,
               owner_start=12345, heartbeat_at=_utc_text(0))
    assert [r.status for r in project.runs()] == ["interrupted"]
    project.claim_run(run_id)                          # taken over without a word
    assert project.run(run_id).owner.startswith(f"pid {os.getpid()} ")
    project.release_run(run_id)


def test_reused_pid_with_another_start_time_reads_interrupted(project, run_id):
    """A pid now used by another program (here: this test process) does not keep a dead run alive."""
    mine = process_start_time(os.getpid())
    assert isinstance(mine, int) and mine > 0
    _set_owner(project, run_id, status="paused", owner_host=socket.gethostname(), owner_pid=os.getpid(),
               owner_start=mine - 1, heartbeat_at=_utc_text(0))
    assert project.run(run_id).status == "interrupted"
    _set_owner(project, run_id, owner_start=mine)
    assert project.run(run_id).status == "paused" and project.run(run_id).owner is not None


def test_run_on_another_host_is_judged_by_its_heartbeat(project, run_id):
    _set_owner(project, run_id, status="running", owner_host="gpu-node-7", owner_pid=4242, owner_start=1,
               heartbeat_at=_utc_text(HEARTBEAT_STALE_S - 20))
    r = project.run(run_id)
    assert (r.status, r.owner) == ("running", "pid 4242 on host gpu-node-7")
    with pytest.raises(RunBusyError, match="pid 4242 on host gpu-node-7, last heartbeat 40 s ago") as err:
        project.claim_run(run_id)
    assert (err.value.owner.host, err.value.owner.pid) == ("gpu-node-7", 4242)
    with pytest.raises(RunBusyError, match="gpu-node-7"):
        project.delete_run(run_id)
    assert project.run(run_id).status == "running"     # refused means untouched

    with pytest.raises(RunBusyError, match="gpu-node-7"):
        project.delete_dataset(project.run(run_id).dataset_id)     # its runs would go with it
    assert project.run(run_id).status == "running"     # refused means untouched

    _set_owner(project, run_id, heartbeat_at=_utc_text(HEARTBEAT_STALE_S + 1))
    assert project.run(run_id).status == "interrupted"
    project.delete_run(run_id)
    assert project.runs() == []


def test_process_start_time_reads_names_with_spaces_and_parentheses(tmp_path):
    odd = tmp_path / "a b) c"
    odd.symlink_to(shutil.which("sleep"))
    child = subprocess.Popen([str(odd), "5"])
    try:
        started = process_start_time(child.pid)
        assert isinstance(started, int) and started >= process_start_time(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert process_start_time(child.pid) is None


def test_config_must_be_valid_json(project, run_id):
    ds = project.runs()[0].dataset_id
    for bad in ({"lr": float("nan")}, {"train": {"lr": float("inf")}}):
        with pytest.raises(ProjectError, match="not valid JSON"):
            project.create_run(ds, "simclr", bad, seed=0)
        with pytest.raises(ProjectError, match="not valid JSON"):
            project.update_run(run_id, config=bad)
    assert [r.id for r in project.runs()] == [run_id] and project.run(run_id).config == {"lr": 0.1}


def test_only_the_owner_changes_a_live_runs_status(project, run_id):
    """The app marks a run failed when its worker errs: a run another process trains
    (its resume was refused) must keep the status that process gives it."""
    _set_owner(project, run_id, status="running", owner_host="gpu-node-7", owner_pid=4242, owner_start=1,
               heartbeat_at=_utc_text(0))
    with pytest.raises(RunBusyError, match="gpu-node-7"):
        project.update_run(run_id, status="failed", error="refused")
    with pytest.raises(RunBusyError):
        project.update_run(run_id, config={"lr": 1.0})
    project.update_run(run_id, name="renamed", tags=["x"])       # labels are anyone's
    r = project.run(run_id)
    assert (r.status, r.error, r.config, r.name) == ("running", None, {"lr": 0.1}, "renamed")
    _set_owner(project, run_id, heartbeat_at=_utc_text(HEARTBEAT_STALE_S + 1))     # now it is dead
    project.update_run(run_id, status="failed")
    assert project.run(run_id).status == "failed"
