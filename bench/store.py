"""Benchmark the project store against plain references measured in the same run.

    .venv/bin/python bench/store.py [--n 100000] [--dim 128] [--metrics 100000]

Embeddings are compared with ``np.save``/``np.load`` of the same arrays,
metric rows with raw ``sqlite3`` ``executemany`` / ``fetchall`` on an
equivalent table (same WAL and synchronous settings, one transaction).
Every round writes a fresh file; each timing is the best of three rounds,
the stable number on a shared machine. Ratios are ours / reference: 1.0x
would mean the store costs nothing over the bare format. The store's
embedding write includes SQLite's WAL checkpoint and its fsync, which a bare
np.save does not do, hence the extra "np.save + fsync" line.
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.store import Project  # noqa: E402

ROUNDS = 3


class Clock:
    """Keeps the best time of each named step across rounds."""

    def __init__(self) -> None:
        self.best: dict[str, float] = {}

    def time(self, name: str, fn):
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        self.best[name] = min(elapsed, self.best.get(name, float("inf")))
        return result


def store_round(folder: Path, clock: Clock, ids: np.ndarray, vectors: np.ndarray, rows: list) -> float:
    """One round on a new project file; returns the file's size in MB."""
    path = folder / "bench.pretext"
    with Project.create(path) as p:
        ds = p.add_dataset("bench", "synthetic", {}, len(ids), "")
        run = p.create_run(ds, "simclr", {}, 0)
        eid = clock.time("embeddings write", lambda: p.save_embeddings(run, "train", ids, vectors))
        got_ids, got = clock.time("embeddings read", lambda: p.load_embeddings(eid))
        assert np.array_equal(got, vectors) and np.array_equal(got_ids, ids)
        clock.time("metrics write", lambda: p.log_metrics(run, rows))
        got_rows = clock.time("metrics read", lambda: p.metrics(run))
        assert len(got_rows) == len(rows) and got_rows[-1].value == rows[-1][3]
    size = path.stat().st_size / 1e6
    path.unlink()
    return size


def reference_round(folder: Path, clock: Clock, ids: np.ndarray, vectors: np.ndarray, rows: list) -> None:
    def np_write() -> None:
        np.save(folder / "ids.npy", ids)
        np.save(folder / "vectors.npy", vectors)

    def np_write_durable() -> None:  # what the store promises: on disk at commit
        for name, array in (("ids_d.npy", ids), ("vectors_d.npy", vectors)):
            with open(folder / name, "wb") as f:
                np.save(f, array)
                f.flush()
                os.fsync(f.fileno())

    clock.time("np.save", np_write)
    clock.time("np.save + fsync", np_write_durable)
    clock.time("np.load", lambda: (np.load(folder / "ids.npy"), np.load(folder / "vectors.npy")))

    path = folder / "raw.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE metrics (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, step INTEGER NOT NULL,"
                 " epoch FLOAT NOT NULL, name VARCHAR NOT NULL, value FLOAT)")
    conn.execute("CREATE INDEX ix_run ON metrics (run_id)")
    conn.execute("CREATE INDEX ix_run_name ON metrics (run_id, name)")

    def raw_write() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO metrics (run_id, step, epoch, name, value) VALUES (1, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")

    clock.time("sqlite3 executemany", raw_write)
    clock.time("sqlite3 fetchall", lambda: conn.execute(
        "SELECT step, epoch, name, value, id FROM metrics WHERE run_id = 1 AND id > 0 ORDER BY id").fetchall())
    conn.close()
    path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="embedding rows")
    parser.add_argument("--dim", type=int, default=128, help="embedding width")
    parser.add_argument("--metrics", type=int, default=100_000, help="metric rows")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    ids = np.arange(args.n, dtype=np.int64)
    vectors = rng.standard_normal((args.n, args.dim), dtype=np.float32)
    names = ["loss", "lr", "knn_acc", "grad_norm"]
    rows = [(i, i / 1000, names[i % 4], float(i)) for i in range(args.metrics)]

    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(ROUNDS):  # interleaved, so both sides see the same machine load
            size = store_round(Path(tmp), clock, ids, vectors, rows)
            reference_round(Path(tmp), clock, ids, vectors, rows)

    b = clock.best
    emb = f"embeddings {args.n}x{args.dim}"
    met = f"metrics {args.metrics} rows"
    for what, ours, ref in [(f"{emb} write", "embeddings write", "np.save"),
                            (f"{emb} read", "embeddings read", "np.load"),
                            (f"{met} write", "metrics write", "sqlite3 executemany"),
                            (f"{met} read", "metrics read", "sqlite3 fetchall")]:
        print(f"store: {what} {b[ours]:.3f} s ({ref} {b[ref]:.3f} s, ratio {b[ours] / b[ref]:.1f}x)")
    print(f"store: {emb} write {b['embeddings write']:.3f} s (np.save + fsync {b['np.save + fsync']:.3f} s, "
          f"ratio {b['embeddings write'] / b['np.save + fsync']:.1f}x)")
    raw_mb = (vectors.nbytes + ids.nbytes) / 1e6
    print(f"store: project file {size:.1f} MB ({emb} + {met}; the embeddings alone are {raw_mb:.1f} MB raw)")


if __name__ == "__main__":
    main()
