"""`serve --admin`: a small admin page for users with the admin flag, and the client log behind it.

It lives under ADMIN_PREFIX, which starts with the prefix of davsync's own upload temp files:
the share can never hold, list or serve a name like that, so the page cannot collide with it.
Admins log in with Basic auth (their davsync password); every POST needs the page's CSRF token
in a header, which a cross-site form cannot send. Everything else passes through, after noting who
connected from where and how many bytes they were sent (an answer's Content-Length; only a body
without one is counted as it goes, so a download costs nothing extra); the share's files are sent
sandboxed (browser_headers.py) so they cannot act as a logged-in admin. Kept versions are
listed and restored through the same VersionStore calls as `davsync versions`.
"""

from __future__ import annotations

import hmac
import itertools
import json
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from ..users import Users, UsersFileError, basic_credentials
from .limiter import FailureLimiter, client_address, too_many
from .names import TEMP_PREFIX
from .restore import restore_in_share
from .settings import ServeSettings
from .version_keeper import FileVersion, FolderVersion, Restored, VersionError
from .wsgitypes import StartResponse, WsgiApp

ADMIN_PREFIX = f"/{TEMP_PREFIX}admin/"
CLIENTS_KEPT = 200
MAX_BODY = 16 * 1024
LIST_MAX = 500  # rows per versions list: a 10,000-file deleted folder is one line until expanded


@dataclass
class ClientSeen:
    user: str
    address: str
    agent: str
    first_seen: float
    last_seen: float
    requests: int = 0
    bytes_sent: int = 0


