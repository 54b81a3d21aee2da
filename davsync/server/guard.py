"""Per-path locks and the precondition re-check that makes If-Match / If-None-Match true.

WsgiDAV evaluates conditional headers once, before a PUT body is read and before a
DELETE/MOVE/COPY starts; two clients holding the same ETag both pass and the later
rename silently wins. Two-way sync relies on "exactly one wins", so every change of a
path takes that path's lock and checks the conditions again against a fresh stat,
immediately before the rename into place.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from wsgidav import util
from wsgidav.dav_error import HTTP_PRECONDITION_FAILED, DAVError

from .names import etag_of


class PathLocks:
    """One re-entrant mutex per path, created on demand and dropped when nobody holds it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.RLock, int]] = {}

    @contextmanager
    def hold(self, *paths: str) -> Iterator[None]:
        """Lock several paths at once, in sorted order so two requests never deadlock."""
        wanted = sorted(set(paths))
        taken: list[str] = []
        try:
            for path in wanted:
                with self._guard:
                    lock, users = self._locks.get(path, (threading.RLock(), 0))
                    self._locks[path] = (lock, users + 1)
                lock.acquire()
                taken.append(path)
            yield
        finally:
            for path in reversed(taken):
                with self._guard:
                    lock, users = self._locks[path]
                    lock.release()
                    if users <= 1:
                        del self._locks[path]
                    else:
                        self._locks[path] = (lock, users - 1)


PATH_LOCKS = PathLocks()  # keyed by file path: the share and its share links lock the same files


def current_etag(file_path: str) -> str | None:
    """The ETag a regular file has right now, or None if nothing (or a folder) is there."""
    try:
        st = os.lstat(file_path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return etag_of(st) if stat.S_ISREG(st.st_mode) else ""


def recheck(environ: dict, file_path: str) -> None:
    """Raise 412 unless If-Match / If-None-Match still hold for what is at file_path now.

    A folder exists but has no ETag: it matches only `*`. If-Match on a missing
    resource fails (RFC 9110 13.1.1), which WsgiDAV never checks (see do_PUT).
    """
    if_match = environ.get("HTTP_IF_MATCH")
    if_none = environ.get("HTTP_IF_NONE_MATCH")
    if if_match is None and if_none is None:
        return
    etag = current_etag(file_path)
    exists = etag is not None
    if if_match is not None:
        tags = util.parse_if_match_header(if_match)
        if not exists or not ("*" in tags or (etag and etag in tags)):
            raise DAVError(HTTP_PRECONDITION_FAILED, "If-Match failed: the resource changed meanwhile.")
    if if_none is not None and exists:
        tags = util.parse_if_match_header(if_none)
        if "*" in tags or (etag and etag in tags):
            raise DAVError(HTTP_PRECONDITION_FAILED, "If-None-Match failed: the resource exists now.")
