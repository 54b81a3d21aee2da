"""Who may do what: our domain controller for WsgiDAV's authenticator, and the write guard.

Policy (also the README's access table):
- anonymous "off": every request needs a valid user.
- anonymous "read": reads need no login; a write without credentials gets a 401
  challenge when users exist (so they can log in) and 403 when none do.
- anonymous "write": everything is open.
- a read-only user gets 403 on every write method.

Digest logins are checked here, by FrontGate, with server-issued nonces that expire and a
nonce count that is accepted once (digest.py); WsgiDAV's authenticator only does Basic.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from wsgidav.dc.base_dc import BaseDomainController

from ..users import REALM, Users, basic_credentials
from . import digest
from .destination import DestinationError, destination_path, without_userinfo
from .limiter import FailureLimiter, client_address, too_many
from .middleware import Middleware
from .request_server import WRITE_METHODS
from .wsgitypes import StartResponse, WsgiApp

log = logging.getLogger("davsync.server")
BASIC_USER = "davsync.basic_user"  # environ: the Basic login FrontGate verified (clients cannot set environ keys)


def _plain(start_response: StartResponse, status: str, message: str, headers: list | None = None) -> list[bytes]:
    body = (message + "\n").encode()
    start_response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))] + (headers or []),
    )
    return [body]


class DavsyncDomainController(BaseDomainController):
    """Users from our users file; marks read-only sessions in the environ."""

    def __init__(self, wsgidav_app: Any, config: dict) -> None:
        super().__init__(wsgidav_app, config)
        self.users: Users = config["davsync"]["users"]
        self.anonymous: str = config["davsync"]["anonymous"]

    def get_domain_realm(self, path_info: str, environ: dict | None) -> str:
        return REALM

    def require_authentication(self, realm: str, environ: dict | None) -> bool:
        if self.anonymous == "write":
            return False
        if environ is not None and environ.get("davsync.digest_user"):
            environ["wsgidav.auth.user_name"] = environ["davsync.digest_user"]  # FrontGate checked it
            return False
        if self.anonymous == "read":
            if environ is None:
                return False
            if environ["REQUEST_METHOD"] not in WRITE_METHODS and "HTTP_AUTHORIZATION" not in environ:
                environ["davsync.readonly"] = True
                # A guest is shown what logging in would allow (OPTIONS): Explorer mounts
                # as a guest first and would otherwise take the share for read-only.
                environ["davsync.login_could_write"] = any(not u.read_only for u in self.users.users.values())
                return False
        return True

    def basic_auth_user(self, realm: str, user_name: str, password: str, environ: dict) -> bool:
        if environ.get(BASIC_USER) == user_name:  # FrontGate checked this very header
            user = self.users.users.get(user_name)
        else:
            user = self.users.check_basic(user_name, password)
        if user is None:
            return False
        environ["davsync.readonly"] = user.read_only
        return True

    def supports_http_digest_auth(self) -> bool:
        return False  # FrontGate does Digest (WsgiDAV's accepts any nonce, any number of times)


class FrontGate:
    """Runs first: refuses bad paths and malformed credentials cleanly, answers anonymous
    writes on a read-only share, checks Digest logins, and offers Digest (our nonces) and Basic."""

    def __init__(self, app: WsgiApp, users: Users, anonymous: str, limiter: FailureLimiter | None = None) -> None:
        self.app = app
        self.users = users
        self.anonymous = anonymous
        self.limiter = limiter or FailureLimiter()
        self.nonces = digest.NonceBook()
        self.counts: Counter[str] = Counter()  # requests per method, for diagnostics and tests

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        self.counts[environ["REQUEST_METHOD"]] += 1
        problem = _path_problem(environ.get("PATH_INFO", "")) or _destination_problem(environ.get("HTTP_DESTINATION"))
        if problem:
            return _plain(start_response, "400 Bad Request", problem)
        if "@" in environ.get("HTTP_DESTINATION", ""):
            # lftp puts the password into the Destination URL; it is no use to us, and
            # WsgiDAV's request log (-v) would print it.
            environ["HTTP_DESTINATION"] = without_userinfo(environ["HTTP_DESTINATION"])
        if environ["REQUEST_METHOD"] in ("GET", "HEAD") and environ.get("CONTENT_LENGTH") not in (None, "", "0"):
            # (WsgiDAV's folder page crashes on this instead of answering 415)
            return _plain(start_response, "415 Unsupported Media Type", "GET and HEAD take no request body.")
        scheme = environ.get("HTTP_AUTHORIZATION", "").strip().partition(" ")[0].lower()
        credentials = basic_credentials(environ["HTTP_AUTHORIZATION"]) if scheme == "basic" else None
        if scheme == "basic" and credentials is None:
            del environ["HTTP_AUTHORIZATION"]
        if scheme in ("basic", "digest") and self.anonymous != "write" and "HTTP_AUTHORIZATION" in environ:
            refused = self._login(environ, start_response, scheme, credentials)
            if refused is not None:
                return refused
        if (
            self.anonymous == "read"
            and not self.users.users
            and environ["REQUEST_METHOD"] in WRITE_METHODS
            and "HTTP_AUTHORIZATION" not in environ
        ):
            return _plain(start_response, "403 Forbidden", "This share is read-only for anonymous users.")

        def our_challenges(status: str, headers: list, exc_info: Any = None) -> Any:
            if status.startswith("401"):  # WsgiDAV challenges with Basic only: offer our Digest first
                headers = [(k, v) for k, v in headers if k.lower() != "www-authenticate"] + self._challenges()
            return start_response(status, headers, exc_info)

        return self.app(environ, our_challenges)

    def _login(self, environ: dict, start_response: StartResponse, scheme: str,
               credentials: tuple[str, str] | None) -> list[bytes] | None:  # fmt: skip
        """Every login to the share is checked here first, through the server's one limiter: a
        limited address gets 429 before any password work; a wrong password is counted and
        answered here. A right Basic password is cached, so WsgiDAV's and the fast paths'
        checks after this one cost no KDF."""
        addr = client_address(environ)
        wait = self.limiter.retry_after(addr)
        if wait:
            log.warning("%s - too many wrong passwords; refused for %d s", addr, wait)
            return _plain(start_response, "429 Too Many Requests", too_many(wait).strip(), [("Retry-After", str(wait))])
        if scheme == "digest":
            verdict = self._digest(environ)
            if verdict.ok:
                return None
            if verdict.state == "bad":
                log.warning("%s - Digest login refused for %r", addr, verdict.user)
                self.limiter.failed(addr)
            return _plain(start_response, "401 Unauthorized", "Log in with a davsync user name and password.",
                          self._challenges(stale=verdict.state == "stale"))  # fmt: skip
        assert credentials is not None
        if self.users.check_basic(*credentials) is not None:
            environ[BASIC_USER] = credentials[0]  # checked: the fast paths and WsgiDAV need not again
            return None
        log.warning("%s - Basic login refused for %r", addr, credentials[0])
        self.limiter.failed(addr)
        return _plain(start_response, "401 Unauthorized", "Log in with a davsync user name and password.",
                      self._challenges())

    def _digest(self, environ: dict) -> digest.Verdict:
        """Check a Digest login; on success the request goes on as that user."""
        raw = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        verdict = digest.verify(
            environ["HTTP_AUTHORIZATION"].strip()[len("digest") :], realm=REALM, method=environ["REQUEST_METHOD"],
            request_path=raw.encode("latin-1").decode("utf-8", "replace"), query=environ.get("QUERY_STRING", ""),
            ha1_for=lambda name: u.ha1 if (u := self.users.users.get(name)) is not None else None,
            nonces=self.nonces, scope=REALM,
        )  # fmt: skip
        if verdict.ok and verdict.user is not None:
            user = self.users.users.get(verdict.user)
            if user is None:  # removed by the admin page a moment ago
                return digest.Verdict("bad", verdict.user)
            environ["davsync.digest_user"] = verdict.user
            environ["davsync.readonly"] = user.read_only
        return verdict

    def _challenges(self, *, stale: bool = False) -> list[tuple[str, str]]:
        return [
            ("WWW-Authenticate", digest.challenge(REALM, self.nonces.issue(REALM), stale=stale)),
            ("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),
        ]


def _path_problem(wsgi_path: str) -> str | None:
    """Why a request path is refused before routing, or None (WSGI paths arrive latin-1 decoded)."""
    if wsgi_path == "*":
        return None
    try:
        path = wsgi_path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return "The request path is not valid UTF-8."
    if "\x00" in path:
        return "The request path contains a NUL character."
    if any(c < " " or c == "\x7f" for c in path):
        return "The request path contains control characters, which WebDAV listings cannot carry."
    depth = 0
    for part in path.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return "The request path climbs above the share root ('..')."
        elif part not in ("", "."):
            depth += 1
    return None


def _destination_problem(destination: str | None) -> str | None:
    """The same rules for a COPY/MOVE Destination (its path arrives percent-encoded)."""
    if not destination:
        return None
    try:
        path = destination_path(destination)
    except DestinationError as e:
        return str(e)
    except (UnicodeError, ValueError):
        return "The Destination header is not a valid UTF-8 URL."
    problem = _path_problem(path.encode("utf-8").decode("latin-1"))
    return f"Destination: {problem}" if problem else None


class WriteGuard(Middleware):
    """Runs after authentication (in WsgiDAV's middleware stack): read-only sessions never
    reach a write handler."""

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] in WRITE_METHODS and environ.get("davsync.readonly"):
            return _plain(
                start_response,
                "403 Forbidden",
                "Your access to this share is read-only; ask the operator for a read-write account.",
            )
        return self.app(environ, start_response)
