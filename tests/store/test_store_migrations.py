"""Schema migrations: a real v1 file opens as v2 with its rows intact."""
import json
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import text

from engine.store import APPLICATION_ID, Project, ProjectError, SCHEMA_VERSION
from engine.store import migrations
from engine.store.migrations import SCHEMA_V1


def _schema(path) -> dict:
    """Everything that defines a file's schema, in comparable form."""
    conn = sqlite3.connect(path)
    out = {}
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    for t in tables:
        out[t] = {
            "columns": conn.execute(f"PRAGMA table_info('{t}')").fetchall(),
            "foreign_keys": sorted(r[2:] for r in conn.execute(f"PRAGMA foreign_key_list('{t}')")),
            "indexes": sorted((r[1], r[2], tuple(c[2] for c in conn.execute(f"PRAGMA index_info('{r[1]}')")))
                              for r in conn.execute(f"PRAGMA index_list('{t}')")),
        }
    conn.close()
    return out


def _meta(path) -> dict:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM meta"))
    finally:
        conn.close()


def test_fixture_is_schema_v1(v1_file, tmp_path):
    """The dump and the frozen SCHEMA_V1 describe the same tables."""
    frozen = tmp_path / "frozen.sqlite"
    conn = sqlite3.connect(frozen)
    for statement in SCHEMA_V1:
        conn.execute(statement)
    conn.close()
    assert _schema(frozen) == _schema(v1_file)
    assert _meta(v1_file)["schema_version"] == "1"


def test_v1_file_is_upgraded_with_rows_intact(v1_file):
    assert SCHEMA_VERSION == 4
    with Project.open(v1_file) as p:
        assert _meta(v1_file)["schema_version"] == "4"
        assert _meta(v1_file)["app"] == "pretext"
        ds = p.dataset("digits")
        assert (ds.id, ds.kind, ds.params, ds.n_items, ds.fingerprint, ds.stats) == (
            1, "digits", {"size": 8}, 3, "sha256:abc", {"mean": [0.5]})
        assert ds.created_at == datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
        assert p.dataset_strings(1, "item_names") == ["a.png", "b.png", "c.png"]
        assert list(p.dataset_arrays(1)["labels"]) == [0, 1, 2]

        first, second = p.runs()
        assert (first.method, first.name, first.config, first.status, first.seed, first.versions,
                first.code_version) == ("simclr", "digits-simclr", {"lr": 0.1, "temperature": 0.5}, "finished",
                                        7, {"torch": "2.3.0"}, "0.1.0")
        assert first.finished_at == datetime(2024, 5, 1, 10, 5, tzinfo=timezone.utc)
        assert (second.status, second.error) == ("failed", "out of memory")
        # the new columns, filled for old rows
        assert first.tags == [] and first.parent_run_id is None and second.tags == []

        assert [(m.step, m.epoch, m.name, m.value) for m in p.metrics(1, "loss")] == [
            (0, 0.0, "loss", 4.5), (10, 0.5, "loss", 3.25), (20, 1.0, "loss", 2.0)]
        assert p.metric_names(1) == ["loss", "lr", "knn_acc"]
        assert p.latest_metrics(1) == {"lr": 0.1, "loss": 2.0, "knn_acc": 0.75}
        step, epoch, state = p.latest_checkpoint(1)
        assert (step, epoch, state["step"]) == (20, 1, 20)
        assert torch.equal(state["model"]["w"], torch.tensor([[1.0, 2.0]]))
        ids, vectors = p.load_embeddings(1)
        assert list(ids) == [10, 11, 12] and np.array_equal(vectors, [[1, 0], [0, 1], [0.5, 0.5]])
        assert np.array_equal(p.load_projection(1), [[0, 0], [1, 1], [2, 2]])
        assert p.load_artifact(1) == b"\x89PNG\r\n\x1a\nfake"

        # and what schema 2 added works on the upgraded file
        fork = p.create_run(1, "simclr", {}, 0, parent_run_id=1, tags=["resumed"])
        assert fork == 3  # AUTOINCREMENT carried over
        assert p.run(fork).parent_run_id == 1 and p.run(fork).tags == ["resumed"]
        p.update_run(2, tags=["oom"])
        assert p.run(2).tags == ["oom"]

    assert v1_file.read_bytes()[68:72] == APPLICATION_ID.to_bytes(4, "big")
    with Project.open(v1_file, read_only=True) as p:  # now readable by other processes too
        assert len(p.runs()) == 3


def test_migrated_file_matches_a_fresh_one(v1_file, tmp_path):
    Project.open(v1_file).close()
    Project.create(tmp_path / "fresh.pretext").close()
    assert _schema(v1_file) == _schema(tmp_path / "fresh.pretext")


def test_read_only_open_of_v1_file_asks_for_an_upgrade(v1_file):
    before = v1_file.read_bytes()
    with pytest.raises(ProjectError, match="schema version 1; open it once for writing"):
        Project.open(v1_file, read_only=True)
    assert v1_file.read_bytes() == before


