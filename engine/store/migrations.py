"""Schema versions and the migrations between them.

A project file records its version in ``meta.schema_version``. Opening an
older file runs ``MIGRATIONS[v]`` for each version v up to ``SCHEMA_VERSION``
in ONE transaction, so an interrupted or failing upgrade leaves the file as it
was (SQLite DDL is transactional).

To change the schema:
  1. edit the models in ``schema.py`` and bump ``SCHEMA_VERSION``;
  2. add ``migrate_N_to_N1(conn)`` here and register it in ``MIGRATIONS``;
  3. run tests/store: one migrates the v1 fixture and compares the result
     with a freshly created file, table by table, column by column.

A migration receives a ``Connection`` inside the transaction, with foreign
keys OFF so that it may rebuild a table the SQLite way (create new, copy,
drop old, rename); ``foreign_key_check`` runs before the commit.
"""
from __future__ import annotations

import json
from typing import Callable

from sqlalchemy import Connection, text

from .schema import APPLICATION_ID, SCHEMA_VERSION

# The first schema, exactly as Pretext 0.1 created it. Frozen: never edit;
# tests build v1 files from it and from the SQL dump in tests/store/fixtures.
SCHEMA_V1: tuple[str, ...] = (
    """CREATE TABLE meta (
        "key" VARCHAR NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY ("key"))""",
    """CREATE TABLE datasets (
        id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        name VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        params JSON NOT NULL,
        n_items INTEGER NOT NULL,
        fingerprint VARCHAR NOT NULL,
        stats JSON NOT NULL,
        created_at DATETIME NOT NULL,
        UNIQUE (name))""",
    """CREATE TABLE dataset_arrays (
        id INTEGER NOT NULL,
        dataset_id INTEGER NOT NULL,
        name VARCHAR NOT NULL,
        dtype VARCHAR NOT NULL,
        shape JSON NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (id),
        UNIQUE (dataset_id, name),
        FOREIGN KEY(dataset_id) REFERENCES datasets (id) ON DELETE CASCADE)""",
    """CREATE TABLE dataset_strings (
        id INTEGER NOT NULL,
        dataset_id INTEGER NOT NULL,
        name VARCHAR NOT NULL,
        data JSON NOT NULL,
        PRIMARY KEY (id),
        UNIQUE (dataset_id, name),
        FOREIGN KEY(dataset_id) REFERENCES datasets (id) ON DELETE CASCADE)""",
    """CREATE TABLE runs (
        id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        dataset_id INTEGER NOT NULL,
        method VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        config JSON NOT NULL,
        status VARCHAR NOT NULL,
        seed INTEGER NOT NULL,
        device VARCHAR NOT NULL,
        versions JSON NOT NULL,
        fingerprint VARCHAR NOT NULL,
        code_version VARCHAR NOT NULL,
        created_at DATETIME NOT NULL,
        started_at DATETIME,
        finished_at DATETIME,
        error TEXT,
        FOREIGN KEY(dataset_id) REFERENCES datasets (id) ON DELETE CASCADE)""",
    "CREATE INDEX ix_runs_dataset_id ON runs (dataset_id)",
    """CREATE TABLE metrics (
        id INTEGER NOT NULL,
        run_id INTEGER NOT NULL,
        step INTEGER NOT NULL,
        epoch FLOAT NOT NULL,
        name VARCHAR NOT NULL,
        value FLOAT,
        PRIMARY KEY (id),
        FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE)""",
    "CREATE INDEX ix_metrics_run_id ON metrics (run_id)",
    """CREATE TABLE checkpoints (
        id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL,
        step INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        data BLOB NOT NULL,
        created_at DATETIME NOT NULL,
        FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE)""",
    "CREATE INDEX ix_checkpoints_run_id ON checkpoints (run_id)",
    """CREATE TABLE embeddings (
        id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL,
        split VARCHAR NOT NULL,
        epoch INTEGER,
        n INTEGER NOT NULL,
        dim INTEGER NOT NULL,
        dtype VARCHAR NOT NULL,
        ids BLOB NOT NULL,
        vectors BLOB NOT NULL,
        created_at DATETIME NOT NULL,
        FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE)""",
    "CREATE INDEX ix_embeddings_run_id ON embeddings (run_id)",
    """CREATE TABLE projections (
        id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        embedding_id INTEGER NOT NULL,
        kind VARCHAR NOT NULL,
        params JSON NOT NULL,
        coords BLOB NOT NULL,
        created_at DATETIME NOT NULL,
        FOREIGN KEY(embedding_id) REFERENCES embeddings (id) ON DELETE CASCADE)""",
    "CREATE INDEX ix_projections_embedding_id ON projections (embedding_id)",
    """CREATE TABLE artifacts (
        id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        run_id INTEGER NOT NULL,
        name VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        step INTEGER NOT NULL,
        meta JSON NOT NULL,
        data BLOB NOT NULL,
        created_at DATETIME NOT NULL,
        FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE)""",
    "CREATE INDEX ix_artifacts_run_id ON artifacts (run_id)",
)


class MigrationError(Exception):
    """A migration could not bring the file to the current schema."""


