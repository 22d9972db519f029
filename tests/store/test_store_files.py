"""Opening what is not a (readable) Pretext project fails cleanly and changes nothing."""
import hashlib
import os
import shutil
import sqlite3
import subprocess
from contextlib import contextmanager
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


def _altered(p: Path, *statements: str) -> None:
    """A real project with its schema changed behind Pretext's back."""
    _real_project(p)
    conn = sqlite3.connect(p)  # foreign keys off: DROP TABLE takes no rows with it
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def _runs_dropped(p: Path) -> None:
    _altered(p, "DROP TABLE runs")


def _metrics_dropped(p: Path) -> None:
    _altered(p, "DROP TABLE metrics")


def _column_dropped(p: Path) -> None:
    _altered(p, "ALTER TABLE projections DROP COLUMN params")


def _column_added(p: Path) -> None:
    _altered(p, "ALTER TABLE embeddings ADD COLUMN colour TEXT")


def _column_retyped(p: Path) -> None:
    # Rebuilt the SQLite way, with the same column names: only the type differs.
    _altered(p, "CREATE TABLE artifacts_new (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id INTEGER, "
                "name VARCHAR, kind VARCHAR, step TEXT, meta JSON, data BLOB, created_at DATETIME)",
             "DROP TABLE artifacts", "ALTER TABLE artifacts_new RENAME TO artifacts")


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
    "runs table dropped": (_runs_dropped, "is damaged (table 'runs' is missing)"),
    "metrics table dropped": (_metrics_dropped, "table 'metrics' is missing"),
    "column dropped": (_column_dropped, "table 'projections' lacks columns params"),
    "column added": (_column_added, "table 'embeddings' has unknown columns colour"),
    "column retyped": (_column_retyped, "column artifacts.step is TEXT, not INTEGER"),
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


# --- one damaged row -------------------------------------------------------------

def test_run_with_invalid_json_reads_damaged_and_the_rest_keeps_working(tmp_path):
    path = _real_project(tmp_path / "p.pretext")
    with Project.open(path) as p:
        ds = p.datasets()[0].id
        second = p.create_run(ds, "byol", {"lr": 0.1}, 1)
        third = p.create_run(ds, "mae", {"lr": 0.2}, 2)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE runs SET config = '{bad' WHERE id = 1")
    conn.execute("UPDATE runs SET versions = '[1, 2]' WHERE id = ?", (third,))
    conn.commit()
    conn.close()
    with Project.open(path) as p:
        runs = {r.id: r for r in p.runs()}
        assert [(i, r.status) for i, r in runs.items()] == [(1, "damaged"), (second, "created"), (third, "damaged")]
        assert runs[1].config == {} and runs[1].method == "simclr"
        assert runs[1].error.startswith("its config is not valid JSON (Expecting property name")
        assert runs[third].error == "its versions is a JSON list, not a JSON dict"
        assert runs[second].config == {"lr": 0.1}
        assert p.run(1).status == "damaged"
        # everything else keeps working: reading, new runs, metrics of the damaged run
        assert len(p.metrics(1)) == 2000
        fourth = p.create_run(ds, "simclr", {"lr": 0.3}, 3)
        assert p.run(fourth).config == {"lr": 0.3}


# --- read-only storage -------------------------------------------------------------

def _sidecars(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(("-wal", "-shm", "-journal")))


def _chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@contextmanager
def _immutable(*paths: Path):
    """``chattr +i``: not even root can write these (tests run as root, where
    chmod stops nothing). Skips where the file system or the process cannot."""
    try:
        _chattr("+i", *paths)
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"chattr +i not permitted here ({e})")
    try:
        yield
    finally:
        _chattr("-i", *paths)


@contextmanager
def _read_only_mount(source: Path, target: Path):
    """A read-only bind mount of ``source`` at ``target`` (read-only media)."""
    target.mkdir()
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(source), str(target)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here ({done.stderr.decode().strip()})")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)


def _read_everything(p: Project) -> tuple:
    run = p.runs()[0]
    return len(p.datasets()), run.status, len(p.metrics(run.id)), p.load_embeddings(1)[1].shape


