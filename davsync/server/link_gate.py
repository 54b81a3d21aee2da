"""The share-link gate: WSGI middleware in front of the server that answers `/s/<token>/...`.

It finds the link (404 unknown or revoked, 410 expired), checks its password, applies
its mode's method set, refuses paths and Destinations that would leave the link, and
hands the request to a WsgiDAV app whose provider is rooted at the shared folder and
whose hrefs are mounted at `/s/<token>`. Every answer gets `Referrer-Policy:
no-referrer` and `Cache-Control: private`; logs name the link by ID and a shortened token.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from wsgidav.dav_error import DAVError

from ..users import Users
from .limiter import FailureLimiter, client_address, too_many
from .link_answers import LINK_SENTENCES, PlainErrors, answer
from .link_auth import COOKIE_NAME, LinkAuth
from .link_drop import MAX_CLASH, DropResumable, drop_folders, is_resumable, numbered, owner_allows
from .link_file import file_target, refusal, to_the_file
from .link_fs import LinkProvider
from .link_pages import drop_page, expired_page, login_page, not_found_page
from .links import LINK_PASSWORD, TOKEN_RE, LinkError, LinkStore, ShareLink, shorten
from .names import is_internal_path
from .pages.browser import ASSET_PREFIX, wants_html
from .resumable import DROP_NAMER
from .wsgitypes import StartResponse, WsgiApp

log = logging.getLogger("davsync.server")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PROPFIND", "REPORT"})
WRITE_METHODS = READ_METHODS | {"PUT", "DELETE", "MKCOL", "COPY", "MOVE", "PROPPATCH", "LOCK", "UNLOCK"}
DROP_METHODS = frozenset({"OPTIONS", "PROPFIND", "PUT", "MKCOL"})
ALLOWED = {"read-only": READ_METHODS, "read-write": WRITE_METHODS, "drop": DROP_METHODS}
REFUSED = {
    "read-only": "This link is read-only.",
    "read-write": "This method is not available through a share link.",
    "drop": "This link only accepts uploads (PUT) and new folders (MKCOL).",
}
MAX_FORM = 4096
ENCODED_SEPARATOR = re.compile("%(2f|5c)", re.IGNORECASE)
NOT_ACCEPTED = "This path is not accepted in a link: '.', '..', '\\' and encoded separators (%2F, %5C) are refused."
EXPLORER_AGENT = "Microsoft-WebDAV-MiniRedir"
PROBE_PATHS = frozenset({"/", "/s", "/s/"})
PROBE_ALLOW = "OPTIONS, GET, HEAD, PROPFIND, PROPPATCH, PUT, DELETE, MKCOL, COPY, MOVE, LOCK, UNLOCK"
PROBE_LISTING = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:"><D:response><D:href>/s/</D:href>'
    b"<D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype></D:prop>"
    b"<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"
)
DROP_DONE = "Received."
APPS_CACHED = 64


@dataclass
class Mounted:
    app: WsgiApp
    provider: LinkProvider


class LinkGate:
    """Routes `/s/...` to share links and everything else to the share's own app."""

    def __init__(self, app: WsgiApp, store: LinkStore, root: str, make_dav_app: Callable[[LinkProvider, str], WsgiApp],
                 index: Any, versions: Any = None, anonymous: str = "off",
                 limiter: FailureLimiter | None = None, users: Users | None = None) -> None:  # fmt: skip
        self.app = app
        self.anonymous = anonymous  # the share's own guest access: a guest's probes need no help then
        self.store = store
        self.root = os.path.realpath(root)
        self.make_dav_app = make_dav_app
        self.index = index
        self.versions = versions  # writes through a link keep versions like any other
        self.auth = LinkAuth(limiter)
        self.users = users  # the share's users: a link made on the page keeps to its maker's rights
        self._mounted: OrderedDict[tuple, Mounted] = OrderedDict()
        self._lock = threading.Lock()
        self._reserved: set[str] = set()  # drop-box names being uploaded right now

    @property
    def counts(self) -> Any:
        """The share's own requests per method (FrontGate's diagnostics)."""
        return getattr(self.app, "counts", None)

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in PROBE_PATHS:
            probe = self._explorer_probe(environ, start_response, path)
            if probe is not None:
                return probe
        if not path.startswith("/s/"):
            return self.app(environ, start_response)
        token, slash, rest = path[3:].partition("/")
        if not TOKEN_RE.match(token) and os.path.lexists(os.path.join(self.root, "s")):
            return self.app(environ, start_response)  # the share's own folder "s", not a link
        return self._serve(environ, start_response, token, slash + rest)

    # --- Windows Explorer on its way to a link ------------------------------------

    def _explorer_probe(self, environ: dict, start_response: StartResponse, path: str) -> Iterable[bytes] | None:
        """Explorer's Mini-Redirector, mapping `/s/<token>/`, first asks OPTIONS of the server root
        and of `/s`, and PROPFIND (Depth 0) of `/s`. Answered by the share, those get its own 401,
        and Explorer asks for the share's login, which a friend with a link does not have. Here a
        credential-less probe is answered with what any WebDAV server says about itself (DAV
        classes and methods) and an empty `/s/` collection: nothing of the share, no link, no
        token. PROPFIND of `/` and any listing below it still need the share's login."""
        if "HTTP_AUTHORIZATION" in environ or not environ.get("HTTP_USER_AGENT", "").startswith(EXPLORER_AGENT):
            return None
        method = environ["REQUEST_METHOD"]
        if path == "/":
            if method != "OPTIONS" or self.anonymous != "off":
                return None  # a guest of the share is answered by the share itself
        elif method == "PROPFIND":
            if environ.get("HTTP_DEPTH") != "0":
                return None
        elif method != "OPTIONS":
            return None
        if path != "/" and self.anonymous != "off" and os.path.lexists(os.path.join(self.root, "s")):
            return None  # the share's own folder "s", which its guests may see
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if not 0 <= length <= MAX_FORM:
            return None
        if length:
            environ["wsgi.input"].read(length)  # Explorer's prop list: the answer is the same for any
        if log.isEnabledFor(logging.INFO):
            log.info('%s - "%s %s" -> answered as a Windows Explorer probe', environ.get("REMOTE_ADDR", ""), method,
                     path)  # fmt: skip
        headers = [("DAV", "1, 2"), ("MS-Author-Via", "DAV"), ("Cache-Control", "private")]
        if method == "OPTIONS":
            start_response("200 OK", [*headers, ("Allow", PROBE_ALLOW), ("Content-Length", "0")])
            return [b""]
        start_response("207 Multi-Status", [*headers, ("Content-Type", 'application/xml; charset="utf-8"'),
                                            ("Content-Length", str(len(PROBE_LISTING)))])  # fmt: skip
        return [PROBE_LISTING]

    # --- one link request --------------------------------------------------------

    def _serve(self, environ: dict, start_response: StartResponse, token: str, rest: str) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        prefix = "/s/" + token
        addr = client_address(environ)
        try:
            link = self.store.find(token)
        except LinkError as e:
            log.error("share links unavailable: %s", e)
            return answer(_Decorated(start_response, None, prefix), "503 Service Unavailable", environ,
                           "The share links cannot be read right now.")  # fmt: skip
        shown = f"/s/{shorten(token)}{rest}"
        if link is None or link.revoked is not None or not owner_allows(link, self.users):
            unknown = _Decorated(
                _Logged(start_response, addr, method, f"(unknown or revoked link) {shown}"), None, prefix
            )
            return answer(unknown, "404 Not Found", environ, "There is no share link here.", not_found_page())
        start = _Decorated(_Logged(start_response, addr, method, f"share {link.id} {shown}"), link, prefix)
        if link.expired():
            return answer(start, "410 Gone", environ, "This share link has expired.", expired_page())
        target = file_target(self.root, link) if link.kind == "file" else None
        folder = target[0] if target is not None else self._folder(link) if link.kind != "file" else None
        if folder is None:
            return answer(start, "404 Not Found", environ, f"The shared {link.kind} no longer exists.",
                           not_found_page())  # fmt: skip
        try:
            rel = rest.encode("latin-1").decode("utf-8")
        except UnicodeError:
            return answer(start, "400 Bad Request", environ, "The request path is not valid UTF-8.")
        # cheroot leaves an encoded '/' encoded: 'a%2Fb' would be a name, or a way out, further on.
        if any(seg in (".", "..") for seg in rel.split("/")) or "\\" in rel or ENCODED_SEPARATOR.search(rel):
            return answer(start, "400 Bad Request", environ, NOT_ACCEPTED)
        if rest == "" and method in ("GET", "HEAD"):
            return _redirect(
                start, prefix + "/" + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
            )

        denied = self._authenticate(environ, start, link, prefix, rest)
        if denied is not None:
            return denied
        resumable = link.mode == "drop" and is_resumable(environ, rest)
        if link.mode == "drop" and method == "GET" and rest.startswith(ASSET_PREFIX):
            resumable = True  # the upload page's script and style (pages/browser.py serves them)
        if method not in WRITE_METHODS and not resumable:
            return answer(start, "405 Method Not Allowed", environ, f"{method} is not supported here.",
                           headers=[("Allow", ", ".join(sorted(ALLOWED[link.mode])))])  # fmt: skip
        if link.mode == "drop" and method in ("GET", "HEAD") and not resumable:
            if wants_html(environ):
                return answer(start, "200 OK", environ, "", drop_page(link.label, prefix))
            return answer(start, "403 Forbidden", environ, REFUSED["drop"])
        if target is not None:  # a link to one file (link_file.py): that file, nothing else of its folder
            refused = refusal(method, rel, target[1], link.mode)
            if refused is not None:
                return answer(start, refused[0], environ, refused[1])
            if method in ("GET", "HEAD") and rel in ("", "/"):
                to_the_file(environ, target[1], wants_html(environ) and not environ.get("QUERY_STRING"))
                rest = environ["PATH_INFO"]
        if method not in ALLOWED[link.mode] and not resumable:
            return answer(start, "403 Forbidden", environ, REFUSED[link.mode])
        problem = _destination_problem(environ.get("HTTP_DESTINATION"), prefix)
        if problem:
            return answer(start, "403 Forbidden", environ, problem)

        mounted = self._mount(link, prefix, folder, target[1] if target is not None else None)
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
        environ["PATH_INFO"] = rest or "/"
        environ["wsgidav.auth.user_name"] = environ["wsgidav.user_name"] = f"share-link-{link.id}"
        environ[LINK_PASSWORD] = link.password is not None
        if link.mode == "read-only":
            environ["davsync.readonly"] = True
        environ.pop("HTTP_AUTHORIZATION", None)  # handled here; the DAV app has no authenticator
        if resumable:
            if method != "GET":
                environ[DROP_NAMER] = self._namer(mounted.provider)
            return mounted.app(environ, DropResumable(start))
        if link.mode == "drop":
            return self._drop(environ, start, mounted, rel or "/")
        return mounted.app(environ, start)

    def _folder(self, link: ShareLink) -> str | None:
        """The shared folder's real path, if it is still a real folder inside the share (no symlink swapped in)
        and not one of davsync's own (the versions area, in any spelling the volume folds to it)."""
        if is_internal_path(link.path):
            return None
        folder = os.path.join(self.root, *[p for p in link.path.split("/") if p])
        try:
            st = os.lstat(folder)
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode) or os.path.realpath(folder) != folder:
            return None
        return folder

    def _mount(self, link: ShareLink, prefix: str, folder: str, only: str | None) -> Mounted:
        key = (link.token_sha256, link.id, link.path, link.mode, link.kind)
        with self._lock:
            found = self._mounted.get(key)
            if found is not None:
                self._mounted.move_to_end(key)
                return found
        prefix_rel = link.path.rpartition("/")[0] if only is not None else link.path  # a file's folder
        provider = LinkProvider(folder, self.index, prefix_rel, link.mode, versions=self.versions, only=only)
        mounted = Mounted(self.make_dav_app(provider, prefix), provider)
        with self._lock:
            self._mounted[key] = mounted
            while len(self._mounted) > APPS_CACHED:
                self._mounted.popitem(last=False)
        return mounted

    # --- password ------------------------------------------------------------------

    def _authenticate(
        self, environ: dict, start: StartResponse, link: ShareLink, prefix: str, rest: str
    ) -> Iterable[bytes] | None:
        """None when the request may go on; otherwise the answer (challenge, login form, 429)."""
        if link.password is None:
            return None
        addr = client_address(environ)
        method = environ["REQUEST_METHOD"]
        is_login = method == "POST" and environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded")
        header = environ.get("HTTP_AUTHORIZATION", "")
        if not is_login and not header and self.auth.check_cookie(link, environ.get("HTTP_COOKIE")):
            return None
        if is_login or header:
            wait = self.auth.limiter.retry_after(addr)
            if wait:
                log.warning("%s - too many wrong passwords for share links; refused for %d s", addr, wait)
                return answer(start, "429 Too Many Requests", environ, too_many(wait).strip(),
                               headers=[("Retry-After", str(wait))])  # fmt: skip
        if is_login:
            return self._login(environ, start, link, prefix, rest)
        scheme, _, value = header.partition(" ")
        stale = False
        if scheme.lower() == "basic":
            ok = self.auth.check_basic(link, value)
        elif scheme.lower() == "digest":
            raw_path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
            verdict = self.auth.check_digest(link, value, method, raw_path.encode("latin-1").decode("utf-8", "replace"),
                                             environ.get("QUERY_STRING", ""))
            ok, stale = verdict == "ok", verdict == "stale"
        else:
            ok = False
        if ok:
            return None  # (failures are not forgiven: knowing one password must not reset guesses at others)
        if header and not stale:
            self.auth.limiter.failed(addr)
        if not header and method in ("GET", "HEAD") and wants_html(environ):
            form = login_page(link.label, prefix + rest, what=link.kind)
            return answer(start, "401 Unauthorized", environ, "", form,
                           headers=[("WWW-Authenticate", f'FormLogin realm="{link.realm}"')])  # fmt: skip
        return answer(start, "401 Unauthorized", environ, "This share link needs its password (any user name).",
                       headers=self.auth.challenges(link, stale=stale))  # fmt: skip

    def _login(self, environ: dict, start: StartResponse, link: ShareLink, prefix: str, rest: str) -> Iterable[bytes]:
        addr = client_address(environ)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_FORM:
            return answer(start, "400 Bad Request", environ, "The login form is malformed.")
        form = parse_qs(environ["wsgi.input"].read(length).decode("utf-8", "replace"))
        environ["wsgidav.all_input_read"] = 1
        password = (form.get("password") or [""])[0]
        if not self.auth.password_ok(link, password):
            self.auth.limiter.failed(addr)
            page = login_page(link.label, prefix + rest, "Wrong password.", what=link.kind)
            return answer(start, "401 Unauthorized", environ, "", page,
                           headers=[("WWW-Authenticate", f'FormLogin realm="{link.realm}"')])  # fmt: skip
        value, max_age = self.auth.make_cookie(link)
        secure = "; Secure" if environ.get("wsgi.url_scheme") == "https" else ""
        cookie = f"{COOKIE_NAME}={value}; Path={prefix}/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
        start("303 See Other", [("Location", quote(prefix + (rest or "/"), safe="/%")), ("Set-Cookie", cookie),
                                ("Content-Length", "0")])  # fmt: skip
        return [b""]

    # --- drop boxes -------------------------------------------------------------------

    def _drop(self, environ: dict, start: StartResponse, mounted: Mounted, rel: str) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if method == "PROPFIND":
            if rel.strip("/"):  # below the root, one answer for every name: a drop box shows nothing
                return answer(start, "404 Not Found", environ, "Nothing to see here: this link only accepts uploads.")
            return mounted.app(environ, start)
        if method == "OPTIONS":
            return mounted.app(environ, _DropOptions(start))
        if method not in ("PUT", "MKCOL"):
            return mounted.app(environ, start)
        if method == "PUT" and rel.endswith("/"):
            # WsgiDAV strips the slash and would replace the file named before it.
            return answer(start, "400 Bad Request", environ,
                           "A file name cannot end with '/'; upload to the file's name.")  # fmt: skip
        parts = [p for p in rel.split("/") if p]
        name = parts.pop() if method == "PUT" else ""
        try:  # the folders it goes into, made where missing (link_drop.py): no answer tells what is there
            parent = drop_folders(mounted.provider, environ, parts)
        except DAVError:
            return answer(start, "403 Forbidden", environ, "This name is reserved by davsync; choose another.")
        if parent is None:
            return answer(start, "409 Conflict", environ, "Too many folders with this name; rename it and try again.")
        if method == "MKCOL":
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0) or 0)
            return answer(start, "201 Created", environ, DROP_DONE)
        target = mounted.provider.file_path(parent + "/")
        chosen = self._reserve(target, name)
        if chosen is None:
            return answer(start, "409 Conflict", environ, "Too many files with this name; rename it and try again.")
        environ["PATH_INFO"] = f"{parent}/{chosen}".encode().decode("latin-1")
        reserved = os.path.join(target, chosen)
        # No Location: the name chosen ('name (2)') would tell a stranger that 'name' exists.
        try:
            return _uniform(mounted.app, environ, start)
        finally:
            self._release(reserved)

    def _reserve(self, folder: str, name: str) -> str | None:
        """The first of name, 'name (2)', 'name (3)'... that is neither on disk nor being uploaded."""
        with self._lock:
            for n in range(1, MAX_CLASH):
                candidate = numbered(name, n)
                full = os.path.join(folder, candidate)
                if full not in self._reserved and not os.path.lexists(full):
                    self._reserved.add(full)
                    return candidate
        return None

    def _namer(self, provider: LinkProvider) -> Callable[[str], tuple[str | None, Callable[[], None]]]:
        """A resumable upload's commit (resumable.py) takes the first free name, as a drop's PUT does."""

        def name(path: str) -> tuple[str | None, Callable[[], None]]:
            parent, _, base = path.rpartition("/")
            folder = os.path.dirname(provider.file_path(path))
            chosen = self._reserve(folder, base)
            if chosen is None:
                return None, lambda: None
            full = os.path.join(folder, chosen)
            return f"{parent}/{chosen}", lambda: self._release(full)

        return name

    def _release(self, full: str) -> None:
        with self._lock:
            self._reserved.discard(full)


