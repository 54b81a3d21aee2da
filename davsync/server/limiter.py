"""Wrong passwords, per client address: one limiter for every way to log in (Basic, Digest, share
links, the admin page).

Failures are counted per client address (an IPv6 client by its /64), never per user or link:
an attacker slows only themselves, and a user or link keeps working for everyone else (the
lesson of ocis#12825 and nextcloud bruteforcesettings#450). MAX_FAILURES wrong passwords in
the window are free; then the address waits, and each further failure after a wait doubles
the next one (up to the window). Behind a reverse proxy on the same machine, the client is the
last address the proxy added to X-Forwarded-For.
"""

from __future__ import annotations

import functools
import ipaddress
import threading
import time
from collections import deque

MAX_FAILURES = 10
FAILURE_WINDOW = 600.0  # seconds
FIRST_WAIT = 30.0  # seconds, doubled by each failure after a wait
LOCAL_PEERS = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})


@functools.lru_cache(maxsize=4096)
def client_key(address: str) -> str:
    """The limiter's key: the address, or its /64 for IPv6 (one home network, many addresses)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def client_address(environ: dict) -> str:
    """Who is asking: REMOTE_ADDR, or for a request from this machine (a reverse proxy on the
    Pi) the last X-Forwarded-For entry, which that proxy added. From anywhere else the header
    is the client's own claim and is ignored."""
    peer = str(environ.get("REMOTE_ADDR", ""))
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    if peer not in LOCAL_PEERS or not forwarded:
        return peer
    last = forwarded.rsplit(",", 1)[-1].strip()
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return peer


def too_many(wait: int) -> str:
    """The one sentence a limited client is told."""
    return f"Too many wrong passwords from your address; try again in {wait} seconds.\n"


class FailureLimiter:
    """Failed password attempts per client address in a sliding window, with a doubling wait."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = FAILURE_WINDOW,
                 first_wait: float = FIRST_WAIT) -> None:  # fmt: skip
        self.max_failures = max_failures
        self.window = window
        self.first_wait = min(first_wait, window)
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _wait_until(self, q: deque[float]) -> float:
        """When the next attempt is allowed (0: now), for failures `q` (oldest first)."""
        excess = len(q) - self.max_failures
        if excess < 0:
            return 0.0
        return q[-1] + min(self.window, self.first_wait * 2**excess)

    def retry_after(self, address: str) -> int:
        """Seconds this address must wait before trying a password again; 0 when it may."""
        if not self._failures:  # the usual case, without a lock or a parse
            return 0
        key = client_key(address)
        now = time.monotonic()
        with self._lock:
            q = self._failures.get(key)
            if not q:
                return 0
            while q and q[0] <= now - self.window:
                q.popleft()
            until = self._wait_until(q)
        return max(1, int(until - now + 0.999)) if until > now else 0

    def failed(self, address: str) -> None:
        key = client_key(address)
        with self._lock:
            if len(self._failures) > 50_000:  # bounded memory under a spray of addresses
                self._failures.clear()
            self._failures.setdefault(key, deque(maxlen=self.max_failures + 8)).append(time.monotonic())

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(client_key(address), None)
