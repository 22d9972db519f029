"""Reading a dataset's encoded items (``dataset_items``) by index, from any process.

A training run reads random batches of items while the app or another
process uses the same file, and DataLoader worker processes read them too.
:class:`StoredItems` therefore holds no connection between reads: each read
opens a plain ``sqlite3`` connection (read-only in effect), fetches a batch's
rows by index in one query, and closes it. Opening costs a fraction of a
millisecond, against tens of milliseconds to decode the batch, and it avoids
two hazards found in testing: a connection carried across ``fork()`` into a
worker, and a connection left open while its project was closed and reopened
(other processes' writes then left a malformed file behind).
"""
from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Sequence

__all__ = ["StoredItems"]

# SQLite's default limit on host parameters is 32,766; stay well below it.
_PER_QUERY = 4096


class StoredItems:
    """The stored bytes of dataset ``dataset_id``'s items 0..n-1 (an ItemSource)."""

    def __init__(self, path: Path, uri_query: str, dataset_id: int, n: int):
        self.path = Path(path)
        self.uri_query = uri_query
        self.dataset_id = int(dataset_id)
        self.n = int(n)
        self._hashes: list[bytes] | None = None

    def __len__(self) -> int:
        return self.n

    def _connect(self) -> sqlite3.Connection:
        uri = f"{self.path.resolve().as_uri()}?{self.uri_query}"
        conn = sqlite3.connect(uri, uri=True)
        conn.execute("PRAGMA query_only = ON")
        conn.execute("PRAGMA busy_timeout = 10000")
        return conn

    def read(self, index: Sequence[int]) -> list[bytes]:
        wanted = [int(i) for i in index]
        found: dict[int, bytes] = {}
        unique = sorted(set(wanted))
        with closing(self._connect()) as conn:
            for start in range(0, len(unique), _PER_QUERY):
                part = unique[start:start + _PER_QUERY]
                marks = ",".join("?" * len(part))
                found.update(conn.execute(
                    f"SELECT idx, data FROM dataset_items WHERE dataset_id = ? AND idx IN ({marks})",
                    [self.dataset_id, *part]).fetchall())
        missing = [i for i in unique if found.get(i) is None]
        if missing:
            raise ValueError(f"{self.path}: dataset {self.dataset_id} has no stored bytes for item "
                             f"{missing[0]} ({len(missing)} missing); the file may be damaged")
        return [found[i] for i in wanted]

    def sha256(self, index: Sequence[int]) -> list[bytes]:
        if self._hashes is None:
            with closing(self._connect()) as conn:
                self._hashes = [h for (h,) in conn.execute(
                    "SELECT sha256 FROM dataset_items WHERE dataset_id = ? ORDER BY idx", (self.dataset_id,))]
        return [self._hashes[int(i)] for i in index]
