"""Many small files per request, both ways: the bundle REPORT (download) and the bulk POST (upload).

A davsync extension that generic WebDAV clients never see unless they ask for it:

- **Bundle** (read): `REPORT` on a collection with a body `<ds:bundle xmlns:ds="urn:davsync:">`
  listing member paths relative to it (`<ds:file etag="...">a/b.txt</ds:file>`). The answer is
  200 with a tar stream (POSIX pax, see davsync/paxstream.py): per member its path, size,
  mtime, `DAVSYNC.etag` and `DAVSYNC.md5`. A member that is missing, is a folder, lies outside
  the share, is too large, or whose etag differs from the one asked for (it changed since the
  client listed it) comes with its `DAVSYNC.status` and `DAVSYNC.error` and no content; the
  others arrive. Every member is stat'ed before the answer starts, so it carries an exact
  Content-Length and the connection stays open for the next request; a member that changes
  after that is sent as `DAVSYNC.status: 409` with zeros filling exactly the length announced
  for it (the client skips them), so it fails alone and the framing holds. REPORT is a read
  method, so authentication, read-only accounts and share links (read-only and read-write
  links allow it, drop boxes do not) apply exactly as for GET, and every member path goes
  through the provider's path jail like a GET's.
- **Bulk upload** (write): `POST` of an `application/x-tar` body to a collection. Each member
  carries `DAVSYNC.md5` (required) and optionally `DAVSYNC.if-match` (an etag) or
  `DAVSYNC.if-none-match: *`. Each file goes to a hidden temp file beside its target, is
  verified by MD5, made durable (one fsync pass for the request), and renamed into place under
  the path's lock after its preconditions are checked again, exactly like a PUT (guard.py),
  with the replaced version kept (versions.py). The answer is a 207 multistatus with one
  response per member: its status (201, 204, 400, 403, 409, 412, 413, 423, 507...) and, when
  placed, its new etag and MD5. A body that is cut off or malformed places nothing.

Both are advertised in OPTIONS (`X-Davsync-Bundle`, `X-Davsync-Bulk-Upload`, with their limits)
and as properties of every collection (`{urn:davsync:}bundle`, `{urn:davsync:}bulk-upload`,
asked for by name only).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from lxml import etree
from wsgidav import util
from wsgidav.dav_error import DAVError
from wsgidav.mw.base_mw import BaseMiddleware

from ..osfs import flush_files
from ..paxstream import (
    END_OF_ARCHIVE,
    CutStream,
    Member,
    PaxReader,
    TarFormatError,
    member_bytes,
    member_header,
    padding,
)
from .guard import PATH_LOCKS, recheck
from .http import peek_body
from .index import Identity
from .names import TEMP_PREFIX, TEMP_SUFFIX, etag_of, is_internal_name
from .upload import valid_mtime

log = logging.getLogger("davsync.server")

StartResponse = Callable[..., Any]

NS = "urn:davsync:"
BUNDLE = f"{{{NS}}}bundle"
BULK = f"{{{NS}}}bulk-upload"
MAX_FILES = 1000  # members per request, either way
MAX_FILE_SIZE = 16 * 1024 * 1024  # per member: larger files go by GET (with resume) or PUT
MAX_BYTES = 64 * 1024 * 1024  # a bundle answer's content; a bulk body's content
MAX_BODY = 1024 * 1024  # the bundle request's XML
SEND_AFTER = 256 * 1024  # bytes gathered before handing them to the server
STREAM_FROM = 1024 * 1024  # members larger than this are streamed block by block
STREAM_BLOCK = 256 * 1024
_MD5_HEX = frozenset("0123456789abcdef")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def limits_header(max_bytes: int = MAX_BYTES) -> str:
    return f"max-files={MAX_FILES}; max-file-size={MAX_FILE_SIZE}; max-bytes={max_bytes}"


def may_write(environ: dict, provider: Any) -> bool:
    return not (provider.is_readonly() or environ.get("davsync.readonly"))


def feature_property(name: str, environ: dict, provider: Any) -> Any:
    """The value of `{urn:davsync:}bundle` / `bulk-upload` on a collection (404 when not offered)."""
    if name == BULK and not may_write(environ, provider):
        raise DAVError(404)
    el = etree.Element(name, nsmap={"ds": NS})
    el.set("max-files", str(MAX_FILES))
    el.set("max-file-size", str(MAX_FILE_SIZE))
    el.set("max-bytes", str(MAX_BYTES))
    return el


def member_problem(rel: str) -> str | None:
    """Why a member path from a client is refused before it reaches the provider, or None."""
    if not rel:
        return "an empty path"
    if rel.startswith("/") or "\\" in rel:
        return "an absolute path or a backslash"
    if _CONTROL.search(rel):
        return "control characters in the path"
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "an empty, '.' or '..' segment"
    if any(is_internal_name(p) for p in parts):
        return "a name reserved for davsync"
    return None


class BundleMiddleware(BaseMiddleware):
    """In WsgiDAV's stack after authentication and the write guard: answers the bundle REPORT
    and the bulk POST, and adds the features to OPTIONS answers; everything else passes."""

    def __init__(self, wsgidav_app: Any, next_app: Any, config: dict) -> None:
        super().__init__(wsgidav_app, next_app, config)
        self.app = next_app

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        provider = environ.get("wsgidav.provider")
        if provider is None:
            return self.app(environ, start_response)
        if method == "REPORT":
            body = _peek_bundle(environ)
            if body is not None:
                return _serve_bundle(environ, start_response, provider, body)
        elif method == "POST" and _content_type(environ) in ("application/x-tar", "application/tar"):
            return _bulk_upload(environ, start_response, provider)
        elif method == "OPTIONS" and environ.get("PATH_INFO") != "*":
            return self.app(environ, _with_features(start_response, environ, provider))
        return self.app(environ, start_response)


def _content_type(environ: dict) -> str:
    return environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()


def _with_features(start_response: StartResponse, environ: dict, provider: Any) -> StartResponse:
    link_mode = getattr(provider, "mode", None)  # share links: no bulk upload; drop boxes: no reading either

    def start(status: str, headers: list, exc_info: Any = None) -> Any:
        if status.startswith("200") and link_mode != "drop":
            headers = [*headers, ("X-Davsync-Bundle", limits_header())]
            if may_write(environ, provider) and not link_mode:
                headers.append(("X-Davsync-Bulk-Upload", limits_header()))
        return start_response(status, headers, exc_info)

    return start


def _peek_bundle(environ: dict) -> etree._Element | None:
    """The parsed body when this REPORT is a bundle request; otherwise None, with the body put
    back for the REPORT handler (sync-collection) to read."""
    raw = peek_body(environ, MAX_BODY)
    if raw is None or b"urn:davsync:" not in raw:
        return None
    try:
        root = etree.fromstring(raw, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    except etree.XMLSyntaxError:
        return None
    if root.tag != BUNDLE:
        return None
    environ["wsgidav.all_input_read"] = 1
    return root


def _collection(environ: dict, provider: Any) -> Any:
    path = environ["PATH_INFO"]
    res = provider.get_resource_inst(path, environ)
    if res is None:
        raise DAVError(404, "No such collection.")
    if not res.is_collection:
        raise DAVError(409, "Bundles are asked of a collection; its members are named relative to it.")
    return res


def _join(base: str, rel: str) -> str:
    return base.rstrip("/") + "/" + rel


# --- bundle: many files in one answer -----------------------------------------------------


def _serve_bundle(environ: dict, start_response: StartResponse, provider: Any, body: etree._Element) -> Iterable[bytes]:
    base = _collection(environ, provider).path
    wanted: list[tuple[str, str | None]] = []
    for el in body:
        if not isinstance(el.tag, str):
            continue
        if el.tag != f"{{{NS}}}file":
            raise DAVError(400, "A bundle request lists <ds:file> elements only.")
        wanted.append((el.text or "", el.get("etag")))
    if len(wanted) > MAX_FILES:
        raise DAVError(413, f"A bundle holds at most {MAX_FILES} files; ask in several requests.")
    planned = _plan(provider, base, wanted)
    length = sum(p.length for p in planned) + len(END_OF_ARCHIVE)
    # An exact Content-Length keeps the connection open for the client's next bundle (without
    # one, WsgiDAV closes it) and lets the client tell a cut answer from a complete one.
    start_response("200 OK", [("Content-Type", "application/x-tar"), ("Content-Length", str(length)),
                              ("X-Davsync-Bundle", limits_header()), ("Cache-Control", "no-store")])  # fmt: skip
    return _stream(provider, planned)


@dataclass
class _Planned:
    """One member as announced: failed already (`data` is the whole member), or a file whose
    stat fixed the member's length (`length`) before anything was sent."""

    rel: str
    length: int
    data: bytes = b""
    path: str = ""
    st: os.stat_result | None = None
    etag: str = ""


_MD5_PLACEHOLDER = "0" * 32  # every MD5 is 32 hex digits: the header's length is known before the hash


def _plan(provider: Any, base: str, wanted: list[tuple[str, str | None]]) -> list[_Planned]:
    """Stat every member first, so the answer's length is known before its first byte."""
    planned: list[_Planned] = []
    budget = MAX_BYTES
    folder = _Folder(provider, Counter())
    try:
        for rel, want_etag in wanted:
            item = _plan_member(folder, base, rel, want_etag, min(MAX_FILE_SIZE, budget))
            if item.st is not None:
                budget -= item.st.st_size
            planned.append(item)
    finally:
        folder.close()
    return planned


def _plan_member(folder: _Folder, base: str, rel: str, want_etag: str | None, limit: int) -> _Planned:
    problem = member_problem(rel)
    if problem is not None:
        return _failed(rel, 403, f"refused: {problem}")
    path = _join(base, rel)
    parent, _, name = path.rpartition("/")
    dir_fd = folder.open(parent or "/")
    if isinstance(dir_fd, tuple):
        return _failed(rel, *dir_fd)
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return _failed(rel, 404, "no such file")
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            return _failed(rel, 403, "the server may not read this file")
        return _failed(rel, 500, f"the server could not read this file ({e.strerror})")
    if stat.S_ISLNK(st.st_mode):
        return _failed(rel, 403, "symbolic links are not served")
    if not stat.S_ISREG(st.st_mode):
        return _failed(rel, 404, "not a file")
    etag = etag_of(st)
    if want_etag is not None and want_etag != etag:
        return _failed(rel, 412, "changed on the server since it was listed", etag=etag)
    if st.st_size > limit:
        return _failed(rel, 413, "too large for a bundle; fetch it with GET", etag=etag)
    header = member_header(rel, st.st_size, st.st_mtime_ns / 1e9, etag=etag, md5=_MD5_PLACEHOLDER)
    return _Planned(rel, len(header) + st.st_size + len(padding(st.st_size)), path=path, st=st, etag=etag)


