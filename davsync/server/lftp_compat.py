"""lftp's follow-up PROPPATCH after an upload arrives without credentials: answer it.

What happens (lftp 4.9.2, Debian, and its current source, src/Http.cc), with
`set http:use-propfind yes`:
- every PUT asks `Connection: close` itself (uploads never ask keep-alive), so the
  server's `Connection: close` on the PUT answer is only the echo; curl does not ask;
- after the PUT, lftp's Disconnect() resets the "X-OC-MTime: accepted" flag before it
  is checked, so it always sends a PROPPATCH of `getlastmodified` on a new connection;
- that PROPPATCH writes its blank line and XML body *before* the Authorization header,
  so the server sees a request without credentials and answers 401, and lftp reports
  the upload as failed although the file (and its mtime, from X-OC-MTime) is in place.

The PROPPATCH can only repeat what the PUT already applied. So when lftp, from the
address that just uploaded a file with an X-OC-MTime, sends that credential-less
PROPPATCH of exactly that time for exactly that file within a minute, we answer it as
done. Anything else goes on to the normal authentication.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree

from .http import peek_body
from .wsgitypes import StartResponse, WsgiApp

WINDOW = 60.0  # seconds between the PUT and its PROPPATCH
MAX_BODY = 4096
MAX_REMEMBERED = 1000


def is_lftp(environ: dict) -> bool:
    return environ.get("HTTP_USER_AGENT", "").startswith("lftp/")


class LftpProppatchCompat:
    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._uploaded: dict[tuple[str, str], tuple[int, float]] = {}

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        if not is_lftp(environ):
            return self.app(environ, start_response)
        method = environ["REQUEST_METHOD"]
        if method == "PROPPATCH" and "HTTP_AUTHORIZATION" not in environ:
            answered = self._answer_repeat(environ, start_response)
            if answered is not None:
                return answered
        if method == "PUT" and "HTTP_X_OC_MTIME" in environ:
            return self.app(environ, self._watch_put(environ, start_response))
        return self.app(environ, start_response)

    def _watch_put(self, environ: dict, start_response: StartResponse) -> StartResponse:
        key = (environ.get("REMOTE_ADDR", ""), environ["PATH_INFO"])  # before WsgiDAV re-encodes it

        def watched(status: str, headers: list, exc_info: Any = None) -> Any:
            accepted = any(k.lower() == "x-oc-mtime" and v == "accepted" for k, v in headers)
            if status[:3] in ("201", "204") and accepted:
                try:
                    mtime = int(float(environ["HTTP_X_OC_MTIME"]))
                except ValueError:
                    mtime = None
                if mtime is not None:
                    self._remember(key, mtime)
            return start_response(status, headers, exc_info)

        return watched

    def _remember(self, key: tuple[str, str], mtime: int) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._uploaded) >= MAX_REMEMBERED:
                self._uploaded = {k: v for k, v in self._uploaded.items() if v[1] > now}
            self._uploaded[key] = (mtime, now + WINDOW)

    def _answer_repeat(self, environ: dict, start_response: StartResponse) -> Iterable[bytes] | None:
        key = (environ.get("REMOTE_ADDR", ""), environ["PATH_INFO"])
        with self._lock:
            entry = self._uploaded.get(key)
        if entry is None or entry[1] < time.monotonic():
            return None
        body = peek_body(environ, MAX_BODY)  # if not ours after all, the app reads it again
        if body is None or _only_mtime(body) != entry[0]:
            return None
        with self._lock:
            self._uploaded.pop(key, None)
        href = escape(environ.get("SCRIPT_NAME", "") + environ["PATH_INFO"])
        xml = (
            '<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:"><D:response>'
            f"<D:href>{href}</D:href><D:propstat><D:prop><D:getlastmodified/></D:prop>"
            "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"
        ).encode()
        start_response(
            "207 Multi-Status",
            [("Content-Type", "application/xml; charset=utf-8"), ("Content-Length", str(len(xml)))],
        )
        return [xml]


def _only_mtime(body: bytes) -> int | None:
    """The unix time of a propertyupdate that sets {DAV:}getlastmodified and nothing else."""
    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return None
    props = [p for p in root.iter() if isinstance(p.tag, str) and p.getparent() is not None
             and p.getparent().tag == "{DAV:}prop"]  # fmt: skip
    if root.tag != "{DAV:}propertyupdate" or root.find("{DAV:}remove") is not None or len(props) != 1:
        return None
    if props[0].tag != "{DAV:}getlastmodified":
        return None
    try:
        return int(parsedate_to_datetime((props[0].text or "").strip()).timestamp())
    except (TypeError, ValueError, IndexError):
        return None
