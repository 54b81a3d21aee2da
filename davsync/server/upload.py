"""Atomic uploads: body -> temp file in the same folder -> verify -> fsync -> rename.

An interrupted, short, corrupt or over-quota upload leaves the previous version in
place and no temp file behind.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from wsgidav import util
from wsgidav.dav_error import DAVError

from ..checksums import is_md5, md5_checksum, md5_token
from ..oserrors import is_disk_full, is_not_permitted
from ..osfs import fsync_dir
from .blocks import FileDigest
from .names import TEMP_PREFIX, TEMP_SUFFIX, etag_of, rel_of

WRITE_BLOCK = 256 * 1024
_CUT_OFF = {None, errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, errno.ECONNABORTED}


class UploadError(Exception):
    """A refused upload; status is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Upload:
    st: os.stat_result
    md5: str
    created: bool
    digest: FileDigest | None = None  # the MD5 and (a big file's) block hashes, from the same read


def expected_md5(oc_checksum: str | None) -> str | None:
    """The MD5 from an `OC-Checksum` header; other algorithms are ignored, malformed MD5 refused.

    ownCloud clients may send several space-separated checksums.
    """
    value = md5_token(oc_checksum or "")
    if value is not None and not is_md5(value):
        raise UploadError(400, f"OC-Checksum has a malformed MD5: {value!r}")
    return value


MTIME_LIMIT = 2**40  # seconds either side of 1970: past any real file's time, within every time_t


def valid_mtime(value: float) -> bool:
    """Can a file be given this modification time? One rule for a PUT's X-OC-Mtime, a bulk
    member's mtime and a PROPPATCH: infinities, NaN and times beyond any clock are refused
    (os.utime would raise and fail the whole request); a time before 1970 is a real file's."""
    return -MTIME_LIMIT < value < MTIME_LIMIT  # (NaN compares false)


def parse_oc_mtime(header: str | None) -> int | None:
    if header is None:
        return None
    try:
        value = float(header.strip())
    except ValueError:
        raise UploadError(400, f"X-OC-Mtime must be unix seconds, got {header!r}") from None
    if not valid_mtime(value):
        raise UploadError(400, f"X-OC-Mtime is out of range: {header!r}")
    return int(value)


def body_length(environ: dict) -> int | None:
    """The request body's length: None means "read to the end" (chunked); a missing length on a
    plain body means empty. A length that is not a number is a 400."""
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    raw = (environ.get("CONTENT_LENGTH") or "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise UploadError(400, f"Content-Length is not a number: {raw!r}")
    return int(raw)


def body_chunks(stream: BinaryIO, length: int | None, block: int) -> Iterator[bytes]:
    """A request body in blocks: `length` bytes at most (to the end when None, a chunked body).
    Stops early when the client stops sending; the caller compares what it got with `length`."""
    received = 0
    while length is None or received < length:
        chunk = stream.read(block if length is None else min(block, length - received))
        if not chunk:
            return
        received += len(chunk)
        yield chunk


def receive(
    body: BinaryIO,
    dest: str,
    *,
    content_length: int | None,
    md5_expected: str | None = None,
    mtime: int | None = None,
    place: Callable[[str, str], bool] | None = None,
) -> Upload:
    """Stream `body` into place at `dest`, hashing as it goes.

    `place(tmp, dest)` does the final rename and says whether dest existed; the
    server's re-checks preconditions under the path's lock and keeps the old version.
    """
    folder = os.path.dirname(dest)
    existed = os.path.exists(dest)
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=folder)
    except OSError as e:
        raise storage_error(e) from None
    try:
        digest = FileDigest(content_length)
        received = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in body_chunks(body, content_length, WRITE_BLOCK):
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
            if content_length is not None and received < content_length:
                raise UploadError(
                    400, f"The body ended after {received} of {content_length} bytes; nothing was replaced."
                )
            out.flush()
            prepare(tmp, dest, existed=existed, mtime=mtime)  # before the fsync: one flush makes all durable
            os.fsync(out.fileno())
        return finish(tmp, dest, digest, existed=existed, md5_expected=md5_expected, mtime=mtime, place=place,
                      prepared=True)  # fmt: skip
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, (UploadError, DAVError)) or not isinstance(e, Exception):
            raise
        if isinstance(e, OSError) and e.errno not in _CUT_OFF:
            raise storage_error(e) from None
        raise UploadError(400, f"The request body was malformed or cut off ({e}); nothing was replaced.") from None


def finish(
    tmp: str,
    dest: str,
    digest: FileDigest,
    *,
    existed: bool,
    md5_expected: str | None,
    mtime: int | None,
    place: Callable[[str, str], bool] | None,
    prepared: bool = False,
) -> Upload:
    """The commit every upload shares (PUT, resumable): a complete, durable temp file beside
    `dest` whose hashes are `digest` is checked against the client's MD5, given its mode and
    mtime (unless `prepared` did that before the data's fsync), and placed (`place` re-checks
    the preconditions under the path's lock). The caller removes `tmp` when this raises."""
    md5 = digest.hexdigest()
    if md5_expected is not None and md5 != md5_expected:
        raise UploadError(
            400,
            f"OC-Checksum mismatch: the body's MD5 is {md5}, the header said {md5_expected}; nothing was replaced.",
        )
    if not prepared:
        prepare(tmp, dest, existed=existed, mtime=mtime)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the accepted X-OC-Mtime survives a power cut too
        finally:
            os.close(fd)
    if place is None:
        os.replace(tmp, dest)
    else:
        existed = place(tmp, dest)
    fsync_dir(os.path.dirname(dest))
    return Upload(os.stat(dest), md5, created=not existed, digest=digest)


def answer_upload(
    environ: dict, start_response: Callable[..., Any], provider: Any, path: str, upload: Upload, *, mtime_given: bool
) -> Iterable[bytes]:
    """Record a placed upload in the index (and its block hashes) and answer as a PUT does:
    201 or 204 with the new ETag and MD5, and whether X-OC-Mtime was applied."""
    provider.index.record_file(rel_of(path), upload.st, upload.md5)
    if provider.blocks is not None and upload.digest is not None:
        provider.blocks.record(rel_of(path), upload.st, upload.digest)
    headers = [("ETag", f'"{etag_of(upload.st)}"'), ("OC-Checksum", md5_checksum(upload.md5))]
    if mtime_given:
        headers.append(("X-OC-MTime", "accepted"))
    return util.send_status_response(environ, start_response, 201 if upload.created else 204, add_headers=headers)


def prepare(tmp: str, dest: str, *, existed: bool, mtime: int | None) -> None:
    """Give the temp file the mode of the file it replaces (or the umask's) and the client's mtime."""
    _copy_mode(dest if existed else None, tmp)
    if mtime is not None:
        os.utime(tmp, (mtime, mtime))


def _copy_mode(existing: str | None, tmp: str) -> None:
    if existing is not None:
        try:
            os.chmod(tmp, os.stat(existing).st_mode & 0o7777)
            return
        except FileNotFoundError:
            pass  # deleted while the body arrived: place() decides what happens now
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def storage_error(e: OSError) -> UploadError:
    if is_disk_full(e):
        return UploadError(507, "The server's disk is full; nothing was replaced.")
    if is_not_permitted(e):
        return UploadError(403, "The server may not write here (permission denied).")
    return UploadError(500, f"The server could not store the file ({e.strerror}).")