def test_failing_migration_changes_nothing(v1_file, monkeypatch):
    def half_done(conn):
        migrations.migrate_1_to_2(conn)  # all three statements run...
        raise RuntimeError("power cut")  # ...and then it fails

    monkeypatch.setitem(migrations.MIGRATIONS, 1, half_done)
    with pytest.raises(ProjectError, match=r"cannot be upgraded to schema version 4 \(power cut\); the file was left"):
        Project.open(v1_file)
    assert _meta(v1_file)["schema_version"] == "1"
    columns = [c[1] for c in _schema(v1_file)["runs"]["columns"]]
    assert "tags" not in columns and "parent_run_id" not in columns
    assert "ix_metrics_run_id_name" not in str(_schema(v1_file)["metrics"]["indexes"])

    monkeypatch.undo()
    with Project.open(v1_file) as p:  # and the real one still goes through afterwards
        assert p.run(1).tags == []


def test_missing_migration_is_reported(v1_file, monkeypatch):
    monkeypatch.delitem(migrations.MIGRATIONS, 1)
    with pytest.raises(ProjectError, match="unknown schema version 1"):
        Project.open(v1_file)


@pytest.fixture
def v2_file(v1_file) -> Path:
    """A real schema-2 project file: the v1 fixture taken to 2 by the frozen v1 → v2
    migration alone, with a run an older Pretext left marked "running" when it died."""
    from sqlalchemy import create_engine
    engine = create_engine(f"sqlite:///{v1_file}")
    with engine.begin() as conn:
        migrations.migrate_1_to_2(conn)
        conn.execute(text("UPDATE meta SET value = '2' WHERE key = 'schema_version'"))
        conn.execute(text("UPDATE runs SET status = 'running' WHERE id = 2"))
    engine.dispose()
    return v1_file


def test_v2_file_gains_run_owners_and_a_dead_running_run_reads_interrupted(v2_file, tmp_path):
    columns = [c[1] for c in _schema(v2_file)["runs"]["columns"]]
    assert "tags" in columns and "owner_pid" not in columns and _meta(v2_file)["schema_version"] == "2"
    with Project.open(v2_file) as p:
        assert _meta(v2_file)["schema_version"] == "4"
        first, second = p.runs()
        assert (first.status, first.owner, first.heartbeat_at) == ("finished", None, None)
        # Left "running" by a process that is long gone: no owner, so interrupted.
        assert (second.status, second.owner) == ("interrupted", None)
        assert p.run(2).status == "interrupted"
        p.claim_run(2)                       # and it can be taken over
        assert p.run(2).status == "running" and p.run(2).owner.startswith(f"pid {os.getpid()} on host ")
        p.release_run(2)
    Project.create(tmp_path / "fresh.pretext").close()
    assert _schema(v2_file) == _schema(tmp_path / "fresh.pretext")


@pytest.fixture
def v3_file_with_images(v1_file) -> tuple[Path, np.ndarray]:
    """A schema-3 file holding a folder's images the old way: one decoded uint8 array
    in ``dataset_arrays``, as Pretext stored them up to schema 3."""
    from sqlalchemy import create_engine
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 12, 12, 3), dtype=np.uint8)
    engine = create_engine(f"sqlite:///{v1_file}")
    with engine.begin() as conn:
        migrations.migrate_1_to_2(conn)
        migrations.migrate_2_to_3(conn)
        conn.execute(text("UPDATE meta SET value = '3' WHERE key = 'schema_version'"))
        conn.execute(text("INSERT INTO datasets (name, kind, params, n_items, fingerprint, stats, created_at) "
                          "VALUES ('photos', 'image-folder', '{}', 40, 'sha256:old', :stats, '2025-01-01 00:00:00')"),
                     {"stats": json.dumps({"size": [12, 12], "channels": 3})})
        ds = conn.execute(text("SELECT id FROM datasets WHERE name = 'photos'")).scalar()
        for name, arr in (("images", images), ("split", (np.arange(40) % 5 == 0).astype(np.uint8)),
                          ("labels", np.arange(40) % 2)):
            conn.execute(text("INSERT INTO dataset_arrays (dataset_id, name, dtype, shape, data) "
                              "VALUES (:d, :n, :t, :s, :b)"),
                         {"d": ds, "n": name, "t": arr.dtype.name, "s": json.dumps(list(arr.shape)),
                          "b": np.ascontiguousarray(arr).tobytes()})
        for name, values in (("item_names", [f"{i}.png" for i in range(40)]), ("class_names", ["a", "b"])):
            conn.execute(text("INSERT INTO dataset_strings (dataset_id, name, data) VALUES (:d, :n, :v)"),
                         {"d": ds, "n": name, "v": json.dumps(values)})
    engine.dispose()
    return v1_file, images


def test_v3_images_become_encoded_items_with_the_same_pixels(v3_file_with_images):
    """Schema 4 (issue 13): the one-blob images of an old project become one lossless PNG
    row per item; the pixels, labels and fingerprint read back unchanged."""
    from engine import workbench
    path, images = v3_file_with_images
    with Project.open(path) as p:
        assert _meta(path)["schema_version"] == "4"
        rec = p.dataset("photos")
        assert rec.fingerprint == "sha256:old"
        assert "images" not in p.dataset_arrays(rec.id)          # the old blob is gone
        data = workbench.load_dataset(p, "photos")
        np.testing.assert_array_equal(np.asarray(data.images), images)
        np.testing.assert_array_equal(data.images[[3, 1]], images[[3, 1]])
        assert data.labels.tolist() == (np.arange(40) % 2).tolist() and data.split.sum() == 8
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT idx, nbytes, length(data), substr(data, 2, 3) FROM dataset_items "
                            "ORDER BY idx").fetchall()
    assert [r[0] for r in rows] == list(range(40))
    assert all(n == length and png == b"PNG" for _, n, length, png in rows)
