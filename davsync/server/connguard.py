"""No connection holds a worker until its request head is complete (slowloris, idle sockets).

Stock cheroot 11.1.2 hands every accepted connection straight to a worker thread
(ConnectionManager._run -> HTTPServer.process_conn -> ThreadPool), which then blocks in
HTTPRequest.read_request_line for up to `timeout` per read: 40 sockets that never send
a byte, or that send a header byte now and then, take all 40 workers and every other
client waits. Only *between* requests does cheroot park a keep-alive connection in its
selector without a worker.

Here every connection is parked the same way until its whole request head (request
line and headers) is buffered: the selector thread reads what has arrived without
waiting (LineReader.fill_now) and hands the connection to a worker only when the empty
line is there. A head must be complete within the server's timeout from the accept (or
from the previous answer on a keep-alive connection), and stay under MAX_HEAD bytes;
cheroot's own expiry closes the late ones. One address (an IPv6 /64) may hold
PER_ADDRESS connections (this machine's own loopback address, where a reverse proxy
connects from, any number); past MAX_OPEN in all, the connection idle the longest is
closed to make room. Request *bodies* and slow readers of answers still hold a worker
while they last (per-read timeout); README "Putting it on the internet" says what that
means. Under the built-in TLS the handshake is done the same way, a step each time the
client's bytes arrive (DeferredTLS; cheroot's adapter does it whole on the accepting
thread, so one silent client stalled every new connection), then the head is gathered
from the TLS socket like from a plain one.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import selectors
import ssl
import threading
import time
import weakref
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from .http import LineReader
from .limiter import LOCAL_PEERS, client_key

log = logging.getLogger("davsync.server")

PER_ADDRESS = 128
MAX_OPEN = 4096
SPARE_FDS = 256  # the index, the versions store, inotify, logs
MAX_HEAD = 64 * 1024
LISTEN_BACKLOG = 1024
TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_NOT_HTTP_TEXT = b"This server speaks HTTP; the request was not HTTP.\n"
NOT_HTTP = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(_NOT_HTTP_TEXT), _NOT_HTTP_TEXT))  # fmt: skip


def raise_fd_limit(want: int = MAX_OPEN + SPARE_FDS) -> int:
    """Lift the soft RLIMIT_NOFILE towards the hard one (often 1,024 soft, far more hard); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return MAX_OPEN + SPARE_FDS if soft == resource.RLIM_INFINITY else soft


class GuardedServer(wsgi.Server):
    """cheroot's WSGI server with head gathering in the selector and connection caps."""

    per_address = PER_ADDRESS
    _connections: Any  # cheroot's ConnectionManager, made by prepare()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # cheroot's listen backlog is 5: a burst of connects overflows it, and each dropped SYN
        # costs its client a 1 s retransmit. The kernel caps it at net.core.somaxconn.
        self.request_queue_size = LISTEN_BACKLOG
        self.max_open = MAX_OPEN
        self._guard = threading.Lock()
        # Open connections per address, held weakly: one dropped by some path without close()
        # leaves the count when it is collected, so an address is never capped by ghosts.
        self._per_key: dict[str, weakref.WeakSet[Any]] = {}
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()
        self._warned: dict[str, float] = {}

    def prepare(self) -> None:
        self.max_open = max(64, min(MAX_OPEN, raise_fd_limit() - SPARE_FDS))
        super().prepare()
        # Idle keep-alives cost no worker; the caps above bound them (cheroot's default is 10).
        self.keep_alive_conn_limit = self.max_open

    # --- cheroot calls this for a new connection, and for one whose socket became readable ---

    def process_conn(self, conn: Any) -> None:
        if not hasattr(conn, "davsync_key") and not self._admit(conn):
            return
        if isinstance(conn.socket, ssl.SSLSocket) and not getattr(conn, "davsync_tls", False):
            if not self._handshake(conn):
                return
        rfile = conn.rfile
        if isinstance(rfile, LineReader) and not rfile.head_complete():
            try:
                got = rfile.fill_now()
            except OSError:
                got = False
            if got is False:
                conn.close()  # the peer went away
                return
            if rfile.not_http():
                self._refuse(conn, NOT_HTTP)  # (a TLS client learns from this that the server speaks http)
                return
            if not rfile.head_complete():
                if rfile.buffered() > MAX_HEAD:
                    self._refuse(conn, TOO_LARGE)
                else:
                    self._park(conn)
                return
        super().process_conn(conn)

    def _handshake(self, conn: Any) -> bool:
        """One step of the TLS handshake, without waiting (DeferredTLS left it undone): True once
        it is complete; else the connection is parked until the client's next bytes, or closed."""
        sock = conn.socket
        timeout = sock.gettimeout()
        sock.settimeout(0)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._park(conn)
            return False
        except ssl.SSLWantWriteError:
            self._park(conn, selectors.EVENT_WRITE)
            return False
        except OSError:  # not TLS (plain http to this port: the client sees the close), or a reset
            conn.close()
            return False
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(timeout)
        conn.davsync_tls = True
        conn.ssl_env = self.ssl_adapter.get_environ(sock)
        return True

    def _park(self, conn: Any, events: int = selectors.EVENT_READ) -> None:
        """Back into cheroot's selector until more arrives; `last_used` is left alone, so the head's
        deadline runs from the accept (or the previous answer), not from its latest byte."""
        if not self.ready:
            conn.close()
            return
        self._connections._selector.register(conn.socket.fileno(), events, data=conn)

    def _refuse(self, conn: Any, answer: bytes) -> None:
        try:
            conn.socket.settimeout(0)
            conn.socket.send(answer)
        except OSError:
            pass
        conn.close()

    # --- accounting -------------------------------------------------------------------

    def _admit(self, conn: Any) -> bool:
        addr = str(getattr(conn, "remote_addr", "") or "")
        key = client_key(addr)
        full = False
        with self._guard:
            # (a reverse proxy on this machine brings everyone's connections from one address)
            mine = self._per_key.get(key)
            if addr not in LOCAL_PEERS and mine is not None and len(mine) >= self.per_address:
                self._warn(key)
                refused = True
            else:
                refused = False
                if mine is None:
                    mine = self._per_key[key] = weakref.WeakSet()
                mine.add(conn)
                self._all.add(conn)
                conn.davsync_key = key
                full = len(self._all) > self.max_open
        if refused:
            conn.close()
            return False
        conn.last_used = time.time()
        if full:
            self._shed_oldest_idle()
        return True

    def connection_closed(self, conn: Any) -> None:
        """StickyConnection.close: one connection fewer for its address."""
        key = getattr(conn, "davsync_key", None)
        if key is None:
            return
        with self._guard:
            self._all.discard(conn)
            mine = self._per_key.get(key)
            if mine is not None:
                mine.discard(conn)
                if not mine:
                    del self._per_key[key]

    def _shed_oldest_idle(self) -> None:
        """Too many open connections: close the one parked (idle, or its head unfinished) the longest."""
        selector = self._connections._selector
        parked = [(conn.last_used, fd, conn) for fd, conn in selector.connections if conn is not self]
        if not parked:
            return
        _, fd, conn = min(parked, key=lambda item: item[0])
        try:
            selector.unregister(fd)
        except (KeyError, ValueError):
            return  # a worker took it meanwhile
        conn.close()

    def _warn(self, key: str) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, 0.0) > 60:
            if len(self._warned) > 10_000:
                self._warned.clear()
            self._warned[key] = now
            log.warning("%s has %d connections open; closing its new ones until some end", key, self.per_address)


class DeferredTLS(BuiltinSSLAdapter):
    """cheroot's TLS adapter, leaving the handshake to GuardedServer.process_conn."""

    def wrap(self, sock: Any) -> tuple[Any, dict]:
        # Upstream (cheroot 11.1.2, BuiltinSSLAdapter.wrap): wrap_socket(do_handshake_on_connect=True)
        # runs in ConnectionManager's selector thread and blocks it for up to the server's timeout.
        return self.context.wrap_socket(sock, do_handshake_on_connect=False, server_side=True), {}