def test_read_only_open_leaves_nothing_beside_the_file(tmp_path):
    path = _real_project(tmp_path / "p.pretext")
    before = _digest(path)
    with Project.open(path, read_only=True) as p:
        assert p.read_only and p.read_only_reason == "opened read-only"
        assert _read_everything(p) == (1, "created", 2000, (1000, 32))
    assert _sidecars(tmp_path) == [] and _digest(path) == before


@pytest.mark.parametrize("what", ["folder", "file", "both"])
def test_project_in_a_read_only_folder_or_file_can_be_read(tmp_path, what):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = _real_project(folder / "p.pretext")
    before = _digest(path)
    locked = {"folder": [folder], "file": [path], "both": [path, folder]}[what]
    with _immutable(*locked):
        with pytest.raises(OSError):
            (folder / "probe").write_bytes(b"") if what != "file" else path.open("ab")
        for read_only in (True, "auto"):
            with Project.open(path, read_only=read_only) as p:
                assert p.read_only
                assert p.read_only_reason == ("the file is read-only" if what != "folder"
                                              else "its folder is read-only")
                assert _read_everything(p) == (1, "created", 2000, (1000, 32))
                with pytest.raises(ProjectError, match="is open read-only"):
                    p.create_run(1, "simclr", {}, 0)
            assert _sidecars(folder) == []
        with pytest.raises(ProjectError, match=r"cannot be opened for writing \((the file|its folder) is read-only\)"):
            Project.open(path)
        assert _sidecars(folder) == [] and _digest(path) == before


def test_project_on_read_only_media_can_be_read(tmp_path):
    source = tmp_path / "disc"
    source.mkdir()
    _real_project(source / "p.pretext")
    with _read_only_mount(source, tmp_path / "mnt") as mnt:
        path = mnt / "p.pretext"
        before = _digest(path)
        with Project.open(path, read_only="auto") as p:
            assert p.read_only and p.read_only_reason == "it is on read-only storage"
            assert _read_everything(p) == (1, "created", 2000, (1000, 32))
        with pytest.raises(ProjectError, match="read-only storage"):
            Project.open(path)
        assert _sidecars(mnt) == [] and _digest(path) == before


def test_auto_opens_a_writable_file_for_writing(tmp_path):
    path = _real_project(tmp_path / "p.pretext")
    with Project.open(path, read_only="auto") as p:
        assert not p.read_only and p.read_only_reason is None
        p.create_run(1, "simclr", {}, 0)


def test_read_only_copy_of_a_live_project_with_its_wal(tmp_path):
    """A project copied (or left read-only) with -wal/-shm beside it: read through
    SQLite's mode=ro, which sees the commits still in the WAL."""
    live = _real_project(tmp_path / "live.pretext")
    folder = tmp_path / "copy"
    folder.mkdir()
    with Project.open(live) as writer:
        writer.log_metrics(1, [(9999, 99.0, "loss", 0.5)])
        for suffix in ("", "-wal", "-shm"):
            shutil.copyfile(f"{live}{suffix}", folder / f"p.pretext{suffix}")
    with _immutable(folder):
        with Project.open(folder / "p.pretext", read_only=True) as p:
            assert p.metrics(1)[-1].step == 9999
        assert _sidecars(folder) == ["p.pretext-shm", "p.pretext-wal"]


def test_damaged_dataset_strings_name_the_dataset(tmp_path):
    path = tmp_path / "p.pretext"
    with Project.create(path) as p:
        ds = p.add_dataset("mine", "image-folder", {}, 2, "fp", strings={"item_names": ["a.png", "b.png"],
                                                                          "class_names": ["x"]})
    conn = sqlite3.connect(path)
    conn.execute("UPDATE dataset_strings SET data = '[\"a.png\", ' WHERE name = 'item_names'")
    conn.commit()
    conn.close()
    with Project.open(path, read_only=True) as p:
        assert p.dataset_strings(ds, "class_names") == ["x"]       # the other rows still read
        with pytest.raises(ProjectError, match=r"is damaged: dataset 1's 'item_names' list is not valid "
                                               r"JSON \(Expecting value"):
            p.dataset_strings(ds, "item_names")