def _stream(provider: Any, planned: list[_Planned]) -> Iterator[bytes]:
    out: list[bytes] = []
    gathered = 0
    folder = _Folder(provider, Counter(p.path.rpartition("/")[0] or "/" for p in planned if p.st is not None))
    try:
        for item in planned:
            if item.st is not None and item.st.st_size > STREAM_FROM:
                if out:
                    yield b"".join(out)
                    out, gathered = [], 0
                yield from _stream_member(provider, folder, item)
                continue
            data = item.data if item.st is None else _read_member(provider, folder, item)
            out.append(data)
            gathered += len(data)
            if gathered >= SEND_AFTER:
                yield b"".join(out)
                out, gathered = [], 0
        out.append(END_OF_ARCHIVE)
        yield b"".join(out)
    finally:
        folder.close()


class _Folder:
    """The folder of the members being read, opened once (members come folder by folder).

    Its path passes the provider's jail (no '..', no reserved names, no symlink anywhere on
    the way, nothing outside the share); each member is then opened relative to it, refusing
    a symlink, so a folder swapped for a link after the check is not followed either.
    """

    BATCH_LOOKUP = 16  # members in one folder from which the index is asked once for the whole folder

    def __init__(self, provider: Any, members: Counter[str]) -> None:
        self.provider = provider
        self.members = members
        self.path: str | None = None
        self.fd: int | None = None
        self.refusal: tuple[int, str] | None = None
        self.known: dict[str, tuple[Identity, str | None]] | None = None

    def md5(self, index_rel: str, st: os.stat_result) -> str | None:
        """The index's MD5 for a file of this folder, if it still has the identity it was hashed with."""
        if self.known is None:
            return self.provider.index.fresh_md5(index_rel, st)
        hit = self.known.get(index_rel)
        return hit[1] if hit is not None and hit[0] == Identity.of(st) else None

    def open(self, path: str) -> int | tuple[int, str]:
        """A directory fd for the folder at provider path `path`, or (status, why not)."""
        if path != self.path:
            self.close()
            self.path = path
            try:
                folder = self.provider.file_path(path)
                no_link = os.O_NOFOLLOW if path.strip("/") else 0  # (the share's root itself may be a link)
                self.fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | no_link | os.O_CLOEXEC)
                lookup = getattr(self.provider.index, "identities_in", None)  # (share links: one by one)
                if lookup is not None and self.members[path] >= self.BATCH_LOOKUP:
                    self.known = lookup(path.strip("/"))
            except DAVError as e:
                self.refusal = (e.value, "refused by the server's path rules")
            except (FileNotFoundError, NotADirectoryError):
                self.refusal = (404, "no such file")
            except OSError as e:
                self.refusal = (403, "symbolic links are not served") if e.errno == errno.ELOOP else (
                    500, f"the server could not read this folder ({e.strerror})")  # fmt: skip
        return self.fd if self.fd is not None else self.refusal or (500, "no folder")

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.path, self.fd, self.refusal, self.known = None, None, None, None


