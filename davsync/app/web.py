"""The dashboard's HTTP side: one static page, a small JSON API, and server-sent events.

Only this PC's browser should drive the app, so: it listens on 127.0.0.1 only; every request
must carry the session cookie, which only a one-time code (login.py) buys; the Host header
must name this server (no DNS rebinding); and every POST must carry the CSRF token, which only a
page that could already read /api/state knows, as a header a cross-site form cannot set.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .core import App, CommandError
from .login import AGAIN, CODE_TTL, OneTimeCodes

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/share.js": ("share.js", "text/javascript; charset=utf-8"),
    "/conflicts.js": ("conflicts.js", "text/javascript; charset=utf-8"),
    "/addpair.js": ("addpair.js", "text/javascript; charset=utf-8"),
}
KEEPALIVE = 15.0  # seconds between SSE comments, so a dead browser tab is noticed
CLOCK_TICK = 1.0  # how often the overall state is re-judged by the clock (Up to date -> overdue)
MAX_BODY = 64 * 1024


class Dashboard:
    """The HTTP server around an App. `token` is the session secret (the cookie's value, and the
    bearer token that mints login codes); `login_url()` is what a browser is given."""

    def __init__(self, app: App, port: int = 0, code_ttl: float = CODE_TTL) -> None:
        self.app = app
        self.token = secrets.token_urlsafe(32)
        self.codes = OneTimeCodes(code_ttl)
        self.csrf = secrets.token_urlsafe(32)
        handler = type("Handler", (_Handler,), {"dash": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port: int = self.httpd.server_address[1]
        self.cookie = f"davsync_app_{self.port}"
        self._thread: threading.Thread | None = None

    def login_url(self) -> str:
        """A link good for one visit within the code's lifetime: safe on a browser's command line."""
        return f"http://127.0.0.1:{self.port}/?code={self.codes.mint()}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="davsync-dashboard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    dash: Dashboard
    server_version = "davsync-app"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the dashboard is chatty (SSE, polling); nothing here is worth a log line

    # --- gates --------------------------------------------------------------------

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").lower()
        return host in (f"127.0.0.1:{self.dash.port}", f"localhost:{self.dash.port}")

    def _token_from_cookie(self) -> str | None:
        raw = self.headers.get("Cookie")
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except Exception:  # a malformed Cookie header is the browser's problem, not a crash
            return None
        morsel = jar.get(self.dash.cookie)
        return morsel.value if morsel else None

    def _has_cookie(self) -> bool:
        cookie = self._token_from_cookie()
        return bool(cookie) and hmac.compare_digest(cookie or "", self.dash.token)

    def _has_bearer(self) -> bool:
        given = self.headers.get("Authorization") or ""
        return given.startswith("Bearer ") and hmac.compare_digest(given[7:], self.dash.token)

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        self.close_connection = True  # an unread request body must not be parsed as the next request
        if self.path.startswith("/api/"):
            self._json({"error": message}, status)
            return
        body = (f"<!doctype html><meta charset=utf-8><title>davsync</title>"
                f"<p style='font:16px system-ui;margin:3em'>{message}</p>").encode()  # fmt: skip
        self._send(status, body, "text/html; charset=utf-8")

    def _gate(self) -> tuple[str, dict[str, list[str]]] | None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if not self._host_ok():
            self._refuse(
                HTTPStatus.FORBIDDEN, "Wrong Host header: open the dashboard at the address davsync app printed."
            )
            return None
        code = query.get("code", [None])[0]
        if code is not None and self.command in ("GET", "HEAD"):
            self._login(code, parts.path or "/")
            return None
        if not self._has_cookie():
            self._refuse(HTTPStatus.FORBIDDEN, "This dashboard needs its access token: open the link that "
                         f"`davsync app` printed, or {AGAIN}.")  # fmt: skip
            return None
        return parts.path, query

    def _login(self, code: str, path: str) -> None:
        """Trade a one-time code for the cookie, and drop the code from the address bar and history."""
        if not self.dash.codes.redeem(code) and not self._has_cookie():
            self._refuse(HTTPStatus.FORBIDDEN, f"This dashboard link was already used or has expired: {AGAIN}.")
            return
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", path)
        # The name carries the port: cookies ignore ports, and other services on 127.0.0.1 must
        # neither receive nor overwrite this one.
        self.send_header("Set-Cookie", f"{self.dash.cookie}={self.dash.token}; HttpOnly; SameSite=Strict; Path=/")
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()

    # --- responses ------------------------------------------------------------------

    def _send(self, status: HTTPStatus, body: bytes, ctype: str) -> None:
        self.send_response(status)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
        )
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    # --- GET --------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802
        gated = self._gate()
        if gated is None:
            return
        path, _query = gated
        if path in STATIC:
            name, ctype = STATIC[path]
            body = resources.files("davsync.app").joinpath("static").joinpath(name).read_bytes()
            self._send(HTTPStatus.OK, body, ctype)
        elif path == "/api/state":
            self._json(self._state())
        elif path == "/api/tray":
            self._json(self.dash.app.tray_state())
        elif path == "/api/events":
            self._events()
        elif path == "/api/discover":
            self._json(self.dash.app.lan.found())
        elif path == "/api/check-local":
            self._json(self.dash.app.check_local(_query.get("path", [""])[0]))
        elif path.startswith("/api/pairs/") and path.count("/") == 4:
            pair_id, _, what = path[len("/api/pairs/") :].partition("/")
            self._get_pair(pair_id, what, _query.get("path", [""])[0])
        else:
            self._refuse(HTTPStatus.NOT_FOUND, "Not found.")

    def _get_pair(self, pair_id: str, what: str, rel: str) -> None:
        app = self.dash.app
        routes: dict[str, Callable[[], Any]] = {
            "trash": lambda: {"items": app.trash(pair_id)},
            "browse": lambda: app.browse(pair_id, rel),
            "links": lambda: app.links(pair_id),
            "versions": lambda: app.versions(pair_id, rel),
            "preview": lambda: app.preview(pair_id, rel),
        }
        if what not in routes:
            self._refuse(HTTPStatus.NOT_FOUND, "Not found.")
            return
        self._command(routes[what])

    def _state(self) -> dict[str, Any]:
        snap = self.dash.app.hub.snapshot()
        snap["csrf"] = self.dash.csrf
        snap["config_file"] = str(self.dash.app.config.path)
        for view in snap["pairs"]:
            pair = self.dash.app.config.get(view["id"])
            view["settings"] = pair.as_dict() if pair is not None else {}
        return snap

    def _events(self) -> None:
        """Server-sent events: the whole state (it is small) on every change, and whenever the
        overall state changes by the clock alone (a check becoming overdue); a comment when idle."""
        hub = self.dash.app.hub
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        seen, shown, idle = -1, None, 0.0
        try:
            while not hub.closed:
                overall = hub.overall()
                current = (overall["state"], overall["label"])
                if hub.version != seen or current != shown:
                    snap = self._state()
                    seen, shown, idle = snap["version"], (snap["overall"]["state"], snap["overall"]["label"]), 0.0
                    self.wfile.write(b"data: " + json.dumps(snap).encode() + b"\n\n")
                    self.wfile.flush()
                elif idle >= KEEPALIVE:  # an event, not a comment: the page counts the silence
                    self.wfile.write(b"event: ping\ndata: {}\n\n")
                    self.wfile.flush()
                    idle = 0.0
                started = time.monotonic()
                hub.wait(seen, CLOCK_TICK)
                idle += time.monotonic() - started
            self.wfile.write(b"event: bye\ndata: {}\n\n")  # the app is stopping: the page says so at once
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            return

    # --- POST -------------------------------------------------------------------------

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path == "/api/login-code":
            self._login_code()
            return
        if urlsplit(self.path).path == "/login":
            self._login_with_secret()
            return
        gated = self._gate()
        if gated is None:
            return
        path, _query = gated
        given = self.headers.get("X-CSRF-Token") or ""
        if not hmac.compare_digest(given, self.dash.csrf):
            self._refuse(HTTPStatus.FORBIDDEN, "Missing or wrong CSRF token: reload the dashboard and try again.")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._refuse(HTTPStatus.BAD_REQUEST, "The request body is missing its length or is too large.")
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._refuse(HTTPStatus.BAD_REQUEST, "The request body is not JSON.")
            return
        if not isinstance(body, dict):
            self._refuse(HTTPStatus.BAD_REQUEST, "The request body must be a JSON object.")
            return
        route = self._route(path, body)
        if route is None:
            self._refuse(HTTPStatus.NOT_FOUND, "No such command.")
            return
        self._command(route)

    def _login_with_secret(self) -> None:
        """The link file in the state dir (main.write_link; user-only, for a user with no tray and
        no console) posts the secret here: the cookie is set, and the page then moves on to the
        dashboard itself, so the SameSite=Strict cookie goes with that same-origin navigation."""
        self.close_connection = True
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        form = parse_qs(self.rfile.read(length).decode("ascii", "replace")) if 0 < length <= 1024 else {}
        secret = form.get("secret", [""])[0]
        if not self._host_ok() or not hmac.compare_digest(secret, self.dash.token):
            self._refuse(HTTPStatus.FORBIDDEN, f"This dashboard file is from an app no longer running: {AGAIN}.")
            return
        body = b'<!doctype html><meta charset=utf-8><meta http-equiv="refresh" content="0; url=/"><title>davsync'
        self.send_response(HTTPStatus.OK)
        self.send_header("Connection", "close")  # as close_connection does: a kept-alive client would write into it
        self.send_header("Set-Cookie", f"{self.dash.cookie}={self.dash.token}; HttpOnly; SameSite=Strict; Path=/")
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def _login_code(self) -> None:
        """`davsync app --open` asks here for a fresh link, with the secret from the user-only
        handle file as a bearer token (a header no cross-site page can send without CORS)."""
        if not self._host_ok() or not self._has_bearer():
            self._refuse(HTTPStatus.FORBIDDEN, "This needs the app's secret from its state dir.")
            return
        self.close_connection = True  # any body is left unread
        self._json({"url": self.dash.login_url()})

    def _route(self, path: str, body: dict[str, Any]) -> Callable[[], Any] | None:
        app = self.dash.app
        if path == "/api/pause":
            return lambda: app.set_paused(True)
        if path == "/api/resume":
            return lambda: app.set_paused(False)
        if path == "/api/sync-now":
            return lambda: app.sync_now()
        if path == "/api/quit":
            return app.request_quit
        if path == "/api/pairs":
            return lambda: _added(*app.add_pair(body))
        if path == "/api/remote-folders":
            return lambda: app.remote_folders(body)
        if path == "/api/pick-folder":
            return lambda: app.pick_local_folder(str(body.get("start") or ""))
        if not path.startswith("/api/pairs/"):
            return None
        pair_id, _, verb = path[len("/api/pairs/") :].partition("/")
        routes: dict[str, Callable[[], Any]] = {
            "edit": lambda: {"pair": app.edit_pair(pair_id, body).as_dict()},
            "remove": lambda: app.remove_pair(pair_id),
            "pause": lambda: app.set_paused(True, pair_id),
            "resume": lambda: app.set_paused(False, pair_id),
            "sync-now": lambda: app.sync_now(pair_id),
            "resolve": lambda: {
                "message": app.resolve(pair_id, str(body.get("local_copy", "")), str(body.get("choice", "")))
            },
            "resolve-many": lambda: {"message": app.resolve_many(
                pair_id, _strings(body.get("local_copies")), str(body.get("choice", "")))},
            "open-file": lambda: app.open_file(pair_id, str(body.get("path", ""))),
            "restore": lambda: {"message": app.restore(pair_id, str(body.get("item", "")))},
            "deletions": lambda: {"message": app.decide_deletions(pair_id, str(body.get("choice", "")))},
            "open": lambda: app.open_folder(pair_id, str(body.get("path", ""))),
            "share": lambda: app.share(pair_id, str(body.get("path", "")), body),
            "revoke-link": lambda: app.revoke_link(pair_id, str(body.get("id", ""))),
            "restore-version": lambda: app.restore_version(pair_id, str(body.get("path", "")), str(body.get("id", ""))),
        }  # fmt: skip
        return routes.get(verb)

    def _command(self, run: Callable[[], Any]) -> None:
        try:
            result = run()
        except CommandError as e:
            self._json({"error": str(e)}, HTTPStatus.CONFLICT)
            return
        self._json(result if isinstance(result, dict) else {"ok": True})


def _strings(value: Any) -> list[str]:
    return [str(x) for x in value] if isinstance(value, list) else []


def _added(pair: Any, checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {"saved": pair is not None, "pair": pair.as_dict() if pair is not None else None, "checks": checks}
