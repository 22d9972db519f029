"""Reading a dataset's encoded items (``dataset_items``) by index, from any process.

A training run reads random batches of items while the app or another
process uses the same file, and DataLoader worker processes read them too.
:class:`StoredItems` therefore holds no connection when it is created or
copied into a worker: each process opens its own plain ``sqlite3`` connection
(read-only) on first use. One query fetches a batch's rows by index.
"""
from __future__ import annotations

import os
import sqlite3
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
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._hashes: list[bytes] | None = None

    def __getstate__(self) -> dict:
        # A connection cannot cross into another process; the copy opens its own.
        return {**self.__dict__, "_conn": None, "_pid": -1}

    def __len__(self) -> int:
        return self.n

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            uri = f"{self.path.resolve().as_uri()}?{self.uri_query}"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._conn.execute("PRAGMA query_only = ON")
            self._conn.execute("PRAGMA busy_timeout = 10000")
            self._pid = os.getpid()
        return self._conn

    def read(self, index: Sequence[int]) -> list[bytes]:
        wanted = [int(i) for i in index]
        found: dict[int, bytes] = {}
        conn = self._connection()
        unique = sorted(set(wanted))
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
            rows = self._connection().execute(
                "SELECT sha256 FROM dataset_items WHERE dataset_id = ? ORDER BY idx", (self.dataset_id,))
            self._hashes = [h for (h,) in rows]
        return [self._hashes[int(i)] for i in index]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