def _failed(rel: str, status: int, message: str, **attrs: str) -> _Planned:
    data = member_bytes(rel, b"", None, status=str(status), error=message, **attrs)
    return _Planned(rel, len(data), data)


def _changed(item: _Planned, message: str) -> bytes:
    """A failed member in exactly the space announced for `item` (which changed after its length
    was announced): a status header, then zeros as its data, which the client skips unread."""
    for attrs in ({"status": "409", "error": message}, {"status": "409"}):
        header = member_header(item.rel, 0, None, **attrs)
        filler = item.length - len(header)  # both are whole blocks: the filler needs no padding
        if filler >= 0:
            return member_header(item.rel, filler, None, **attrs) + bytes(filler)
    raise AssertionError("a status header is never longer than the member it replaces")


def _read_member(provider: Any, folder: _Folder, item: _Planned) -> bytes:
    """The member's bytes, of exactly `item.length`: the file as planned, or a 409 in its place."""
    assert item.st is not None
    parent, _, name = item.path.rpartition("/")
    dir_fd = folder.open(parent or "/")
    if isinstance(dir_fd, tuple):
        return _changed(item, "gone from the server while the bundle was sent")
    planned = Identity.of(item.st)
    for _attempt in range(3):
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return _changed(item, "gone from the server while the bundle was sent")
        try:
            if Identity.of(os.fstat(fd)) != planned:
                return _changed(item, "changed on the server while the bundle was sent")
            size = item.st.st_size
            data = os.read(fd, size + 1) if size else b""
            after = os.fstat(fd)
        except OSError as e:
            return _changed(item, f"the server could not read this file ({e.strerror})")
        finally:
            os.close(fd)
        if Identity.of(after) != planned:
            return _changed(item, "changed on the server while the bundle was sent")
        if len(data) != size:
            continue  # written to while read, and put back as it was: read it again
        index_rel = item.path.strip("/")
        md5 = folder.md5(index_rel, item.st)
        if md5 is None:
            md5 = hashlib.md5(data).hexdigest()
            provider.index.record_file(index_rel, item.st, md5)
        encoded = member_bytes(item.rel, data, item.st.st_mtime_ns / 1e9, etag=item.etag, md5=md5)
        assert len(encoded) == item.length
        return encoded
    return _changed(item, "the file kept changing while it was read; try again later")


class MemberTorn(Exception):
    """A member's file changed in place after its header went out: the answer is cut short."""


