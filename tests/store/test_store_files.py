"""Opening what is not a (readable) Pretext project fails cleanly and changes nothing."""
import hashlib
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from engine.store import Project, ProjectError, SCHEMA_VERSION


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _real_project(path: Path) -> Path:
    """A closed project with some bulk in it, so that half of it is a real cut."""
    with Project.create(path) as p:
        ds = p.add_dataset("d", "digits", {}, 1000, "fp")
        run = p.create_run(ds, "simclr", {}, 0)
        p.log_metrics(run, [(i, i / 100, "loss", 1 / (i + 1)) for i in range(2000)])
        p.save_embeddings(run, "train", np.arange(1000), np.ones((1000, 32)))
    return path


def _empty(p: Path) -> None:
    p.write_bytes(b"")


def _random(p: Path) -> None:
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _text(p: Path) -> None:
    p.write_text("name,value\nloss,0.5\n" * 50)


def _truncated(p: Path) -> None:
    whole = _real_project(p.with_name("whole.pretext")).read_bytes()
    p.write_bytes(whole[: len(whole) // 2])


def _header_only(p: Path) -> None:
    whole = _real_project(p.with_name("whole.pretext")).read_bytes()
    p.write_bytes(whole[:60])


def _other_app(p: Path) -> None:
    conn = sqlite3.connect(p)
    conn.executescript("CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT);"
                       "INSERT INTO contacts (name) VALUES ('Ada'), ('Alan');")
    conn.close()


def _other_app_with_meta(p: Path) -> None:
    conn = sqlite3.connect(p)
    conn.executescript("CREATE TABLE meta (k TEXT, v TEXT); INSERT INTO meta VALUES ('app', 'pretext');")
    conn.close()


def _other_app_key_value_meta(p: Path) -> None:
    conn = sqlite3.connect(p)
    conn.executescript("PRAGMA journal_mode = WAL; CREATE TABLE meta (key TEXT, value TEXT);"
                       "INSERT INTO meta VALUES ('app', 'darktable');")
    conn.close()


def _other_app_id(p: Path) -> None:
    conn = sqlite3.connect(p)
    conn.executescript("PRAGMA application_id = 1234; CREATE TABLE meta (key TEXT, value TEXT);")
    conn.close()


def _newer(p: Path) -> None:
    _real_project(p)
    conn = sqlite3.connect(p)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()


def _bad_version(p: Path) -> None:
    _real_project(p)
    conn = sqlite3.connect(p)
    conn.execute("UPDATE meta SET value = 'two' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()


def _corrupt_page(p: Path) -> None:
    data = bytearray(_real_project(p.with_name("whole.pretext")).read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page * 3: page * 3 + 512] = b"\xff" * 512  # scribble over a b-tree page
    p.write_bytes(bytes(data))


BAD_FILES = {
    "empty": (_empty, "empty"),
    "random bytes": (_random, "not an SQLite database"),
    "text file": (_text, "not an SQLite database"),
    "truncated project": (_truncated, "truncated"),
    "cut inside the header": (_header_only, "truncated"),
    "another app's database": (_other_app, "no meta table"),
    "another app's meta table": (_other_app_with_meta, "not Pretext's"),
    "another app's key/value meta": (_other_app_key_value_meta, "'darktable'"),
    "another application_id": (_other_app_id, "another application"),
    "newer Pretext": (_newer, "needs a newer Pretext"),
    "unreadable version": (_bad_version, "schema_version = 'two'"),
    "corrupt page": (_corrupt_page, "damaged"),
}


@pytest.mark.parametrize("read_only", [False, True], ids=["rw", "ro"])
@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_file_is_refused_and_left_byte_for_byte(tmp_path, kind, read_only):
    make, reason = BAD_FILES[kind]
    path = tmp_path / "bad.pretext"
    make(path)
    before = _digest(path)
    neighbours = sorted(os.listdir(tmp_path))
    with pytest.raises(ProjectError) as err:
        Project.open(path, read_only=read_only)
    assert str(err.value).startswith(f"{path}: ")
    assert reason in str(err.value)
    assert err.value.path == path
    assert _digest(path) == before
    assert sorted(os.listdir(tmp_path)) == neighbours  # no -journal, -wal or -shm appeared


def test_newer_schema_message_names_both_versions(tmp_path):
    path = tmp_path / "future.pretext"
    _newer(path)
    with pytest.raises(ProjectError, match=rf"schema version 99; this Pretext reads up to {SCHEMA_VERSION}\): it needs a newer"):
        Project.open(path)
    with pytest.raises(ProjectError, match="newer Pretext"):
        Project.open_or_create(path)


def test_missing_path(tmp_path):
    path = tmp_path / "nowhere.pretext"
    with pytest.raises(ProjectError, match="no such file") as err:
        Project.open(path)
    assert str(path) in str(err.value)
    assert not path.exists()
    with pytest.raises(ProjectError, match="no such file"):
        Project.open(path, read_only=True)
    assert not path.exists()


def test_directory(tmp_path):
    folder = tmp_path / "folder.pretext"
    folder.mkdir()
    with pytest.raises(ProjectError, match="is a directory") as err:
        Project.open(folder)
    assert str(folder) in str(err.value)
    with pytest.raises(ProjectError, match="already exists"):
        Project.create(folder)
    with pytest.raises(ProjectError, match="is a directory"):
        Project.open_or_create(folder)
    assert list(folder.iterdir()) == []


def test_create_in_missing_folder(tmp_path):
    with pytest.raises(ProjectError, match="cannot be created"):
        Project.create(tmp_path / "no" / "such" / "dir.pretext")


def test_valid_project_opens_read_only_unchanged(tmp_path):
    path = _real_project(tmp_path / "ok.pretext")
    before = _digest(path)
    with Project.open(path, read_only=True) as p:
        assert len(p.metrics(p.runs()[0].id)) == 2000
    assert _digest(path) == before


def test_read_only_follows_a_writer(tmp_path):
    path = _real_project(tmp_path / "live.pretext")
    with Project.open(path) as writer, Project.open(path, read_only=True) as reader:
        run = writer.runs()[0].id
        last = reader.metrics(run)[-1].id
        writer.log_metrics(run, [(5000, 50.0, "loss", 0.01)])
        assert [(m.step, m.value) for m in reader.metrics(run, since_id=last)] == [(5000, 0.01)]