def link_app_factory(config: dict, main_app: Any) -> Callable[[LinkProvider, str], WsgiApp]:
    """Builds a link's WsgiDAV app from the share's own config: same request handling, locks and
    properties, but rooted at the shared folder, mounted at /s/<token>, and without the user login
    (the gate has checked the link's password)."""
    from wsgidav.dir_browser import WsgiDavDirBrowser
    from wsgidav.http_authenticator import HTTPAuthenticator
    from wsgidav.wsgidav_app import WsgiDAVApp

    from .auth import FrontGate

    class LinkDirBrowser(WsgiDavDirBrowser):
        """The folder page of a link: its heading and title name the shared folder, not the token."""

        folder_name = ""

        def _get_context(self, environ: dict, dav_res: Any) -> dict:
            context: dict = super()._get_context(environ, dav_res)
            context["display_path"] = self.folder_name + dav_res.path
            return context

    def make(provider: LinkProvider, prefix: str) -> WsgiApp:
        stack = [LinkDirBrowser if mw is WsgiDavDirBrowser else mw
                 for mw in config["middleware_stack"] if mw is not HTTPAuthenticator]  # fmt: skip
        if provider.mode == "drop":
            stack = [mw for mw in stack if mw is not LinkDirBrowser]
        cfg = {k: v for k, v in config.items() if k not in ("http_authenticator", "mount_path")}
        cfg.update({
            "provider_mapping": {"/": provider},
            "lock_storage": None,
            "logging": {"enable": False},
            "verbose": min(int(config.get("verbose", 1)), 2),  # at 3 WsgiDAV logs Destination URLs: tokens
            "middleware_stack": stack,
            "dir_browser": {**config["dir_browser"], "show_user": False},
        })  # fmt: skip
        app = WsgiDAVApp(cfg)
        # Mounted after construction: WsgiDAV logs a configured mount path, and this one holds the token.
        provider.set_mount_path(prefix)
        node: Any = app.application
        while node is not None:
            if isinstance(node, LinkDirBrowser):
                node.mount_path = prefix  # its page's asset links
                node.folder_name = os.path.basename(provider.root_folder_path)
            node = getattr(node, "next_app", None)
        provider.set_lock_manager(main_app.lock_manager)  # one lock table for the share and its links
        return PlainErrors(FrontGate(app, Users({}), "write"), LINK_SENTENCES)

    return make