def _stream_member(provider: Any, folder: _Folder, item: _Planned) -> Iterator[bytes]:
    """A large member block by block, so a slow client costs a block of memory, not the file
    (20 slow readers of 16 MiB members held 1 GB). Its MD5 goes in the header, before the bytes:
    from the index, or from a first reading pass. The file is read through one descriptor (a
    PUT's rename does not tear it); one changed in place after the header went out ends the
    answer (MemberTorn: cut short, which the client tells from a complete one) rather than
    send bytes that do not match the header."""
    assert item.st is not None
    parent, _, name = item.path.rpartition("/")
    dir_fd = folder.open(parent or "/")
    if isinstance(dir_fd, tuple):
        yield _changed(item, "gone from the server while the bundle was sent")
        return
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        yield _changed(item, "gone from the server while the bundle was sent")
        return
    planned, size = Identity.of(item.st), item.st.st_size
    try:
        try:
            md5 = folder.md5(item.path.strip("/"), item.st) if Identity.of(os.fstat(fd)) == planned else ""
            if md5 is None:
                md5 = _hash_fd(fd, size, planned)
                if md5:
                    provider.index.record_file(item.path.strip("/"), item.st, md5)
        except OSError as e:
            yield _changed(item, f"the server could not read this file ({e.strerror})")
            return
        if not md5:
            yield _changed(item, "changed on the server while the bundle was sent")
            return
        header = member_header(item.rel, size, item.st.st_mtime_ns / 1e9, etag=item.etag, md5=md5)
        assert len(header) + size + len(padding(size)) == item.length
        yield header
        pos = 0
        while pos < size:
            block = os.pread(fd, min(STREAM_BLOCK, size - pos), pos)
            if not block or Identity.of(os.fstat(fd)) != planned:
                log.warning("%s changed on the server's disk while a bundle sent it; that answer was cut short",
                            item.path)  # fmt: skip
                raise MemberTorn(item.path)
            yield block
            pos += len(block)
        yield padding(size)
    finally:
        os.close(fd)


def _hash_fd(fd: int, size: int, planned: Identity) -> str:
    """The file's MD5, read in blocks; '' when it is not `size` bytes or changed meanwhile."""
    h, pos = hashlib.md5(), 0
    while pos < size:
        block = os.pread(fd, min(STREAM_BLOCK, size - pos), pos)
        if not block:
            return ""
        h.update(block)
        pos += len(block)
    return h.hexdigest() if Identity.of(os.fstat(fd)) == planned else ""


# --- bulk upload: many files in one request -------------------------------------------------


@dataclass
class _Outcome:
    rel: str
    status: int
    message: str = ""
    etag: str | None = None
    md5: str | None = None


@dataclass
class _Staged:
    rel: str
    path: str
    file_path: str
    tmp: str
    md5: str
    if_match: str | None
    if_none_match: str | None
    outcome: _Outcome


def _bulk_upload(environ: dict, start_response: StartResponse, provider: Any) -> Iterable[bytes]:
    if not may_write(environ, provider):
        raise DAVError(403, "Your access to this share is read-only.")
    if getattr(provider, "mode", None):
        raise DAVError(403, "Bulk upload is not available through a share link; upload with PUT.")
    base = _collection(environ, provider).path
    if "wsgidav.conditions.if" not in environ:
        util.parse_if_header_dict(environ)
    source = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "").strip()
    budget = int(length) if length.isdigit() else None
    if budget is not None and budget > MAX_BYTES + 4 * MAX_FILES * 1024 + 1024:
        raise DAVError(413, f"A bulk upload carries at most {MAX_BYTES} bytes; send several.")

    def read(n: int) -> bytes:
        nonlocal budget
        if budget is not None:
            n = min(n, budget)
            if n <= 0:
                return b""
        chunk = source.read(n)
        if budget is not None:
            budget -= len(chunk)
        return chunk

    outcomes: list[_Outcome] = []
    staged: list[_Staged] = []
    try:
        reader = PaxReader(read)
        total = 0
        while (member := reader.next()) is not None:
            if len(outcomes) >= MAX_FILES:
                raise DAVError(413, f"A bulk upload carries at most {MAX_FILES} files; send several.")
            total += member.size
            if total > MAX_BYTES:
                raise DAVError(413, f"A bulk upload carries at most {MAX_BYTES} bytes; send several.")
            item = _receive_member(reader, member, provider, base, environ)
            outcomes.append(item.outcome if isinstance(item, _Staged) else item)
            if isinstance(item, _Staged):
                staged.append(item)
    except (TarFormatError, OSError, ValueError) as e:
        _discard(staged)
        environ["wsgidav.all_input_read"] = 1
        if isinstance(e, OSError) and not isinstance(e, CutStream) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DAVError(507, "The server's disk is full; nothing was placed.") from None
        what = "cut off" if isinstance(e, (CutStream, OSError)) else "malformed"
        raise DAVError(400, f"The bulk upload body was {what} ({e}); nothing was placed.") from None
    except BaseException:
        _discard(staged)
        raise
    environ["wsgidav.all_input_read"] = 1
    try:
        flush_files([Path(s.tmp) for s in staged])  # one flush pass for the request (syncfs where it is safe)
    except OSError:
        _discard(staged)
        raise DAVError(507, "The server could not make the files durable; nothing was placed.") from None
    folders: set[str] = set()
    placed: list[tuple[str, os.stat_result, str]] = []
    try:
        for s in staged:
            _place(s, provider, environ, folders, placed)
    finally:  # something unforeseen failed the request: no member left behind as a temp file
        _discard([s for s in staged if s.outcome.status == 0])
    flush_files([Path(f) for f in sorted(folders)], folders=True)
    record_many = getattr(provider.index, "record_many", None)  # one index transaction for the request
    if record_many is not None:
        record_many(placed)
    else:
        for rel, st, md5 in placed:
            provider.index.record_file(rel, st, md5)
    body = _multistatus(environ, provider, base, outcomes)
    start_response("207 Multi-Status", [("Content-Type", "application/xml; charset=utf-8"),
                                        ("Content-Length", str(len(body)))])  # fmt: skip
    return [body]


