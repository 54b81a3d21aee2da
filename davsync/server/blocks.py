"""Block hashes of big files, for delta transfers: SHA-256 per block, Syncthing's block sizes.

Every upload computes them in the same read as the file's MD5 (FileDigest); a file changed
on the server's own disk gets them on the first request, again in one read with its MD5.
They live in `<state>/blocks.sqlite`, keyed by path and trusted only while the file's
identity (size, mtime, ctime, inode, device) is the one they were computed for, as the MD5
index is. A client reads them with `GET <file>?blocks` (a davsync extension advertised in
OPTIONS as `X-Davsync-Blocks`; a plain GET is unchanged): a JSON object with the file's
size, etag, md5, block_size and the list of block hashes in hex. `?blocks=stored` answers
only a list already kept (404 otherwise), so asking costs the server no read.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wsgidav.dav_error import DAVError

from ..checksums import block_size_for as block_size_for  # (the rule is shared with the client)
from .index import Identity
from .middleware import Middleware
from .names import etag_of, is_internal_path, rel_of
from .wsgitypes import StartResponse

HEADER = "X-Davsync-Blocks"
QUERY = "blocks"
STORED = "blocks=stored"  # only a list already kept: nothing is read to answer it
ALGORITHM = "sha256"
MIN_SIZE = 1024 * 1024  # smaller files have no block list: sending them whole costs as little
READ = 1024 * 1024
_DIGEST = hashlib.sha256().digest_size


class FileDigest:
    """A file's MD5 and, for a file of known size >= MIN_SIZE, its block hashes: one pass."""

    def __init__(self, size: int | None) -> None:
        self._md5 = hashlib.md5()
        self.size = size
        self.block_size = block_size_for(size) if size is not None and size >= MIN_SIZE else 0
        self._block = hashlib.sha256()
        self._in_block = 0
        self._hashes: list[bytes] = []
        self.length = 0

    def update(self, data: bytes | memoryview) -> None:
        self._md5.update(data)
        self.length += len(data)
        if not self.block_size:
            return
        view = memoryview(data)
        while view:
            take = min(len(view), self.block_size - self._in_block)
            self._block.update(view[:take])
            self._in_block += take
            view = view[take:]
            if self._in_block == self.block_size:
                self._hashes.append(self._block.digest())
                self._block = hashlib.sha256()
                self._in_block = 0

    def update_known(self, data: bytes, hashes: bytes) -> bool:
        """Take whole blocks whose SHA-256s are known already (a delta push copying the current
        file's blocks: server/deltapush.py), hashing only their MD5. False, and nothing taken,
        unless `data` starts at a block boundary and is exactly the blocks `hashes` names."""
        bs = self.block_size
        if not bs or self._in_block or len(data) % bs or len(hashes) != len(data) // bs * _DIGEST:
            return False
        self._md5.update(data)
        self.length += len(data)
        self._hashes.extend(hashes[i : i + _DIGEST] for i in range(0, len(hashes), _DIGEST))
        return True

    def hexdigest(self) -> str:
        return self._md5.hexdigest()

    def blocks(self) -> bytes | None:
        """The block hashes, concatenated; None without a block size or when the data read was
        not the size announced."""
        if not self.block_size or self.length != self.size:
            return None
        tail = [self._block.copy().digest()] if self._in_block else []
        return b"".join(self._hashes + tail)


def digest_file(file_path: str | os.PathLike[str], size: int) -> FileDigest:
    digest = FileDigest(size)
    with open(file_path, "rb", buffering=0) as f:
        while chunk := f.read(READ):
            digest.update(chunk)
    return digest


