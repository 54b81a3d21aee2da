"""Re-rooting for share links: a provider whose root is the shared folder, over the share's own index.

A link's requests see the shared folder as `/`. Everything the server keeps per path
(MD5s, the change journal, locks and dead properties) stays keyed by the path in the
whole share, so a file has one hash, one lock and one history however it is reached:
`ScopedIndex` adds the folder's prefix on the way in and strips it on the way out,
and link resources report the whole-share lock/property key.

A link to one file is rooted at the file's folder with `only` set to the file's name: every
path but the root and that name is refused where paths become file paths (404, the answer for
a name that is not there), the root lists only the file, and the change feed names only it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote

from lxml import etree
from wsgidav.dav_error import HTTP_NOT_FOUND, DAVError

from .index import Change, HashIndex
from .link_file import FILE_READ, FILE_WRITE, ROOT_METHODS
from .provider import DavsyncFile, DavsyncFolder, DavsyncProvider
from .versions import VersionStore


class ScopedIndex:
    """The HashIndex seen from inside one folder: paths are relative to it."""

    def __init__(self, index: HashIndex, prefix: str, only: str | None = None) -> None:
        self.index = index
        self.prefix = prefix.strip("/")
        self.only = only  # a file link's one name: the only path it has changes for

    def full(self, path: str) -> str:
        path = path.strip("/")
        if not self.prefix:
            return path
        return f"{self.prefix}/{path}" if path else self.prefix

    def local(self, path: str) -> str | None:
        """A whole-share path as seen from the folder, or None when it lies outside."""
        if not self.prefix:
            return path
        if path == self.prefix:
            return ""
        if path.startswith(self.prefix + "/"):
            return path[len(self.prefix) + 1 :]
        return None

    @property
    def current_seq(self) -> int:
        return self.index.current_seq

    def md5_for(self, path: str, file_path: str, st: os.stat_result) -> str | None:
        return self.index.md5_for(self.full(path), file_path, st)

    def fresh_md5(self, path: str, st: os.stat_result) -> str | None:
        return self.index.fresh_md5(self.full(path), st)

    def record_file(self, path: str, st: os.stat_result, md5: str | None) -> None:
        self.index.record_file(self.full(path), st, md5)

    def record_dir(self, path: str) -> None:
        self.index.record_dir(self.full(path))

    def forget(self, path: str) -> None:
        self.index.forget(self.full(path))

    @contextmanager
    def batch(self) -> Iterator[ScopedIndex]:
        with self.index.batch():
            yield self

    def sync_token(self, seq: int | None = None) -> str:
        return self.index.sync_token(seq)

    def token_seq(self, token: str) -> int | None:
        return self.index.token_seq(token)

    def changes_since(
        self, seq: int, limit: int | None = None, *, under: str = "", children_only: bool = False,
        live_only: bool = False,
    ) -> list[Change]:
        """The folder's changes only (the scope and limit are applied in the whole index's query)."""
        changes = self.index.changes_since(
            seq, limit, under=self.full(under), children_only=children_only, live_only=live_only
        )
        found = [Change(self.local(c.path) or "", c.is_dir, c.deleted, c.seq) for c in changes]
        if self.only is not None:  # (filtered after the limit: the feed may come in shorter pages, never wider)
            found = [c for c in found if c.path == self.only]
        return found


SUPPORTED_LOCK = "{DAV:}supportedlock"
QUOTA = frozenset({"{DAV:}quota-used-bytes", "{DAV:}quota-available-bytes"})


def link_property(res: _SeenThroughLink, name: str) -> Any:
    """What a link's resource says differently from the share's: no lock kinds where the link
    cannot lock (WsgiDAV lists them whenever a lock manager exists), and no quota (the disk's
    size and use are the owner's business, not a friend's)."""
    if name == SUPPORTED_LOCK and res.prevent_locking():
        return etree.Element(name)
    if name in QUOTA:
        raise DAVError(HTTP_NOT_FOUND)
    return None


class _SeenThroughLink:
    """What a file and a folder say differently when reached through a link: hrefs under the
    link, locks only where the link may lock, no disk quota. Mixed in before the share's class."""

    provider: LinkProvider
    path: str
    get_preferred_path: Callable[[], str]

    def get_ref_url(self) -> str:
        return self.provider.ref_url_of(self.get_preferred_path())

    def prevent_locking(self) -> bool:
        return not self.provider.lockable(self.path)

    def get_used_bytes(self) -> int | None:
        return None

    def get_available_bytes(self) -> int | None:
        return None

    def get_property_value(self, name: str) -> Any:
        value = link_property(self, name)
        return value if value is not None else super().get_property_value(name)  # type: ignore[misc]  # (the share's class, next in the MRO)


class LinkFile(_SeenThroughLink, DavsyncFile):
    provider: LinkProvider


class LinkFolder(_SeenThroughLink, DavsyncFolder):
    provider: LinkProvider

    def get_display_name(self) -> str:
        only = self.provider.only  # a file link's root is named after the file, not its folder
        return only if only is not None and self.path.strip("/") == "" else str(super().get_display_name())

    def get_member_names(self) -> list[str]:
        if self.provider.mode == "drop":
            return []  # a drop box lists nothing, not even what was dropped
        only = self.provider.only
        names = super().get_member_names()
        return names if only is None else [n for n in names if n == only and self.path.strip("/") == ""]


class LinkProvider(DavsyncProvider):
    """The shared folder as a share of its own; `mode` is the link's (read-only, read-write, drop).
    With `only`, a file link: the folder holding that one file, and nothing else of it."""

    file_class = LinkFile
    folder_class = LinkFolder

    def __init__(
        self, folder: str, index: HashIndex, prefix: str, mode: str, versions: VersionStore | None = None,
        only: str | None = None,
    ) -> None:  # fmt: skip
        self.scoped = ScopedIndex(index, prefix, only)
        self.only = only
        super().__init__(folder, self.scoped, readonly=mode == "read-only", versions=versions)  # type: ignore[arg-type]
        self.mode = mode
        self._ref_prefix = "/" + self.scoped.prefix if self.scoped.prefix else ""

    def _loc_to_file_path(self, path: str, environ: dict | None = None) -> str:
        if self.only is not None and [p for p in path.split("/") if p] not in ([], [self.only]):
            raise DAVError(HTTP_NOT_FOUND, "Only the shared file is here.")
        return super()._loc_to_file_path(path, environ)

    def methods_at(self, path: str) -> frozenset[str] | None:
        """The methods a file link allows at `path` (link_file.py), so OPTIONS offers no more;
        None for a folder link, whose mode alone decides."""
        if self.only is None:
            return None
        if path.strip("/") == "":
            return ROOT_METHODS
        return FILE_WRITE if self.mode == "read-write" else FILE_READ

    def lockable(self, path: str) -> bool:
        allowed = self.methods_at(path)
        return self.mode == "read-write" and (allowed is None or "LOCK" in allowed)

    def ref_url_of(self, path: str) -> str:
        return quote(self._ref_prefix + path)

    def share_rel(self, rel: str) -> str:
        return self.scoped.full(rel)

    def ref_url_to_path(self, ref_url: str) -> str:
        path = unquote(ref_url)
        if not self._ref_prefix:
            return "/" + path.lstrip("/")
        if path == self._ref_prefix or path == self._ref_prefix + "/":
            return "/"
        if path.startswith(self._ref_prefix + "/"):
            return path[len(self._ref_prefix) :]
        return "/"  # a lock taken above the folder: report the link's root, never a path outside it