# --- helpers ---------------------------------------------------------------------------


def _destination_problem(destination: str | None, prefix: str) -> str | None:
    """COPY/MOVE may only target a path inside the same link."""
    if not destination:
        return None
    try:
        path = unquote(urlsplit(destination).path, errors="strict")
    except (UnicodeError, ValueError):
        return "The Destination header is not a valid UTF-8 URL."
    if not path.startswith(prefix + "/"):
        return "COPY and MOVE must stay inside the same share link."
    if any(seg in (".", "..") for seg in path.split("/")) or "\\" in path:
        return "The Destination leaves the shared folder."
    return None


def _uniform(app: WsgiApp, environ: dict, start: StartResponse) -> list[bytes]:
    """Runs a drop's PUT or MKCOL to the end and answers a success in one fixed form (no ETag,
    no Location, no dated page), so no answer differs by what the folder already holds."""
    got: list[Any] = []

    def capture(status: str, headers: list, exc_info: Any = None) -> Callable[[bytes], None]:
        got[:] = [status, headers, exc_info]
        return lambda data: None

    body = app(environ, capture)
    try:
        chunks = list(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()
    status, headers, exc_info = got
    if status[:1] == "2":
        return answer(start, "201 Created", environ, DROP_DONE)
    start(status, headers, exc_info)
    return chunks


def _redirect(start: StartResponse, location: str) -> list[bytes]:
    start("301 Moved Permanently", [("Location", location), ("Content-Length", "0")])
    return [b""]


class _DropOptions:
    """OPTIONS on a drop link advertises what it allows (uploads into, and folders under, any folder)."""

    def __init__(self, start: StartResponse) -> None:
        self.start = start

    def __call__(self, status: str, headers: list, exc_info: Any = None) -> Any:
        out = []
        for name, value in headers:
            if name.lower() == "allow":
                value = "OPTIONS, PROPFIND, PUT, MKCOL"
            elif name.lower() == "dav":
                value = "1"
            out.append((name, value))
        return self.start(status, out, exc_info)


class _Decorated:
    """Adds the link headers to every answer, and keeps Location headers under the link."""

    def __init__(self, start: StartResponse, link: ShareLink | None, prefix: str) -> None:
        self.start = start
        self.link = link
        self.prefix = prefix

    def __call__(self, status: str, headers: list, exc_info: Any = None) -> Any:
        out = []
        cache = "private"
        for name, value in headers:
            lname = name.lower()
            if lname == "cache-control":
                parts = [
                    p.strip() for p in value.split(",") if p.strip() and p.strip().lower() not in ("public", "private")
                ]
                cache = ", ".join(["private", *parts])
                continue
            if lname == "location":
                value = self._inside(value)
            out.append((name, value))
        out += [("Cache-Control", cache), ("Referrer-Policy", "no-referrer"), ("X-Robots-Tag", "noindex, nofollow")]
        if self.link is not None:
            info = f"mode={self.link.mode}; id={self.link.id}" + ("; kind=file" if self.link.kind == "file" else "")
            if self.link.expires is not None:
                info += f"; expires={formatdate(self.link.expires, usegmt=True)}"
            out.append(("X-Davsync-Link", info))
        return self.start(status, out, exc_info)

    def _inside(self, location: str) -> str:
        parts = urlsplit(location)
        path = parts.path
        if path.startswith(self.prefix + "/") or path == self.prefix:
            return location
        fixed = self.prefix + (path if path.startswith("/") else "/" + path)
        return parts._replace(path=fixed).geturl()


class _Logged:
    """One log line per link request, naming the link by ID and a shortened token."""

    def __init__(self, start: StartResponse, addr: str, method: str, what: str) -> None:
        self.start = start
        self.addr = addr
        self.method = method
        self.what = what
        self.t0 = time.monotonic()

    def __call__(self, status: str, headers: list, exc_info: Any = None) -> Any:
        if log.isEnabledFor(logging.INFO):
            log.info('%s - "%s %s" -> %s (%.3f s)', self.addr, self.method, self.what, status.split(" ")[0],
                     time.monotonic() - self.t0)  # fmt: skip
        return self.start(status, headers, exc_info)
