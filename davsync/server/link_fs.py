"""Re-rooting for share links: a provider whose root is the shared folder, over the share's own index.

A link's requests see the shared folder as `/`. Everything the server keeps per path
(MD5s, the change journal, locks and dead properties) stays keyed by the path in the
whole share, so a file has one hash, one lock and one history however it is reached:
`ScopedIndex` adds the folder's prefix on the way in and strips it on the way out,
and link resources report the whole-share lock/property key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, unquote

from .index import Change, HashIndex
from .provider import DavsyncFile, DavsyncFolder, DavsyncProvider
from .versions import VersionStore


class ScopedIndex:
    """The HashIndex seen from inside one folder: paths are relative to it."""

    def __init__(self, index: HashIndex, prefix: str) -> None:
        self.index = index
        self.prefix = prefix.strip("/")

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
        return [Change(self.local(c.path) or "", c.is_dir, c.deleted, c.seq) for c in changes]


class LinkFile(DavsyncFile):
    provider: LinkProvider

    def get_ref_url(self) -> str:
        return self.provider.ref_url_of(self.get_preferred_path())


class LinkFolder(DavsyncFolder):
    provider: LinkProvider

    def get_ref_url(self) -> str:
        return self.provider.ref_url_of(self.get_preferred_path())

    def get_member_names(self) -> list[str]:
        if self.provider.mode == "drop":
            return []  # a drop box lists nothing, not even what was dropped
        return super().get_member_names()


class LinkProvider(DavsyncProvider):
    """The shared folder as a share of its own; `mode` is the link's (read-only, read-write, drop)."""

    file_class = LinkFile
    folder_class = LinkFolder

    def __init__(
        self, folder: str, index: HashIndex, prefix: str, mode: str, versions: VersionStore | None = None
    ) -> None:
        self.scoped = ScopedIndex(index, prefix)
        super().__init__(folder, self.scoped, readonly=mode == "read-only", versions=versions)  # type: ignore[arg-type]
        self.mode = mode
        self._ref_prefix = "/" + self.scoped.prefix if self.scoped.prefix else ""

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

