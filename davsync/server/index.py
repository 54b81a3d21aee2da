"""The server's persistent hash index and change journal.

One SQLite row per path under the sync root. A row's MD5 is trusted only while
the file's identity (size, mtime_ns, ctime_ns, inode, device) is unchanged:
ctime catches a same-size edit whose mtime was put back, so a stale hash is
never served. Every change to a row takes the next sequence number, which is
what sync tokens count (RFC 6578); deleted paths stay as tombstones so a client
holding an older token learns about the removal.

Sync tokens are URIs, `urn:davsync:sync:<instance>:<seq>`. The instance changes when the
index is created anew, so tokens from a previous index are refused; tokens older than the
last compaction are refused too (the client then falls back to a full listing).
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..scan import md5_of_file
from ..sqlpaths import at_or_below, like_below
from .lockedreads import LockedReads

TOKEN_RE = re.compile(r"^urn:davsync:sync:([0-9a-f]{32}):(\d{1,18})$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    path     TEXT PRIMARY KEY,
    parent   TEXT NOT NULL,
    is_dir   INTEGER NOT NULL,
    size     INTEGER,
    mtime_ns INTEGER,
    ctime_ns INTEGER,
    ino      INTEGER,
    dev      INTEGER,
    md5      TEXT,
    seq      INTEGER NOT NULL,
    deleted  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS entries_parent ON entries(parent);
CREATE INDEX IF NOT EXISTS entries_seq ON entries(seq);
"""


