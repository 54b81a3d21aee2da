"""The connection to a share: sessions, login negotiation, TLS, and what a network failure means.

Everything that sends bytes to the server goes through `Transport`, so there is one place that
knows requests and urllib3, and one mapping (`Transport.failure`) of their exceptions to
`RemoteError` with a sentence a user can act on. webdavclient3's `Client` holds the URL,
credentials and TLS settings (the design card); its high-level calls are not used (field notes).
What the requests mean (WebDAV bodies, answers, multistatus) lives in remote.py and davxml.py.
"""

from __future__ import annotations

import http.client
import io
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase, HTTPDigestAuth
from webdav3.client import Client

from .deadline import STEP_BYTES, WATCHDOG, Interrupted, Stalled, Step, watch_pools
from .neterrors import causes, connection_message, tls_message

if TYPE_CHECKING:
    from .retry import Outage


class RemoteError(Exception):
    """A failure talking to the server; `fatal` ones (auth, TLS, unreachable) stop the run."""

    def __init__(self, message: str, *, fatal: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.status = status
        self.partial = 0  # a body cut short: bytes that did arrive in the reader's buffer (BodyReader)


class Stopped(RemoteError):
    """The run was told to stop (its stop event, Ctrl-C, SIGTERM) during an exchange: it was
    cut, and nothing was replaced. Not retried: a stopping run starts nothing new."""


class ServerBusy(RemoteError):
    """503 with Retry-After: the server asks to come back later (davsync's server while its first
    scan after a start runs, or while its disk is away). Nothing of the run may go on from half
    a listing, so the run waits as asked and starts again (Engine.run)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, fatal=True, status=503)
        self.retry_after = retry_after


MAX_BUSY_REASON = 200


def busy_answer(resp: requests.Response, base_url: str) -> ServerBusy | None:
    """The ServerBusy a 503 with Retry-After stands for (seconds or an HTTP date), else None."""
    if resp.status_code != 503 or "Retry-After" not in resp.headers:
        return None
    value = resp.headers["Retry-After"].strip()
    try:
        wait = float(value)
    except ValueError:
        try:
            wait = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            wait = 5.0
    reason = ""
    if resp.headers.get("Content-Type", "").startswith("text/plain"):
        text = resp.text.strip().splitlines()[0] if resp.text.strip() else ""
        if len(text) <= MAX_BUSY_REASON and text.isprintable():
            reason = f": {text.rstrip('.')}"
    return ServerBusy(f"the server at {base_url} asked to wait{reason}", max(1.0, min(wait, 60.0)))


TIMEOUT = 30.0  # seconds of silence (no byte at all) before a request fails: DAVSYNC_TIMEOUT
STALL_TIMEOUT = 120.0  # seconds a step (64 KiB of an answer, a request's head) may take: DAVSYNC_STALL_TIMEOUT


def env_seconds(name: str, default: float) -> float:
    """A positive number of seconds from the environment; `default` when unset. Raises
    ValueError with a sentence for anything else (the command line reports it)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value <= 86400:
        raise ValueError(f"{name} must be a number of seconds from 0.1 to 86400, not '{raw}'.")
    return value


def _env_or_default(name: str, default: float) -> Callable[[], float]:
    def read() -> float:
        try:
            return env_seconds(name, default)
        except ValueError:
            return default  # the command line refuses it first; other callers keep going

    return read


@dataclass(frozen=True)
class ConnectionSettings:
    url: str
    user: str | None = None
    password: str | None = None
    ca_cert: str | None = None
    insecure: bool = False
    timeout: float = field(default_factory=_env_or_default("DAVSYNC_TIMEOUT", TIMEOUT))
    jobs: int = 4
    stall: float = field(default_factory=_env_or_default("DAVSYNC_STALL_TIMEOUT", STALL_TIMEOUT))


# What may stay literal in a path segment (RFC 3986 pchar minus '%'); all else is encoded.
_SEGMENT_SAFE = "!$&'()*+,;=:@~"

# Everything a request or a streamed body can raise for network reasons (requests' exceptions
# are OSErrors too). Anything else, such as an upload body's own failure, passes through.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


def normalize_base(url: str) -> str:
    """The share URL with its path percent-encoded once, canonically, ending in '/'.

    A URL typed with literal spaces or non-ASCII letters and one copied from a browser
    (`%20`) name the same folder; hrefs from the server are compared segment by segment
    after decoding, so either spelling works. The Unicode form is kept as given: a share
    folder named in NFD on the server is found only by its NFD spelling.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = f"http://{url.strip().lstrip('/')}" if "://" not in url else "http://raspberrypi.local:8080/"
        hint += "" if hint.endswith("/") else "/"
        raise RemoteError(f"'{url}' is not an http(s) URL: write it like {hint}.", fatal=True)
    if parts.username is not None or parts.password is not None:
        raise RemoteError(
            "the URL holds a user name or password: give the user with --user and the password with "
            "DAVSYNC_PASSWORD or the prompt, so it never shows in process lists or logs.",
            fatal=True,
        )
    try:
        _ = parts.port  # urllib parses the port lazily: reading it validates it
    except ValueError:
        raise RemoteError(f"the port in '{url}' is not a number from 1 to 65535.", fatal=True) from None
    # Empty segments (`http://pi:8080//share/`, a slash too many when pasting) are dropped: servers
    # answer such a path with 400 or another folder, never the share meant.
    segments = [quote(unquote(seg), safe=_SEGMENT_SAFE) for seg in parts.path.split("/") if seg]
    path = "/" + "".join(seg + "/" for seg in segments)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _timed_out(e: BaseException) -> bool:
    """A timeout, connecting or reading. urllib3's NewConnectionError (a refused or unroutable
    connection) inherits from its ConnectTimeoutError, yet no time ran out."""
    if isinstance(e, urllib3.exceptions.NewConnectionError):
        return False
    return isinstance(e, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError, socket.timeout))


def _no_login(r: requests.PreparedRequest) -> requests.PreparedRequest:
    """An auth that adds nothing: a request as a client without credentials sends it."""
    return r


class Transport:
    """One share's connection. Each thread gets its own kept-alive session (a shared pool
    would overflow), and its own urllib3 pool for small GETs."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.base_url = normalize_base(settings.url)
        self.client = Client(
            {
                "webdav_hostname": self.base_url,
                "webdav_login": settings.user or "",
                "webdav_password": settings.password or "",
                "webdav_timeout": settings.timeout,
                "disable_check": True,
            }
        )
        self.client.verify = settings.ca_cert or (not settings.insecure)
        if settings.insecure:
            # The user chose this and the CLI says so once; urllib3 would repeat it per request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._local = threading.local()
        self._use_digest = False
        self._sessions: list[requests.Session] = []
        self._pools: list[urllib3.PoolManager] = []
        self._lock = threading.Lock()
        self.requests_sent = 0
        self._proxies = requests.utils.get_environ_proxies(self.base_url)
        # Told of every answer and every failure without one (retry.Outage; set by Remote).
        self.outage: Outage | None = None

    # --- sessions ------------------------------------------------------------

    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self.client.session if not self._sessions else requests.Session()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=4, max_retries=0)
            watch_pools(adapter.poolmanager)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            s.verify = self.client.verify
            s.auth = self._auth()
            # Looking up proxy variables on every request costs more than the request itself.
            s.trust_env = False
            s.proxies = self._proxies
            s.headers["User-Agent"] = "davsync"
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    @property
    def user(self) -> str:
        return str(self.client.webdav.login or "")

    def _auth(self) -> AuthBase | tuple[str, str] | None:
        if not self.user:
            return None
        password = self.client.webdav.password or ""
        return HTTPDigestAuth(self.user, password) if self._use_digest else (self.user, password)

    def close(self) -> None:
        with self._lock:
            for s in self._sessions:
                s.close()
            self._sessions.clear()
            for p in self._pools:
                p.clear()
            self._pools.clear()

    def _pool(self) -> urllib3.PoolManager:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            verify = self.client.verify
            kw: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED" if verify else "CERT_NONE"}
            if isinstance(verify, str):
                kw["ca_certs"] = verify
            elif verify:
                import certifi

                kw["ca_certs"] = certifi.where()
            pool = watch_pools(urllib3.PoolManager(num_pools=2, maxsize=2, retries=False, **kw))
            self._local.pool = pool
            with self._lock:
                self._pools.append(pool)
        return pool

    def _count(self) -> None:
        with self._lock:
            self.requests_sent += 1

    # --- the one error mapping -------------------------------------------------

    def failure(self, e: BaseException, what: str = "", key: str = "") -> RemoteError:
        """Any network exception (requests, urllib3, http.client, socket, ssl) as a RemoteError:
        TLS problems are fatal (retrying cannot help), the rest is transient (no status), and
        the outage watch hears of it (`key`: the request, else `what`).
        `what` names the exchange that failed (`listing a/b was cut off`) when it helps."""
        found = list(causes(e))
        if any(isinstance(c, (requests.exceptions.SSLError, urllib3.exceptions.SSLError, ssl.SSLError)) for c in found):
            return RemoteError(tls_message(e, self.base_url, self.settings.ca_cert), fatal=True)
        if any(_timed_out(c) for c in found):
            message = f"the server at {self.base_url} did not answer within {self.settings.timeout:g}s."
            how = f"no answer within {self.settings.timeout:g}s"
        else:
            message = connection_message(e, self.base_url)
            refused = any(isinstance(c, ConnectionRefusedError) for c in found) or "nothing is listening" in message
            how = "connections refused" if refused else "connections cut off"
        if self.outage is not None:
            self.outage.no_answer(key or what, how)
        return RemoteError(f"{what}: {message}" if what else message)

    @contextmanager
    def deadline(self, what: str, conn: Any = None) -> Iterator[Step]:
        """One blocking step under the stall deadline (deadline.py). A stall ends the run for
        every caller (through the outage watch): a server this slow is not waited for again."""
        try:
            with WATCHDOG.step(self.settings.stall, conn) as step:
                yield step
        except Stalled:
            message = (f"the server at {self.base_url} sent less than 64 KiB in {self.settings.stall:g}s ({what}); "
                       "stopped waiting. Run again later, or set DAVSYNC_STALL_TIMEOUT to wait longer.")  # fmt: skip
            if self.outage is not None:
                self.outage.give_up(message)
            raise RemoteError(message, fatal=True) from None
        except Interrupted:
            raise Stopped(f"stopped ({what}).") from None

    def _answered(self) -> None:
        if self.outage is not None:
            self.outage.answered()

    # --- requests ------------------------------------------------------------

    def request(self, method: str, url: str, *, login: bool = True, **kw: Any) -> requests.Response:
        """Send one request; a refused login is a fatal RemoteError, a Digest-only server is
        answered with Digest from then on. `login=False` sends no credentials and hands a 401
        back as an answer (what a client without a login sees, as doctor asks)."""
        kw.setdefault("timeout", self.settings.timeout)
        data = kw.get("data")
        if isinstance(data, (bytes, bytearray)) and len(data) > STEP_BYTES:
            kw["data"] = _Paced(data)  # a 16 MiB batch on a slow uplink is progress, not a stall
        if not login:
            kw["auth"] = _no_login
        self._count()
        try:
            with self.deadline(f"{method} {unquote(urlsplit(url).path)}"):
                resp = self.session().request(method, url, **kw)
        except NETWORK_ERRORS as e:
            raise self.failure(e, key=f"{method} {url}") from None
        self._answered()
        if resp.status_code == 401 and login:
            resp.close()
            if self._negotiate(resp):
                rewind = getattr(kw.get("data"), "seek", None)
                if rewind is not None:
                    rewind(0)  # an upload goes again from its first byte
                return self.request(method, url, **kw)
            raise self.login_refused()
        busy = busy_answer(resp, self.base_url)
        if busy is not None:
            resp.close()
            raise busy
        return resp

    def _negotiate(self, answer: requests.Response) -> bool:
        """Switch to Digest when the server offers only that; True when a retry is worth it.
        Another thread may have switched first: this thread's session then catches up."""
        session = self.session()
        if self._use_digest:
            if isinstance(session.auth, HTTPDigestAuth):
                return False
        else:
            challenge = answer.headers.get("WWW-Authenticate", "").lower()
            if not self.user or "digest" not in challenge or "basic" in challenge:
                return False
            self._use_digest = True
        session.auth = self._auth()
        return True

    def login_refused(self) -> RemoteError:
        if not self.user:
            return RemoteError(
                "this share needs a login: add --user NAME (the password is asked for, or read from DAVSYNC_PASSWORD).",
                fatal=True,
                status=401,
            )
        return RemoteError(
            f"the server refused the login for user '{self.user}'. Check --user and the password (DAVSYNC_PASSWORD).",
            fatal=True,
            status=401,
        )

    def chunks(self, resp: requests.Response, size: int, what: str) -> Iterator[bytes]:
        """A streamed answer's body; a connection lost while reading is a RemoteError
        (`what` says what was being read). Errors of the caller's own loop body pass untouched."""
        it = resp.iter_content(min(size, STEP_BYTES))
        window = 0  # bytes since the step's deadline last moved: a chunked trickle is many tiny chunks
        with self.deadline(what, getattr(resp.raw, "connection", None)) as step:
            while True:
                try:
                    chunk = next(it, None)
                except NETWORK_ERRORS as e:
                    raise self.failure(e, what) from None
                if chunk is None:
                    return
                window += len(chunk)
                if window >= STEP_BYTES:
                    step.progress()
                    window = 0
                with step.paused():  # the caller's own time is not the server's
                    yield chunk

    def body_reader(self, resp: requests.Response, what: str) -> BodyReader:
        conn = getattr(resp.raw, "connection", None)
        """A streamed answer's body read into the caller's buffers (see BodyReader)."""
        return BodyReader(resp, lambda e: self.failure(e, what), what, lambda: self.deadline(what, conn))

    def get_small(self, url: str, what: str, limit: int) -> tuple[int, bytes]:
        """GET a whole small file: urllib3 directly, as requests' per-call overhead is larger
        than a small file's transfer. Digest logins, and a 401, take the requests path. At most
        `limit` + 1 bytes are read (a body without end must not fill the memory): a longer body
        comes back that long, for the caller's length check."""
        if self._use_digest:
            return self._get_whole(url, what, limit)
        headers = {"User-Agent": "davsync", "Accept-Encoding": "identity"}
        if self.user:
            headers.update(urllib3.make_headers(basic_auth=f"{self.user}:{self.client.webdav.password or ''}"))
        self._count()
        timeout = urllib3.Timeout(connect=self.settings.timeout, read=self.settings.timeout)
        try:
            with self.deadline(f"GET {what}"):
                resp = self._pool().request("GET", url, headers=headers, timeout=timeout, redirect=False,
                                            preload_content=False)  # fmt: skip
        except NETWORK_ERRORS as e:
            raise self.failure(e, f"GET {what} failed") from None
        self._answered()
        if resp.status == 401:  # let the requests path work out Digest, or report the refused login
            resp.close()
            return self._get_whole(url, what, limit)
        if resp.status != 200:
            limit = max(limit, 64 * 1024)  # an error page: read whole, the connection is kept
        data = b""
        try:
            while len(data) <= limit:
                with self.deadline(f"GET {what}", resp.connection):
                    chunk = resp.read(min(STEP_BYTES, limit + 1 - len(data)))
                if not chunk:
                    break
                data += chunk
        except NETWORK_ERRORS as e:
            resp.close()
            raise self.failure(e, f"GET {what} failed") from None
        if len(data) > limit:
            resp.close()  # the rest is not read: this connection cannot carry another request
        else:
            resp.release_conn()
        return resp.status, data

    def _get_whole(self, url: str, what: str, limit: int) -> tuple[int, bytes]:
        with self.request("GET", url, headers={"Accept-Encoding": "identity"}, stream=True) as resp:
            chunks: list[bytes] = []
            got = 0
            for chunk in self.chunks(resp, STEP_BYTES, f"GET {what} failed"):
                chunks.append(chunk)
                got += len(chunk)
                if got > max(limit, 64 * 1024):  # (an error page is read whole)
                    break
            return resp.status_code, b"".join(chunks)