class BlockStore:
    """path -> (identity, block size, hashes), in its own SQLite file in the state dir."""

    def __init__(self, db_path: Path) -> None:
        self._db = sqlite3.connect(str(db_path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the 201 it stands behind
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS blocks (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
            "ctime_ns INTEGER, ino INTEGER, dev INTEGER, block_size INTEGER, hashes BLOB)"
        )
        self._lock = threading.Lock()

    def get(self, rel: str, st: os.stat_result) -> tuple[int, bytes] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT size, mtime_ns, ctime_ns, ino, dev, block_size, hashes FROM blocks WHERE path=?", (rel,)
            ).fetchone()
        if row is None or Identity(*row[:5]) != Identity.of(st):
            return None
        return int(row[5]), bytes(row[6])

    def put(self, rel: str, st: os.stat_result, block_size: int, hashes: bytes) -> None:
        ident = Identity.of(st)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (rel, ident.size, ident.mtime_ns, ident.ctime_ns, ident.ino, ident.dev, block_size, hashes),
            )

    def record(self, rel: str, st: os.stat_result, digest: FileDigest) -> None:
        hashes = digest.blocks()
        if hashes is not None and st.st_size == digest.length:
            self.put(rel, st, digest.block_size, hashes)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def blocks_of(provider: Any, path: str, *, stored_only: bool = False) -> dict[str, Any]:
    """The block list of the file at `path` as a client reads it, hashing it (with its MD5)
    when the stored one is not for the file as it is now (`stored_only`: 404 instead)."""
    file_path = provider.file_path(path)
    rel = rel_of(path)
    store: BlockStore = provider.blocks
    for _attempt in range(3):
        try:
            before = os.stat(file_path, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            raise DAVError(404, "No such file.") from None
        if not stat.S_ISREG(before.st_mode):
            raise DAVError(409, "Block lists are kept for files only.")
        if before.st_size < MIN_SIZE:
            raise DAVError(404, f"Files under {MIN_SIZE} bytes have no block list; get the file itself.")
        known = store.get(rel, before)
        md5 = provider.index.fresh_md5(rel, before)
        if known is not None and md5 is not None:
            return _answer(before, md5, *known)
        if stored_only:
            raise DAVError(404, "No block list is kept for this version yet; ask ?blocks to have it made.")
        digest = digest_file(file_path, before.st_size)
        after = os.stat(file_path, follow_symlinks=False)
        if Identity.of(after) == Identity.of(before):
            provider.index.record_file(rel, after, digest.hexdigest())
            store.record(rel, after, digest)
            hashes = digest.blocks()
            assert hashes is not None
            return _answer(after, digest.hexdigest(), digest.block_size, hashes)
    raise DAVError(503, "The file keeps changing; ask again later.")


def _answer(st: os.stat_result, md5: str, block_size: int, hashes: bytes) -> dict[str, Any]:
    return {
        "size": st.st_size, "etag": etag_of(st), "md5": md5, "algorithm": ALGORITHM, "block_size": block_size,
        "blocks": [hashes[i : i + _DIGEST].hex() for i in range(0, len(hashes), _DIGEST)],
    }  # fmt: skip


class BlocksMiddleware(Middleware):
    """In WsgiDAV's stack after authentication: answers `GET <file>?blocks` and advertises it."""

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        provider = environ.get("wsgidav.provider")
        if provider is None or getattr(provider, "blocks", None) is None or getattr(provider, "mode", None):
            return self.app(environ, start_response)
        method = environ["REQUEST_METHOD"]
        if method == "GET" and environ.get("QUERY_STRING") in (QUERY, STORED):
            path = environ["PATH_INFO"]
            if is_internal_path(path):
                raise DAVError(404, "No such file.")
            found = blocks_of(provider, path, stored_only=environ["QUERY_STRING"] == STORED)
            body = json.dumps(found, separators=(",", ":")).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                      ("Cache-Control", "no-store")])  # fmt: skip
            return [body]
        if method == "OPTIONS" and environ.get("PATH_INFO") != "*":

            def start(status: str, headers: list, exc_info: Any = None) -> Any:
                if status.startswith("200"):
                    headers = [*headers, (HEADER, f"algorithm={ALGORITHM}; min-size={MIN_SIZE}")]
                return start_response(status, headers, exc_info)

            return self.app(environ, start)
        return self.app(environ, start_response)
