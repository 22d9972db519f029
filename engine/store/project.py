"""The Project API: everything a project holds, in one SQLite file.

Files. ``Project.open`` checks a file before it writes a byte: the SQLite
header, then a read-only connection reads ``meta``, runs ``quick_check`` and
compares every table's columns with the models of schema.py, and only a file
that passes is opened read-write (which switches it to WAL and migrates it to
the current schema). Anything else raises ``ProjectError`` and leaves the file
exactly as it was.

Read-only. ``Project.open(path, read_only=True)`` never writes and leaves no
-wal/-shm beside the file; on read-only storage or in a read-only folder it
reads through SQLite's ``mode=ro`` (``immutable=1`` when no -wal/-shm is
there). ``read_only="auto"`` writes where it can; ``project.read_only`` and
``project.read_only_reason`` say what was opened.

Damaged rows. A JSON column that does not decode does not fail the query that
reads it: such a run reads as status "damaged" with the problem as its error.

Threads. One Project is shared by the GUI thread and a training worker.
Every call uses its own short session from a connection pool
(``check_same_thread=False``), results are plain frozen dataclasses, and
writes are serialised by a lock. Across processes (a ``torchrun`` job writing
while the GUI reads) WAL lets readers go on during a write, writers start
with ``BEGIN IMMEDIATE`` and ``busy_timeout`` makes them wait their turn
instead of failing.

Data. Arrays are raw little-endian bytes plus dtype and shape; checkpoints are
safetensors bytes with a JSON skeleton (``tensors.py``). Nothing is unpickled,
so opening a stranger's file cannot run code.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator, Union

import numpy as np
from sqlalchemy import Engine, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from . import migrations, ownership
from .schema import (APP_NAME, APPLICATION_ID, SCHEMA_VERSION, TABLES_ADDED, Artifact, Base, Checkpoint,
                     Dataset, DatasetItem, DatasetArray, DatasetStrings, Embedding, Meta, Metric, Projection, Run, utcnow)
from .tensors import pack_state, unpack_state

PathLike = Union[str, Path]

# How long a connection waits for another writer (or reader during WAL
# recovery) before giving up: long enough for a big checkpoint to commit.
BUSY_TIMEOUT_MS = 15_000
# Cap on the WAL file left behind after a checkpoint, so one 50 MB embedding
# write does not leave a 50 MB -wal file for the rest of the session.
JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024

PAGE_SIZE = 32768

SQLITE_MAGIC = b"SQLite format 3\x00"
_ARRAY_KINDS = "biufc"  # bool, int, uint, float, complex: raw bytes are enough


class ProjectError(Exception):
    """A project file cannot be used as asked; the message names the file."""

    def __init__(self, path: PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class RunBusyError(ProjectError):
    """The run is held by a live process (training it): it cannot be resumed or deleted."""

    def __init__(self, path: PathLike, run_id: int, owner: ownership.Owner, heartbeat_age: float | None):
        self.run_id = run_id
        self.owner = owner
        beat = f", last heartbeat {heartbeat_age:.0f} s ago" if heartbeat_age is not None else ""
        super().__init__(path, f"run {run_id} is being trained by {owner.describe()}{beat}; "
                               f"stop it there first (Ctrl+C, or Stop in the app)")


# --- records: plain data, safe to hand to another thread ------------------

@dataclass(frozen=True)
class DatasetRecord:
    id: int
    name: str
    kind: str
    params: dict
    n_items: int
    fingerprint: str
    stats: dict
    created_at: datetime


#: Every status a run can read. "interrupted" is not written by a trainer: the store
#: reports it for a run marked running whose owning process is gone (see issue #11);
#: "damaged" is a run whose row cannot be read (its config is not valid JSON).
RUN_STATUSES = ("created", "running", "paused", "stopped", "finished", "failed", "interrupted", "damaged")
#: The statuses a user can resume from.
RESUMABLE_STATUSES = ("stopped", "failed", "interrupted")


@dataclass(frozen=True)
class RunRecord:
    id: int
    dataset_id: int
    method: str
    config: dict
    status: str
    seed: int
    device: str
    versions: dict
    fingerprint: str
    code_version: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    parent_run_id: int | None
    tags: list[str]
    name: str
    # The live process training the run ("pid 123 on host h"), None when no live
    # process holds it; and when its owner last wrote a heartbeat.
    owner: str | None = None
    heartbeat_at: datetime | None = None


@dataclass(frozen=True)
class MetricRow:
    step: int
    epoch: float
    name: str
    value: float
    # The row's id: pass the largest one seen as ``since_id`` to fetch only
    # newer rows when following a live run.
    id: int = 0


@dataclass(frozen=True)
class EmbeddingRecord:
    id: int
    run_id: int
    split: str
    epoch: int | None
    n: int
    dim: int
    dtype: str
    created_at: datetime


@dataclass(frozen=True)
class ProjectionRecord:
    id: int
    embedding_id: int
    kind: str
    params: dict
    created_at: datetime


@dataclass(frozen=True)
class ArtifactRecord:
    id: int
    run_id: int
    name: str
    kind: str
    step: int
    meta: dict
    created_at: datetime


# --- connecting -------------------------------------------------------------

_URI_QUERY = {"rw": "mode=rw", "reader": "mode=rw", "ro": "mode=ro", "immutable": "mode=ro&immutable=1"}


def _make_engine(path: Path, mode: str) -> Engine:
    """An engine on ``path``; ``mode`` says how it opens the file:

    * "rw": read-write, WAL; never creates a file (create() makes it first);
    * "reader": read-write at the SQLite level but ``query_only``, for reading
      a file in a writable folder. It shares the WAL like any reader and, as
      the last connection to close, removes the -wal/-shm files, which an
      SQLite read-only connection cannot do (it leaves them behind);
    * "ro": SQLite read-only, for a file that cannot be written but has
      -wal/-shm beside it (copied from a live project, or another process
      using it);
    * "immutable": read-only and lock-free, for looking at a file nobody has
      open. Unlike "ro" it creates no -wal/-shm beside a WAL-mode file, so
      checking a file, or reading one on read-only media, leaves the folder
      as it was.
    """
    writes = mode == "rw"
    uri = f"{path.resolve().as_uri()}?{_URI_QUERY[mode]}"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    # "sqlite://" with a creator would get the single-connection pool meant for
    # :memory:; a file wants a real pool so threads do not share a connection.
    # The lenient JSON decoder keeps one row's bad JSON from failing every
    # query on its table: the records below turn it into a "damaged" run or an
    # error naming the row.
    engine = create_engine("sqlite://", creator=connect, poolclass=QueuePool, pool_size=4,
                           json_deserializer=_lenient_json_loads)

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # The sqlite3 module's own transaction handling skips BEGIN before DDL;
        # turning it off and issuing BEGIN ourselves (on_begin) makes every
        # session, schema changes included, one real transaction.
        dbapi_conn.isolation_level = None
        dbapi_conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        dbapi_conn.execute("PRAGMA foreign_keys = ON")
        if mode == "reader":
            dbapi_conn.execute("PRAGMA query_only = ON")
        if writes:
            # Takes effect only on a new, empty file (before WAL fixes it).
            # Big pages make the large blobs (embeddings, weights) 2-3x faster
            # to write and read; small metric commits barely notice.
            dbapi_conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            dbapi_conn.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL never corrupts; a power cut may lose the last
            # commits only. Saves an fsync per metric batch.
            dbapi_conn.execute("PRAGMA synchronous = NORMAL")
            dbapi_conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))

    return engine


def _in_use(path: Path) -> bool:
    """-wal/-shm beside the file: another connection has it open (or one died
    with it open, or the file was copied with them)."""
    real = path.resolve()  # SQLite keeps them beside the real file, not a symlink
    return any(real.with_name(real.name + s).exists() for s in ("-wal", "-shm"))


def _unwritable_reason(path: Path) -> str | None:
    """Why SQLite could not write ``path`` (it needs the file and, for its
    -wal/-shm files, the folder), or None when it can."""
    folder = path.resolve().parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "it is on read-only storage"
    except OSError:
        pass
    if not os.access(path, os.W_OK):
        return "the file is read-only"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "its folder is read-only"
    return None


class _DamagedJSON:
    """Stands in for a JSON column value that does not decode."""

    __slots__ = ("text", "problem")

    def __init__(self, text: Any, problem: str):
        self.text, self.problem = text, problem

    def __repr__(self) -> str:
        return f"<damaged JSON: {self.problem}>"


def _lenient_json_loads(value: Any) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError) as e:  # JSONDecodeError is a ValueError
        return _DamagedJSON(value, str(e))


def _check_header(path: Path) -> None:
    """Reject what is plainly not a Pretext file by reading its first bytes."""
    try:
        if path.is_dir():
            raise ProjectError(path, "is a directory, not a Pretext project file")
        with path.open("rb") as f:
            header = f.read(100)
        size = path.stat().st_size
    except FileNotFoundError:
        raise ProjectError(path, "no such file") from None
    except OSError as e:
        raise ProjectError(path, f"cannot be read ({e.strerror or e})") from None
    if not header:
        raise ProjectError(path, "is empty (0 bytes), not a Pretext project")
    if not header.startswith(SQLITE_MAGIC):
        raise ProjectError(path, "is not a Pretext project (not an SQLite database)")
    if len(header) < 100:
        raise ProjectError(path, f"is truncated ({size} bytes, shorter than an SQLite header)")
    app_id = int.from_bytes(header[68:72], "big")
    if app_id not in (0, APPLICATION_ID):
        raise ProjectError(path, f"is another application's SQLite database "
                                 f"(application_id {app_id:#010x}), not a Pretext project")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count is valid when the two change counters agree. While a WAL
    # file has content the main file may lag behind it, so only trust the
    # count when there is no WAL to finish the picture.
    counted = header[24:28] == header[92:96] and pages > 0
    wal = path.with_name(path.name + "-wal")
    if counted and not (wal.exists() and wal.stat().st_size > 0) and size < pages * page_size:
        raise ProjectError(path, f"is truncated or damaged ({size} bytes; its header "
                                 f"promises {pages * page_size})")


def _check_contents(path: Path, engine: Engine) -> int:
    """Read meta and run quick_check through a read-only engine.

    Returns the file's schema version; raises ProjectError for anything that
    is not a healthy Pretext project this version can read.
    """
    try:
        with engine.connect() as conn:
            tables = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars())
            if "meta" not in tables:
                raise ProjectError(path, "is an SQLite database but not a Pretext project (no meta table)")
            try:
                meta = dict(conn.execute(text("SELECT key, value FROM meta")).all())
            except DBAPIError:
                raise ProjectError(path, "is an SQLite database but not a Pretext project "
                                         "(its meta table is not Pretext's)") from None
            if meta.get("app") != APP_NAME:
                raise ProjectError(path, f"is an SQLite database but not a Pretext project "
                                         f"(meta app = {meta.get('app')!r})")
            try:
                version = int(meta.get("schema_version", ""))
            except ValueError:
                raise ProjectError(path, f"is damaged (schema_version = {meta.get('schema_version')!r})") from None
            if version > SCHEMA_VERSION:
                raise ProjectError(path, f"was saved by a newer Pretext (schema version {version}; this "
                                         f"Pretext reads up to {SCHEMA_VERSION}): it needs a newer Pretext")
            if version < 1 or (version < SCHEMA_VERSION and version not in migrations.MIGRATIONS):
                raise ProjectError(path, f"has an unknown schema version {version}")
            problems = conn.execute(text("PRAGMA quick_check")).scalars().all()
            if problems != ["ok"]:
                raise ProjectError(path, f"is damaged (SQLite quick_check: {'; '.join(problems[:3])})")
            problem = _schema_problem(conn, version)
            if problem:
                raise ProjectError(path, f"is damaged ({problem})")
            return version
    except DBAPIError as e:
        raise ProjectError(path, f"is damaged or not a Pretext project ({e.orig})") from None


def _schema_problem(conn: Any, version: int) -> str | None:
    """How the file's tables differ from the models of schema.py, or None.

    Compared with the ORM metadata itself, so a column added to a model is
    checked without touching this. A file at the current version must match
    column for column, with the same declared types; an older file must have
    every table and no column the models lack (its migrations add the rest).
    """
    for table in Base.metadata.sorted_tables:
        rows = conn.exec_driver_sql(f'PRAGMA table_info("{table.name}")').all()
        if not rows and version < TABLES_ADDED.get(table.name, 0):
            continue
        if not rows:
            return f"table {table.name!r} is missing"
        found = {row[1]: (row[2] or "").upper() for row in rows}
        expected = {c.name: c.type.compile(dialect=conn.dialect).upper() for c in table.columns}
        extra = [name for name in found if name not in expected]
        if extra:
            return f"table {table.name!r} has unknown columns {', '.join(extra)}"
        if version < SCHEMA_VERSION:
            continue
        missing = [name for name in expected if name not in found]
        if missing:
            return f"table {table.name!r} lacks columns {', '.join(missing)}"
        for name, declared in expected.items():
            if found[name] != declared:
                return f"column {table.name}.{name} is {found[name] or 'untyped'}, not {declared}"
    return None


def _le_bytes(a: np.ndarray, dtype: np.dtype | str | None = None) -> memoryview:
    """The little-endian C-order bytes of ``a`` (cast to ``dtype``), without
    a copy when the array already is that: embeddings are tens of MB."""
    dt = np.dtype(dtype if dtype is not None else a.dtype).newbyteorder("<")
    a = np.asarray(a).astype(dt, order="C", copy=False)
    return memoryview(a.reshape(-1).view(np.uint8))


def _array_to_blob(a: np.ndarray) -> tuple[str, list[int], memoryview]:
    """(dtype name, shape, raw bytes) of a numeric array."""
    a = np.asarray(a)
    if a.dtype.kind not in _ARRAY_KINDS:
        raise ValueError(f"only numeric arrays can be stored, not dtype {a.dtype}")
    return a.dtype.name, list(a.shape), _le_bytes(a)


def _blob_to_array(path: Path, dtype: str, shape: list[int], data: bytes,
                   as_dtype: np.dtype | str | None = None) -> np.ndarray:
    """Inverse of _array_to_blob, optionally converting to ``as_dtype``;
    validates what the file claims first."""
    try:
        dt = np.dtype(dtype)
        if dt.kind not in _ARRAY_KINDS or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ValueError
    except (TypeError, ValueError):
        raise ProjectError(path, f"is damaged (stored array of dtype {dtype!r}, shape {shape!r})") from None
    if int(np.prod(shape, dtype=np.int64)) * dt.itemsize != len(data):
        raise ProjectError(path, f"is damaged (array of {len(data)} bytes does not fit shape {shape} {dtype})")
    # One copy, which makes the result writable and native-endian.
    return np.frombuffer(data, dtype=dt.newbyteorder("<")).reshape(shape).astype(as_dtype or dt)


# --- the project ---------------------------------------------------------------

class Project:
    """An open project file. Create with :meth:`create`, :meth:`open` or
    :meth:`open_or_create`; use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path, engine: Engine, read_only: bool, read_only_reason: str | None = None,
                 mode: str = "rw"):
        self.path = path
        # How the file is opened (see _make_engine): readers in other threads and
        # processes (engine.store.items) open it the same way, or read-only.
        self._mode = mode
        #: True when this Project never writes (opened read-only, or "auto" on
        #: a file that cannot be written); ``read_only_reason`` says why, in
        #: words for a banner ("its folder is read-only"), None when writable.
        self.read_only = read_only
        self.read_only_reason = read_only_reason if read_only else None
        self._engine = engine
        # Writers announce themselves at BEGIN so that two processes never
        # deadlock upgrading a read lock to a write lock.
        self._writer = engine.execution_options(sqlite_begin="BEGIN IMMEDIATE")
        self._write_lock = threading.RLock()
        self._closed = False

    # opening and closing

    @classmethod
    def create(cls, path: PathLike) -> Project:
        """A new, empty project at ``path``; refuses to overwrite anything."""
        path = Path(path)
        try:
            path.open("xb").close()  # atomic: fails if anything is already there
        except FileExistsError:
            raise ProjectError(path, "already exists; refusing to overwrite it") from None
        except OSError as e:
            raise ProjectError(path, f"cannot be created ({e.strerror or e})") from None
        engine = None
        try:
            engine = _make_engine(path, "rw")
            with engine.execution_options(sqlite_begin="BEGIN IMMEDIATE").begin() as conn:
                conn.exec_driver_sql(f"PRAGMA application_id = {APPLICATION_ID}")
                Base.metadata.create_all(conn)
                conn.execute(insert(Meta), [
                    {"key": "app", "value": APP_NAME},
                    {"key": "schema_version", "value": str(SCHEMA_VERSION)},
                    {"key": "created_at", "value": utcnow().isoformat()},
                ])
        except Exception as e:
            if engine is not None:
                engine.dispose()
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                leftover.unlink(missing_ok=True)
            raise ProjectError(path, f"cannot be created ({getattr(e, 'orig', None) or e})") from e
        return cls(path, engine, read_only=False)

    @classmethod
    def open(cls, path: PathLike, read_only: bool | str = False) -> Project:
        """Open an existing project.

        ``read_only``:

        * False: read-write, upgrading an older schema; refused (ProjectError)
          when the file or its folder cannot be written;
        * True: never writes, and leaves nothing beside the file once closed.
          A file on read-only storage or in a read-only folder is read through
          SQLite's ``mode=ro``, or ``immutable=1`` when no -wal/-shm is there;
        * "auto": read-write where the file can be written, read-only where it
          cannot (the GUI): ``project.read_only`` tells which, and
          ``project.read_only_reason`` why.
        """
        if read_only not in (True, False, "auto"):
            raise ValueError(f"read_only must be True, False or 'auto', not {read_only!r}")
        path = Path(path)
        # 1. the header, 2. meta, quick_check and the schema through a
        # connection that cannot write, 3. only then a writer.
        _check_header(path)
        # With no -wal/-shm beside it no process has the file open, so it can
        # be checked as immutable, creating nothing; otherwise another Pretext
        # is using it and a plain read-only connection shares its WAL.
        check_engine = _make_engine(path, "ro" if _in_use(path) else "immutable")
        try:
            version = _check_contents(path, check_engine)
        finally:
            check_engine.dispose()
        unwritable = _unwritable_reason(path)
        if read_only == "auto":
            read_only = unwritable is not None
        if read_only:
            if version < SCHEMA_VERSION:
                raise ProjectError(path, f"uses schema version {version}; open it once for writing "
                                         f"to upgrade it to version {SCHEMA_VERSION}")
            if unwritable is None:
                mode = "reader"
            else:
                mode = "ro" if _in_use(path) else "immutable"
            return cls(path, _make_engine(path, mode), read_only=True,
                       read_only_reason=unwritable or "opened read-only", mode=mode)
        if unwritable is not None:
            raise ProjectError(path, f"cannot be opened for writing ({unwritable}); "
                                     f"commands that only read it still work")

        engine = _make_engine(path, "rw")
        try:
            if version < SCHEMA_VERSION:
                with engine.execution_options(sqlite_begin="BEGIN IMMEDIATE").connect() as conn:
                    migrations.upgrade(conn)
            else:
                with engine.connect():  # opens for writing now, so failures surface here
                    pass
        except DBAPIError as e:
            engine.dispose()
            raise ProjectError(path, f"cannot be opened for writing ({e.orig}); "
                                     f"try opening it read-only") from e
        except Exception as e:  # a failed migration; its transaction was rolled back
            engine.dispose()
            raise ProjectError(path, f"cannot be upgraded to schema version {SCHEMA_VERSION} ({e}); "
                                     f"the file was left as it was") from e
        return cls(path, engine, read_only=False)

    @classmethod
    def open_or_create(cls, path: PathLike) -> Project:
        path = Path(path)
        if path.exists() or path.is_symlink():
            return cls.open(path)
        return cls.create(path)

    def close(self) -> None:
        """Close all connections; the last one folds the WAL back into the file."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self.read_only else "open")
        return f"<Project {str(self.path)!r} {state}>"

    # sessions

    @contextmanager
    def _reading(self) -> Iterator[Session]:
        if self._closed:
            raise ProjectError(self.path, "the project is closed")
        try:
            with Session(self._engine) as s, s.begin():
                yield s
        except DBAPIError as e:
            raise ProjectError(self.path, f"cannot be read ({e.orig})") from e

    @contextmanager
    def _writing(self) -> Iterator[Session]:
        """One write transaction; ProjectError for a failed constraint."""
        if self._closed:
            raise ProjectError(self.path, "the project is closed")
        if self.read_only:
            raise ProjectError(self.path, f"is open read-only ({self.read_only_reason})")
        with self._write_lock:
            try:
                with Session(self._writer) as s, s.begin():
                    yield s
            except IntegrityError as e:
                raise ProjectError(self.path, f"refused a change ({e.orig}): a record it refers to is "
                                              f"missing or a unique name is taken") from e
            except DBAPIError as e:
                raise ProjectError(self.path, f"cannot be written ({e.orig})") from e

    def _run_row(self, s: Session, run_id: int) -> Run:
        """The run's row in session ``s``, or "no run N" (ProjectError)."""
        r = s.get(Run, run_id)
        if r is None:
            raise self._missing("run", run_id)
        return r

    def _busy(self, r: Run, holder: ownership.Owner) -> RunBusyError:
        """The refusal naming the live process ``holder`` that trains run ``r``."""
        return RunBusyError(self.path, r.id, holder, ownership.heartbeat_age(r.heartbeat_at))

    def _missing(self, what: str, key: object) -> ProjectError:
        return ProjectError(self.path, f"has no {what} {key!r}")

    # datasets

    def add_dataset(self, name: str, kind: str, params: dict, n_items: int, fingerprint: str,
                    stats: dict | None = None, arrays: dict[str, np.ndarray] | None = None,
                    strings: dict[str, list[str]] | None = None) -> int:
        """Record a dataset; ``arrays``/``strings`` keep item data that cannot be
        regenerated (a user's folder). Names are unique within a project."""
        blobs = {k: _array_to_blob(a) for k, a in (arrays or {}).items()}
        texts = {k: [str(x) for x in v] for k, v in (strings or {}).items()}
        with self._writing() as s:
            if s.scalar(select(Dataset.id).where(Dataset.name == name)) is not None:
                raise ProjectError(self.path, f"already has a dataset named {name!r}")
            d = Dataset(name=name, kind=kind, params=params, n_items=int(n_items), fingerprint=fingerprint,
                        stats=stats or {}, created_at=utcnow())
            s.add(d)
            s.flush()
            s.add_all(DatasetArray(dataset_id=d.id, name=k, dtype=dt, shape=shape, data=data)
                      for k, (dt, shape, data) in blobs.items())
            s.add_all(DatasetStrings(dataset_id=d.id, name=k, data=v) for k, v in texts.items())
            return d.id

    def add_items(self, dataset_id: int, start: int, items: list[bytes] | None, *,
                  sha256: list[bytes], nbytes: list[int], paths: list[str] | None = None) -> None:
        """Store items ``start``, ``start + 1``, … of a dataset: their encoded bytes, or
        (link mode, ``items=None``) the paths of the files. One transaction per call,
        so an import of any size commits in batches and other processes keep writing."""
        rows = [{"dataset_id": dataset_id, "idx": start + k, "nbytes": int(nbytes[k]), "sha256": sha256[k],
                 "data": None if items is None else items[k], "path": None if paths is None else paths[k]}
                for k in range(len(sha256))]
        with self._writing() as s:
            s.execute(insert(DatasetItem), rows)

    def update_dataset(self, dataset_id: int, *, n_items: int | None = None, fingerprint: str | None = None,
                       stats: dict | None = None) -> None:
        with self._writing() as s:
            d = s.get(Dataset, dataset_id)
            if d is None:
                raise self._missing("dataset", dataset_id)
            if n_items is not None:
                d.n_items = int(n_items)
            if fingerprint is not None:
                d.fingerprint = fingerprint
            if stats is not None:
                d.stats = stats

    def dataset_items(self, dataset_id: int):
        """The dataset's stored items as an ItemSource (engine.data.encoded), or None
        when it has none (built-in kinds, text): :class:`~engine.store.items.StoredItems`,
        or for a ``link=true`` import a LinkedItems over the user's files."""
        from ..data.encoded import LinkedItems
        from .items import StoredItems
        with self._reading() as s:
            n, linked = s.execute(select(func.count(), func.count(DatasetItem.path))     # count(path): non-NULL
                                  .where(DatasetItem.dataset_id == dataset_id)).one()
            if not n:
                return None
            if linked:
                rows = s.execute(select(DatasetItem.path, DatasetItem.nbytes, DatasetItem.sha256)
                                 .where(DatasetItem.dataset_id == dataset_id).order_by(DatasetItem.idx)).all()
                return LinkedItems("", [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
        return StoredItems(self.path, _URI_QUERY[self._mode], dataset_id, n)

    def datasets(self) -> list[DatasetRecord]:
        with self._reading() as s:
            return [_dataset_record(d) for d in s.scalars(select(Dataset).order_by(Dataset.id))]

    def dataset(self, id_or_name: int | str) -> DatasetRecord:
        """A dataset by id (int) or by name (str)."""
        column = Dataset.name if isinstance(id_or_name, str) else Dataset.id
        with self._reading() as s:
            d = s.scalar(select(Dataset).where(column == id_or_name))
            if d is None:
                raise self._missing("dataset", id_or_name)
            return _dataset_record(d)

    def dataset_arrays(self, dataset_id: int) -> dict[str, np.ndarray]:
        with self._reading() as s:
            rows = s.execute(select(DatasetArray.name, DatasetArray.dtype, DatasetArray.shape, DatasetArray.data)
                             .where(DatasetArray.dataset_id == dataset_id).order_by(DatasetArray.id)).all()
        return {name: _blob_to_array(self.path, dt, shape, data) for name, dt, shape, data in rows}

    def dataset_strings(self, dataset_id: int, name: str) -> list[str]:
        """The named list of strings stored with the dataset; [] if none."""
        with self._reading() as s:
            data = s.scalar(select(DatasetStrings.data).where(DatasetStrings.dataset_id == dataset_id,
                                                              DatasetStrings.name == name))
        if data is None:
            return []
        problem = _json_problem(data, list)
        if problem:
            raise ProjectError(self.path, f"is damaged: dataset {dataset_id}'s {name!r} list {problem}")
        return list(data)

    def delete_dataset(self, dataset_id: int) -> None:
        """Delete a dataset with its runs and everything they hold; refused with
        :class:`RunBusyError` while a live process trains one of its runs."""
        with self._writing() as s:
            for r in s.scalars(select(Run).where(Run.dataset_id == dataset_id, Run.owner_pid.is_not(None))):
                if (holder := _live_owner(r)) is not None:
                    raise self._busy(r, holder)
            if s.execute(delete(Dataset).where(Dataset.id == dataset_id)).rowcount == 0:
                raise self._missing("dataset", dataset_id)

    # runs

    def create_run(self, dataset_id: int, method: str, config: dict, seed: int, *, device: str = "",
                   versions: dict | None = None, fingerprint: str = "", code_version: str = "",
                   name: str = "", parent_run_id: int | None = None, tags: list[str] | None = None) -> int:
        with self._writing() as s:
            if s.get(Dataset, dataset_id) is None:
                raise self._missing("dataset", dataset_id)
            if parent_run_id is not None and s.get(Run, parent_run_id) is None:
                raise self._missing("run", parent_run_id)
            _check_json(self.path, config)
            r = Run(dataset_id=dataset_id, method=method, name=name, config=config, status="created",
                    seed=int(seed), device=device, versions=versions or {}, fingerprint=fingerprint,
                    code_version=code_version, created_at=utcnow(), parent_run_id=parent_run_id,
                    tags=list(tags or []))
            s.add(r)
            s.flush()
            return r.id

    def update_run(self, run_id: int, *, status: str | None = None, device: str | None = None,
                   error: str | None = None, started_at: datetime | None = None,
                   finished_at: datetime | None = None, config: dict | None = None,
                   name: str | None = None, tags: list[str] | None = None) -> None:
        """Change the given fields; ``None`` leaves a field as it is. The status and
        config of a run that another live process trains are its own: changing them
        from here raises :class:`RunBusyError` (a name or tags may change any time)."""
        changes = {"status": status, "device": device, "error": error, "started_at": started_at,
                   "finished_at": finished_at, "config": config, "name": name,
                   "tags": list(tags) if tags is not None else None}
        if config is not None:
            _check_json(self.path, config)
        with self._writing() as s:
            r = self._run_row(s, run_id)
            holder = _live_owner(r)
            if (status is not None or config is not None) and holder not in (None, ownership.this_process()):
                raise self._busy(r, holder)
            for field, value in changes.items():
                if value is not None:
                    setattr(r, field, value)

    def runs(self, dataset_id: int | None = None) -> list[RunRecord]:
        query = select(Run).order_by(Run.id)
        if dataset_id is not None:
            query = query.where(Run.dataset_id == dataset_id)
        with self._reading() as s:
            return [_run_record(r) for r in s.scalars(query)]

    def run(self, run_id: int) -> RunRecord:
        with self._reading() as s:
            r = self._run_row(s, run_id)
            return _run_record(r)

    def delete_run(self, run_id: int) -> None:
        """Delete a run with its metrics, checkpoints, embeddings and artifacts.
        Runs forked from it keep going, with no parent. A run a live process is
        training is refused with :class:`RunBusyError`, which names the process."""
        with self._writing() as s:
            r = self._run_row(s, run_id)
            if (holder := _live_owner(r)) is not None:
                raise self._busy(r, holder)
            s.execute(delete(Run).where(Run.id == run_id))

    # run ownership: which process trains a run (see ownership.py)

    def claim_run(self, run_id: int) -> None:
        """Make this process the run's owner and mark it running, or raise
        :class:`RunBusyError` naming the live process that holds it.

        The check and the claim are one ``BEGIN IMMEDIATE`` transaction, which
        holds SQLite's write lock from the start: of two processes claiming the
        same run, the second reads the first one's claim and is refused.
        """
        me = ownership.this_process()
        key = (str(self.path.resolve()), run_id)
        with self._writing() as s:
            r = self._run_row(s, run_id)
            if (holder := _live_owner(r)) is not None:
                # This very process may hold it too (the app trains in a thread):
                # refused while one of its trainers has it, taken back otherwise.
                with _HELD_LOCK:
                    held_here = key in _HELD
                if holder != me or held_here:
                    raise self._busy(r, holder)
            r.owner_host, r.owner_pid, r.owner_start = me.host, me.pid, me.start
            r.heartbeat_at = utcnow()
            r.status = "running"
        with _HELD_LOCK:
            _HELD.add(key)

    def heartbeat_run(self, run_id: int) -> bool:
        """Record that this process, the run's owner, is alive; False if it no longer owns it."""
        me = ownership.this_process()
        with self._writing() as s:
            return s.execute(update(Run).where(Run.id == run_id, Run.owner_host == me.host,
                                               Run.owner_pid == me.pid)
                             .values(heartbeat_at=utcnow())).rowcount == 1

    def release_run(self, run_id: int) -> None:
        """Give up ownership (a trainer ends). A run still marked running then reads
        "interrupted"; its last heartbeat stays as a record of when it ended."""
        me = ownership.this_process()
        with _HELD_LOCK:
            _HELD.discard((str(self.path.resolve()), run_id))
        with self._writing() as s:
            s.execute(update(Run).where(Run.id == run_id, Run.owner_host == me.host, Run.owner_pid == me.pid)
                      .values(owner_host=None, owner_pid=None, owner_start=None))

    # metrics

    def log_metrics(self, run_id: int, rows: Iterable[tuple[int, float, str, float]]) -> None:
        """Append (step, epoch, name, value) rows in one transaction."""
        params = [{"run_id": run_id, "step": int(step), "epoch": float(epoch), "name": str(name),
                   "value": float(value)} for step, epoch, name, value in rows]
        if not params:
            return
        with self._writing() as s:
            # Core executemany: no ORM objects for what may be 10^5 rows.
            s.connection().execute(insert(Metric.__table__), params)

    def delete_metrics_after(self, run_id: int, step: int) -> int:
        """Remove rows logged after ``step`` (a run resumed from the checkpoint at
        ``step`` logs them again); returns how many were removed."""
        with self._writing() as s:
            return s.execute(delete(Metric).where(Metric.run_id == run_id, Metric.step > step)).rowcount

    def metrics(self, run_id: int, name: str | None = None, since_id: int = 0) -> list[MetricRow]:
        """Rows in logging order; ``since_id`` keeps only rows with a larger id."""
        query = (select(Metric.step, Metric.epoch, Metric.name, Metric.value, Metric.id)
                 .where(Metric.run_id == run_id, Metric.id > since_id).order_by(Metric.id))
        if name is not None:
            query = query.where(Metric.name == name)
        nan = float("nan")
        with self._reading() as s:
            # Core rather than ORM: a long run has 10^5 rows, and this is its curve.
            return [MetricRow(step, epoch, n, nan if value is None else value, id_)
                    for step, epoch, n, value, id_ in s.connection().execute(query)]

    def metric_names(self, run_id: int) -> list[str]:
        """Names in the order they were first logged."""
        with self._reading() as s:
            return list(s.scalars(select(Metric.name).where(Metric.run_id == run_id)
                                  .group_by(Metric.name).order_by(func.min(Metric.id))))

    def latest_metrics(self, run_id: int) -> dict[str, float]:
        """The last logged value of each metric."""
        last = (select(func.max(Metric.id)).where(Metric.run_id == run_id)
                .group_by(Metric.name).scalar_subquery())
        with self._reading() as s:
            rows = s.execute(select(Metric.name, Metric.value).where(Metric.id.in_(last))
                             .order_by(Metric.id)).all()
        return {n: float("nan") if v is None else v for n, v in rows}

    # checkpoints

    def save_checkpoint(self, run_id: int, step: int, epoch: int, state: dict, keep_last: int = 3) -> int:
        """Store ``state`` (see tensors.pack_state); keep only the ``keep_last``
        latest checkpoints of the run (0 keeps all)."""
        data = pack_state(state)  # outside the lock: it is the slow part
        with self._writing() as s:
            c = Checkpoint(run_id=run_id, step=int(step), epoch=int(epoch), data=data, created_at=utcnow())
            s.add(c)
            s.flush()
            if keep_last > 0:
                old = (select(Checkpoint.id).where(Checkpoint.run_id == run_id)
                       .order_by(Checkpoint.step.desc(), Checkpoint.id.desc()).offset(keep_last))
                s.execute(delete(Checkpoint).where(Checkpoint.id.in_(old)))
            return c.id

    def checkpoints(self, run_id: int) -> list[tuple[int, int, int]]:
        """(id, step, epoch) of the run's checkpoints, oldest first."""
        with self._reading() as s:
            return [tuple(r) for r in s.execute(
                select(Checkpoint.id, Checkpoint.step, Checkpoint.epoch).where(Checkpoint.run_id == run_id)
                .order_by(Checkpoint.step, Checkpoint.id))]

    def latest_checkpoint(self, run_id: int) -> tuple[int, int, dict] | None:
        """(step, epoch, state) of the run's latest checkpoint, or None."""
        with self._reading() as s:
            row = s.execute(select(Checkpoint.id, Checkpoint.step, Checkpoint.epoch, Checkpoint.data)
                            .where(Checkpoint.run_id == run_id)
                            .order_by(Checkpoint.step.desc(), Checkpoint.id.desc()).limit(1)).first()
        if row is None:
            return None
        return row.step, row.epoch, self._unpack(row.id, row.data)

    def load_checkpoint(self, checkpoint_id: int) -> dict:
        with self._reading() as s:
            data = s.scalar(select(Checkpoint.data).where(Checkpoint.id == checkpoint_id))
        if data is None:
            raise self._missing("checkpoint", checkpoint_id)
        return self._unpack(checkpoint_id, data)

    def _unpack(self, checkpoint_id: int, data: bytes) -> Any:
        try:
            return unpack_state(data)
        except ValueError as e:
            raise ProjectError(self.path, f"checkpoint {checkpoint_id} is damaged ({e})") from e

    # embeddings and projections

    def save_embeddings(self, run_id: int, split: str, ids: np.ndarray, vectors: np.ndarray, *,
                        epoch: int | None = None, dtype: str = "float32") -> int:
        """Store (n,) item ids and (n, dim) vectors at ``dtype`` precision
        ("float32" or "float16")."""
        if dtype not in ("float32", "float16"):
            raise ValueError(f"embedding dtype must be 'float32' or 'float16', not {dtype!r}")
        ids = np.asarray(ids)
        vectors = np.asarray(vectors)
        if ids.ndim != 1 or vectors.ndim != 2 or len(ids) != len(vectors):
            raise ValueError(f"need ids (n,) and vectors (n, dim), got {ids.shape} and {vectors.shape}")
        if ids.dtype.kind not in "iu":
            raise ValueError(f"ids must be integers, not {ids.dtype}")
        ids_blob = _le_bytes(ids, np.int64)
        vec_blob = _le_bytes(vectors, dtype)
        with self._writing() as s:
            e = Embedding(run_id=run_id, split=split, epoch=epoch, n=len(ids), dim=vectors.shape[1],
                          dtype=dtype, ids=ids_blob, vectors=vec_blob, created_at=utcnow())
            s.add(e)
            s.flush()
            return e.id

    def embedding_sets(self, run_id: int) -> list[EmbeddingRecord]:
        with self._reading() as s:
            return [EmbeddingRecord(e.id, e.run_id, e.split, e.epoch, e.n, e.dim, e.dtype, e.created_at)
                    for e in s.scalars(select(Embedding).where(Embedding.run_id == run_id).order_by(Embedding.id))]

    def embedding_set(self, embedding_id: int) -> EmbeddingRecord:
        with self._reading() as s:
            e = s.get(Embedding, embedding_id)
            if e is None:
                raise self._missing("embedding set", embedding_id)
            return EmbeddingRecord(e.id, e.run_id, e.split, e.epoch, e.n, e.dim, e.dtype, e.created_at)

    def load_embeddings(self, embedding_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 (n,), vectors float32 (n, dim))."""
        with self._reading() as s:
            row = s.execute(select(Embedding.n, Embedding.dim, Embedding.dtype, Embedding.ids, Embedding.vectors)
                            .where(Embedding.id == embedding_id)).first()
        if row is None:
            raise self._missing("embedding set", embedding_id)
        if row.dtype not in ("float32", "float16"):
            raise ProjectError(self.path, f"is damaged (embedding set {embedding_id} has dtype {row.dtype!r})")
        ids = _blob_to_array(self.path, "int64", [row.n], row.ids)
        vectors = _blob_to_array(self.path, row.dtype, [row.n, row.dim], row.vectors, as_dtype=np.float32)
        return ids, vectors

    def save_projection(self, embedding_id: int, kind: str, params: dict, coords: np.ndarray) -> int:
        """Store (n, 2) map coordinates for an embedding set of n items."""
        coords = np.asarray(coords)
        if coords.ndim != 2 or coords.shape[1] != 2:
            raise ValueError(f"coords must be (n, 2), got {coords.shape}")
        blob = _le_bytes(coords, np.float32)
        with self._writing() as s:
            n = s.scalar(select(Embedding.n).where(Embedding.id == embedding_id))
            if n is None:
                raise self._missing("embedding set", embedding_id)
            if n != len(coords):
                raise ValueError(f"embedding set {embedding_id} has {n} items, coords have {len(coords)}")
            p = Projection(embedding_id=embedding_id, kind=kind, params=params, coords=blob, created_at=utcnow())
            s.add(p)
            s.flush()
            return p.id

    def projections(self, embedding_id: int) -> list[ProjectionRecord]:
        with self._reading() as s:
            return [ProjectionRecord(p.id, p.embedding_id, p.kind, p.params, p.created_at)
                    for p in s.scalars(select(Projection).where(Projection.embedding_id == embedding_id)
                                       .order_by(Projection.id))]

    def load_projection(self, projection_id: int) -> np.ndarray:
        """(n, 2) float32 coordinates."""
        with self._reading() as s:
            blob = s.scalar(select(Projection.coords).where(Projection.id == projection_id))
        if blob is None:
            raise self._missing("projection", projection_id)
        return _blob_to_array(self.path, "float32", [len(blob) // 8, 2], blob)

    # artifacts

    def save_artifact(self, run_id: int, name: str, kind: str, data: bytes, *, step: int = 0,
                      meta: dict | None = None) -> int:
        """Store opaque bytes (a PNG of reconstructions, a report)."""
        with self._writing() as s:
            a = Artifact(run_id=run_id, name=name, kind=kind, step=int(step), meta=meta or {},
                         data=bytes(data), created_at=utcnow())
            s.add(a)
            s.flush()
            return a.id

    def artifacts(self, run_id: int, name: str | None = None) -> list[ArtifactRecord]:
        query = select(Artifact).where(Artifact.run_id == run_id).order_by(Artifact.id)
        if name is not None:
            query = query.where(Artifact.name == name)
        with self._reading() as s:
            return [ArtifactRecord(a.id, a.run_id, a.name, a.kind, a.step, a.meta, a.created_at)
                    for a in s.scalars(query)]

    def load_artifact(self, artifact_id: int) -> bytes:
        with self._reading() as s:
            data = s.scalar(select(Artifact.data).where(Artifact.id == artifact_id))
        if data is None:
            raise self._missing("artifact", artifact_id)
        return bytes(data)


def _dataset_record(d: Dataset) -> DatasetRecord:
    return DatasetRecord(d.id, d.name, d.kind, d.params, d.n_items, d.fingerprint, d.stats, d.created_at)


def _json_problem(value: Any, kind: type) -> str | None:
    """Why a decoded JSON column is unusable (see _lenient_json_loads), or None."""
    if isinstance(value, _DamagedJSON):
        return f"is not valid JSON ({value.problem})"
    if not isinstance(value, kind):
        return f"is a JSON {type(value).__name__}, not a JSON {kind.__name__}"
    return None


def _run_record(r: Run) -> RunRecord:
    # A run whose JSON columns do not decode reads as "damaged", with empty
    # config/versions/tags and the problem as its error, so that listing runs,
    # and everything that does, keeps working around it.
    damaged = [f"its {name} {problem}" for name, value, kind in
               (("config", r.config, dict), ("versions", r.versions, dict), ("tags", r.tags, list))
               if (problem := _json_problem(value, kind))]
    if damaged:
        return RunRecord(id=r.id, dataset_id=r.dataset_id, method=r.method, config={}, status="damaged",
                         seed=r.seed, device=r.device, versions={}, fingerprint=r.fingerprint,
                         code_version=r.code_version, created_at=r.created_at, started_at=r.started_at,
                         finished_at=r.finished_at, error="; ".join(damaged), parent_run_id=r.parent_run_id,
                         tags=[], name=r.name, owner=None, heartbeat_at=r.heartbeat_at)
    holder = _owner_of(r)
    live = ownership.is_alive(holder, r.heartbeat_at)
    return RunRecord(id=r.id, dataset_id=r.dataset_id, method=r.method, config=r.config,
                     status=_run_status(r.status, live),
                     seed=r.seed, device=r.device, versions=r.versions, fingerprint=r.fingerprint,
                     code_version=r.code_version, created_at=r.created_at, started_at=r.started_at,
                     finished_at=r.finished_at, error=r.error, parent_run_id=r.parent_run_id,
                     tags=list(r.tags), name=r.name, owner=holder.describe() if live else None,
                     heartbeat_at=r.heartbeat_at)


# Runs held by a trainer of this process, by (file, run id): the app trains in
# a thread, so its runs and a second claim from the same process share a pid.
_HELD: set[tuple[str, int]] = set()
_HELD_LOCK = threading.Lock()


def _live_owner(r: Run) -> ownership.Owner | None:
    """The process training run ``r`` while it is alive, else None."""
    holder = _owner_of(r)
    return holder if ownership.is_alive(holder, r.heartbeat_at) else None


def _owner_of(r: Run) -> ownership.Owner | None:
    if r.owner_pid is None or r.owner_host is None:
        return None
    return ownership.Owner(r.owner_host, r.owner_pid, r.owner_start)


def _run_status(stored: str, owner_alive: bool) -> str:
    """The status a reader sees: a run marked running or paused whose owning process
    is gone (killed, crashed, its machine off) is "interrupted" (computed here, never
    written, so a file read on another machine is judged by that machine's view)."""
    if stored in ("running", "paused") and not owner_alive:
        return "interrupted"
    return stored


def _check_json(path: Path, config: dict) -> None:
    """Refuse a config that would not be valid JSON (NaN and infinity are not)."""
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ProjectError(path, f"refused a run config that is not valid JSON ({e}); "
                                 f"a setting is NaN, infinite or not a plain value") from None