class _Paced(io.BytesIO):
    """A request body in memory, sent piece by piece (with its Content-Length), each piece
    moving the stall deadline on."""

    def read(self, size: int | None = -1, /) -> bytes:
        WATCHDOG.progress()
        return super().read(size)


class BodyReader:
    """Reads a streamed answer's body into buffers the caller owns and reuses.

    A 1 GiB download through iter_content costs a fresh 1 MiB bytes object per chunk and
    urllib3's buffering copies; here the socket fills the caller's buffer directly
    (http.client's readinto, under urllib3's `_fp`, when the body is not content-encoded), so
    the body is copied once, kernel to buffer. A body shorter than its Content-Length is a
    lost connection (RemoteError), never a silent end; after the whole body the connection goes
    back to the pool. Anything unexpected about the response falls back to urllib3's readinto.
    """

    def __init__(self, resp: requests.Response, failure: Callable[[BaseException], RemoteError], what: str,
                 deadline: Callable[[], Any]) -> None:  # fmt: skip
        self._raw = resp.raw
        self._deadline = deadline
        self._failure = failure
        self._what = what
        fp = getattr(resp.raw, "_fp", None)  # urllib3's http.client response (2.x and 1.26 alike)
        encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        self._direct: http.client.HTTPResponse | None = (
            fp if isinstance(fp, http.client.HTTPResponse) and not encoded else None
        )
        self._encoded = encoded  # a server compressing although asked not to: decoded here, length unknown
        self._chunks: Iterator[bytes] = resp.iter_content(1 << 20) if encoded else iter(())  # requests decodes
        self._pending = b""
        length = resp.headers.get("Content-Length", "")
        self._left: int | None = int(length) if length.isdigit() and not encoded and "chunked" not in resp.headers.get(
            "Transfer-Encoding", "").lower() else None  # fmt: skip
        self.received = 0

    def fill(self, buffer: memoryview) -> int:
        """Fill `buffer` as far as the body goes; returns the bytes read (fewer only at the end, 0 after it).

        A lost connection raises a RemoteError whose `partial` says how many bytes of `buffer`
        did arrive before it: a download keeps them, so each resume gets further."""
        got = 0
        try:
            while got < len(buffer):
                with self._deadline():  # a step at a time: a trickle is a stall, not a slow read
                    n = self._read(buffer[got : got + STEP_BYTES])
                if not n:
                    break
                got += n
        except RemoteError as e:  # a stall
            e.partial = got
            raise
        except NETWORK_ERRORS as e:
            error = self._failure(e)
            error.partial = got
            raise error from None
        self.received += got
        if got < len(buffer):
            try:
                self._finish()
            except RemoteError as e:
                e.partial = got
                raise
        return got

    def _read(self, view: memoryview) -> int:
        if self._direct is not None:
            return self._direct.readinto(view)
        if self._encoded:
            if not self._pending:
                self._pending = next(self._chunks, b"")
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            return n
        return self._raw.readinto(view)

    def _finish(self) -> None:
        if self._left is not None and self.received != self._left:
            raise RemoteError(f"{self._what}: the server sent {self.received} of {self._left} bytes")
        if self._direct is not None and self._direct.isclosed():
            self._raw.release_conn()  # read to its end: the connection can carry the next request
