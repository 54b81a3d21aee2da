"""HTTP Digest (RFC 7616: MD5, qop=auth) for the share and its links, with replays refused.

WsgiDAV's own Digest accepts any nonce, forever, and never looks at the nonce count (nc): a
captured Authorization header logs in again and again. Here:
- a nonce is issued and signed by this server process, and names its issue time;
- it lives NONCE_LIFETIME; after that, or when it is not ours (a restarted server), a correct
  answer gets a fresh challenge with `stale=true`, and clients (Windows' Mini-Redirector, neon in
  cadaver and litmus, curl, requests) log in again without asking the user;
- each (nonce, nc) pair is accepted once. The counts seen are kept in a 64-wide sliding window
  per nonce, so connections that share a nonce may arrive a little out of order;
- memory is bounded: a nonce is tracked only from its first correct use, expired ones are
  dropped, and past MAX_TRACKED the oldest is dropped and every nonce issued before it counts
  as stale (never as fresh again).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

NONCE_LIFETIME = 600.0  # seconds
MAX_TRACKED = 20_000  # nonces whose counts are remembered (about 100 bytes each)
WINDOW = 64  # how far below the highest count a late request may still arrive
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_ESCAPE = re.compile(r"\\(.)")


def parse(value: str) -> dict[str, str]:
    """The parameters of a Digest credential (the part after `Digest `), names lowercased."""
    return {
        m.group(1).lower(): _ESCAPE.sub(r"\1", m.group(2)) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(value)
    }


def _canonical(path: str) -> str:
    return "/" + "/".join(p for p in path.split("/") if p not in ("", "."))


def uri_matches(uri: str, method: str, request_path: str, query: str) -> bool:
    """RFC 7616 3.4.6: the `uri` names the resource of the request line (else a header captured
    for one file would open any other). request_path is the decoded path; `OPTIONS *` may say
    `*` or `/`, as clients disagree."""
    parts = urlsplit(uri)
    if method == "OPTIONS" and request_path in ("*", "/*"):
        return parts.path in ("*", "/*", "/")
    return parts.query == query and _canonical(unquote(parts.path)) == _canonical(request_path)


def expected_response(ha1: str, params: dict[str, str], method: str) -> str | None:
    """What a client knowing the password answers, or None for a qop we do not offer."""
    ha2 = hashlib.md5(f"{method}:{params['uri']}".encode()).hexdigest()
    qop = params.get("qop")
    if qop == "auth":
        parts = [ha1, params["nonce"], params.get("nc", ""), params.get("cnonce", ""), qop, ha2]
    elif qop is None:
        parts = [ha1, params["nonce"], ha2]
    else:
        return None
    return hashlib.md5(":".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Verdict:
    state: str  # "ok"; "stale" (right password, nonce expired, unknown or replayed: ask again); "bad"
    user: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"


class NonceBook:
    """Issues signed, time-stamped nonces and accepts each (nonce, nc) pair once."""

    def __init__(self, lifetime: float = NONCE_LIFETIME, max_tracked: int = MAX_TRACKED,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.lifetime = lifetime
        self.max_tracked = max_tracked
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, list[int]] = OrderedDict()  # nonce -> [issued_ms, highest nc, window bits]
        self._floor = -1  # nonces issued at or before this (ms) and not tracked are stale

    def _sign(self, scope: str, issued: str, rand: str) -> str:
        return hmac.new(self._secret, f"{scope}\0{issued}\0{rand}".encode(), "sha256").hexdigest()[:32]

    def issue(self, scope: str) -> str:
        """A new nonce for `scope` (a realm, or a share link's ID)."""
        issued, rand = format(int(self._clock() * 1000), "x"), secrets.token_hex(6)
        return f"{issued}.{rand}.{self._sign(scope, issued, rand)}"

    def use(self, scope: str, nonce: str, nc: int) -> str:
        """'ok' the first time this count is used with this live nonce of ours; 'stale' otherwise."""
        issued_hex, _, rest = nonce.partition(".")
        rand, _, sig = rest.partition(".")
        try:
            issued = int(issued_hex, 16)
        except ValueError:
            return "stale"
        if not hmac.compare_digest(sig, self._sign(scope, issued_hex, rand)):
            return "stale"
        now_ms = int(self._clock() * 1000)
        if now_ms - issued > self.lifetime * 1000 or nc < 1:
            return "stale"
        with self._lock:
            entry = self._seen.get(nonce)
            if entry is None:
                if issued <= self._floor:
                    return "stale"
                entry = self._seen[nonce] = [issued, 0, 0]
                self._forget_old(now_ms)
            _, highest, bits = entry
            if nc > highest:
                entry[1], entry[2] = nc, ((bits << (nc - highest)) | 1) & ((1 << WINDOW) - 1)
                return "ok"
            offset = highest - nc
            if offset >= WINDOW or bits & (1 << offset):
                return "stale"  # a replay (or far too late): refused, and the client is asked again
            entry[2] = bits | (1 << offset)
            return "ok"

    def _forget_old(self, now_ms: int) -> None:
        while self._seen:
            nonce, entry = next(iter(self._seen.items()))
            expired = now_ms - entry[0] > self.lifetime * 1000
            if not expired and len(self._seen) <= self.max_tracked:
                return
            del self._seen[nonce]
            if not expired:
                self._floor = max(self._floor, entry[0])

    def tracked(self) -> int:
        with self._lock:
            return len(self._seen)


def verify(value: str, *, realm: str, method: str, request_path: str, query: str,
           ha1_for: Callable[[str], str | None], nonces: NonceBook, scope: str) -> Verdict:  # fmt: skip
    """Check a Digest credential (the part after `Digest `) against a request.

    The nonce and its count are checked only after the answer proves the password: a forged
    header can neither use up a client's counts nor learn whether a nonce is live."""
    params = parse(value)
    if any(k not in params for k in ("username", "realm", "nonce", "uri", "response")):
        return Verdict("bad")
    user = params["username"]
    if params["realm"] != realm or params.get("algorithm", "MD5").upper() != "MD5":
        return Verdict("bad", user)
    if params.get("qop") is not None and ("nc" not in params or "cnonce" not in params):
        return Verdict("bad", user)
    if not uri_matches(params["uri"], method, request_path, query):
        return Verdict("bad", user)
    ha1 = ha1_for(user)
    if ha1 is None:
        return Verdict("bad", user)
    expected = expected_response(ha1, params, method)
    if expected is None or not hmac.compare_digest(expected, params["response"].lower()):
        return Verdict("bad", user)
    try:
        nc = int(params["nc"], 16) if "qop" in params else 1  # without qop a nonce is good for one request
    except ValueError:
        return Verdict("bad", user)
    return Verdict(nonces.use(scope, params["nonce"], nc), user)


def challenge(realm: str, nonce: str, *, stale: bool = False) -> str:
    """The WWW-Authenticate value offering Digest."""
    return f'Digest realm="{realm}", nonce="{nonce}", qop="auth", algorithm=MD5' + (", stale=true" if stale else "")
