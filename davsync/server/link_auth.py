"""Passwords on share links: Basic with any user name, Digest, a login cookie, and a per-address limiter.

Brute-force protection counts failures per client address (an IPv6 client by its /64),
never per link: an attacker slows only themselves, and the link keeps working for the
people it was given to (the lesson of ocis#12825 and nextcloud bruteforcesettings#450).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
from collections import deque

from ..users import basic_credentials
from . import digest
from .links import DIGEST_USER, ShareLink

MAX_FAILURES = 10
FAILURE_WINDOW = 600.0  # seconds
COOKIE_NAME = "davsync_share"
COOKIE_LIFETIME = 7 * 86400


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


class FailureLimiter:
    """Failed password attempts per client address in a sliding window."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = FAILURE_WINDOW) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int:
        """Seconds this address must wait before trying a password again; 0 when it may."""
        key = client_key(address)
        now = time.monotonic()
        with self._lock:
            q = self._failures.get(key)
            if not q:
                return 0
            while q and q[0] <= now - self.window:
                q.popleft()
            if len(q) < self.max_failures:
                return 0
            return max(1, int(q[0] + self.window - now + 0.999))

    def failed(self, address: str) -> None:
        key = client_key(address)
        with self._lock:
            if len(self._failures) > 50_000:  # bounded memory under a spray of addresses
                self._failures.clear()
            self._failures.setdefault(key, deque(maxlen=self.max_failures)).append(time.monotonic())

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(client_key(address), None)


class LinkAuth:
    """Checks a request's credentials against a link's password."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self._verified: set[bytes] = set()
        self._lock = threading.Lock()
        self._kdf_lock = threading.Lock()  # scrypt takes 16 MiB: one at a time
        self.limiter = FailureLimiter()
        self.nonces = digest.NonceBook()

    # --- passwords -----------------------------------------------------------

    def password_ok(self, link: ShareLink, password: str) -> bool:
        """scrypt once per (link, password); later checks hit a keyed cache."""
        key = hmac.new(self._secret, f"{link.id}\0{link.password}\0{password}".encode(), "sha256").digest()
        with self._lock:
            if key in self._verified:
                return True
        with self._kdf_lock:
            if not link.check_password(password):
                return False
        with self._lock:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified.add(key)
        return True

    def check_basic(self, link: ShareLink, value: str) -> bool:
        credentials = basic_credentials("Basic " + value)
        return credentials is not None and self.password_ok(link, credentials[1])  # any user name

    # --- Digest (RFC 7616, MD5, qop=auth): Windows Explorer's only choice over http ---

    def check_digest(self, link: ShareLink, value: str, method: str, request_path: str, query: str = "") -> str:
        """'ok', 'stale' (the right password with an expired, unknown or replayed nonce: ask again) or 'bad'."""
        if link.digest_ha1 is None:
            return "bad"
        ha1 = link.digest_ha1
        return digest.verify(
            value, realm=link.realm, method=method, request_path=request_path, query=query,
            ha1_for=lambda name: ha1 if name.lower() == DIGEST_USER else None, nonces=self.nonces, scope=link.id,
        ).state  # fmt: skip

    def challenges(self, link: ShareLink, *, stale: bool = False) -> list[tuple[str, str]]:
        return [
            ("WWW-Authenticate", f'Basic realm="{link.realm}", charset="UTF-8"'),
            ("WWW-Authenticate", digest.challenge(link.realm, self.nonces.issue(link.id), stale=stale)),
        ]

    # --- the browser's login cookie ---------------------------------------------

    def make_cookie(self, link: ShareLink, now: float | None = None) -> tuple[str, int]:
        """(value, max_age): signed with a key derived from the link's password hash and token."""
        now = now or time.time()
        until = now + COOKIE_LIFETIME
        if link.expires is not None:
            until = min(until, link.expires)
        stamp = str(int(until))
        sig = hmac.new(link.cookie_key(), f"{link.id}.{stamp}".encode(), "sha256").hexdigest()
        return f"{link.id}.{stamp}.{sig}", max(1, int(until - now))

    def check_cookie(self, link: ShareLink, header: str | None) -> bool:
        if not header:
            return False
        for part in header.split(";"):
            name, _, value = part.strip().partition("=")
            if name != COOKIE_NAME:
                continue
            link_id, _, rest = value.partition(".")
            stamp, _, sig = rest.partition(".")
            if link_id != link.id or not stamp.isdigit() or int(stamp) < time.time():
                continue
            expected = hmac.new(link.cookie_key(), f"{link.id}.{stamp}".encode(), "sha256").hexdigest()
            if hmac.compare_digest(sig, expected):
                return True
        return False
