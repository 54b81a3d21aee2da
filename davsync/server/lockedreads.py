"""Reads of a SQLite connection that the server's threads share, each under its owner's lock:
the hash index and the version store read this way, one query a call."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any


class LockedReads:
    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db, self._lock = db, lock

    def all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """The first row, or None."""
        with self._lock:
            return self._db.execute(sql, args).fetchone()