def _receive_member(reader: PaxReader, member: Member, provider: Any, base: str, environ: dict) -> _Staged | _Outcome:
    """Stream one member into a temp file beside its target (not yet durable, not yet placed)."""
    rel = member.path
    md5 = (member.attrs.get("md5") or "").lower()
    problem = member_problem(rel)
    if problem is not None:
        return _Outcome(rel, 403, f"refused: {problem}")
    if len(md5) != 32 or not set(md5) <= _MD5_HEX:
        return _Outcome(rel, 400, "each member needs DAVSYNC.md5 (32 hex digits)")
    if member.size > MAX_FILE_SIZE:
        return _Outcome(rel, 413, f"members are at most {MAX_FILE_SIZE} bytes; upload this one with PUT")
    if member.mtime is not None and not valid_mtime(member.mtime):
        return _Outcome(rel, 400, f"the member's mtime ({member.mtime}) is not a time a file can have")
    path = _join(base, rel)
    try:
        file_path = provider.file_path(path)
    except DAVError as e:
        return _Outcome(rel, e.value, "refused by the server's path rules")
    folder = os.path.dirname(file_path)
    if not os.path.isdir(folder) or os.path.islink(folder):
        return _Outcome(rel, 409, "the parent folder does not exist; create it first (MKCOL)")
    if os.path.isdir(file_path):
        return _Outcome(rel, 405, "a folder has this name")
    lock_man = provider.lock_manager
    if lock_man is not None:
        try:
            lock_man.check_write_permission(url=provider.ref_url_of(path), depth="0",
                                            token_list=environ["wsgidav.ifLockTokenList"],
                                            principal=environ.get("wsgidav.auth.user_name", "anonymous"))  # fmt: skip
        except DAVError as e:
            return _Outcome(rel, e.value, "locked")
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        return _Outcome(rel, 403 if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else 500,
                        f"the server cannot write in this folder ({e.strerror})")  # fmt: skip
    digest = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out:

            def write(chunk: bytes) -> None:
                digest.update(chunk)
                out.write(chunk)

            reader.data_into(member, write)
            # Mode and mtime before the flush pass, so they are as durable as the content.
            os.fchmod(out.fileno(), _mode_for(file_path))
            if member.mtime is not None:
                out.flush()
                os.utime(out.fileno(), (member.mtime, member.mtime))
    except BaseException:
        os.unlink(tmp)
        raise
    got = digest.hexdigest()
    if got != md5:
        os.unlink(tmp)
        return _Outcome(rel, 400, f"MD5 mismatch: the body's MD5 is {got}, the member said {md5}; nothing was replaced")
    if_match = member.attrs.get("if-match")
    if_none = member.attrs.get("if-none-match")
    return _Staged(rel, path, file_path, tmp, md5, if_match, if_none, _Outcome(rel, 0))


