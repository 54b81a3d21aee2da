"""A share link's own answers: one plain sentence (or a page, for a browser) with its status.

WsgiDAV answers an error with an HTML page naming its version and the time, and a sentence
meant for a developer ("404 Not Found: /x"). Through a link, whoever holds it gets davsync's
answer instead: the same status, and one sentence saying what happened.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from html import unescape
from typing import Any

from .browser_headers import OWN_PAGE
from .pages.browser import wants_html
from .wsgitypes import StartResponse, WsgiApp

UPSTREAM_PAGE = b"<!DOCTYPE HTML PUBLIC"  # how WsgiDAV's DAVError.get_response_page begins
_SAID = re.compile(rb"<p>(.*?)</p>", re.DOTALL)
SENTENCES = {
    400: "The request is not valid here.",
    403: "This is not allowed through this link.",
    404: "There is nothing here by that name.",
    405: "This method is not allowed here.",
    409: "The folder to put this in does not exist; make it first.",
    412: "A condition of the request did not hold (the file changed meanwhile?).",
    415: "This kind of request body is not accepted here.",
    423: "This is locked by someone else; try again later.",
}


def answer(start: StartResponse, status: str, environ: dict, text: str, html: bytes | None = None,
           headers: list | None = None) -> list[bytes]:  # fmt: skip
    """The link's answer: `text` as one line of plain text, or `html` for a browser (or when there is no text)."""
    environ[OWN_PAGE] = True
    if html is not None and (wants_html(environ) or not text):
        body, ctype = html, "text/html; charset=utf-8"
    else:
        body, ctype = (text + "\n").encode(), "text/plain; charset=utf-8"
    start(status, [("Content-Type", ctype), ("Content-Length", str(len(body))), *(headers or [])])
    return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [body]


def sentence(status: str, page: bytes) -> str:
    """The one line to say for WsgiDAV's error page: its own reason when that is a sentence
    (\"The parent folder does not exist.\"), else davsync's for the status."""
    found = _SAID.search(page)
    said = unescape(found.group(1).decode("utf-8", "replace")).strip() if found else ""
    said = said.removeprefix(status).lstrip(": ").strip()
    if said.endswith(".") and "\n" not in said and not said.startswith("/"):
        return said
    code = int(status[:3]) if status[:3].isdigit() else 500
    return SENTENCES.get(code, f"The server could not do this (HTTP {code}).")


class PlainErrors:
    """Wraps a link's WsgiDAV app: its HTML error pages become `answer`s."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        got: list[Any] = []

        def capture(status: str, headers: list, exc_info: Any = None) -> Any:
            got[:] = [status, headers, exc_info]
            return lambda data: None

        body = self.app(environ, capture)
        chunks = iter(body)
        first = next(chunks, None)  # (WsgiDAV starts its answer when first asked for a chunk)
        status, headers, exc_info = got
        ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
        if status[:1] in "45" and ctype.startswith("text/html") and (first or b"").startswith(UPSTREAM_PAGE):
            page = (first or b"") + b"".join(chunks)
            _close(body)
            return answer(start_response, status, environ, sentence(status, page))
        start_response(status, headers, exc_info) if exc_info else start_response(status, headers)
        return _Rest(first, chunks, body)


class _Rest:
    """The answer's body as it was: the first chunk (already read), then the rest, closed at the end."""

    def __init__(self, first: bytes | None, chunks: Any, body: Iterable[bytes]) -> None:
        self.first, self.chunks, self.body = first, chunks, body

    def __iter__(self) -> Any:
        if self.first is not None:
            yield self.first
        yield from self.chunks

    def close(self) -> None:
        _close(self.body)


def _close(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()
