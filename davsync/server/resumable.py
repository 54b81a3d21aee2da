"""Resumable uploads for big files, in the wire form of the IETF httpbis draft "Resumable
Uploads for HTTP" (Upload-Offset, Upload-Complete, Upload-Length; HEAD, PATCH, DELETE).

A davsync extension advertised in OPTIONS (`X-Davsync-Resumable: expires=<seconds>`); plain
WebDAV clients never send these headers and see ordinary PUT.

- **Create**: `POST` (or `PUT`) to the target file with `Upload-Complete: ?0` (or `?1`),
  optionally `Upload-Length`, and the PUT headers: `OC-Checksum: MD5:...`, `X-OC-Mtime`,
  `If-Match` / `If-None-Match`. The preconditions are checked now (412) and again at the
  commit. The body (often empty) is the first part. Answer: `201 Created` with `Location`
  (the upload resource, `/.~davsync-upload/<id>`) and `Upload-Offset`. There is no 104
  interim response (a WSGI application cannot send one), so a client that must survive a
  cut creates with an empty body, journals the Location, then appends.
- **Offset**: `HEAD <Location>` -> 204 with `Upload-Offset`, `Upload-Complete: ?0`,
  `Upload-Length` (when known), `Cache-Control: no-store`.
- **Append**: `PATCH <Location>` with `Content-Type: application/partial-upload`,
  `Upload-Offset` (409 with the server's `Upload-Offset` when it differs) and
  `Upload-Complete`; 204 with the new offset. A part cut off keeps every byte that arrived.
- **Commit** (the part with `Upload-Complete: ?1`): the whole-file MD5 is checked against
  OC-Checksum (given at the creation, or with this last part: a client that hashes while it
  sends knows it only now; given both times, they must agree), then the file is placed
  exactly as a PUT's (upload.finish: the path's lock, If-Match / If-None-Match re-checked
  right before the rename, the previous version kept, the index updated) and answered as a
  PUT (201/204, ETag, OC-Checksum). A failed precondition or MD5 ends the session.
- **Cancel**: `DELETE <Location>` -> 204.

A drop link (link_gate.py) uses the same sessions: its gate puts a namer in the environ
(DROP_NAMER), and the commit places the file under the first free name ("name (2)"), as a drop's
PUT does; nothing in a drop's answers tells which names exist.

Sessions live in the server's state dir (`uploads/<id>.json` and `<id>.data`, outside the
share), belong to the user who created them, and are swept after EXPIRES seconds idle.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from wsgidav import util
from wsgidav.dav_error import DAVError
from wsgidav.mw.base_mw import BaseMiddleware

from .auth import _plain
from .blocks import FileDigest
from .guard import recheck
from .names import TEMP_PREFIX, TEMP_SUFFIX, is_internal_path
from .upload import (
    UploadError,
    answer_upload,
    body_chunks,
    body_length,
    expected_md5,
    finish,
    parse_oc_mtime,
    storage_error,
)
from .wsgitypes import StartResponse

PREFIX = f"/{TEMP_PREFIX}upload/"  # upload resources: a reserved name, never a share path
HEADER = "X-Davsync-Resumable"
EXPIRES = 24 * 3600  # idle seconds before a session is swept (Nextcloud's chunked uploads: 24 h)
BLOCK = 256 * 1024  # body reads, as upload.receive reads a PUT body
LOCK_WAIT = 30.0  # a resumed part waits this long for a cut one still draining on the server
PARTIAL = "application/partial-upload"
DROP_NAMER = "davsync.drop_namer"  # environ: a drop link's (path) -> (free path, release) at the commit


@dataclass
class Session:
    """One upload in progress: where it goes, who may continue it, what it must end as."""

    id: str
    path: str  # WsgiDAV path of the target
    user: str
    length: int | None
    md5: str | None
    mtime: int | None
    if_match: str | None
    if_none_match: str | None
    lock_tokens: list[str] = field(default_factory=list)


class SessionStore:
    """Sessions in `<state>/uploads`; one lock per session serialises its parts."""

    def __init__(self, folder: Path, expires: float = EXPIRES) -> None:
        self.folder = folder
        self.expires = expires
        folder.mkdir(parents=True, exist_ok=True)
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._hashes: dict[str, tuple[int, Any]] = {}  # id -> (offset, md5 so far): no re-read
        self.sweep()

    def data(self, sid: str) -> Path:
        return self.folder / f"{sid}.data"

    def _meta(self, sid: str) -> Path:
        return self.folder / f"{sid}.json"

    def create(self, session: Session) -> None:
        self.sweep()
        self.data(session.id).touch()
        tmp = self.folder / f"{session.id}.json.tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(session), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._meta(session.id))
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def load(self, sid: str) -> Session | None:
        if not sid or not all(c.isalnum() or c in "-_" for c in sid):
            return None
        try:
            with open(self._meta(sid)) as f:
                return Session(**json.load(f))
        except (OSError, ValueError, TypeError):
            return None

    def offset(self, sid: str) -> int:
        return os.stat(self.data(sid)).st_size

    def lock(self, sid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(sid, threading.Lock())

    def remove(self, sid: str) -> None:
        for p in (self._meta(sid), self.data(sid)):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        with self._guard:
            self._locks.pop(sid, None)
            self._hashes.pop(sid, None)

    def hash_to(self, sid: str, offset: int) -> Any:
        """The MD5 of the first `offset` bytes: remembered from the last part, else read again
        (once per resume after a server restart)."""
        with self._guard:
            known = self._hashes.get(sid)
        if known is not None and known[0] == offset:
            return known[1]
        session = self.load(sid)
        digest = FileDigest(session.length if session is not None else None)
        with open(self.data(sid), "rb") as f:
            left = offset
            while left > 0:
                chunk = f.read(min(BLOCK, left))
                if not chunk:
                    break
                digest.update(chunk)
                left -= len(chunk)
        return digest

    def remember(self, sid: str, offset: int, digest: Any) -> None:
        with self._guard:
            self._hashes[sid] = (offset, digest)

    def sweep(self, now: float | None = None) -> int:
        """Remove sessions idle for longer than `expires` (and stray files); returns how many."""
        now = time.time() if now is None else now
        removed = 0
        for p in self.folder.glob("*.json"):
            sid = p.stem
            try:
                touched = max(p.stat().st_mtime, self.data(sid).stat().st_mtime)
            except FileNotFoundError:
                touched = 0.0
            if now - touched > self.expires and not self.lock(sid).locked():
                self.remove(sid)
                removed += 1
        return removed


def sessions_of(config: dict) -> SessionStore | None:
    store: SessionStore | None = config.get("davsync", {}).get("uploads")
    return store


class ResumableMiddleware(BaseMiddleware):
    """In WsgiDAV's stack after authentication: creates, continues and cancels upload sessions,
    and advertises them in OPTIONS; every other request passes untouched."""

    def __init__(self, wsgidav_app: Any, next_app: Any, config: dict) -> None:
        super().__init__(wsgidav_app, next_app, config)
        self.app = next_app
        self.store = sessions_of(config)

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        provider = environ.get("wsgidav.provider")
        store = self.store
        if provider is None or store is None:
            return self.app(environ, start_response)
        if getattr(provider, "mode", None) and not (provider.mode == "drop" and DROP_NAMER in environ):
            return self.app(environ, start_response)  # share links: only a drop link's gate sends these here
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        if path.startswith(PREFIX):
            return _on_session(store, provider, environ, start_response, path[len(PREFIX) :])
        if method in ("POST", "PUT") and "HTTP_UPLOAD_COMPLETE" in environ:
            return _create(store, provider, environ, start_response)
        if method == "OPTIONS" and path != "*" and _may_write(environ, provider):
            return self.app(environ, _advertised(start_response, store))
        return self.app(environ, start_response)


def _advertised(start_response: StartResponse, store: SessionStore) -> StartResponse:
    def start(status: str, headers: list, exc_info: Any = None) -> Any:
        if status.startswith("200"):
            headers = [*headers, (HEADER, f"expires={int(store.expires)}")]
        return start_response(status, headers, exc_info)

    return start


def _may_write(environ: dict, provider: Any) -> bool:
    return not (provider.is_readonly() or environ.get("davsync.readonly"))


def _user(environ: dict) -> str:
    return str(environ.get("wsgidav.auth.user_name") or "")


def _flag(environ: dict, name: str) -> bool | None:
    """A structured-field boolean header (`?1` / `?0`); None when absent."""
    raw = environ.get(name)
    if raw is None:
        return None
    value = raw.strip()
    if value not in ("?0", "?1"):
        raise DAVError(400, f"{name[5:].replace('_', '-').title()} must be ?0 or ?1.")
    return value == "?1"


def _number(environ: dict, name: str) -> int | None:
    raw = environ.get(name)
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise DAVError(400, f"{name[5:].replace('_', '-').title()} must be a non-negative integer.")
    return int(raw.strip())


def _create(store: SessionStore, provider: Any, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if not _may_write(environ, provider):
        raise DAVError(403, "Your access to this share is read-only; ask the operator for a read-write account.")
    if path.strip("/") == "" or path.endswith("/"):
        raise DAVError(405, "An upload needs a file name.")
    if is_internal_path(path):
        raise DAVError(403, "That name is reserved for davsync's upload files.")
    complete = _flag(environ, "HTTP_UPLOAD_COMPLETE")
    length = _number(environ, "HTTP_UPLOAD_LENGTH")
    try:
        md5 = expected_md5(environ.get("HTTP_OC_CHECKSUM"))
        mtime = parse_oc_mtime(environ.get("HTTP_X_OC_MTIME"))
    except UploadError as e:
        raise DAVError(e.status, e.message) from None
    res = None if DROP_NAMER in environ else provider.get_resource_inst(path, environ)  # a drop: named later
    if res is not None and res.is_collection:
        raise DAVError(405, "Cannot upload onto a folder.")
    if not provider.is_collection(util.get_uri_parent(path), environ):
        raise DAVError(409, "The parent folder does not exist; make it first.")
    recheck(environ, provider.file_path(path))  # fail early; checked again at the commit
    util.parse_if_header_dict(environ)
    tokens = list(environ.get("wsgidav.ifLockTokenList", []))
    if provider.lock_manager is not None:
        provider.lock_manager.check_write_permission(
            url=provider.ref_url_of(path), depth="0", token_list=tokens, principal=_user(environ)
        )
    session = Session(
        secrets.token_urlsafe(24), path, _user(environ), length, md5, mtime,
        environ.get("HTTP_IF_MATCH"), environ.get("HTTP_IF_NONE_MATCH"), tokens,
    )  # fmt: skip
    try:
        store.create(session)
    except OSError as e:
        raise DAVError(storage_error(e).status, storage_error(e).message) from None
    location = environ.get("SCRIPT_NAME", "").rstrip("/") + PREFIX + session.id
    with store.lock(session.id):
        return _append(store, provider, environ, start_response, session, 0, bool(complete), created=location)


def _on_session(
    store: SessionStore, provider: Any, environ: dict, start_response: StartResponse, sid: str
) -> Iterable[bytes]:
    session = store.load(sid)
    if session is None or session.user != _user(environ):
        raise DAVError(404, "No such upload: it was finished, cancelled or expired; start it again.")
    method = environ["REQUEST_METHOD"]
    if method == "HEAD":
        headers = [("Upload-Offset", str(store.offset(sid))), ("Upload-Complete", "?0"),
                   ("Cache-Control", "no-store"), ("Content-Length", "0")]  # fmt: skip
        if session.length is not None:
            headers.append(("Upload-Length", str(session.length)))
        start_response("204 No Content", headers)
        return [b""]
    if method == "DELETE":
        lock = store.lock(sid)
        if not lock.acquire(timeout=LOCK_WAIT):
            raise DAVError(409, "A part of this upload is still arriving; cancel again shortly.")
        try:
            store.remove(sid)
        finally:
            lock.release()
        start_response("204 No Content", [("Content-Length", "0")])
        return [b""]
    if method != "PATCH":
        raise DAVError(405, "An upload resource takes HEAD, PATCH and DELETE.")
    if not _may_write(environ, provider):
        raise DAVError(403, "Your access to this share is read-only; ask the operator for a read-write account.")
    ctype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    if ctype != PARTIAL:
        raise DAVError(415, f"A part is sent as {PARTIAL}.")
    offset = _number(environ, "HTTP_UPLOAD_OFFSET")
    complete = _flag(environ, "HTTP_UPLOAD_COMPLETE")
    if offset is None or complete is None:
        raise DAVError(400, "A part needs Upload-Offset and Upload-Complete.")
    try:
        md5 = expected_md5(environ.get("HTTP_OC_CHECKSUM"))
    except UploadError as e:
        raise DAVError(e.status, e.message) from None
    if md5 is not None and not complete:
        raise DAVError(400, "OC-Checksum comes with the last part (Upload-Complete: ?1) or at the creation.")
    lock = store.lock(sid)
    if not lock.acquire(timeout=LOCK_WAIT):
        raise DAVError(409, "A part of this upload is still arriving; ask for the offset again shortly.")
    try:
        if store.load(sid) is None:
            raise DAVError(404, "No such upload: it was finished, cancelled or expired; start it again.")
        have = store.offset(sid)
        if offset != have:
            return _plain(start_response, "409 Conflict", f"The server has {have} bytes of this upload.",
                          [("Upload-Offset", str(have)), ("Cache-Control", "no-store")])  # fmt: skip
        if md5 is not None and session.md5 is not None and md5 != session.md5:
            store.remove(sid)
            raise DAVError(400, "The last part's OC-Checksum differs from the upload's; nothing was replaced.")
        session = replace(session, md5=md5 or session.md5)
        return _append(store, provider, environ, start_response, session, have, complete)
    finally:
        lock.release()


def _append(
    store: SessionStore,
    provider: Any,
    environ: dict,
    start_response: StartResponse,
    session: Session,
    offset: int,
    complete: bool,
    created: str | None = None,
) -> Iterable[bytes]:
    """Append this request's body to the session (caller holds its lock); commit when complete."""
    try:
        size = body_length(environ)
    except UploadError as e:
        raise DAVError(e.status, e.message) from None
    if session.length is not None and size is not None and offset + size > session.length:
        raise DAVError(400, f"The part goes past Upload-Length ({session.length} bytes).")
    digest = store.hash_to(session.id, offset)
    received = 0
    cut = False
    stream = environ["wsgi.input"]
    with open(store.data(session.id), "ab") as out:
        try:
            for chunk in body_chunks(stream, size, BLOCK):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
        except OSError:
            cut = True  # the client went away: keep every byte that arrived
        except Exception:  # cheroot raises its own errors for a broken chunked body
            cut = True
        out.flush()
        os.fsync(out.fileno())
    environ["wsgidav.all_input_read"] = 1
    offset += received
    store.remember(session.id, offset, digest)
    if cut or (size is not None and received < size):
        return _plain(start_response, "400 Bad Request",
                      f"The part was cut off; the server has {offset} bytes: resume from there.",
                      [("Upload-Offset", str(offset)), ("Cache-Control", "no-store")])  # fmt: skip
    if complete:
        if session.length is not None and offset != session.length:
            raise DAVError(400, f"The upload ended at {offset} bytes, Upload-Length said {session.length}.")
        return _commit(store, provider, environ, start_response, session, digest)
    status = "201 Created" if created else "204 No Content"
    headers = [("Upload-Offset", str(offset)), ("Upload-Complete", "?0"), ("Content-Length", "0")]
    if created:
        headers.append(("Location", created))
    if session.length is not None:
        headers.append(("Upload-Length", str(session.length)))
    start_response(status, headers)
    return [b""]