def _mode_for(file_path: str) -> int:
    """A replacement keeps the replaced file's permissions; a new file gets 0666 less the umask."""
    try:
        return os.stat(file_path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_UMASK


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once (it is per process; reading it means setting it)


def _place(s: _Staged, provider: Any, environ: dict, folders: set[str],
           placed: list[tuple[str, os.stat_result, str]]) -> None:  # fmt: skip
    """Rename one verified member into place under its path lock, its preconditions re-checked
    against what is there now (like a PUT); the replaced version is kept."""
    conditions: dict[str, str] = {}
    if s.if_match is not None:
        conditions["HTTP_IF_MATCH"] = s.if_match if s.if_match.startswith(('"', "W/")) else f'"{s.if_match}"'
    if s.if_none_match is not None:
        conditions["HTTP_IF_NONE_MATCH"] = s.if_none_match
    out = s.outcome
    try:
        with PATH_LOCKS.hold(s.file_path):
            recheck(conditions, s.file_path)
            if os.path.isdir(s.file_path):
                raise DAVError(405, "a folder has this name")
            created = _link_new(s.tmp, s.file_path)
            if created:
                folders.add(os.path.dirname(s.file_path))
            else:
                created = not provider.replace(s.tmp, s.file_path, s.path.strip("/"), environ)
            st = os.stat(s.file_path)
        placed.append((s.path.strip("/"), st, s.md5))
        out.status, out.etag, out.md5 = (201 if created else 204), etag_of(st), s.md5
    except DAVError as e:
        _unlink(s.tmp)
        out.status, out.message = e.value, _dav_message(e)
    except OSError as e:
        _unlink(s.tmp)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            out.status, out.message = 507, "the server's disk is full; nothing was replaced"
        else:
            out.status, out.message = 500, f"the server could not place the file ({e.strerror})"


def _link_new(tmp: str, dest: str) -> bool:
    """Create dest from tmp only if nothing is there (a hard link cannot overwrite); False when
    something is there, or hard links are unsupported, so the caller replaces it, keeping a version."""
    if os.path.lexists(dest):
        return False
    try:
        os.link(tmp, dest)
    except OSError:
        return False
    os.unlink(tmp)
    return True


def _dav_message(e: DAVError) -> str:
    text = e.context_info or ""
    return text or {412: "a precondition failed: the file changed meanwhile"}.get(e.value, "refused")


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _discard(staged: list[_Staged]) -> None:
    for s in staged:
        _unlink(s.tmp)


_STATUS_TEXT = {201: "Created", 204: "No Content", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
                405: "Method Not Allowed", 409: "Conflict", 412: "Precondition Failed", 413: "Content Too Large",
                423: "Locked", 500: "Internal Server Error", 507: "Insufficient Storage"}  # fmt: skip


def _multistatus(environ: dict, provider: Any, base: str, outcomes: list[_Outcome]) -> bytes:
    share = environ.get("SCRIPT_NAME", "") + provider.share_path + base.rstrip("/")
    parts = ['<?xml version="1.0" encoding="utf-8"?>\n<d:multistatus xmlns:d="DAV:" xmlns:ds="urn:davsync:">']
    for o in outcomes:
        href = quote(f"{share}/{o.rel}", safe="/!$&'()*+,;=:@~")
        parts.append(f"<d:response><d:href>{escape(href)}</d:href>"
                     f"<d:status>HTTP/1.1 {o.status} {_STATUS_TEXT.get(o.status, 'Error')}</d:status>"
                     f"<ds:path>{escape(_xml_text(o.rel))}</ds:path>")  # fmt: skip
        if o.etag is not None:
            parts.append(f'<ds:etag>"{escape(o.etag)}"</ds:etag>')
        if o.md5 is not None:
            parts.append(f"<ds:md5>{o.md5}</ds:md5>")
        if o.message:
            parts.append(f"<d:responsedescription>{escape(_xml_text(o.message))}</d:responsedescription>")
        parts.append("</d:response>")
    parts.append("</d:multistatus>")
    return "".join(parts).encode("utf-8", "replace")


def _xml_text(text: str) -> str:
    """Characters XML 1.0 cannot carry become U+FFFD (a hostile path must not break the answer)."""
    return "".join(
        c if c in "\t\n\r" or "\x20" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd" or c >= "\U00010000" else "\ufffd"
        for c in text
    )
