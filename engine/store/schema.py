"""The project file's tables, as SQLAlchemy 2.0 typed ORM models.

These models describe the *current* schema (``SCHEMA_VERSION``). A new file is
created from them; an older file is brought here by ``migrations.py``, and a
test checks that both roads end in the same tables, columns and indexes.

Large data lives in BLOB columns marked ``deferred`` so that listing rows
(e.g. the runs of a dataset) never reads megabytes of weights.
Arrays are raw little-endian bytes plus a dtype name and a JSON shape; weights
are safetensors bytes. Nothing here is ever unpickled.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import (JSON, DateTime, Float, ForeignKey, Index, LargeBinary, String,
                        Text, UniqueConstraint, text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

SCHEMA_VERSION = 4
# Tables that appeared after schema 1, with the version that added them: an older
# file lacks them until its migration runs.
TABLES_ADDED = {"dataset_items": 4}

# PRAGMA application_id: "PRTX" in ASCII. `file` and other tools recognise a
# Pretext project by these four bytes at offset 68 of the SQLite header.
APPLICATION_ID = 0x50525458

APP_NAME = "pretext"


class UTCDateTime(TypeDecorator):
    """A datetime stored as naive UTC text and returned timezone-aware (UTC).

    SQLite has no time zones; normalising to UTC keeps ordering and
    comparisons right when a project is opened in another time zone.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: Optional[datetime], dialect) -> Optional[datetime]:
        if value is None:
            return None
        if value.tzinfo is None:  # naive means local time, as datetime.now() gives
            value = value.astimezone()
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Optional[datetime], dialect) -> Optional[datetime]:
        return None if value is None else value.replace(tzinfo=timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# Tables whose ids the GUI holds on to use AUTOINCREMENT, so that an id is
# never reused after a delete and a stale id cannot name a different record.
class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: UTCDateTime}


class Meta(Base):
    """Key/value facts about the file: ``app`` = "pretext", ``schema_version``."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)
    kind: Mapped[str] = mapped_column(String)
    params: Mapped[dict[str, Any]]
    n_items: Mapped[int]
    fingerprint: Mapped[str] = mapped_column(String)
    stats: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class DatasetArray(Base):
    """Item data for datasets that cannot be regenerated (a user's folder)."""

    __tablename__ = "dataset_arrays"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String)
    dtype: Mapped[str] = mapped_column(String)  # numpy dtype name; bytes are little-endian
    shape: Mapped[list[int]] = mapped_column(JSON)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)


class DatasetItem(Base):
    """One image of a dataset, kept encoded (schema 4; engine/data/encoded.py).

    ``data`` holds the bytes (a JPEG/PNG/WebP file as imported, or a smaller
    copy); a ``link=true`` import leaves it NULL and records where the file
    is (``path``). ``nbytes`` and ``sha256`` are of those bytes, so a linked
    file that changed is noticed and a dataset is fingerprinted without
    reading its images. One row per item: a random batch reads its rows by
    index, and no row comes near SQLite's 1 GB limit.
    """

    __tablename__ = "dataset_items"
    __table_args__ = (UniqueConstraint("dataset_id", "idx"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    idx: Mapped[int]
    nbytes: Mapped[int]
    sha256: Mapped[bytes] = mapped_column(LargeBinary)
    path: Mapped[Optional[str]] = mapped_column(Text)
    data: Mapped[Optional[bytes]] = mapped_column(LargeBinary, deferred=True)


class DatasetStrings(Base):
    """A named list of strings (captions, item names) as JSON text."""

    __tablename__ = "dataset_strings"
    __table_args__ = (UniqueConstraint("dataset_id", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String)
    data: Mapped[list[str]] = mapped_column(JSON, deferred=True)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    method: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)
    config: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String)
    seed: Mapped[int]
    device: Mapped[str] = mapped_column(String)
    versions: Mapped[dict[str, Any]]
    fingerprint: Mapped[str] = mapped_column(String)
    code_version: Mapped[str] = mapped_column(String)
    created_at: Mapped[datetime]
    started_at: Mapped[Optional[datetime]]
    finished_at: Mapped[Optional[datetime]]
    error: Mapped[Optional[str]] = mapped_column(Text)
    # Added in schema 2 (migrations.migrate_1_to_2), hence last: ALTER TABLE
    # ADD COLUMN appends, and fresh and migrated files should look the same.
    parent_run_id: Mapped[Optional[int]] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    tags: Mapped[list[str]] = mapped_column(server_default=text("'[]'"))
    # Added in schema 3 (migrations.migrate_2_to_3): who is training the run now.
    # The trainer claims the run (host, pid and that process's start time, which
    # tells a reused pid from the original) and writes a heartbeat every few
    # seconds; it clears the owner when it ends. A run marked running whose owner
    # is gone reads "interrupted" (Project.runs computes it; see ownership.py).
    owner_host: Mapped[Optional[str]] = mapped_column(String)
    owner_pid: Mapped[Optional[int]]
    owner_start: Mapped[Optional[int]]      # /proc/<pid>/stat start time (clock ticks after boot)
    heartbeat_at: Mapped[Optional[datetime]]


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (
        # Schema 2: metric_names / latest_metrics / metrics(name=...) per run.
        Index("ix_metrics_run_id_name", "run_id", "name"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    # The run_id index also serves "new rows of this run since id N" (the
    # rowid is part of every index entry).
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int]
    epoch: Mapped[float] = mapped_column(Float)
    name: Mapped[str] = mapped_column(String)
    # NULL is NaN: SQLite turns a bound NaN into NULL, and a diverging loss
    # must still be logged.
    value: Mapped[Optional[float]] = mapped_column(Float)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int]
    epoch: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # engine.store.tensors.pack_state
    created_at: Mapped[datetime]


class Embedding(Base):
    __tablename__ = "embeddings"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    split: Mapped[str] = mapped_column(String)
    epoch: Mapped[Optional[int]]
    n: Mapped[int]
    dim: Mapped[int]
    dtype: Mapped[str] = mapped_column(String)  # "float32" or "float16"
    ids: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # int64 little-endian, (n,)
    vectors: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # dtype little-endian, (n, dim)
    created_at: Mapped[datetime]


class Projection(Base):
    __tablename__ = "projections"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    embedding_id: Mapped[int] = mapped_column(ForeignKey("embeddings.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String)
    params: Mapped[dict[str, Any]]
    coords: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # float32 little-endian, (n, 2)
    created_at: Mapped[datetime]


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String)
    kind: Mapped[str] = mapped_column(String)
    step: Mapped[int]
    meta: Mapped[dict[str, Any]]
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[datetime]