def _commit(
    store: SessionStore, provider: Any, environ: dict, start_response: StartResponse, session: Session,
    digest: FileDigest,
) -> Iterable[bytes]:
    """Place the assembled file exactly as a PUT places its body; the session ends either way,
    except when the server could not write (then the client may try the commit again)."""
    namer = environ.get(DROP_NAMER)
    if namer is None:
        return _place(store, provider, environ, start_response, session, digest)
    path, release = namer(session.path)
    if path is None:
        raise DAVError(409, "Too many files with this name; rename it and try again.")
    try:  # the free name, and never over a file that appeared meanwhile
        session = replace(session, path=path, if_match=None, if_none_match="*")
        return _place(store, provider, environ, start_response, session, digest)
    finally:
        release()


def _place(
    store: SessionStore, provider: Any, environ: dict, start_response: StartResponse, session: Session,
    digest: FileDigest,
) -> Iterable[bytes]:
    env = {k: v for k, v in environ.items() if k not in ("HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH")}
    env.update(PATH_INFO=session.path, REQUEST_METHOD="PUT")
    if session.if_match is not None:
        env["HTTP_IF_MATCH"] = session.if_match
    if session.if_none_match is not None:
        env["HTTP_IF_NONE_MATCH"] = session.if_none_match
    dest = provider.file_path(session.path)
    folder = os.path.dirname(dest)
    existed = os.path.exists(dest)
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder)
        os.close(fd)
    except OSError as e:
        raise DAVError(storage_error(e).status, storage_error(e).message) from None
    data = store.data(session.id)
    try:
        if os.stat(folder).st_dev == os.stat(data).st_dev:
            os.replace(data, tmp)  # same filesystem: no copy
        else:
            shutil.copyfile(data, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        lock_man = provider.lock_manager
        place = provider.place_upload(session.path, env)
        if lock_man is not None:
            with lock_man.write_transaction(
                url=provider.ref_url_of(session.path), token_list=session.lock_tokens, principal=session.user
            ):
                upload = finish(tmp, dest, digest, existed=existed, md5_expected=session.md5, mtime=session.mtime,
                                place=place)  # fmt: skip
        else:
            upload = finish(tmp, dest, digest, existed=existed, md5_expected=session.md5, mtime=session.mtime,
                            place=place)  # fmt: skip
    except BaseException as e:
        if os.path.exists(tmp) and not data.exists():
            os.replace(tmp, data)  # not placed: the parts stay for another try...
        elif os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, UploadError) or (isinstance(e, DAVError) and e.value in (412, 423)):
            store.remove(session.id)  # ...unless the file can never be placed as asked
        if isinstance(e, UploadError):
            raise DAVError(e.status, e.message) from None
        if isinstance(e, OSError):
            raise DAVError(storage_error(e).status, storage_error(e).message) from None
        raise
    store.remove(session.id)
    return answer_upload(env, start_response, provider, session.path, upload,
                         mtime_given=session.mtime is not None)  # fmt: skip

