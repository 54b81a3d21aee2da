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
import stat
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lxml import etree
from wsgidav.dav_error import DAVError

from ..paxstream import (
    END_OF_ARCHIVE,
    member_bytes,
    member_header,
    padding,
)
from .bulkupload import bulk_upload
from .http import peek_body
from .index import Identity
from .manyfiles import (
    BUNDLE,
    MAX_BODY,
    MAX_BYTES,
    MAX_FILE_SIZE,
    MAX_FILES,
    NS,
    SEND_AFTER,
    STREAM_BLOCK,
    STREAM_FROM,
    collection,
    join,
    limits_header,
    may_write,
    member_problem,
)
from .middleware import Middleware
from .names import etag_of
from .wsgitypes import StartResponse

log = logging.getLogger("davsync.server")


class BundleMiddleware(Middleware):
    """In WsgiDAV's stack after authentication and the write guard: answers the bundle REPORT
    and the bulk POST, and adds the features to OPTIONS answers; everything else passes."""

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
            return bulk_upload(environ, start_response, provider)
        elif method == "OPTIONS" and environ.get("PATH_INFO") != "*":
            return self.app(environ, _with_features(start_response, environ, provider))
        return self.app(environ, start_response)


def _content_type(environ: dict) -> str:
    return environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()


def _with_features(start_response: StartResponse, environ: dict, provider: Any) -> StartResponse:
    link_mode = getattr(provider, "mode", None)  # share links: no bulk upload; drop boxes: no reading either

    def start(status: str, headers: list, exc_info: Any = None) -> Any:
        if status.startswith("200") and link_mode != "drop" and getattr(provider, "only", None) is None:
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


# --- bundle: many files in one answer -----------------------------------------------------


def _serve_bundle(environ: dict, start_response: StartResponse, provider: Any, body: etree._Element) -> Iterable[bytes]:
    if getattr(provider, "only", None) is not None:  # a link to one file (link_fs.py): its folder is not served
        raise DAVError(403, "A link to one file offers no bundles; fetch the file with GET.")
    base = collection(environ, provider).path
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
    path = join(base, rel)
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
