"""Resumable uploads of big files, the client's half (wire form and server: server/resumable.py).

A file of MIN_SIZE or more goes to a server that offers the extension as an upload session:
created with an empty body (carrying the MD5, mtime and If-Match / If-None-Match a PUT would
carry), its URL journaled and committed before any byte is sent, then appended with PATCH.
After a cut (in this run: the retry policy; or a killed client: the next run), the server is
asked how much it holds and only the rest is sent. The session is resumed only for the same
content (size and MD5) against the same base; otherwise it is cancelled and a new one made.
Anything else about the upload (what the caller does with a 412, a changed source, a lost
answer) is exactly as for Remote.put_file.

A new file the scan left unhashed (`hashed_as_sent`; its md5 None here) is read once: its session
is made without an MD5, the body is hashed as it is sent, and the MD5 goes with a last, empty part
(the commit: the server checks it and the precondition there, as always). The file's stat is
taken before and after the send: a file that changed meanwhile has its session cancelled, so the
server never places bytes that were not hashed as one version. Its journaled session is resumed
only for the same stat (size, mtime, file ID, change time); the part already sent is read again
to continue the MD5.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from .. import osfs
from ..checksums import md5_checksum
from ..scan import md5_of_file
from ..units import human_size
from . import delta
from .bundle import features
from .local import entry_of_stat
from .paths import shown
from .refusals import SourceChanged, not_held, write_error
from .remote import PutRequest, Uploaded
from .transport import RemoteError
from .upload_body import SourceFailed, UploadBody

if TYPE_CHECKING:
    import requests

    from .hooks import TransferHooks
    from .journal import Journal
    from .local import Unhashed
    from .remote import Remote

MIN_SIZE = 8 * 1024 * 1024  # smaller files go by one PUT: a cut costs little to send again
PARTIAL = "application/partial-upload"
_KEY = "resumable-upload:"  # journal meta key prefix, per path
_READ = 1024 * 1024  # reading back a resumed part for its MD5


@dataclass(frozen=True)
class _Record:
    """A journaled session: its URL, and the content and base it was made for."""

    url: str
    md5: str | None  # None: hashed as it is sent
    size: int
    if_match: str | None
    if_none_match: bool
    stamp: list[int] | None = None  # an unhashed file's (size, mtime_ns, file ID, ctime_ns) when sent


def hashed_as_sent(remote: Remote, on_server: Collection[str], *, fold_case: bool) -> Unhashed:
    """Which new files the scan leaves unhashed (client/local.py): big enough to go as a session,
    to a server that offers them, at a path the server does not list (no content to compare):
    their MD5 is taken as they are sent and given with the last part, so they are read once."""
    listed: set[str] | None = None

    def take(path: str, size: int) -> bool:
        nonlocal listed
        if size < MIN_SIZE:
            return False
        if listed is None:
            listed = {p.casefold() if fold_case else p for p in on_server}
        return (path.casefold() if fold_case else path) not in listed and features(remote).resumable

    return take


def _stamp(disk: Path) -> list[int]:
    """What tells a file changed: size, mtime, file ID, change time (as the scan compares them)."""
    e = entry_of_stat(disk, os.stat(disk))
    return [e.size, e.mtime_ns, e.ino or 0, e.ctime_ns or 0]


class _Gone(RemoteError):
    """The session expired or was cancelled on the server: start a new one."""


def put_file(remote: Remote, journal: Journal, req: PutRequest, hooks: TransferHooks) -> Uploaded:
    """Remote.put_file, as a delta (client/delta.py) or resumable for a big file when the server
    offers it; `req.md5` None: not read yet (hashed as it is sent where a session allows)."""
    disk = osfs.extended_path(req.source)
    stamp = _stamp(disk)
    if req.md5 is None and (req.if_match or stamp[0] < MIN_SIZE or not features(remote).resumable):
        req = replace(req, md5=md5_of_file(disk))  # a whole PUT or a delta needs it first
    if req.if_match and req.md5 is not None:  # an edit: only the changed blocks, when the server has its list
        pushed = delta.push(remote, req.path, req.source, md5=req.md5, if_match=req.if_match, mtime_ns=req.mtime_ns,
                            href=req.href, progress=hooks.progress)  # fmt: skip
        if pushed is not None:
            return pushed
    if req.md5 is not None and (stamp[0] < MIN_SIZE or not features(remote).resumable):
        return remote.put_file(req, progress=hooks.progress, stop=hooks.stop)
    return _Upload(remote, journal, req, stamp, hooks).run()


class _Upload:
    def __init__(
        self, remote: Remote, journal: Journal, req: PutRequest, stamp: list[int], hooks: TransferHooks
    ) -> None:
        self.remote, self.journal, self.req, self.stop, self.note = remote, journal, req, hooks.stop, hooks.note
        self.path, self.source = req.path, req.source
        self.want = _Record("", req.md5, stamp[0], req.if_match, req.if_none_match,
                            stamp if req.md5 is None else None)  # fmt: skip
        self.sent_md5: str | None = req.md5  # an unhashed file's: known once its bytes are sent
        self.target = remote.url_for(req.path, href=req.href)
        self._progress = hooks.progress
        self._reported = 0  # bytes shown as done: a resent part is not counted twice

    def run(self) -> Uploaded:
        return self.remote._retrying(self._once)

    def _once(self) -> Uploaded:
        rec = self._load()
        offset: int | None = None
        if rec is not None and replace(rec, url="") == self.want:
            offset = self._offset(rec.url)
        elif rec is not None:
            self._cancel(rec.url)  # made for other content or another base
        if rec is None or offset is None:
            created = self._create()
            if isinstance(created, Uploaded):
                return created
            rec, offset = created, 0
        elif offset > 0 and self.note is not None:
            self.note(f"resuming {shown(self.path)} at {human_size(offset)} of {human_size(self.want.size)}")
        try:
            return self._send(rec.url, offset)
        except _Gone:
            self._save(None)
            return self._once()

    # --- the session ---------------------------------------------------------------------

    def _load(self) -> _Record | None:
        raw = self.journal.get_meta(_KEY + self.path)
        if raw is None:
            return None
        try:
            return _Record(**json.loads(raw))
        except (ValueError, TypeError):
            return None

    def _save(self, rec: _Record | None) -> None:
        self.journal.set_meta(_KEY + self.path, None if rec is None else json.dumps(asdict(rec)))
        self.journal.commit()

    def _offset(self, url: str) -> int | None:
        """How much of the session the server holds (None: it is gone)."""
        resp = self.remote.request("HEAD", url)
        resp.close()
        if resp.status_code in (404, 410):
            self._save(None)
            return None
        value = resp.headers.get("Upload-Offset", "")
        if resp.status_code not in (200, 204) or not value.isdigit():
            raise write_error("PUT", self.path, resp)
        return int(value)

    def _cancel(self, url: str) -> None:
        try:
            self.remote.request("DELETE", url).close()
        except RemoteError as e:
            if e.fatal:
                raise
        self._save(None)

    def _create(self) -> _Record | Uploaded:
        w = self.want
        headers = {**self.req.headers(), "Upload-Complete": "?0", "Upload-Length": str(w.size)}
        resp = self.remote.request("POST", self.target, data=b"", headers=headers)
        resp.close()
        if resp.status_code == 201 and resp.headers.get("Location"):
            rec = replace(w, url=urljoin(self.target, resp.headers["Location"]))
            self._save(rec)  # journaled before the first byte is sent
            return rec
        if resp.status_code == 412:
            now = self.remote.stat(self.path, self.req.href)
            if now is not None and not now.is_dir and self.sent_md5 and now.md5 == self.sent_md5:
                return Uploaded(now, self.sent_md5)  # an earlier commit whose answer was lost: it landed
        raise write_error("PUT", self.path, resp)

    # --- the bytes ----------------------------------------------------------------------

    def _advance(self, position: int) -> None:
        if position > self._reported:
            self._progress(position - self._reported)
            self._reported = position

    def _send(self, url: str, offset: int) -> Uploaded:
        self._advance(offset)
        position = offset

        def on_bytes(n: int) -> None:
            nonlocal position
            position += n
            self._advance(position)

        one_pass = self.want.md5 is None
        before = self._hashed_before(offset) if one_pass else None
        headers = {"Content-Type": PARTIAL, "Upload-Offset": str(offset), "Upload-Complete": "?0" if one_pass else "?1"}
        with UploadBody(osfs.extended_path(self.source), self.path, on_bytes, self.stop, start=offset,
                        hashing=one_pass, before=before) as body:
            if one_pass and not len(body):
                resp = None  # all sent before a cut answer: only the commit is left
            else:
                try:
                    resp = self.remote.request("PATCH", url, data=body if len(body) else b"", headers=headers)
                except SourceFailed:  # reading the source, not the network, failed
                    assert body.failure is not None
                    raise body.failure from None
                resp.close()
            digest = body.digest.hexdigest()
        if one_pass:
            if resp is not None and resp.status_code not in (200, 201, 204):
                return self._refused(url, resp)
            resp = self._commit(url, digest)
        assert resp is not None
        return self._answered(resp)

    def _hashed_before(self, offset: int) -> hashlib._Hash:
        """The MD5 of the part the server holds already, read again from the file (a resume)."""
        digest = hashlib.md5()
        with open(osfs.extended_path(self.source), "rb", buffering=0) as f:
            left = offset
            while left > 0 and (chunk := f.read(min(_READ, left))):
                digest.update(chunk)
                left -= len(chunk)
        return digest

    def _commit(self, url: str, md5: str) -> requests.Response:
        """The last, empty part with the MD5 of what was sent, unless the file changed meanwhile:
        then the session is cancelled and nothing is placed."""
        if _stamp(osfs.extended_path(self.source)) != self.want.stamp:
            self._cancel(url)
            raise SourceChanged(f"{shown(self.path)} changed while it was being uploaded; nothing was replaced.",
                                sent_md5=None)  # fmt: skip
        self.sent_md5 = md5
        # The upload's intent learns the MD5 before the commit is sent: after a crash that lost
        # the answer, the server's MD5 tells that it landed (recovery.py), as for any upload.
        for intent in self.journal.intents():
            if intent.path == self.path and intent.op == "put" and intent.entry.md5 is None:
                self.journal.intend(replace(intent, entry=replace(intent.entry, md5=md5, remote_md5=md5)))
        headers = {"Content-Type": PARTIAL, "Upload-Offset": str(self.want.size), "Upload-Complete": "?1",
                   "OC-Checksum": md5_checksum(md5)}  # fmt: skip
        resp = self.remote.request("PATCH", url, data=b"", headers=headers)
        resp.close()
        return resp

    def _answered(self, resp: requests.Response) -> Uploaded:
        md5 = self.sent_md5
        assert md5 is not None
        if resp.status_code in (200, 201, 204) and resp.headers.get("Upload-Complete") != "?0":
            self._save(None)
            up = self.remote._uploaded(self.path, self.target, resp, self.want.size, md5, self.req.mtime_ns)
            if up.entry.md5 and up.entry.md5 != md5:
                raise not_held(self.path, up.entry.md5, md5)
            return up
        return self._refused(self.target, resp)

    def _refused(self, url: str, resp: requests.Response) -> Uploaded:
        status = resp.status_code
        if status in (404, 410):
            raise _Gone(f"the upload session of {shown(self.path)} ended on the server", status=status)
        if status == 409:  # the server holds another offset (a cut part still draining): ask again
            raise RemoteError(f"the server holds another part of {shown(self.path)}; asking again", status=503)
        if status == 412:
            self._save(None)
        if status == 400 and self._offset(url) is None:
            # The server ended the session: the assembled file's MD5 was not the one announced.
            raise SourceChanged(
                f"{shown(self.path)} changed while it was being uploaded; the server kept its version.",
                sent_md5=None, status=400,
            )  # fmt: skip
        raise write_error("PUT", self.path, resp)
