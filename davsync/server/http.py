"""cheroot tuning: keep serving a busy keep-alive connection on the same worker thread, and
read requests through a lean buffer.

Stock cheroot hands every keep-alive connection back to its selector thread after each
request, and a worker picks it up again on the next one: two thread hand-offs per
request, which cost more than a small GET itself. A worker that just answered waits a
moment (2 ms) for the client's next request and serves it directly; a quiet
connection goes back to the selector as usual.

cheroot reads requests through the pure-Python `_pyio.BufferedReader` (a third of the
Python time of a small GET goes to reading its request line and headers). LineReader
does the same job with one bytearray and `bytes.find`, over the plain or the TLS socket.
"""

from __future__ import annotations

import io
import select
import socket
import ssl
from typing import Any

from cheroot.makefile import MakeFile
from cheroot.server import HTTPConnection, HTTPRequest

FOLLOW_UP_WAIT = 0.002
MAX_DRAIN = 64 * 1024  # unread body bytes read before an answer to keep a connection
MAX_IN_A_ROW = 200  # then yield the thread, so one client cannot keep a worker forever


class LineReader:
    """What cheroot asks of a connection's reader (read, readline, has_data, bytes_read, close),
    over a plain socket with a timeout. Reads ahead like a buffered reader: what is left after
    one request (a pipelined next one) stays for the next, and has_data() says so."""

    def __init__(self, sock: socket.socket, bufsize: int = 65536) -> None:
        self._sock = sock
        self._buf = bytearray()
        self._pos = 0  # unread bytes are _buf[_pos:]
        self._bufsize = max(bufsize, 65536)
        self.bytes_read = 0
        self.closed = False

    def has_data(self) -> bool:
        return len(self._buf) > self._pos

    def _fill(self) -> bool:
        """Append what the socket has (blocking up to its timeout); False at the end of the stream."""
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        data = self._sock.recv(self._bufsize)
        if not data:
            return False
        self._buf += data
        pending = getattr(self._sock, "pending", None)  # TLS: bytes already decrypted, which no selector sees
        while pending is not None and (n := pending()) > 0:
            self._buf += self._sock.recv(n)
        return True

    def fill_now(self) -> bool | None:
        """Append what the socket has right now, without waiting: True (got some), False (the peer
        closed), None (nothing yet). Used by the selector thread while a request head arrives."""
        timeout = self._sock.gettimeout()
        self._sock.settimeout(0)
        try:
            return self._fill()
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        finally:
            self._sock.settimeout(timeout)

    def head_complete(self) -> bool:
        """The buffered bytes hold a whole request line and headers (up to the empty line)."""
        buf, pos = self._buf, self._pos
        while buf.startswith(b"\r\n", pos):  # cheroot skips blank lines before a request line
            pos += 2
        return buf.find(b"\n\r\n", pos) >= 0 or buf.find(b"\n\n", pos) >= 0

    def not_http(self) -> bool:
        """The buffered bytes cannot start a request line (a method is ASCII letters): a TLS
        ClientHello sent to plain http, or garbage. Answered without a worker (connguard.py)."""
        buf, pos = self._buf, self._pos
        while buf.startswith(b"\r\n", pos):
            pos += 2
        return pos < len(buf) and not (65 <= buf[pos] <= 90 or 97 <= buf[pos] <= 122 or buf[pos] == 13)

    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def _take(self, n: int) -> bytes:
        data = bytes(self._buf[self._pos : self._pos + n])
        self._pos += n
        if self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self.bytes_read += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        while True:
            end = self._buf.find(b"\n", self._pos)
            if end >= 0:
                n = end + 1 - self._pos
                break
            if 0 <= limit <= len(self._buf) - self._pos or not self._fill():
                n = len(self._buf) - self._pos
                break
        return self._take(n if limit < 0 else min(n, limit))

    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes, fewer only at the end of the stream (a body: straight from the socket)."""
        if size is None or size < 0:
            while self._fill():
                pass
            return self._take(len(self._buf) - self._pos)
        have = len(self._buf) - self._pos
        if have >= size:
            return self._take(size)
        parts = [self._take(have)]
        need = size - have
        while need > 0:
            data = self._sock.recv(max(need, self._bufsize))
            if not data:
                break
            if len(data) > need:  # read ahead: the rest starts the next request
                self._buf += data[need:]
                data = data[:need]
            parts.append(data)
            need -= len(data)
            self.bytes_read += len(data)
        return b"".join(parts)

    def close(self) -> None:
        self.closed = True
        self._buf = bytearray()
        self._pos = 0


class BoundedDrainRequest(HTTPRequest):
    """cheroot reads a request body the application left unread (a 401 before an upload) before it
    sends the answer, to keep the connection: a client announcing 100 MB and sending it slowly
    holds a worker as long as it likes, without a login. Past MAX_DRAIN unread bytes the answer
    goes out at once and the connection is closed instead (what nginx does after its lingering close)."""

    def send_headers(self) -> None:
        if getattr(self.rfile, "remaining", 0) > MAX_DRAIN:
            self.close_connection = True
        super().send_headers()


class StickyConnection(HTTPConnection):
    RequestHandlerClass = BoundedDrainRequest

    def __init__(self, server: Any, sock: Any, makefile: Any = MakeFile) -> None:
        super().__init__(server, sock, makefile)
        if (makefile is MakeFile and type(sock) is socket.socket) or isinstance(sock, ssl.SSLSocket):
            self.rfile = LineReader(sock, self.rbufsize)  # (under TLS too, so heads are gathered the same way)

    def communicate(self) -> bool:
        keep = super().communicate()
        served = 1
        while keep and served < MAX_IN_A_ROW and self._next_request_ready():
            keep = super().communicate()
            served += 1
        return keep

    def _next_request_ready(self) -> bool:
        """A next request is here in full; a head still arriving goes back to the selector (connguard.py),
        so a client cannot trickle its second request to hold this worker."""
        rfile = self.rfile
        if isinstance(rfile, LineReader):
            if not rfile.head_complete():
                try:
                    readable, _, _ = select.select([self.socket], [], [], FOLLOW_UP_WAIT)
                    if readable:
                        rfile.fill_now()
                except (OSError, ValueError):
                    return False
            return rfile.head_complete()
        if getattr(rfile, "has_data", None) and rfile.has_data():
            return True
        try:
            pending = self.socket.pending() if hasattr(self.socket, "pending") else 0  # TLS-buffered bytes
            if pending:
                return True
            readable, _, _ = select.select([self.socket], [], [], FOLLOW_UP_WAIT)
        except (OSError, ValueError):
            return False
        return bool(readable)

    def close(self) -> None:
        super().close()
        closed = getattr(self.server, "connection_closed", None)
        if closed is not None:
            closed(self)


def peek_body(environ: dict, limit: int) -> bytes | None:
    """A small request body read ahead by a middleware that may not handle the request after all:
    returned, and put back for the next app to read. None (nothing read) when it has no length or
    is larger than `limit`."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if not 0 < length <= limit:
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    return body
