"""Delta push: a new version of a big file sent as pieces of the current version plus new bytes.

A davsync extension advertised in OPTIONS as `X-Davsync-Delta-Push` (to accounts that may
write; plain clients never see it). `POST <file>` with `Content-Type:
application/x-davsync-delta`, `If-Match: <the etag of the version it is based on>` (required),
`OC-Checksum: MD5:<the new file's>` (required), `Upload-Length: <the new file's size>`
(required) and optionally `X-OC-Mtime`. The body is a sequence of records:

- `C` + start (8 bytes, big-endian) + length (8): copy that range of the current file;
- `D` + length (8) + that many new bytes.

The server checks If-Match first (412), assembles the new file in a temp file beside the
target from the current file and the new bytes (MD5 and block hashes in the same pass), and
commits it exactly like a PUT (upload.finish: the MD5 checked, If-Match re-checked under the
path's lock right before the rename, the previous version kept). A body that is cut off,
malformed, reaches outside the current file or ends at another length places nothing.
"""

from __future__ import annotations

import os
import stat
import struct
import tempfile
from collections.abc import Iterable
from typing import Any, BinaryIO

from wsgidav.dav_error import DAVError

from .blocks import FileDigest
from .guard import recheck
from .middleware import Middleware
from .names import TEMP_PREFIX, TEMP_SUFFIX, is_internal_path, rel_of
from .upload import UploadError, answer_upload, expected_md5, finish, parse_oc_mtime, storage_error
from .wsgitypes import StartResponse

HEADER = "X-Davsync-Delta-Push"
CONTENT_TYPE = "application/x-davsync-delta"
READ = 1024 * 1024
_LEN = struct.Struct(">Q")
_RANGE = struct.Struct(">QQ")
_HASH = 32  # bytes of a SHA-256 in a stored block list


class DeltaPushMiddleware(Middleware):
    """In WsgiDAV's stack after authentication: answers delta POSTs and advertises them."""

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        provider = environ.get("wsgidav.provider")
        if provider is None or getattr(provider, "mode", None):  # share links: not offered
            return self.app(environ, start_response)
        method = environ["REQUEST_METHOD"]
        ctype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        writer = not (provider.is_readonly() or environ.get("davsync.readonly"))
        if method == "POST" and ctype == CONTENT_TYPE:
            if not writer:  # (WriteGuard has refused read-only accounts already: a read-only share)
                raise DAVError(403, "This share is read-only.")
            return _apply(provider, environ, start_response)
        if method == "OPTIONS" and environ.get("PATH_INFO") != "*" and writer:

            def start(status: str, headers: list, exc_info: Any = None) -> Any:
                if status.startswith("200"):
                    headers = [*headers, (HEADER, "records=C,D")]
                return start_response(status, headers, exc_info)

            return self.app(environ, start)
        return self.app(environ, start_response)


def _apply(provider: Any, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    if is_internal_path(path) or path.strip("/") == "":
        raise DAVError(403, "Not a file that can be written.")
    if "HTTP_IF_MATCH" not in environ:
        raise DAVError(428, "A delta is applied to one version: send If-Match with its etag.")
    try:
        md5 = expected_md5(environ.get("HTTP_OC_CHECKSUM"))
        mtime = parse_oc_mtime(environ.get("HTTP_X_OC_MTIME"))
    except UploadError as e:
        raise DAVError(e.status, e.message) from None
    raw_length = environ.get("HTTP_UPLOAD_LENGTH", "").strip()
    if md5 is None or not raw_length.isdigit():
        raise DAVError(400, "A delta needs OC-Checksum (MD5) and Upload-Length.")
    length = int(raw_length)
    dest = provider.file_path(path)
    recheck(environ, dest)  # the base is what the client thinks (412 now, and again at the rename)
    try:
        base = open(dest, "rb", buffering=0)  # noqa: SIM115 (closed below)
    except OSError:
        raise DAVError(412, "If-Match failed: the resource changed meanwhile.") from None
    try:
        if not stat.S_ISREG(os.fstat(base.fileno()).st_mode):
            raise DAVError(409, "A delta applies to a file.")
        try:
            fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=os.path.dirname(dest))
        except OSError as e:
            raise DAVError(storage_error(e).status, storage_error(e).message) from None
        try:
            known = provider.blocks.get(rel_of(path), os.fstat(base.fileno())) if provider.blocks else None
            with os.fdopen(fd, "wb") as out:
                digest = _assemble(environ["wsgi.input"], _body_length(environ), base, out, length, known)
                out.flush()
                os.fsync(out.fileno())
            environ["wsgidav.all_input_read"] = 1
            upload = finish(tmp, dest, digest, existed=True, md5_expected=md5, mtime=mtime,
                            place=provider.place_upload(path, environ))  # fmt: skip
        except BaseException as e:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            if isinstance(e, UploadError):
                raise DAVError(e.status, e.message) from None
            if isinstance(e, OSError):
                raise DAVError(storage_error(e).status, storage_error(e).message) from None
            raise
    finally:
        base.close()
    return answer_upload(environ, start_response, provider, path, upload, mtime_given=mtime is not None)


