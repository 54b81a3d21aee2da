"""A short path for the most common request: a plain GET/HEAD of one file.

WsgiDAV's full stack (authenticator, error printer, dir browser, request server,
resource objects) costs more than sending a small file. A plain GET that is already
authorised (anonymous read, or Basic credentials the users file accepts) is answered
here, with the same headers WsgiDAV would send. Anything else (Range, conditional
headers, folders, Digest, missing credentials, odd paths) falls through to WsgiDAV.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.handlers import format_date_time

from wsgidav.dav_error import DAVError

from ..users import Users, basic_credentials
from .names import etag_of, is_internal_path
from .provider import DavsyncProvider

BLOCK = 1024 * 1024
log = logging.getLogger("davsync.server")
_SKIP_HEADERS = (
    "HTTP_RANGE",
    "HTTP_IF",
    "HTTP_IF_MATCH",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_UNMODIFIED_SINCE",
    "HTTP_IF_RANGE",
    "HTTP_DEPTH",
)


class FastGet:
    def __init__(
        self, app: Callable[..., Iterable[bytes]], provider: DavsyncProvider, users: Users, anonymous: str
    ) -> None:
        self.app = app
        self.provider = provider
        self.users = users
        self.anonymous = anonymous
        mimetypes.init()

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        served = self._try(environ, start_response)
        return served if served is not None else self.app(environ, start_response)

    def _try(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes] | None:
        method = environ["REQUEST_METHOD"]
        if method not in ("GET", "HEAD") or environ.get("QUERY_STRING"):
            return None
        if any(h in environ for h in _SKIP_HEADERS) or environ.get("CONTENT_LENGTH") not in (None, "", "0"):
            return None
        raw = environ.get("PATH_INFO", "")
        if not raw.startswith("/") or raw.endswith("/"):
            return None
        if not self._authorised(environ.get("HTTP_AUTHORIZATION")):
            return None
        try:
            path = raw.encode("latin-1").decode("utf-8")
        except UnicodeError:
            return None
        if is_internal_path(path) or "\x00" in path:
            return None
        try:
            file_path = self.provider.file_path(path)
            fd = os.open(file_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (DAVError, OSError, ValueError):
            return None  # WsgiDAV gives the proper error
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                return None
        except OSError:
            os.close(fd)
            return None
        headers = [
            ("Content-Length", str(st.st_size)),
            ("Content-Type", _mime(path)),
            ("Last-Modified", format_date_time(st.st_mtime)),
            ("Date", _now()),
            ("ETag", f'"{etag_of(st)}"'),
            ("Accept-Ranges", "bytes"),
        ]
        start_response("200 OK", headers)
        if log.isEnabledFor(logging.INFO):
            log.info('%s - "%s %s" 200 %d (fast path)', environ.get("REMOTE_ADDR"), method, path, st.st_size)
        if method == "HEAD":
            os.close(fd)
            return [b""]
        return _stream(fd, st.st_size)

    def _authorised(self, header: str | None) -> bool:
        if header is None:
            return self.anonymous in ("read", "write")
        credentials = basic_credentials(header)
        return credentials is not None and self.users.check_basic(*credentials) is not None


def _mime(path: str) -> str:
    _, dot, ext = path.rpartition(".")
    if not dot or "/" in ext:
        return "application/octet-stream"
    ext = "." + ext.lower()
    return mimetypes.types_map.get(ext) or mimetypes.common_types.get(ext) or "application/octet-stream"


_date_cache: tuple[int, str] = (0, "")


def _now() -> str:
    """The Date header, formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, format_date_time(now))
    return _date_cache[1]


def _stream(fd: int, size: int) -> Iterator[bytes]:
    try:
        if size <= BLOCK:
            yield os.read(fd, size) if size else b""
            return
        while chunk := os.read(fd, BLOCK):
            yield chunk
    finally:
        os.close(fd)
