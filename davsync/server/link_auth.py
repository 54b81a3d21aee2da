"""Passwords on share links: Basic with any user name, Digest, and a login cookie.

Wrong passwords count in the server's one per-address limiter (limiter.py), never per
link: an attacker slows only themselves, and the link keeps working for the people it
was given to.
"""

from __future__ import annotations

import hmac
import time

from ..users import VerifiedPasswords, basic_credentials
from . import digest
from .limiter import FailureLimiter
from .links import DIGEST_USER, ShareLink

COOKIE_NAME = "davsync_share"
COOKIE_LIFETIME = 7 * 86400


class LinkAuth:
    """Checks a request's credentials against a link's password."""

    def __init__(self, limiter: FailureLimiter | None = None) -> None:
        self._verified = VerifiedPasswords()
        self.limiter = limiter or FailureLimiter()
        self.nonces = digest.NonceBook()

    # --- passwords -----------------------------------------------------------

    def password_ok(self, link: ShareLink, password: str) -> bool:
        """scrypt once per (link, password); later checks hit a keyed cache."""
        return self._verified.check(f"{link.id}\0{link.password}\0{password}", lambda: link.check_password(password))

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