def _body_length(environ: dict) -> int | None:
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return None
    raw = (environ.get("CONTENT_LENGTH") or "").strip()
    if not raw.isdigit():
        raise DAVError(411, "A delta needs a Content-Length or a chunked body.")
    return int(raw)


class _Input:
    """The request body, read exactly; a short body raises UploadError (nothing is placed)."""

    def __init__(self, stream: BinaryIO, length: int | None) -> None:
        self.stream, self.left = stream, length

    def exact(self, n: int) -> bytes:
        parts: list[bytes] = []
        while n > 0:
            want = min(n, READ) if self.left is None else min(n, READ, self.left)
            chunk = self.stream.read(want) if want > 0 else b""
            if not chunk:
                raise UploadError(400, "The delta was cut off; nothing was replaced.")
            parts.append(chunk)
            n -= len(chunk)
            if self.left is not None:
                self.left -= len(chunk)
        return b"".join(parts)

    def kind(self) -> bytes:
        if self.left == 0:
            return b""
        chunk = self.stream.read(1)
        if chunk and self.left is not None:
            self.left -= 1
        return bytes(chunk)


def _assemble(
    stream: BinaryIO, body_length: int | None, base: Any, out: Any, length: int, known: tuple[int, bytes] | None
) -> FileDigest:
    """The new file written to `out`, with its MD5 and block hashes. `known`: the current file's
    block size and hashes (its stored block list): whole blocks copied from a block boundary to
    one keep their hashes, so only their MD5 is computed."""
    source = _Input(stream, body_length)
    digest = FileDigest(length)
    base_size = os.fstat(base.fileno()).st_size
    bs = known[0] if known is not None and known[0] == digest.block_size else 0
    written = 0
    while kind := source.kind():
        if kind == b"C":
            start, n = _RANGE.unpack(source.exact(_RANGE.size))
            if start + n > base_size:
                raise UploadError(400, "The delta copies past the end of the current file; nothing was replaced.")
            base.seek(start)
            while n > 0:
                whole = bs and start % bs == 0 and written % bs == 0 and n >= bs
                chunk = base.read(min(n // bs, max(READ // bs, 1)) * bs if whole else min(READ, n))
                if not chunk:
                    raise UploadError(409, "The current file shrank meanwhile; nothing was replaced.")
                hashes = known[1][start // bs * _HASH : (start + len(chunk)) // bs * _HASH] if whole and known else b""
                written += _put(out, digest, chunk, written, length, hashes)
                start += len(chunk)
                n -= len(chunk)
        elif kind == b"D":
            (n,) = _LEN.unpack(source.exact(_LEN.size))
            while n > 0:
                chunk = source.exact(min(READ, n))
                written += _put(out, digest, chunk, written, length)
                n -= len(chunk)
        else:
            raise UploadError(400, "The delta is malformed; nothing was replaced.")
    if written != length:
        raise UploadError(400, f"The delta makes {written} bytes, Upload-Length said {length}; nothing was replaced.")
    return digest


def _put(out: Any, digest: FileDigest, chunk: bytes, written: int, length: int, hashes: bytes = b"") -> int:
    if written + len(chunk) > length:
        raise UploadError(400, f"The delta makes more than Upload-Length ({length} bytes); nothing was replaced.")
    out.write(chunk)
    if not (hashes and digest.update_known(chunk, hashes)):
        digest.update(chunk)
    return len(chunk)