@dataclass(frozen=True, slots=True)
class Identity:
    """What must stay equal for a stored hash to still describe the file."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    is_dir: bool
    deleted: bool
    seq: int


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


class HashIndex:
    """Thread-safe; one connection guarded by a lock (SQLite serialises writers anyway)."""

    def __init__(self, db_path: Path) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._hash_locks: dict[str, threading.Lock] = {}
        self._db = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the 201 it stands behind
        self._db.executescript(SCHEMA)
        self._reads = LockedReads(self._db, self._lock)
        self.files_hashed = 0
        self.bytes_hashed = 0
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='instance'").fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO meta VALUES ('instance', ?), ('min_seq', '0')",
                    (uuid.uuid4().hex,),
                )
            self.instance: str = self._meta("instance")
            self._seq: int = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()[0]

    def _meta(self, key: str) -> str:
        return self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0]

    @property
    def share_id(self) -> str | None:
        """The identity of the share this index describes (its root's marker), once known."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='share'").fetchone()
            return None if row is None else str(row[0])

    def claim(self, share_id: str) -> None:
        """Record which share this index describes (the first serve of a root)."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('share', ?)", (share_id,))

    def start_over(self, share_id: str) -> None:
        """Another share is served from this state dir: its rows describe nothing here. A new
        instance makes every earlier sync token unknown, so clients treat this as a new server
        (a union that deletes nothing) rather than reading the difference as deletions."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("DELETE FROM entries")
            self._db.execute("UPDATE meta SET value=? WHERE key='instance'", (uuid.uuid4().hex,))
            self._db.execute("UPDATE meta SET value='0' WHERE key='min_seq'")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('share', ?)", (share_id,))
            self._db.execute("COMMIT")
            self.instance = self._meta("instance")
            self._seq = 0

    def has_files(self) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM entries WHERE deleted=0 LIMIT 1").fetchone() is not None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- reading -----------------------------------------------------------

    @property
    def current_seq(self) -> int:
        with self._lock:
            return self._seq

    @property
    def min_valid_seq(self) -> int:
        with self._lock:
            return int(self._meta("min_seq"))

    def sync_token(self, seq: int | None = None) -> str:
        """The RFC 6578 sync token for a seq (by default the current one)."""
        return f"urn:davsync:sync:{self.instance}:{self.current_seq if seq is None else seq}"

    def token_seq(self, token: str) -> int | None:
        """The seq a sync token stands for (-1 for the empty initial token).

        None when it is not one of this index's tokens, or older than the last compaction.
        """
        if token == "":
            return -1
        m = TOKEN_RE.match(token)
        if not m or m.group(1) != self.instance:
            return None
        seq = int(m.group(2))
        return seq if self.min_valid_seq <= seq <= self.current_seq else None

    def fresh_md5(self, path: str, st: os.stat_result) -> str | None:
        """The stored MD5 if the file still has the identity it was hashed with."""
        row = self._reads.one(
            "SELECT size, mtime_ns, ctime_ns, ino, dev, md5 FROM entries "
            "WHERE path=? AND deleted=0 AND is_dir=0",
            (path,),
        )
        if row is None or row[5] is None:
            return None
        return row[5] if Identity(*row[:5]) == Identity.of(st) else None

    def identities_in(self, parent: str) -> dict[str, tuple[Identity, str | None]]:
        """Stored identity and MD5 of each live file directly in a folder."""
        return {path: (Identity(*row[:5]), row[5]) for path, row in self.md5_rows_in(parent).items()}

    def md5_rows_in(self, parent: str) -> dict[str, tuple[int, int, int, int, int, str | None]]:
        """identities_in as plain tuples (size, mtime_ns, ctime_ns, ino, dev, md5): what a
        listing of thousands of files compares with each stat, without an object per row."""
        rows = self._reads.all(
            "SELECT path, size, mtime_ns, ctime_ns, ino, dev, md5 FROM entries "
            "WHERE parent=? AND deleted=0 AND is_dir=0",
            (parent,),
        )
        return {r[0]: r[1:] for r in rows}

    def known_under(self, path: str) -> dict[str, tuple[Identity, str | None]]:
        """Stored identity and MD5 of each live file at or below a path (one query, for a whole folder)."""
        where, args = at_or_below("path", path)
        rows = self._reads.all(
            "SELECT path, size, mtime_ns, ctime_ns, ino, dev, md5 FROM entries "
            f"WHERE deleted=0 AND is_dir=0 AND {where}",
            args,
        )
        return {r[0]: (Identity(*r[1:6]), r[6]) for r in rows}

    def is_known_dir(self, path: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT is_dir FROM entries WHERE path=? AND deleted=0", (path,)).fetchone()
        return bool(row and row[0])

    def count_hashed(self, files: int, nbytes: int) -> None:
        with self._lock:
            self.files_hashed += files
            self.bytes_hashed += nbytes

    def children(self, parent: str) -> dict[str, bool]:
        """Live paths directly in a folder, mapped to is_dir."""
        rows = self._reads.all(
            "SELECT path, is_dir FROM entries WHERE parent=? AND deleted=0 AND path != ''", (parent,)
        )
        return {p: bool(d) for p, d in rows}

    def live_paths(self) -> dict[str, bool]:
        """Every path the index believes exists, mapped to is_dir."""
        with self._lock:
            rows = self._db.execute("SELECT path, is_dir FROM entries WHERE deleted=0").fetchall()
        return {p: bool(d) for p, d in rows}

    def changes_since(
        self, seq: int, limit: int | None = None, *, under: str = "", children_only: bool = False,
        live_only: bool = False,
    ) -> list[Change]:
        """Changes after seq, oldest first, below `under` (not itself), at most `limit` of them.

        The scope is applied in the query, so a limited REPORT reads only the rows it answers
        with. children_only keeps direct members (sync-level 1); live_only leaves out
        tombstones (an initial sync lists what exists).
        """
        scope, args = _change_scope(under, children_only=children_only, live_only=live_only)
        sql = f"SELECT path, is_dir, deleted, seq FROM entries WHERE seq>? AND {scope} ORDER BY seq"
        args.insert(0, seq)
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [Change(p, bool(d), bool(x), s) for p, d, x, s in rows]

    def change_rows(
        self, after: int, upto: int, limit: int, *, under: str = "", live_only: bool = False
    ) -> list[tuple[str, int, int, int, int | None, int | None, int | None, int | None, int | None, str | None]]:
        """One page of changes with seq in (after, upto], oldest first, below `under` (sync-level
        infinite), each with its stored identity and MD5: (path, is_dir, deleted, seq, size,
        mtime_ns, ctime_ns, ino, dev, md5). A REPORT pages through these so a listing of 100,000
        files never sits in memory, and needs no second query per file for its MD5."""
        scope, args = _change_scope(under, live_only=live_only)
        sql = ("SELECT path, is_dir, deleted, seq, size, mtime_ns, ctime_ns, ino, dev, md5 FROM entries "
               f"WHERE seq>? AND seq<=? AND {scope} ORDER BY seq LIMIT ?")  # fmt: skip
        args = [after, upto, *args, limit]
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- hashing -----------------------------------------------------------

    def md5_for(self, path: str, file_path: str, st: os.stat_result) -> str | None:
        """The file's MD5, hashing it when the index has none that is fresh.

        Returns None when the file keeps changing while being read, rather than
        serve a hash of content that no longer exists.
        """
        md5 = self.fresh_md5(path, st)
        if md5 is not None:
            return md5
        with self._lock:
            path_lock = self._hash_locks.setdefault(path, threading.Lock())
        with path_lock:
            try:
                for _attempt in range(3):
                    before = os.stat(file_path)
                    md5 = self.fresh_md5(path, before)
                    if md5 is not None:
                        return md5
                    md5 = md5_of_file(file_path)
                    after = os.stat(file_path)
                    with self._lock:
                        self.files_hashed += 1
                        self.bytes_hashed += after.st_size
                    if Identity.of(before) == Identity.of(after):
                        self.record_file(path, after, md5)
                        return md5
                return None
            except FileNotFoundError:
                return None
            finally:
                with self._lock:
                    self._hash_locks.pop(path, None)

    # --- writing -----------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def record_file(self, path: str, st: os.stat_result, md5: str | None) -> None:
        """Store a file's identity and hash; a new seq only if its content identity changed."""
        ident = Identity.of(st)
        with self._lock:
            row = self._db.execute(
                "SELECT size, mtime_ns, ctime_ns, ino, dev, md5, deleted, is_dir FROM entries WHERE path=?",
                (path,),
            ).fetchone()
            unchanged_content = (
                row is not None
                and not row[6]
                and not row[7]
                and row[5] is not None
                and row[5] == md5
                and row[0] == ident.size
                and row[1] == ident.mtime_ns
            )
            if unchanged_content:
                # Only ctime/inode moved (e.g. chmod, or our own utime): no client-visible change.
                self._db.execute(
                    "UPDATE entries SET ctime_ns=?, ino=?, dev=? WHERE path=?",
                    (ident.ctime_ns, ident.ino, ident.dev, path),
                )
                return
            self._upsert(path, False, ident, md5)

    def record_many(self, items: list[tuple[str, os.stat_result, str]]) -> None:
        """record_file for a batch, in one transaction (what a scan of thousands of files needs)."""
        if not items:
            return
        with self._lock:
            existing: dict[str, tuple] = {}
            paths = [p for p, _, _ in items]
            for i in range(0, len(paths), 500):
                chunk = paths[i : i + 500]
                marks = ",".join("?" * len(chunk))
                q = f"SELECT path, size, mtime_ns, md5, deleted, is_dir FROM entries WHERE path IN ({marks})"
                for row in self._db.execute(q, chunk):
                    existing[row[0]] = row[1:]
            own = not self._db.in_transaction
            if own:
                self._db.execute("BEGIN")
            touch, upsert = [], []
            for path, st, md5 in items:
                ident = Identity.of(st)
                row = existing.get(path)
                if (
                    row is not None
                    and not row[3]
                    and not row[4]
                    and row[2] == md5
                    and row[:2] == (ident.size, ident.mtime_ns)
                ):
                    touch.append((ident.ctime_ns, ident.ino, ident.dev, path))
                else:
                    upsert.append((path, parent_of(path), 0, ident.size, ident.mtime_ns, ident.ctime_ns, ident.ino,
                                   ident.dev, md5, self._next_seq()))  # fmt: skip
            self._db.executemany("UPDATE entries SET ctime_ns=?, ino=?, dev=? WHERE path=?", touch)
            self._db.executemany(_UPSERT, upsert)
            if own:
                self._db.execute("COMMIT")

    def record_dir(self, path: str) -> None:
        with self._lock:
            row = self._db.execute("SELECT deleted, is_dir FROM entries WHERE path=?", (path,)).fetchone()
            if row is not None and not row[0] and row[1]:
                return
            self._upsert(path, True, None, None)

    def _upsert(self, path: str, is_dir: bool, ident: Identity | None, md5: str | None) -> None:
        values = (
            (ident.size, ident.mtime_ns, ident.ctime_ns, ident.ino, ident.dev) if ident else (None,) * 5
        )
        self._db.execute(_UPSERT, (path, parent_of(path), int(is_dir), *values, md5, self._next_seq()))

    def forget(self, path: str) -> None:
        """Mark a path and everything below it deleted (tombstones keep tokens honest)."""
        with self._lock:
            where, args = at_or_below("path", path)
            rows = self._db.execute(f"SELECT path FROM entries WHERE deleted=0 AND {where}", args).fetchall()
            if not rows:
                return
            own_transaction = not self._db.in_transaction
            if own_transaction:
                self._db.execute("BEGIN")
            for (p,) in rows:
                self._db.execute(
                    "UPDATE entries SET deleted=1, md5=NULL, seq=? WHERE path=?", (self._next_seq(), p)
                )
            if own_transaction:
                self._db.execute("COMMIT")

    def compact(self, keep_after_seq: int) -> None:
        """Drop tombstones at or before a seq; tokens older than that become invalid."""
        with self._lock:
            self._db.execute("DELETE FROM entries WHERE deleted=1 AND seq<=?", (keep_after_seq,))
            self._db.execute(
                "UPDATE meta SET value=? WHERE key='min_seq'", (str(max(keep_after_seq, self.min_valid_seq)),)
            )

    def compact_tombstones(self, keep: int) -> None:
        """Keep at most `keep` tombstones; older tokens then get valid-sync-token errors."""
        with self._lock:
            count = self._db.execute("SELECT COUNT(*) FROM entries WHERE deleted=1").fetchone()[0]
            if count <= keep:
                return
            threshold = self._db.execute(
                "SELECT seq FROM entries WHERE deleted=1 ORDER BY seq LIMIT 1 OFFSET ?", (count - keep - 1,)
            ).fetchone()[0]
            self.compact(threshold)

    def batch(self) -> _Batch:
        """Group many writes into one transaction (scans touch thousands of rows)."""
        return _Batch(self)


class _Batch:
    def __init__(self, index: HashIndex) -> None:
        self._index = index

    def __enter__(self) -> HashIndex:
        self._index._lock.acquire()
        self._index._db.execute("BEGIN")
        return self._index

    def __exit__(self, *exc: object) -> None:
        try:
            self._index._db.execute("COMMIT")
        finally:
            self._index._lock.release()


def _change_scope(under: str, *, children_only: bool = False, live_only: bool = False) -> tuple[str, list[object]]:
    """The WHERE terms of a change list's scope: below `under` (not itself), its direct members
    only (sync-level 1), or live rows only (an initial listing)."""
    terms: list[str] = ["path!=?"]
    args: list[object] = [under]
    if children_only:
        terms.append("parent=?")
        args.append(under)
    elif under:
        terms.append("path LIKE ? ESCAPE '\\'")
        args.append(like_below(under))
    if live_only:
        terms.append("deleted=0")
    return " AND ".join(terms), args


_UPSERT = (
    "INSERT INTO entries (path, parent, is_dir, size, mtime_ns, ctime_ns, ino, dev, md5, seq, deleted) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0) "
    "ON CONFLICT(path) DO UPDATE SET parent=excluded.parent, is_dir=excluded.is_dir, "
    "size=excluded.size, mtime_ns=excluded.mtime_ns, ctime_ns=excluded.ctime_ns, "
    "ino=excluded.ino, dev=excluded.dev, md5=excluded.md5, seq=excluded.seq, deleted=0"
)
