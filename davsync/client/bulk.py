"""Many small uploads per request: the client side of davsync's bulk POST (server/bundle.py).

`bulk_upload(remote, items)` sends small files in tar bodies of up to a few hundred files
each and returns one result per item, in order. The server treats every member like a PUT:
a temp file beside the target, verified by the MD5 sent with it, made durable, its
precondition (`if_match`: replace only this etag; `if_none_match`: create only) checked again
under the path's lock right before the rename, the replaced version kept. So each file is
placed whole or not at all, independently of the others.

Contract for callers (sync/push):
- BulkUnsupported: the server does not offer bulk uploads (any non-davsync server, a
  read-only account, a share link): upload those files with PUT.
- RemoteError: a request failed as a whole (cut connection, server error): which of its
  files were placed is unknown; read those paths back (equal MD5 on the server means done).
- Otherwise one BulkResult per item: `ok` (201 created / 204 replaced) with the server's new
  etag and MD5, or the refusal (412 precondition failed, 409 parent folder missing, 423
  locked, 413 too large for bulk, 400 MD5 mismatch, 403, 507 disk full). Status 0 means the
  file was not sent: it could not be read, or it is not the content the caller described
  (changed since it was hashed, or while it was read).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests
from lxml import etree

from .. import concurrency
from ..paxstream import END_OF_ARCHIVE, member_bytes
from .bundle import features
from .remote import Remote
from .transport import RemoteError

BATCH_FILES = 500
BATCH_BYTES = 16 * 1024 * 1024
NS = "urn:davsync:"
# The 207 answer has one response per file: its href (percent-encoded and XML-escaped, so a few
# times the path's bytes), path, status, etag, MD5 and a one-line reason. Larger is not an answer.
ANSWER_BASE = 64 * 1024
ANSWER_PER_FILE = 4 * 1024
ERROR_PAGE = 64 * 1024  # what is read of a refusal's body, for its message


class BulkUnsupported(RemoteError):
    """The server offers no bulk upload here: use PUT."""


@dataclass(frozen=True)
class BulkItem:
    path: str  # below the share URL, '/'-separated, as the server spells it
    source: Path  # the local file to send
    md5: str | None = None  # what the caller hashed; the file is not sent if it no longer has it
    mtime: float | None = None  # seconds; default: the file's own mtime
    if_match: str | None = None  # replace only this version (the base etag)
    if_none_match: bool = False  # create only: refuse if anything is there


@dataclass(frozen=True)
class BulkResult:
    path: str
    status: int  # 201, 204, or the refusal; 0: not sent (see the module's docstring)
    etag: str | None = None
    md5: str | None = None
    error: str = ""
    sent_size: int | None = None  # the local file as it was read and sent: size and mtime (ns)
    sent_mtime_ns: int | None = None

    @property
    def ok(self) -> bool:
        return self.status in (201, 204)


def bulk_upload(remote: Remote, items: list[BulkItem], *, jobs: int = 2) -> list[BulkResult]:
    """Upload `items` in bulk requests (see the module's docstring); one result per item, in order."""
    limits = features(remote).bulk_upload
    if limits is None:
        raise BulkUnsupported("the server offers no bulk upload here; upload with PUT", status=501)
    results: dict[int, BulkResult] = {}
    sendable: list[tuple[int, BulkItem, int]] = []
    for i, item in enumerate(items):
        try:
            size = os.stat(item.source).st_size
        except OSError as e:
            results[i] = BulkResult(item.path, 0, error=f"cannot read {item.source}: {e.strerror}")
            continue
        if size > limits.max_file_size:
            results[i] = BulkResult(item.path, 413, error="too large for a bulk upload; upload it with PUT")
            continue
        sendable.append((i, item, size))
    batches = list(concurrency.batches(sendable, lambda entry: entry[2], max_items=min(BATCH_FILES, limits.max_files),
                                       max_bytes=min(BATCH_BYTES, limits.max_bytes)))  # fmt: skip
    workers = max(1, min(jobs, len(batches) or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="davsync-bulk") as pool:
        for done in pool.map(lambda batch: _send(remote, batch), batches):
            results.update(done)
    return [results[i] for i in range(len(items))]


def _read(item: BulkItem) -> tuple[bytes, os.stat_result] | str:
    """The file's content and the stat it had while read, or why it is not sent."""
    try:
        with open(item.source, "rb", buffering=0) as f:
            before = os.fstat(f.fileno())
            data = f.read()
            after = os.fstat(f.fileno())
    except OSError as e:
        return f"cannot read {item.source}: {e.strerror}"
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(data) != after.st_size:
        return "the file changed while it was read; not sent"
    return data, after


def _send(remote: Remote, batch: list[tuple[int, BulkItem, int]]) -> dict[int, BulkResult]:
    results: dict[int, BulkResult] = {}
    parts: list[bytes] = []
    sent: list[tuple[int, BulkItem, os.stat_result, str]] = []
    for i, item, _size in batch:
        got = _read(item)
        if isinstance(got, str):
            results[i] = BulkResult(item.path, 0, error=got)
            continue
        data, st = got
        md5 = hashlib.md5(data).hexdigest()
        if item.md5 is not None and md5 != item.md5.lower():
            results[i] = BulkResult(item.path, 0, error="the file changed since it was hashed; not sent")
            continue
        attrs = {"md5": md5}
        if item.if_match is not None:
            attrs["if-match"] = f'"{item.if_match.strip(chr(34))}"'
        if item.if_none_match:
            attrs["if-none-match"] = "*"
        mtime = item.mtime if item.mtime is not None else st.st_mtime_ns / 1e9
        parts.append(member_bytes(item.path, data, mtime, **attrs))
        sent.append((i, item, st, md5))
    if not sent:
        return results
    parts.append(END_OF_ARCHIVE)
    body = b"".join(parts)
    resp = remote.request("POST", remote.base_url, data=body, headers={"Content-Type": "application/x-tar"},
                          stream=True)  # fmt: skip
    with resp:
        if resp.status_code != 207:
            text = _read_at_most(remote, resp, ERROR_PAGE, len(sent), whole=False)
            plain = resp.headers.get("Content-Type", "").startswith("text/plain") and text.strip()
            message = text.decode("utf-8", "replace").strip().splitlines()[0][:300] if plain else ""
            raise RemoteError(f"the bulk upload of {len(sent)} files answered HTTP {resp.status_code}"
                              + (f": {message}" if message else ""), status=resp.status_code)  # fmt: skip
        share = len(remote.base_url)
        limit = ANSWER_BASE + sum(ANSWER_PER_FILE + 10 * (share + len(item.path.encode("utf-8", "surrogateescape")))
                                  for _, item, _, _ in sent)  # fmt: skip
        answers = _parse(_read_at_most(remote, resp, limit, len(sent)))
    if [a[0] for a in answers] != [item.path for _, item, _, _ in sent]:
        raise RemoteError("the server's answer to a bulk upload does not list the files sent, in order")
    for (i, item, st, _sent_md5), (_path, status, etag, placed_md5, error) in zip(sent, answers, strict=True):
        results[i] = BulkResult(item.path, status, etag, placed_md5, error, st.st_size, st.st_mtime_ns)
    return results


def _read_at_most(remote: Remote, resp: requests.Response, limit: int, files: int, *, whole: bool = True) -> bytes:
    """The answer's body, read only up to `limit` bytes (a body without end must not fill the
    memory). Longer, the request fails as a cut connection does, without a status (`whole`), or
    (an error page, read for its message) what came up to the limit is enough."""
    parts: list[bytes] = []
    size = 0
    for chunk in remote.chunks(resp, 64 * 1024, f"the answer to a bulk upload of {files} files was cut off"):
        size += len(chunk)
        if size > limit and not whole:
            parts.append(chunk)
            return b"".join(parts)[:limit]
        if size > limit:
            raise RemoteError(f"the server's answer to a bulk upload of {files} files goes on past {limit} bytes; "
                              "it was not read further")  # fmt: skip
        parts.append(chunk)
    return b"".join(parts)


def _parse(body: bytes) -> list[tuple[str, int, str | None, str | None, str]]:
    """(path, status, etag, md5, message) per member, in order, from the server's multistatus."""
    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    except etree.XMLSyntaxError:
        raise RemoteError("the server's answer to a bulk upload is malformed XML") from None
    out: list[tuple[str, int, str | None, str | None, str]] = []
    for resp in root.iterfind("{DAV:}response"):
        path = resp.findtext(f"{{{NS}}}path")
        if path is None:
            continue
        try:
            status = int((resp.findtext("{DAV:}status") or "").split()[1])
        except (IndexError, ValueError):
            status = 0
        etag = (resp.findtext(f"{{{NS}}}etag") or "").strip().strip('"') or None
        md5 = (resp.findtext(f"{{{NS}}}md5") or "").strip().lower() or None
        out.append((path, status, etag, md5, (resp.findtext("{DAV:}responsedescription") or "").strip()))
    return out
