"""The bulk POST: many small files up in one request (the wire format: bundle.py's docstring).

Each member goes to a hidden temp file beside its target, is verified by its MD5, made durable
(one flush for the request) and renamed into place under the path's lock after its
preconditions are checked again, exactly like a PUT (guard.py), the replaced version kept.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from wsgidav import util
from wsgidav.dav_error import DAVError

from ..osfs import flush_files
from ..paxstream import (
    CutStream,
    Member,
    PaxReader,
    TarFormatError,
)
from .guard import PATH_LOCKS, recheck
from .manyfiles import MAX_BYTES, MAX_FILE_SIZE, MAX_FILES, MD5_HEX, collection, join, may_write, member_problem
from .names import TEMP_PREFIX, TEMP_SUFFIX, etag_of
from .upload import valid_mtime
from .wsgitypes import StartResponse

log = logging.getLogger("davsync.server")


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


def bulk_upload(environ: dict, start_response: StartResponse, provider: Any) -> Iterable[bytes]:
    if not may_write(environ, provider):
        raise DAVError(403, "Your access to this share is read-only.")
    if getattr(provider, "mode", None):
        raise DAVError(403, "Bulk upload is not available through a share link; upload with PUT.")
    base = collection(environ, provider).path
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
    if len(md5) != 32 or not set(md5) <= MD5_HEX:
        return _Outcome(rel, 400, "each member needs DAVSYNC.md5 (32 hex digits)")
    if member.size > MAX_FILE_SIZE:
        return _Outcome(rel, 413, f"members are at most {MAX_FILE_SIZE} bytes; upload this one with PUT")
    if member.mtime is not None and not valid_mtime(member.mtime):
        return _Outcome(rel, 400, f"the member's mtime ({member.mtime}) is not a time a file can have")
    path = join(base, rel)
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