def _user_of(environ: dict) -> str:
    """The login name a request claims (verified or not, this is only a log): Basic or Digest."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "basic":
        credentials = basic_credentials(auth)
        return credentials[0] if credentials is not None else "?"
    if scheme.lower() == "digest":
        m = re.search(r'username="([^"]*)"', value)
        return m.group(1) if m else "?"
    return "(guest)"


class ClientLog:
    """Recent clients per user and address: when, how often, how many bytes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], ClientSeen] = {}

    def note(self, user: str, address: str, agent: str, nbytes: int) -> None:
        now = time.time()
        with self._lock:
            seen = self._seen.get((user, address))
            if seen is None:
                if len(self._seen) >= CLIENTS_KEPT:
                    oldest = min(self._seen.values(), key=lambda s: s.last_seen)
                    del self._seen[(oldest.user, oldest.address)]
                seen = self._seen[(user, address)] = ClientSeen(user, address, agent, now, now)
            seen.last_seen = now
            seen.agent = agent or seen.agent
            seen.requests += 1
            seen.bytes_sent += nbytes

    def view(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = sorted(self._seen.values(), key=lambda s: -s.last_seen)
            return [vars(s).copy() for s in rows]


class _Meter:
    """start_response that notes the answer's Content-Length, so most bodies need no counting."""

    def __init__(self, start_response: StartResponse, head: bool) -> None:
        self.start_response = start_response
        self.head = head
        self.started = False
        self.length: int | None = None

    def __call__(self, status: str, headers: list, exc_info: Any = None) -> Any:
        self.started = True
        self.length = None
        for k, v in headers:
            if k.lower() == "content-length" and v.isdigit():
                self.length = int(v)
        if self.head:
            self.length = 0  # HEAD sends the GET's Content-Length and no body
        return self.start_response(status, headers, exc_info) if exc_info else self.start_response(status, headers)


class _Accounted:
    """A body whose answer had not started when the app returned (a generator): the first chunk
    starts it; then, with a Content-Length, the rest passes untouched (a C-level chain, no Python
    step per chunk); without one, the chunks are counted. Noted when the server closes it."""

    def __init__(self, result: Iterable[bytes], meter: _Meter, done: Callable[[int], None]) -> None:
        self._result = result
        self._meter = meter
        self._done = done
        self._sent = 0

    def __iter__(self) -> Iterator[bytes]:
        it = iter(self._result)
        first = next(it, None)
        head = [] if first is None else [first]
        if self._meter.length is not None:
            self._sent = self._meter.length
            return itertools.chain(head, it)
        return self._counted(head, it)

    def _counted(self, head: list[bytes], it: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in itertools.chain(head, it):
            self._sent += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._done(self._sent)


class AdminGate:
    """The outermost WSGI layer when `serve --admin` is on."""

    def __init__(self, app: WsgiApp, users: Users, settings: ServeSettings, state: Any,
                 limiter: FailureLimiter | None = None) -> None:  # fmt: skip
        self.app = app
        self.users = users
        self.limiter = limiter or FailureLimiter()  # the server's one limiter: wrong passwords anywhere count
        self.settings = settings
        self.state = state  # ShareState: index, and the tracker once the server has one
        self.clients = ClientLog()
        self.csrf = secrets.token_urlsafe(32)
        self._lock = threading.Lock()  # one change to the users file at a time
        self._count_cache: tuple[float, int] = (0.0, 0)

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == ADMIN_PREFIX.rstrip("/") or path.startswith(ADMIN_PREFIX):
            return self._admin(environ, start_response, path[len(ADMIN_PREFIX) :])
        method = environ["REQUEST_METHOD"]
        meter = _Meter(start_response, head=method == "HEAD")
        result = self.app(environ, meter)

        def note(nbytes: int) -> None:
            self.clients.note(_user_of(environ), environ.get("REMOTE_ADDR", "?"),
                              environ.get("HTTP_USER_AGENT", "")[:120], nbytes)  # fmt: skip

        if meter.started and meter.length is not None:
            note(meter.length)  # answered already, its length known: the body goes out untouched
            return result
        return _Accounted(result, meter, note)

    # --- the admin page ----------------------------------------------------------

    def _reply(
        self, start_response: StartResponse, status: str, body: bytes, ctype: str, extra: list | None = None
    ) -> list[bytes]:
        headers = [
            ("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"),
            ("Content-Security-Policy",
             "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'"),
        ]  # fmt: skip
        start_response(status, headers + (extra or []))
        return [body]

    def _json(self, start_response: StartResponse, data: Any, status: str = "200 OK") -> list[bytes]:
        return self._reply(start_response, status, json.dumps(data).encode(), "application/json")

    def _login(self, environ: dict) -> str | None:
        credentials = basic_credentials(environ.get("HTTP_AUTHORIZATION"))
        if credentials is None:
            return None
        user = self.users.check_basic(*credentials)
        return user.name if user is not None else None

    def _admin(self, environ: dict, start_response: StartResponse, rest: str) -> list[bytes]:
        addr = client_address(environ)
        if "HTTP_AUTHORIZATION" in environ:
            wait = self.limiter.retry_after(addr)
            if wait:
                return self._reply(start_response, "429 Too Many Requests", too_many(wait).encode(),
                                   "text/plain; charset=utf-8", [("Retry-After", str(wait))])  # fmt: skip
        name = self._login(environ)
        if name is None and "HTTP_AUTHORIZATION" in environ:
            self.limiter.failed(addr)
        if name is None:
            challenge = [("WWW-Authenticate", 'Basic realm="davsync admin"')]
            return self._reply(start_response, "401 Unauthorized", b"Log in with a davsync admin user.\n",
                               "text/plain; charset=utf-8", challenge)  # fmt: skip
        user = self.users.users.get(name)
        if user is None or not user.admin:
            text = f"{name} is not an admin. On the server: davsync user add {name} --admin --update\n"
            return self._reply(start_response, "403 Forbidden", text.encode(), "text/plain; charset=utf-8")
        method = environ["REQUEST_METHOD"]
        if method == "GET" and rest in ("", "admin.js", "admin.css"):
            page = {"": ("admin.html", "text/html; charset=utf-8"), "admin.js": ("admin.js", "text/javascript"),
                    "admin.css": ("admin.css", "text/css")}[rest]  # fmt: skip
            body = resources.files("davsync.server").joinpath("admin_static").joinpath(page[0]).read_bytes()
            return self._reply(start_response, "200 OK", body, page[1])
        if method == "GET" and rest == "api/status":
            return self._json(start_response, self.status(environ, name))
        if method == "GET" and rest == "api/versions":
            query = parse_qs(environ.get("QUERY_STRING", ""))
            return self._json(
                start_response, self.list_versions(query.get("path", [""])[0], query.get("id", [None])[0])
            )
        if method != "POST" or not (rest.startswith("api/users/") or rest == "api/versions/restore"):
            return self._json(start_response, {"error": "Not found."}, "404 Not Found")
        if not hmac.compare_digest(environ.get("HTTP_X_CSRF_TOKEN", ""), self.csrf):
            return self._json(
                start_response, {"error": "Missing or wrong CSRF token: reload the page."}, "403 Forbidden"
            )
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if not 0 <= length <= MAX_BODY:
                raise ValueError
            body = json.loads(environ["wsgi.input"].read(length) or b"{}")
            if not isinstance(body, dict):
                raise ValueError
        except ValueError:
            return self._json(
                start_response, {"error": "The request body must be a small JSON object."}, "400 Bad Request"
            )
        if rest == "api/versions/restore":
            return self._restore(start_response, body, name)
        try:
            message = self.change_users(rest[len("api/users/") :], body, name)
        except UsersFileError as e:
            return self._json(start_response, {"error": str(e)}, "409 Conflict")
        return self._json(start_response, {"message": message})

    # --- what the page shows -----------------------------------------------------------

    def _files_indexed(self) -> int:
        at, n = self._count_cache
        if time.monotonic() - at > 30:
            n = sum(1 for is_dir in self.state.index.live_paths().values() if not is_dir)
            self._count_cache = (time.monotonic(), n)
        return n

    def status(self, environ: dict, me: str) -> dict[str, Any]:
        import segno

        from .netinfo import explorer_folder, share_urls

        s = self.settings
        scheme = "https" if s.tls_cert else "http"
        port = int(environ.get("SERVER_PORT") or s.port)
        urls = share_urls(s.host, port, scheme)
        lan = urls[-1]
        host = lan.split("//", 1)[1].rsplit(":", 1)[0]
        disk = shutil.disk_usage(s.root)
        tracker = getattr(self.state, "tracker", None)
        index = self.state.index
        unc = explorer_folder(host, port, scheme)
        return {
            "csrf": self.csrf,
            "me": me,
            "root": str(s.root),
            "urls": urls,
            "qr": segno.make(lan, error="m").svg_data_uri(scale=4, border=2),
            "disk": {"total": disk.total, "used": disk.used, "free": disk.free},
            "index": {
                "scan_done": bool(tracker and tracker.initial_scan_done.is_set()),
                "backlog": tracker.backlog if tracker else None,
                "last_rescan": getattr(tracker, "last_rescan", None),
                "rescan_interval": s.rescan_interval,
                "files": self._files_indexed(),
                "files_hashed": index.files_hashed,
                "bytes_hashed": index.bytes_hashed,
                "change_seq": index.current_seq,
            },
            "clients": self.clients.view(),
            "users": [{"name": u.name, "read_only": u.read_only, "admin": u.admin} for u in self.users.users.values()],
            "anonymous": s.anonymous,
            "explorer": {
                "unc": unc,
                "auth": "Digest over http works without registry changes" if scheme == "http"
                else "https: Basic and Digest both work",
                "notes": ["Explorer downloads at most ~50 MB per file unless FileSizeLimitInBytes is raised.",
                          "Explorer needs locking (DAV class 2) to write: davsync offers it."],
            },  # fmt: skip
            "versions": self._versions_summary(),
        }

    def change_users(self, verb: str, body: dict[str, Any], me: str) -> str:
        """add | remove | read-only | password: change the live users and save the file."""
        name = str(body.get("name", ""))
        with self._lock:
            users = self.users.users
            if verb == "add":
                password = str(body.get("password", ""))
                if not password:
                    raise UsersFileError("an empty password is not allowed.")
                if name in users:
                    raise UsersFileError(f"there is already a user {name!r}; reset the password instead.")
                self.users.add(name, password, read_only=bool(body.get("read_only")), admin=bool(body.get("admin")))
                message = f"Added {name}."
            elif name not in users:
                raise UsersFileError(f"there is no user {name!r}.")
            elif verb == "remove":
                if name == me:
                    raise UsersFileError("you cannot remove yourself; log in as another admin to do that.")
                self.users.remove(name)
                message = f"Removed {name}."
            elif verb == "read-only":
                u = users[name]
                users[name] = type(u)(u.name, u.scrypt, u.ha1, bool(body.get("read_only")), u.admin)
                message = f"{name} is now {'read-only' if users[name].read_only else 'read-write'}."
            elif verb == "password":
                password = str(body.get("password", ""))
                if not password:
                    raise UsersFileError("an empty password is not allowed.")
                old = users[name]
                self.users.add(name, password, read_only=old.read_only, admin=old.admin)
                message = f"New password set for {name}."
            else:
                raise UsersFileError(f"unknown change {verb!r}.")
            try:
                self.users.save(Path(self.settings.users_file))
            except OSError as e:
                raise UsersFileError(
                    f"the change is live but could not be saved to {self.settings.users_file}: {e.strerror}."
                ) from None
        return message

    # --- kept versions ---------------------------------------------------------------

    def _versions_summary(self) -> dict[str, Any]:
        store = self.state.versions
        kept, nbytes = store.usage()
        return {"kept": kept, "bytes": nbytes, "enabled": store.enabled, "keep_seconds": store.keep_seconds,
                "max_bytes": store.max_bytes}  # fmt: skip

    def list_versions(self, path: str, vid: str | None) -> dict[str, Any]:
        """Like `davsync versions list`: a deleted folder is one line; its files only with its id
        (the page's expand) or when the filter path is at or inside it."""
        store = self.state.versions
        rel = path.strip("/")
        files = store.files(rel)
        if vid:
            folders: list[FolderVersion] = []
            files = [v for v in files if v.id == vid]
        else:
            folders = store.folders(rel)
            inside = {f.id for f in folders if rel and (rel == f.path or rel.startswith(f.path + "/"))}
            files = [v for v in files if v.folder is None or v.id in inside]
        return {
            "path": rel,
            "folders": [_folder_json(f) for f in folders[:LIST_MAX]],
            "files": [_file_json(v) for v in files[:LIST_MAX]],
            "more": max(0, len(files) - LIST_MAX) + max(0, len(folders) - LIST_MAX),
            **self._versions_summary(),
        }

    def _restore(self, start_response: StartResponse, body: dict[str, Any], me: str) -> list[bytes]:
        """POST api/versions/restore {path, id, to?}: the CLI's restore, journaled by this server."""
        path, vid, to = body.get("path"), body.get("id"), body.get("to")
        if not isinstance(path, str) or not path.strip("/") or not isinstance(vid, str) or not vid:
            return self._json(
                start_response, {"error": "Name the version to restore: its path and id."}, "400 Bad Request"
            )
        if to is not None and (not isinstance(to, str) or not to.strip("/ ")):
            return self._json(
                start_response, {"error": "Give the new path as a/b/name inside the share."}, "400 Bad Request"
            )
        for p in (path, to or path):
            parts = p.strip("/").split("/")
            if "\\" in p or any(ord(c) < 32 for c in p) or any(part in ("", ".", "..") for part in parts):
                return self._json(start_response, {"error": f"{p!r} is not a path inside the share; use a/b/name."},
                                  "400 Bad Request")  # fmt: skip
        if self.users.users[me].read_only:
            return self._json(start_response, {"error": f"{me} is read-only, and a restore writes to the share: "
                              "make yourself read-write under Users first."}, "403 Forbidden")  # fmt: skip
        try:
            result = self.restore_version(path.strip("/"), vid, to.strip().strip("/") if to else None, me)
        except VersionError as e:
            return self._json(start_response, {"error": _page_words(str(e))}, "409 Conflict")
        except OSError as e:
            error = f"Could not restore {path}: {e.strerror or e}; nothing was lost."
            return self._json(start_response, {"error": error}, "500 Internal Server Error")
        n = len(result.files)
        message = f"Restored {path.strip('/')} ({n} file{'' if n == 1 else 's'}) to {result.target}."
        if result.replaced_id:
            message += f" What was there is kept as version {result.replaced_id}."
        return self._json(start_response, {"message": message, "target": result.target, "replaced": result.replaced_id})

    def restore_version(self, path: str, vid: str, to: str | None, me: str) -> Restored:
        return restore_in_share(self.state, path, vid, to, me)


def _file_json(v: FileVersion) -> dict[str, Any]:
    return {"id": v.id, "path": v.path, "size": v.size, "mtime": v.mtime_ns / 1e9, "md5": v.md5, "user": v.user,
            "method": v.method, "time": v.time_ns / 1e9, "folder": v.folder}  # fmt: skip


def _folder_json(f: FolderVersion) -> dict[str, Any]:
    return {"id": f.id, "path": f.path, "files": f.files, "bytes": f.bytes, "user": f.user, "method": f.method,
            "time": f.time_ns / 1e9}  # fmt: skip


def _page_words(message: str) -> str:
    """VersionStore speaks to the command line; on the page the same advice is a button."""
    for cli, page in (("use --to NEWPATH", "use Restore to…"), ("use --to", "use Restore to…"),
                      ("; see: davsync versions list", ""), (" davsync versions list", " the list")):  # fmt: skip
        message = message.replace(cli, page)
    message = message[:1].upper() + message[1:]
    return message if message.endswith(".") else message + "."
