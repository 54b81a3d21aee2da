"""Resumable uploads of big files, the client's half (wire form and server: server/resumable.py).

A file of MIN_SIZE or more goes to a server that offers the extension as an upload session:
created with an empty body (carrying the MD5, mtime and If-Match / If-None-Match a PUT would
carry), its URL journaled and committed before any byte is sent, then appended with PATCH.
After a cut (in this run: the retry policy; or a killed client: the next run), the server is
asked how much it holds and only the rest is sent. The session is resumed only for the same
content (size and MD5) against the same base; otherwise it is cancelled and a new one made.
Anything else about the upload (what the caller does with a 412, a changed source, a lost
answer) is exactly as for Remote.put_file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from .. import osfs
from ..units import human_size
from . import delta
from .bundle import features
from .paths import shown
from .refusals import SourceChanged, not_held, write_error
from .remote import PutRequest, Uploaded
from .transport import RemoteError
from .upload_body import SourceFailed, UploadBody

if TYPE_CHECKING:
    from .hooks import TransferHooks
    from .journal import Journal
    from .remote import Remote

MIN_SIZE = 8 * 1024 * 1024  # smaller files go by one PUT: a cut costs little to send again
PARTIAL = "application/partial-upload"
_KEY = "resumable-upload:"  # journal meta key prefix, per path


@dataclass(frozen=True)
class _Record:
    """A journaled session: its URL, and the content and base it was made for."""

    url: str
    md5: str
    size: int
    if_match: str | None
    if_none_match: bool


class _Gone(RemoteError):
    """The session expired or was cancelled on the server: start a new one."""


def put_file(remote: Remote, journal: Journal, req: PutRequest, hooks: TransferHooks) -> Uploaded:
    """Remote.put_file, as a delta (client/delta.py) or resumable for a big file when the server
    offers it."""
    if req.if_match:  # an edit: only the changed blocks, when the server has the base's block list
        pushed = delta.push(remote, req.path, req.source, md5=req.md5, if_match=req.if_match, mtime_ns=req.mtime_ns,
                            href=req.href, progress=hooks.progress)  # fmt: skip
        if pushed is not None:
            return pushed
    size = os.stat(osfs.extended_path(req.source)).st_size
    if size < MIN_SIZE or not features(remote).resumable:
        return remote.put_file(req, progress=hooks.progress, stop=hooks.stop)
    return _Upload(remote, journal, req, size, hooks).run()


class _Upload:
    def __init__(self, remote: Remote, journal: Journal, req: PutRequest, size: int, hooks: TransferHooks) -> None:
        self.remote, self.journal, self.req, self.stop, self.note = remote, journal, req, hooks.stop, hooks.note
        self.path, self.source = req.path, req.source
        self.want = _Record("", req.md5, size, req.if_match, req.if_none_match)
        self.target = remote.url_for(req.path, href=req.href)
        self._progress = hooks.progress
        self._reported = 0  # bytes shown as done: a resent part is not counted twice

    def run(self) -> Uploaded:
        return self.remote._retrying(self._once)

    def _once(self) -> Uploaded:
        rec = self._load()
        offset: int | None = None
        if rec is not None and (rec.md5, rec.size, rec.if_match, rec.if_none_match) == (
            self.want.md5, self.want.size, self.want.if_match, self.want.if_none_match,
        ):  # fmt: skip
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
            rec = _Record(urljoin(self.target, resp.headers["Location"]), w.md5, w.size, w.if_match, w.if_none_match)
            self._save(rec)  # journaled before the first byte is sent
            return rec
        if resp.status_code == 412:
            now = self.remote.stat(self.path, self.req.href)
            if now is not None and not now.is_dir and now.md5 == w.md5:
                return Uploaded(now, w.md5)  # an earlier commit whose answer was lost: it landed
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

        headers = {"Content-Type": PARTIAL, "Upload-Offset": str(offset), "Upload-Complete": "?1"}
        with UploadBody(osfs.extended_path(self.source), self.path, on_bytes, self.stop, start=offset,
                   hashing=False) as body:
            try:
                resp = self.remote.request("PATCH", url, data=body if len(body) else b"", headers=headers)
            except SourceFailed:  # reading the source, not the network, failed
                assert body.failure is not None
                raise body.failure from None
            resp.close()
        status = resp.status_code
        if status in (200, 201, 204) and resp.headers.get("Upload-Complete") != "?0":
            self._save(None)
            w = self.want
            up = self.remote._uploaded(self.path, self.target, resp, w.size, w.md5, self.req.mtime_ns)
            if up.entry.md5 and up.entry.md5 != self.want.md5:
                raise not_held(self.path, up.entry.md5, self.want.md5)
            return up
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