def migrate_1_to_2(conn: Connection) -> None:
    """Lineage and labels for runs, and a faster per-run metric index.

    * ``runs.parent_run_id``: the run a resumed or forked run started from
      (NULL when its parent is deleted);
    * ``runs.tags``: a JSON list of strings, '[]' for existing runs;
    * ``ix_metrics_run_id_name``: metric_names / latest_metrics / one curve
      of a run without scanning all its rows.
    """
    conn.execute(text("ALTER TABLE runs ADD COLUMN parent_run_id INTEGER "
                      "REFERENCES runs (id) ON DELETE SET NULL"))
    conn.execute(text("ALTER TABLE runs ADD COLUMN tags JSON DEFAULT '[]' NOT NULL"))
    conn.execute(text("CREATE INDEX ix_metrics_run_id_name ON metrics (run_id, name)"))


def migrate_2_to_3(conn: Connection) -> None:
    """Who trains a run, so a dead run can be told from a live one (issue #11).

    * ``runs.owner_host``, ``runs.owner_pid``, ``runs.owner_start``: the process
      that holds the run (NULL when none does);
    * ``runs.heartbeat_at``: when that process last said it was alive.

    Existing rows get NULLs: a run an older Pretext left "running" has no owner,
    so it now reads "interrupted" and can be resumed.
    """
    conn.execute(text("ALTER TABLE runs ADD COLUMN owner_host VARCHAR"))
    conn.execute(text("ALTER TABLE runs ADD COLUMN owner_pid INTEGER"))
    conn.execute(text("ALTER TABLE runs ADD COLUMN owner_start INTEGER"))
    conn.execute(text("ALTER TABLE runs ADD COLUMN heartbeat_at DATETIME"))


def migrate_3_to_4(conn: Connection) -> None:
    """Images stored encoded, one row per item (issue #13).

    Until schema 3 a folder's images were one decoded array in
    ``dataset_arrays`` ("images"), capped by SQLite's 1 GB per blob. Each image
    of such an array becomes a lossless PNG row of ``dataset_items`` (the same
    pixels back, so runs train identically), and the array row goes. The
    dataset's fingerprint is kept: it names the same data.
    """
    conn.execute(text("""CREATE TABLE dataset_items (
        id INTEGER NOT NULL,
        dataset_id INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        nbytes INTEGER NOT NULL,
        sha256 BLOB NOT NULL,
        path TEXT,
        data BLOB,
        PRIMARY KEY (id),
        UNIQUE (dataset_id, idx),
        FOREIGN KEY(dataset_id) REFERENCES datasets (id) ON DELETE CASCADE)"""))
    import hashlib

    import numpy as np

    from ..data.encoded import encode_arrays
    rows = conn.execute(text("SELECT id, dataset_id, dtype, shape FROM dataset_arrays "
                             "WHERE name = 'images'")).all()
    for array_id, dataset_id, dtype, shape in rows:
        shape = json.loads(shape) if isinstance(shape, str) else shape
        if dtype != "uint8" or len(shape) != 4 or shape[3] not in (1, 3):
            raise MigrationError(f"dataset {dataset_id}: stored images of dtype {dtype} shape {shape}")
        blob = conn.execute(text("SELECT data FROM dataset_arrays WHERE id = :i"), {"i": array_id}).scalar()
        images = np.frombuffer(blob, dtype=np.uint8).reshape(shape)
        for start in range(0, len(images), 1024):
            encoded = encode_arrays(images[start:start + 1024])
            conn.execute(text("INSERT INTO dataset_items (dataset_id, idx, nbytes, sha256, data) "
                              "VALUES (:d, :i, :n, :h, :b)"),
                         [{"d": dataset_id, "i": start + k, "n": len(b), "h": hashlib.sha256(b).digest(), "b": b}
                          for k, b in enumerate(encoded)])
        conn.execute(text("DELETE FROM dataset_arrays WHERE id = :i"), {"i": array_id})
        del blob, images


# MIGRATIONS[v] takes a file from version v to v + 1.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: migrate_1_to_2, 2: migrate_2_to_3, 3: migrate_3_to_4}


def read_version(conn: Connection) -> int:
    value = conn.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar()
    return int(value)


def upgrade(conn: Connection) -> tuple[int, int]:
    """Bring the file behind ``conn`` to ``SCHEMA_VERSION``, all or nothing.

    ``conn`` must not be in a transaction: foreign-key enforcement can only be
    switched off outside one. Returns (version found, version now).
    """
    raw = conn.connection.dbapi_connection  # pragma below must bypass autobegin
    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        with conn.begin():
            # Read inside the (write-locked) transaction: another process may
            # have upgraded the file since we looked.
            found = version = read_version(conn)
            if version > SCHEMA_VERSION:
                raise MigrationError(f"schema version {version} is newer than this Pretext's {SCHEMA_VERSION}")
            while version < SCHEMA_VERSION:
                step = MIGRATIONS.get(version)
                if step is None:
                    raise MigrationError(f"no migration from schema version {version}")
                step(conn)
                version += 1
            if version != found:
                # Files from before application_id was set get stamped too.
                conn.execute(text(f"PRAGMA application_id = {APPLICATION_ID}"))
                conn.execute(text("UPDATE meta SET value = :v WHERE key = 'schema_version'"),
                             {"v": str(version)})
                broken = conn.execute(text("PRAGMA foreign_key_check")).fetchall()
                if broken:
                    raise MigrationError(f"foreign keys broken after migration: {broken[:5]}")
        return found, version
    finally:
        raw.execute("PRAGMA foreign_keys = ON")
