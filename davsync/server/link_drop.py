"""What a share link's gate (link_gate.py) asks beyond the link itself: whether its maker still
has the rights it gives, how a drop link's resumable uploads are told apart and answered, and
which folders a drop goes into."""

from __future__ import annotations

import os
import stat
from typing import Any, Protocol

from ..users import Users
from .links import ShareLink
from .resumable import PREFIX as RESUMABLE_PREFIX
from .wsgitypes import StartResponse

MAX_CLASH = 10_000


class _Folders(Protocol):
    def file_path(self, path: str) -> str: ...

    def get_resource_inst(self, path: str, environ: dict) -> Any: ...


def numbered(name: str, n: int) -> str:
    """'name.ext' as the drop's n-th of that name: 'name (2).ext' ('.hidden' -> '.hidden (2)')."""
    if n == 1:
        return name
    stem, dot, ext = name.rpartition(".")
    if not stem:
        stem, dot, ext = name, "", ""
    return f"{stem} ({n}){dot}{ext}"


def drop_folders(provider: _Folders, environ: dict, parts: list[str]) -> str | None:
    """The link path of the folder a drop into `parts` goes to, made where missing. A name held by
    anything but a folder (a file, a symlink) takes the first 'name (2)'... that is or can become a
    folder, so an upload into it lands and is answered as any other: whether a name was taken,
    and by what, is never told. None after MAX_CLASH clashes. (The provider refuses reserved names.)"""
    path = ""
    env = {**environ, "wsgidav.provider": provider}  # (what WsgiDAV's resources expect; the app sets it later)
    for part in parts:
        for n in range(1, MAX_CLASH):
            candidate = f"{path}/{numbered(part, n)}"
            try:
                st = os.lstat(provider.file_path(candidate))
            except FileNotFoundError:
                try:
                    provider.get_resource_inst(path or "/", env).create_collection(numbered(part, n))
                except FileExistsError:
                    pass  # made meanwhile: looked at again below
                st = os.lstat(provider.file_path(candidate))
            if stat.S_ISDIR(st.st_mode):
                path = candidate
                break
        else:
            return None
    return path


def owner_allows(link: ShareLink, users: Users | None) -> bool:
    """A link made on the folder page (pages/sharing.py) gives no more than its maker has now: it
    stops when the maker is removed, and a writing one while the maker is read-only. A link from
    `davsync share` (no owner) is the operator's own."""
    if not link.owner or users is None:
        return True
    user = users.users.get(link.owner)
    return user is not None and (link.mode == "read-only" or not user.read_only)


class DropResumable:
    """A drop's resumable upload answers with offsets and its upload resource, never with what
    names the file got (no ETag, no Location but the upload's own, no dates)."""

    def __init__(self, start: StartResponse) -> None:
        self.start = start

    def __call__(self, status: str, headers: list, exc_info: Any = None) -> Any:
        kept = [(k, v) for k, v in headers if k.lower() not in DROP_HIDDEN
                and not (k.lower() == "location" and RESUMABLE_PREFIX not in v)]  # fmt: skip
        return self.start(status, kept, exc_info)


DROP_HIDDEN = frozenset({"etag", "oc-etag", "oc-fileid", "last-modified", "oc-checksum", "x-oc-mtime"})


def is_resumable(environ: dict, rest: str) -> bool:
    """A request of the resumable-upload protocol (resumable.py): a create, or its upload resource."""
    method = environ["REQUEST_METHOD"]
    if rest.startswith(RESUMABLE_PREFIX):
        return method in ("HEAD", "PATCH", "DELETE")
    return method in ("POST", "PUT") and "HTTP_UPLOAD_COMPLETE" in environ
