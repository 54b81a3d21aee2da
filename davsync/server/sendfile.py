"""File bodies sent by the kernel: `wsgi.file_wrapper` for cheroot, with sendfile(2) on plain HTTP.

cheroot has no file wrapper: every body goes through its pure-Python socket writer, which
copies each chunk twice before send(). For a file body whose length the response declares,
our gateway hands the file to the kernel instead (sendfile: no copy through Python at all);
over TLS, where the kernel cannot encrypt, it reads large blocks into one reused buffer and
writes them straight to the TLS socket. Anything else (a body without Content-Length, chunked
responses, a server that is not ours) iterates the wrapper like any WSGI body.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Iterator
from typing import IO, Any

from cheroot import wsgi

log = logging.getLogger("davsync.server")

BLOCK = 1024 * 1024  # iteration and TLS block: large reads are what make Python keep up


class FileBody:
    """What `environ["wsgi.file_wrapper"](file, block_size)` returns: the rest of `file`,
    up to the response's Content-Length. Closing it closes the file (PEP 3333)."""

    def __init__(self, file: IO[bytes], block_size: int = BLOCK, gateway: SendfileGateway | None = None) -> None:
        self.file = file
        self.block_size = max(block_size, BLOCK)
        self._gateway = gateway

    def __iter__(self) -> Iterator[bytes]:
        gateway = self._gateway
        if gateway is not None and gateway.can_send_directly():
            gateway.send_file(self.file)
            return
        while chunk := self.file.read(self.block_size):
            yield chunk

    def close(self) -> None:
        self.file.close()


class SendfileGateway(wsgi.Gateway_10):
    """cheroot's WSGI 1.0 gateway, plus a `wsgi.file_wrapper` whose bodies it sends itself."""

    def get_environ(self) -> Any:  # (cheroot's stub says None; it is the environ dict)
        env: dict = super().get_environ()
        env["wsgi.file_wrapper"] = self._wrap
        return env

    def _wrap(self, file: IO[bytes], block_size: int = BLOCK) -> FileBody:
        return FileBody(file, block_size, self)

    def write(self, chunk: bytes) -> None:
        """A whole body in one chunk (every small file) goes out in one send with the headers;
        cheroot would send them apart, each through two copies."""
        req = self.req
        if not chunk or not self.started_response or req.sent_headers or self.remaining_bytes_out != len(chunk):
            super().write(chunk)
            return
        wfile = req.conn.wfile
        held = _Held()
        req.conn.wfile = held  # send_headers writes the status line and headers once, here
        try:
            req.ensure_headers_sent()
        finally:
            req.conn.wfile = wfile
        if req.chunked_write:  # (cannot happen with a Content-Length; kept as a guard)
            wfile.write(held.data)
            super().write(chunk)
            return
        wfile.write(held.data + chunk)
        self.remaining_bytes_out = 0

    def can_send_directly(self) -> bool:
        """Only a whole body of declared length, before a byte of it went out: then writing to
        the socket ourselves is exactly what cheroot would have done, minus the copies."""
        req = self.req
        return self.started_response and not req.sent_headers and self.remaining_bytes_out is not None

    def send_file(self, file: IO[bytes]) -> None:
        req = self.req
        req.ensure_headers_sent()  # cheroot's writer flushes everything it is given before returning
        if req.chunked_write:  # (cannot happen with a Content-Length; kept as a guard)
            raise RuntimeError("a file body cannot be sent raw inside a chunked response")
        count = self.remaining_bytes_out
        sock = req.conn.socket
        offset = file.tell()
        if isinstance(sock, ssl.SSLSocket) or not isinstance(sock, socket.socket):
            sent = _send_blocks(sock, file, count)
        else:
            sent = sock.sendfile(file, offset, count) if count else 0
        self.remaining_bytes_out = count - sent
        if sent < count:
            # The file shrank while being sent: the client must not wait for the missing bytes.
            log.warning("A file shrank while being sent (%d of %d bytes); closing the connection.", sent, count)
            req.close_connection = True


class _Held:
    """Stands in for cheroot's writer while it formats the headers."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


def _send_blocks(sock: Any, file: IO[bytes], count: int) -> int:
    """Read into one reused buffer, write it straight to the socket (TLS: no sendfile)."""
    buf = bytearray(min(count, 4 * BLOCK)) if count else bytearray()
    view = memoryview(buf)
    sent = 0
    while sent < count:
        n = file.readinto(view[: min(len(buf), count - sent)])  # type: ignore[attr-defined]
        if not n:
            break
        sock.sendall(view[:n])
        sent += n
    return sent


def install(server: wsgi.Server) -> None:
    """Make a cheroot WSGI server use this gateway (cheroot picks it per request)."""
    server.gateway = SendfileGateway


__all__ = ["BLOCK", "FileBody", "SendfileGateway", "install"]
