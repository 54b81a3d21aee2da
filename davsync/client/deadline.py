"""Deadlines on every blocking network step, enforced from outside the blocked thread.

A socket timeout bounds one silence, not a trickle: a server sending a byte every few seconds
holds a read of 64 KiB (and the run) forever. So each step (sending a request and getting its
head, reading up to STEP_BYTES of a body, sending a piece of an upload) runs under a deadline,
and one watchdog thread shuts down the socket of a step that passes it. That wakes the blocked
read at once on every OS, and the step ends with `Stalled`. Ctrl-C does the same to every
connection at once (`interrupt`), so a run ends within a moment whatever the server does.
"""

from __future__ import annotations

import math
import signal
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

STEP_BYTES = 64 * 1024  # the most one step reads: a step slower than the deadline is a stall


class Stalled(Exception):
    """A step passed its deadline; its connection was shut down."""


class Interrupted(Exception):
    """Ctrl-C: every connection was shut down; no new request starts."""


class Step:
    """One step in flight. A step that spans several reads (a streamed listing) calls
    `progress` after each STEP_BYTES, and is `paused` while its reader's caller has the data."""

    __slots__ = ("conn", "cut", "deadline", "dog", "seconds")

    def __init__(self, seconds: float, dog: Watchdog) -> None:
        self.dog = dog
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.conn: Any = None
        self.cut: type[Exception] | None = None

    def progress(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    @contextmanager
    def paused(self) -> Iterator[None]:
        left = self.deadline - time.monotonic()
        self.deadline = math.inf
        try:
            yield
        finally:
            self.deadline = time.monotonic() + left
            self.dog.sooner(self.deadline)


def _shut(conn: Any) -> None:
    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    try:
        # The plain socket's shutdown, also for TLS: SSLSocket.shutdown would drop its SSL
        # object under the thread still reading from it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


class Watchdog:
    """One per process: the steps in flight, and the connections Ctrl-C must wake."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # reentrant: the SIGINT handler may run while it is held
        self._wake = threading.Condition(self._lock)
        self._steps: set[Step] = set()
        self._conns: weakref.WeakSet[Any] = weakref.WeakSet()
        self._local = threading.local()
        self._thread: threading.Thread | None = None
        self._next = math.inf  # when the watchdog thread wakes next: only an earlier deadline wakes it
        self.interrupted = False

    # --- used by the transport --------------------------------------------------------

    @contextmanager
    def step(self, seconds: float, conn: Any = None) -> Iterator[Step]:
        """Run one blocking step under a deadline of `seconds` (extended by `progress`); raises
        Stalled or Interrupted when the watchdog had to cut it, whatever the step itself raised."""
        if self.interrupted:
            raise Interrupted
        st = Step(seconds, self)
        st.conn = conn
        outer = getattr(self._local, "step", None)
        with self._lock:
            self._steps.add(st)
            self._start()
            self.sooner(st.deadline)
        self._local.step = st
        try:
            yield st
        except BaseException as e:
            if st.cut is not None and not isinstance(e, KeyboardInterrupt):
                raise st.cut from None
            raise
        finally:
            self._local.step = outer
            with self._lock:
                self._steps.discard(st)
        if st.cut is not None:
            raise st.cut

    def sooner(self, deadline: float) -> None:
        """Wake the watchdog thread if `deadline` comes before its next look."""
        if deadline < self._next:
            with self._lock:
                self._wake.notify()

    def attach(self, conn: Any) -> None:
        """The connection the current thread's step is using (called as a request is sent)."""
        st = getattr(self._local, "step", None)
        with self._lock:
            self._conns.add(conn)
            if st is not None:
                st.conn = conn
                if st.cut is not None:
                    _shut(conn)

    def progress(self) -> None:
        """The current step moved (a piece of an upload went out): its deadline starts again."""
        st = getattr(self._local, "step", None)
        if st is not None:
            st.progress()

    def interrupt(self) -> None:
        """Ctrl-C: wake every blocked read and refuse new steps."""
        with self._lock:
            self.interrupted = True
            for st in self._steps:
                st.cut = Interrupted
            for conn in list(self._conns):
                _shut(conn)

    def reset(self) -> None:
        with self._lock:
            self.interrupted = False

    # --- the watchdog thread ----------------------------------------------------------

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._watch, name="davsync-deadlines", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                due = [st for st in self._steps if st.cut is None and st.deadline <= now]
                for st in due:
                    st.cut = Stalled
                    _shut(st.conn)
                waiting = [st.deadline for st in self._steps if st.cut is None and st.deadline < math.inf]
                self._next = min(waiting, default=now + 60.0)
                if not self._wake.wait(max(0.01, self._next - now)) and not self._steps:
                    self._thread = None
                    self._next = math.inf
                    return  # idle: a later step starts it again


WATCHDOG = Watchdog()


@contextmanager
def ctrl_c_cuts_connections() -> Iterator[None]:
    """While a run lasts, Ctrl-C also shuts down every connection (worker threads blocked in a
    read wake at once), then raises KeyboardInterrupt as before. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        WATCHDOG.interrupt()
        if callable(previous):
            previous(signum, frame)  # Python's default handler raises KeyboardInterrupt
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        WATCHDOG.reset()


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kw: Any) -> None:
        WATCHDOG.attach(self)
        super().request(*args, **kw)


class _WatchedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kw: Any) -> None:
        WATCHDOG.attach(self)
        super().request(*args, **kw)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


def watch_pools(manager: urllib3.PoolManager) -> urllib3.PoolManager:
    """Make `manager`'s connections known to the watchdog (before its first request)."""
    manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
    return manager
