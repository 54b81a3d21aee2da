"""A short path for the most common request: a plain GET/HEAD of one file.

WsgiDAV's full stack (authenticator, error printer, dir browser, request server,
resource objects) costs more than sending a small file. A plain GET that is already
authorised (anonymous read, Basic credentials the users file accepts, or a Digest login
the front gate checked) is answered here, with the same headers WsgiDAV would send; so
is a single byte range (a resumed download), with WsgiDAV's If-Range rule, and several
ranges as multipart/byteranges (byteranges.py: WsgiDAV answers only the first). The body goes
out through the server's `wsgi.file_wrapper` (sendfile, see sendfile.py). Anything else
(unsatisfiable or overlapping ranges, If-Range with a date, conditional headers, folders,
missing credentials, odd paths) falls through to WsgiDAV.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from wsgidav import util
from wsgidav.dav_error import DAVError

from ..users import Users, basic_credentials
from . import byteranges
from .names import etag_of, is_internal_path
from .provider import DavsyncProvider

BLOCK = 1024 * 1024
_COMPOUND = frozenset({*mimetypes.suffix_map, *mimetypes.encodings_map})  # suffixes that make guess_type look further
SMALL = 256 * 1024  # bodies up to this size go out as one bytes object
log = logging.getLogger("davsync.server")
_SKIP_HEADERS = frozenset((
    "HTTP_IF",
    "HTTP_IF_MATCH",
    "HTTP_IF_NONE_MATCH",
    "HTTP_IF_MODIFIED_SINCE",
    "HTTP_IF_UNMODIFIED_SINCE",
    "HTTP_DEPTH",
))


class FastGet:
    def __init__(
        self, app: Callable[..., Iterable[bytes]], provider: DavsyncProvider, users: Users, anonymous: str,
        config: dict | None = None,
    ) -> None:
        self.app = app
        self.provider = provider
        self.users = users
        self.anonymous = anonymous
        self.config = config or {}  # WsgiDAV's: its default_charset goes into text types

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        served = self._try(environ, start_response)
        return served if served is not None else self.app(environ, start_response)

    def _try(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes] | None:
        method = environ["REQUEST_METHOD"]
        if method not in ("GET", "HEAD") or environ.get("QUERY_STRING"):
            return None
        if not environ.keys().isdisjoint(_SKIP_HEADERS) or environ.get("CONTENT_LENGTH") not in (None, "", "0"):
            return None
        raw = environ.get("PATH_INFO", "")
        if not raw.startswith("/") or raw.endswith("/"):
            return None
        if not authorised(self.users, self.anonymous, environ):
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
        etag = etag_of(st)
        span = _byte_range(environ, st.st_size, etag) if "HTTP_RANGE" in environ else (0, st.st_size, False)
        if span is None:
            ranges = _several_ranges(environ, st.st_size, etag) if method == "GET" else None
            if ranges is not None:  # WsgiDAV would answer only the first (byteranges.py)
                return byteranges.serve(start_response, fd, st.st_size, ranges, mime_type(path, self.config), [
                    ("Last-Modified", http_date(int(st.st_mtime))), ("Date", http_date(int(time.time()))),
                    ("ETag", f'"{etag}"'), ("Accept-Ranges", "bytes")])  # fmt: skip
            os.close(fd)
            return None  # WsgiDAV answers what this path does not (416, odd ranges, If-Range dates)
        start, length, partial = span
        body: list[bytes] | None = None
        if method == "GET" and length <= SMALL:  # one read, before answering: cheaper than any wrapper
            try:
                data = os.pread(fd, length, start) if length else b""
            except OSError:
                data = b""
            os.close(fd)
            if len(data) != length:
                return None  # it shrank meanwhile: let WsgiDAV look again
            body = [data]
        headers = [
            ("Content-Length", str(length)),
            ("Content-Type", mime_type(path, self.config)),
            ("Last-Modified", http_date(int(st.st_mtime))),
            ("Date", http_date(int(time.time()))),
            ("ETag", f'"{etag}"'),
            ("Accept-Ranges", "bytes"),
        ]
        if partial:
            headers.append(("Content-Range", f"bytes {start}-{start + length - 1}/{st.st_size}"))
        start_response("206 Partial Content" if partial else "200 OK", headers)
        if log.isEnabledFor(logging.INFO):
            log.info('%s - "%s %s" %s %d (fast path)', environ.get("REMOTE_ADDR"), method, path,
                     206 if partial else 200, length)  # fmt: skip
        if body is not None:
            return body
        if method == "HEAD":
            os.close(fd)
            return [b""]
        file = os.fdopen(fd, "rb", buffering=0)
        if start:
            file.seek(start)
        wrapper = environ.get("wsgi.file_wrapper")
        return wrapper(file, BLOCK) if wrapper is not None else _stream(file, length)



_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_dates: dict[int, str] = {}


def http_date(secs: int) -> str:
    """RFC 1123, as email.utils.formatdate(usegmt=True) writes it (WsgiDAV's Last-Modified and
    getlastmodified). Each second is formatted once: the Date header, files of one folder."""
    text = _dates.get(secs)
    if text is None:
        if len(_dates) > 4096:
            _dates.clear()
        t = time.gmtime(secs)
        text = _dates[secs] = (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon]} {t.tm_year:04d} "
                               f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")  # fmt: skip
    return text


_mime_by_ext: dict[str, str] = {}


def mime_type(path: str, config: dict) -> str:
    """WsgiDAV's guess_mime_type, remembered per extension where only the extension decides
    (not for compressed or compound suffixes like .gz or .tgz, nor for names like '.profile')."""
    name = path.rpartition("/")[2]
    dot = name.rfind(".")
    ext = name[dot:]
    if dot <= 0 or not name[:dot].strip(".") or ext in _COMPOUND or ext.lower() in _COMPOUND:
        return util.guess_mime_type(path, config)
    found = _mime_by_ext.get(ext)
    if found is None:
        if len(_mime_by_ext) > 1024:
            _mime_by_ext.clear()
        found = _mime_by_ext[ext] = util.guess_mime_type("/x" + ext, config)
    return found


def authorised(users: Users, anonymous: str, environ: dict) -> bool:
    """May this request read without WsgiDAV's authenticator? (A guest where guests may read,
    Basic credentials the users file accepts, or a Digest login FrontGate has just verified;
    anything else goes the full way.)"""
    if "davsync.digest_user" in environ or "davsync.basic_user" in environ:  # set by auth.FrontGate, after checking
        return True
    header = environ.get("HTTP_AUTHORIZATION")
    if header is None:
        return anonymous in ("read", "write")
    credentials = basic_credentials(header)
    return credentials is not None and users.check_basic(*credentials) is not None


def _stream(file: BinaryIO, length: int) -> Iterator[bytes]:
    """The body for a server without a file wrapper: `length` bytes from the file's position."""
    try:
        while length > 0 and (chunk := file.read(min(BLOCK, length))):
            length -= len(chunk)
            yield chunk
    finally:
        file.close()


def _several_ranges(environ: dict, size: int, etag: str) -> list[tuple[int, int]] | None:
    """The ranges of a multi-range request this path answers (an If-Range, if any, is our etag)."""
    if_range = environ.get("HTTP_IF_RANGE")
    if if_range is not None and if_range.strip('" ') != etag:
        return None
    return byteranges.parse_ranges(environ["HTTP_RANGE"], size)


def _byte_range(environ: dict, size: int, etag: str) -> tuple[int, int, bool] | None:
    """(start, length, partial) for a Range request as WsgiDAV answers it, or None to let
    WsgiDAV answer (anything but one satisfiable range, or an If-Range that is a date)."""
    if_range = environ.get("HTTP_IF_RANGE")
    if if_range is not None:
        if not if_range.strip().startswith(('"', "W/")):
            return None  # an HTTP date: WsgiDAV compares it with the mtime
        if if_range.strip('" ') != etag:
            return 0, size, False  # changed since: the whole new file
    if size == 0:
        return 0, 0, False  # WsgiDAV ignores ranges on an empty file
    unit, _, spec = environ["HTTP_RANGE"].strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "" or int(last) == 0:
            return None
        start = max(0, size - int(last))
        end = size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if start >= size or start > end:
            return None
    return start, end - start + 1, True
