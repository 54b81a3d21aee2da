"""A file's own page (`?view`) and its bytes for that page (`?inline`).

What is shown inline, and why it is safe:
- images, audio and video go into <img>, <audio> and <video>: a browser runs no script from
  them there, and WsgiDAV's GET answers Range requests, so video seeks;
- text (including HTML, SVG and XML source) is sent as `text/plain` into a sandboxed <iframe>:
  it is read, never rendered or run;
- PDFs are not embedded: they open in the browser's own viewer, which runs outside the page
  (Nextcloud turns its in-page PDF viewer off for the same reason: a PDF renderer in the
  page is a large attack surface);
- every `?inline` answer carries `Content-Security-Policy: sandbox`, so even opened on its
  own it has no origin and runs no script, and `nosniff`, so the browser takes the type we say.
Thumbnails are not made (Pillow is not a runtime dependency on the Pi).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from html import escape
from typing import Any
from urllib.parse import quote

from ...units import human_size
from ..browser_headers import FRAMING, POLICY
from ..wsgitypes import StartResponse
from .headers import security_headers
from .listing import ASSET_DIR, FolderView, crumbs, head, href, kind, template

VERSIONS_BOX = (
    '<details class="deleted" id="versions"><summary>Earlier versions</summary>'
    '<p class="muted">What this file was before it was overwritten; restoring one keeps the current file as a '
    "version too.</p>"
    '<ul id="versions-list"></ul></details>'
)
INLINE_CSP = (
    "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'"
)


# the folder page's share box, with this file chosen (pages.js)
SHARE_FILE = '<a class="button" id="share-file" href="{folder}#share={name}">Share this file by link</a>\n'
BACK = '<a class="button" id="back" href="{folder}">Back to the folder</a>\n'
NAV = '<header>\n<nav aria-label="Breadcrumbs"><ol class="crumbs">{crumbs}</ol></nav>\n</header>\n'


def render_viewer(view: FolderView, name: str, size: int, mtime: float) -> bytes:
    """The page of the file `view.path` (which ends with its name)."""
    what = kind(name, False)
    raw = href(view.base, view.path)
    inline = escape(raw + "?inline", quote=True)
    label = escape(name, quote=True)
    if what == "image":
        preview = f'<img src="{inline}" alt="{label}">'
    elif what in ("audio", "video"):
        preview = f'<{what} src="{inline}" controls preload="metadata" aria-label="{label}"></{what}>'
    elif what == "text":
        preview = f'<iframe src="{inline}" sandbox title="Contents of {label}"></iframe>'
    elif what == "pdf":
        preview = (f'<p><a class="button" id="open-pdf" href="{raw}" target="_blank" rel="noopener">Open the PDF</a> '
                   "in your browser's own viewer.</p>")  # fmt: skip
    else:
        preview = "<p>There is no preview for this kind of file; download it to open it.</p>"
    folder = view.path.rsplit("/", 1)[0] + "/"
    return (
        template("viewer.html")
        .substitute(
            head=head(f"{name} – davsync", view.base),
            heading=escape(name),
            assets=escape(view.base + "/" + ASSET_DIR, quote=True),
            nav="" if view.single_file else NAV.format(crumbs=crumbs(view)),  # a link to one file: no folder
            size=human_size(size),
            iso=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime)),
            utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(mtime)),
            raw=raw,
            back="" if view.single_file else BACK.format(folder=href(view.base, folder)),
            kind=what,
            preview=preview,
            versions_box=VERSIONS_BOX if view.show_deleted else "",
            share_link=SHARE_FILE.format(folder=href(view.base, folder), name=escape(quote(name, safe=""), quote=True))
            if view.can_share
            else "",
        )
        .encode()
    )


def inline(
    app: Callable[..., Iterable[bytes]], environ: dict, start_response: StartResponse, name: str
) -> Iterable[bytes]:
    """The file's bytes from WsgiDAV's own GET (ranges, ETags, conditions), with the sandbox
    headers; text of any kind as text/plain."""
    as_text = kind(name, False) == "text"
    environ["QUERY_STRING"] = ""
    environ[POLICY], environ[FRAMING] = INLINE_CSP, "SAMEORIGIN"  # also on a 304 WsgiDAV answers itself
    replaced = {"content-security-policy", "x-frame-options", "content-disposition", "x-content-type-options",
                "referrer-policy"} | ({"content-type"} if as_text else set())  # fmt: skip

    def start(status: str, headers: list, exc_info: Any = None) -> Any:
        out = [(k, v) for k, v in headers if k.lower() not in replaced]
        if as_text:
            out.append(("Content-Type", "text/plain; charset=utf-8"))
        out += [("Content-Disposition", "inline"), *security_headers(INLINE_CSP)]
        out = [(k, "SAMEORIGIN") if k == "X-Frame-Options" else (k, v) for k, v in out]  # the viewer frames text
        return start_response(status, out, exc_info) if exc_info else start_response(status, out)

    return app(environ, start)
