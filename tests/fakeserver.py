"""An in-memory server for the executor (davsync/client/sides.py's ServerSide), for speed: a model
of thousands of sync runs needs no HTTP. It keeps a davsync share's promises: every write of a
file gives it a new ETag; PUT honours If-Match / If-None-Match and refuses a body whose MD5 is
not the one declared; DELETE and MOVE honour If-Match; a MOVE never overwrites (Overwrite: F);
a missing parent is a 409; a write that lost a race is a 412 (PreconditionFailed). A `before`
hook runs before each request, so a "phone" can win a race at any request.

The end-to-end tests (tests/test_sync_model.py and the others) run the real server.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from davsync.client.hooks import TransferHooks
from davsync.client.journal import Journal
from davsync.client.plan import RemoteEntry
from davsync.client.refusals import NotFound, ParentMissing, PreconditionFailed, SourceChanged
from davsync.client.remote import FolderListing, PutRequest, Uploaded
from davsync.client.transfer import ChangedOnServer, Downloaded

_etags = itertools.count(1)


def md5_of(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclass(frozen=True)
class Stored:
    data: bytes
    etag: str
    mtime: float

    @property
    def md5(self) -> str:
        return md5_of(self.data)


class FakeServer:
    def __init__(self) -> None:
        self.files: dict[str, Stored] = {}
        self.folders: set[str] = {""}
        self.versions: list[bytes] = []  # overwritten and deleted files, kept (as davsync serve does)
        self.before: Callable[[str, str], None] = lambda method, path: None
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    # -- what anyone (a phone, the test) does directly --

    def write(self, path: str, data: bytes, mtime: float = 1_000_000.0) -> None:
        self._mkdirs(_parent(path))
        self._replace(path, Stored(data, f"e{next(_etags)}", mtime))

    def remove(self, path: str) -> None:
        for p in [p for p in self.files if p == path or p.startswith(path + "/")]:
            self.versions.append(self.files.pop(p).data)
        self.folders -= {f for f in self.folders if f == path or f.startswith(path + "/")}

    def mkdirs(self, path: str) -> None:
        self._mkdirs(path)

    def is_free(self, path: str) -> bool:
        """Can a file be written here (no folder at the path, no file where a parent must be)?"""
        parts = path.split("/")
        return path not in self.folders and not any("/".join(parts[:i]) in self.files for i in range(1, len(parts)))

    def entry(self, path: str) -> RemoteEntry | None:
        if path in self.folders:
            return RemoteEntry(path, True, href=path)
        f = self.files.get(path)
        return None if f is None else RemoteEntry(path, False, len(f.data), f.mtime, f.etag, f.md5, href=path)

    def listing(self) -> dict[str, RemoteEntry]:
        """A complete listing (a PROPFIND of everything), the root included."""
        out = {p: e for p in sorted(self.folders | set(self.files)) if (e := self.entry(p)) is not None}
        return out

    def contents(self) -> dict[str, bytes]:
        return {p: f.data for p, f in self.files.items()}

    # -- ServerSide --

    def _request(self, method: str, path: str) -> None:
        self.requests.append((method, path))
        self.before(method, path)

    def server_name(self, entry: RemoteEntry) -> str | None:
        return None

    def mkcol(self, path: str) -> None:
        self._request("MKCOL", path)
        with self._lock:
            if path in self.folders:
                return
            if path in self.files:
                raise PreconditionFailed(f"a file stands at {path}", status=405)
            if _parent(path) not in self.folders:
                raise ParentMissing(f"no parent for {path}", status=409)
            self.folders.add(path)

    def move(
        self, src: str, dst: str, *, if_match: str | None = None, overwrite: bool = False, src_href: str = ""
    ) -> RemoteEntry | None:
        self._request("MOVE", src)
        with self._lock:
            if src not in self.files and src not in self.folders:
                raise NotFound(f"{src} is gone", status=404)
            if if_match is not None and (src not in self.files or self.files[src].etag != if_match):
                raise PreconditionFailed(f"{src} changed", status=412)
            if not overwrite and (dst in self.files or dst in self.folders):
                raise PreconditionFailed(f"{dst} exists", status=412)
            if _parent(dst) not in self.folders:
                raise ParentMissing(f"no parent for {dst}", status=409)
            self.remove(dst)
            for p in sorted(p for p in self.folders if p == src or p.startswith(src + "/")):
                self.folders.discard(p)
                self.folders.add(dst + p[len(src) :])
            for p in sorted(p for p in self.files if p == src or p.startswith(src + "/")):
                f = self.files.pop(p)
                self.files[dst + p[len(src) :]] = Stored(f.data, f"e{next(_etags)}", f.mtime)
            return self.entry(dst)

    def delete(self, path: str, *, if_match: str | None = None, href: str = "", if_empty: bool = False) -> None:
        self._request("DELETE", path)
        with self._lock:
            if path not in self.files and path not in self.folders:
                raise NotFound(f"{path} is gone", status=404)
            inside = [p for p in (*self.files, *self.folders) if p.startswith(path + "/")]
            if if_empty and inside:  # as davsync serve answers X-Davsync-If-Empty
                raise PreconditionFailed(f"{path} is not empty any more", status=412)
            if if_match is not None and (path not in self.files or self.files[path].etag != if_match):
                raise PreconditionFailed(f"{path} changed", status=412)
            self.remove(path)

    def list_folder(self, folder: str, href: str = "") -> FolderListing:
        self._request("PROPFIND", folder)
        with self._lock:
            if folder not in self.folders:
                raise NotFound(f"{folder} is gone", status=404)
            children = [p for p in self.folders | set(self.files) if p and _parent(p) == folder]
            return FolderListing(folder, [e for p in sorted(children) if (e := self.entry(p)) is not None])

    def fetch(self, entry: RemoteEntry, state_dir: Path, hooks: TransferHooks, base: Path | None = None) -> Downloaded:
        self._request("GET", entry.path)
        with self._lock:
            f = self.files.get(entry.path)
            if f is None:
                raise ChangedOnServer(f"{entry.path} is no longer on the server")
            if entry.md5 and f.md5 != entry.md5:
                raise ChangedOnServer(f"{entry.path} changed on the server since it was listed")
            data = f.data
        folder = state_dir / "partial"
        folder.mkdir(parents=True, exist_ok=True)
        partial = folder / (hashlib.sha1(entry.path.encode()).hexdigest() + ".part")
        partial.write_bytes(data)
        os.utime(partial, (f.mtime, f.mtime))
        hooks.progress(len(data))
        return Downloaded(partial, md5_of(data), len(data), len(data), 0)

    def send(self, journal: Journal, req: PutRequest, hooks: TransferHooks) -> Uploaded:
        path, source, md5, mtime_ns, if_match, if_none_match = (
            req.path, req.source, req.md5, req.mtime_ns, req.if_match, req.if_none_match,
        )  # fmt: skip
        self._request("PUT", path)
        data = source.read_bytes()
        with self._lock:
            now = self.files.get(path)
            if path in self.folders:
                raise PreconditionFailed(f"a folder stands at {path}", status=405)
            if if_match is not None and (now is None or now.etag != if_match):
                raise PreconditionFailed(f"{path} changed", status=412)
            if if_none_match and now is not None:
                raise PreconditionFailed(f"{path} exists", status=412)
            if _parent(path) not in self.folders:
                raise ParentMissing(f"no parent for {path}", status=409)
            if md5_of(data) != md5:  # OC-Checksum: the body is not what was declared
                raise SourceChanged(f"{path} changed while it was sent", status=400)
            mtime = mtime_ns / 1e9 if mtime_ns is not None else 1_000_000.0
            self._replace(path, Stored(data, f"e{next(_etags)}", mtime))
            entry = self.entry(path)
        assert entry is not None
        hooks.progress(len(data))
        return Uploaded(entry, md5)

    def placed(self, state_dir: Path, entry: RemoteEntry, placed: Any, got: Downloaded) -> None:
        return None

    def _replace(self, path: str, new: Stored) -> None:
        old = self.files.get(path)
        if old is not None:
            self.versions.append(old.data)
        self.files[path] = new

    def _mkdirs(self, path: str) -> None:
        parts = path.split("/") if path else []
        for i in range(1, len(parts) + 1):
            self.folders.add("/".join(parts[:i]))


def _parent(path: str) -> str:
    return path.rpartition("/")[0]
