"""davsync's own error answers: one plain sentence (or a small page, for a browser) with its status.

WsgiDAV answers an error with an HTML page naming its version and the time, and a sentence
meant for a developer ("404 Not Found: /x"). The owner's share and every link give davsync's
answer instead (`PlainErrors`): the same status, and one sentence saying what happened and what
to do. Answers with bodies of davsync's own (JSON, pages, multistatus, WebDAV's XML conditions)
pass as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from html import escape, unescape
from typing import Any

from .browser_headers import OWN_PAGE
from .link_pages import page as small_page
from .pages.browser import wants_html
from .wsgitypes import StartResponse, WsgiApp

UPSTREAM_PAGE = b"<!DOCTYPE HTML PUBLIC"  # how WsgiDAV's DAVError.get_response_page begins
_SAID = re.compile(rb"<p>(.*?)</p>", re.DOTALL)
SENTENCES = {  # the share's; a link's differ where the link is the reason (LINK_SENTENCES)
    400: "The server cannot make sense of this request; check what the client sent.",
    403: "Your account may not do this here; ask the share's owner if you need it.",
    404: "There is nothing here by that name; check the name, or reload the folder.",
    405: "This method is not allowed here; the name may already exist.",
    409: "The folder to put this in does not exist; make it first.",
    412: "A condition of the request did not hold (the file changed meanwhile?); reload and try again.",
    415: "This kind of request body is not accepted here.",
    423: "This is locked by someone else; try again later.",
}
LINK_SENTENCES = {**SENTENCES, 403: "This is not allowed through this link."}
UPSTREAM_SAID = {  # WsgiDAV's reasons that speak its own terms, as a user would say them
    "MKCOL can only be executed on an unmapped URL.": "Something by that name is here already; choose another name.",
    "Parent must be an existing collection.": SENTENCES[409],
    "Destination parent must be a collection.": "The folder to move or copy this into does not exist; make it first.",
    "'If' header condition failed.": SENTENCES[412],
}
_OWN_LENGTH = ("content-type", "content-length")


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


def sentence(status: str, page: bytes, sentences: Mapping[int, str] = SENTENCES) -> str:
    """The one line to say for WsgiDAV's error page: its own reason when that is a sentence
    (\"The parent folder does not exist.\"), else davsync's for the status."""
    found = _SAID.search(page)
    said = unescape(found.group(1).decode("utf-8", "replace")).strip() if found else ""
    said = said.removeprefix(status).lstrip(": ").strip()
    if said in UPSTREAM_SAID:
        return UPSTREAM_SAID[said]
    if said.endswith(".") and "\n" not in said and not said.startswith("/"):
        return said
    code = int(status[:3]) if status[:3].isdigit() else 500
    return sentences.get(code, f"The server could not do this (HTTP {code}); try again, or see the server's log.")


class PlainErrors:
    """Wraps a WsgiDAV app: its HTML error pages become `answer`s, with the status and headers
    they had; a browser gets the sentence as a small page when `pages` is set."""

    def __init__(self, app: WsgiApp, sentences: Mapping[int, str] = SENTENCES, pages: bool = False) -> None:
        self.app, self.sentences, self.pages = app, sentences, pages

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        held: list[Any] = []  # an HTML error's start, kept until its body shows whose page it is
        started: list[bool] = []

        def capture(status: str, headers: list, exc_info: Any = None) -> Any:
            started.append(True)
            if status[:1] in "45" and _header(headers, "content-type").startswith("text/html"):
                held[:] = [status, headers, exc_info]
                return lambda data: None
            held.clear()  # anything else goes out as it is (a file body keeps its sendfile)
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        body = self.app(environ, capture)
        if started and not held:
            return body
        chunks = iter(body)
        first = next(chunks, None)  # (WsgiDAV starts its answer when first asked for a chunk)
        if not held:
            return _Rest(first, chunks, body)
        status, headers, exc_info = held
        if not (first or b"").startswith(UPSTREAM_PAGE):
            start_response(status, headers, exc_info) if exc_info else start_response(status, headers)
            return _Rest(first, chunks, body)
        page = (first or b"") + b"".join(chunks)
        _close(body)
        text = sentence(status, page, self.sentences)
        html = small_page(status[4:] or status, f"<p>{escape(text)}</p>") if self.pages else None
        kept = [(k, v) for k, v in headers if k.lower() not in _OWN_LENGTH]
        return answer(start_response, status, environ, text, html, kept)


def _header(headers: list, name: str) -> str:
    return next((v for k, v in headers if k.lower() == name), "")


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
