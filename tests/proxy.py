"""A small TCP proxy on 127.0.0.1 that throttles, cuts or stalls connections (for fault tests)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Faults:
    rate: float | None = None  # bytes/s from server to client
    rate_up: float | None = None  # bytes/s from client to server (a shaped link both ways: benches)
    # With this set, rate and rate_up are kept on average (a token bucket per direction, shared by
    # all connections, as a real link's bandwidth is: a client opening four streams gets no more)
    # instead of by a sleep per chunk, which reaches well below the rate on a busy machine.
    paced: bool = False
    cut_after: int | None = None  # close a connection after this many response bytes...
    cuts_left: int = 0  # ...this many times
    stall_after: int | None = None  # stop forwarding (but keep open) after this many bytes...
    stalls_left: int = 0
    fail_paths: tuple[str, ...] = ()  # answer 503 to requests whose target contains one of these...
    fails_left: int | None = None  # ...this many times (None: always)
    # With this set, cuts and stalls hit only answers to requests whose request line contains
    # it (e.g. "REPORT"), counting that answer's bytes alone.
    only_for: str | None = None
    # Cut a request on its way to the server (both sides closed) after this many bytes of it
    # (head and body), this many times; with only_for, only requests whose line contains it.
    cut_request_after: int | None = None
    request_cuts_left: int = 0


@dataclass
class Proxy:
    target_port: int
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.bytes_to_client = 0
        self.bytes_to_server = 0  # everything forwarded the other way (request heads and bodies)
        self._link = {True: _Pacer(), False: _Pacer()}  # paced: the link's two directions (to the client: True)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                try:  # close() alone does not wake a thread blocked in recv(): the server would wait
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            request = _Request()
            threading.Thread(target=self._pipe, args=(client, upstream, False, request), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True, request), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, to_client: bool, request: _Request) -> None:
        sent = 0
        pacer = self._link[to_client] if self.faults.paced else _Pacer()
        try:
            while not self._stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if not to_client and data[:1].isalpha() and b" HTTP/1." in data.split(b"\r\n", 1)[0]:
                    request.line, request.answered = data.split(b"\r\n", 1)[0].decode("latin-1"), 0
                    request.sent = 0
                if not to_client and self._cut_request(request, len(data)):
                    dst.sendall(data[: max(0, (self.faults.cut_request_after or 0) - request.sent)])
                    break
                if not to_client:
                    request.sent += len(data)
                faulty = True
                if to_client and self.faults.only_for is not None:
                    faulty = self.faults.only_for in request.line
                    sent = request.answered
                    request.answered += len(data)
                if not to_client and self.faults.fail_paths:
                    line = data.split(b"\r\n", 1)[0].decode("latin-1")
                    with self._lock:
                        fail = any(p in line for p in self.faults.fail_paths) and self.faults.fails_left != 0
                        if fail and self.faults.fails_left is not None:
                            self.faults.fails_left -= 1
                    if fail:
                        # The server never sees this request; its connection closes after the
                        # answer (closing it first would let the other thread cut the client off).
                        src.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        _drain(src)
                        break
                if to_client:
                    f = self.faults
                    with self._lock:
                        cut = faulty and f.cut_after is not None and f.cuts_left > 0 and sent + len(data) >= f.cut_after
                        stall = (faulty and f.stall_after is not None and f.stalls_left > 0
                                 and sent + len(data) >= f.stall_after)
                        if cut:
                            f.cuts_left -= 1
                        if stall:
                            f.stalls_left -= 1
                    if cut or stall:
                        limit = (f.cut_after if cut else f.stall_after) or 0
                        dst.sendall(data[: max(0, limit - sent)])
                        if stall:
                            self._stop.wait(3600)  # hold the connection open, silent
                        break
                    if f.rate:
                        pacer.wait(len(data), f.rate, f.paced)
                    with self._lock:
                        self.bytes_to_client += len(data)
                elif self.faults.rate_up:
                    pacer.wait(len(data), self.faults.rate_up, self.faults.paced)
                dst.sendall(data)
                sent += len(data)
                if not to_client:
                    with self._lock:
                        self.bytes_to_server += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


    def _cut_request(self, request: _Request, more: int) -> bool:
        f = self.faults
        with self._lock:
            cut = (f.cut_request_after is not None and f.request_cuts_left > 0
                   and (f.only_for is None or f.only_for in request.line)
                   and request.sent + more >= f.cut_request_after)  # fmt: skip
            if cut:
                f.request_cuts_left -= 1
        return cut


@dataclass
class _Pacer:
    """Holds one direction of a link (paced: every connection's chunks in one budget) to a rate."""

    start: float = 0.0
    budget_used: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self, n: int, rate: float, paced: bool) -> None:
        if not paced:
            time.sleep(n / rate)
            return
        with self.lock:
            now = time.monotonic()
            if now > self.start + self.budget_used / rate + 1.0:  # idle for a while: no burst saved up
                self.start, self.budget_used = now, 0
            self.budget_used += n
            ahead = self.start + self.budget_used / rate - now
        if ahead > 0:
            time.sleep(ahead)


@dataclass
class _Request:
    """The latest request line seen on one connection, and how many bytes of it and of its answer passed."""

    line: str = ""
    answered: int = 0
    sent: int = 0


def _drain(sock: socket.socket, timeout: float = 5.0) -> None:
    """Read what the client still sends (a request body) until it closes: closing with unread
    data would make the kernel reset the connection, and the client might lose the answer."""
    sock.shutdown(socket.SHUT_WR)
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass
