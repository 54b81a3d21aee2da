"""Headers that keep a browser from turning the share against its own users.

Every answer gets `X-Content-Type-Options: nosniff` (a text file is never run as a script or
page) and `X-Frame-Options: DENY`. A user's file, served to GET or HEAD, gets
`Content-Security-Policy: sandbox` whatever its type: an uploaded page, SVG or a file whose
type a browser guesses runs no script and has no origin, so it cannot act with the viewer's
login. davsync's own pages (listings, link pages, errors) get `frame-ancestors 'none'` instead,
so their scripts (the drop page's upload) still run. An answer that sets its own policy (the
admin page) keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .wsgitypes import StartResponse, WsgiApp

OWN_PAGE = "davsync.own_page"  # environ flag: this answer is davsync's page, not a user's file
# environ keys: an answer's own policy, set before WsgiDAV runs, so that an answer WsgiDAV makes
# from an exception (a 304 from its conditionals goes straight to its error printer) has it too
POLICY = "davsync.csp"
FRAMING = "davsync.frame_options"
FILE_POLICY = "sandbox; frame-ancestors 'none'"
PAGE_POLICY = "frame-ancestors 'none'"


class BrowserHeaders:
    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    @property
    def counts(self) -> Any:
        """The share's requests per method (FrontGate's diagnostics)."""
        return getattr(self.app, "counts", None)

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            names = {k.lower() for k, _ in headers}
            extra = []
            if "x-content-type-options" not in names:
                extra.append(("X-Content-Type-Options", "nosniff"))
            if "x-frame-options" not in names:
                extra.append(("X-Frame-Options", environ.get(FRAMING, "DENY")))
            if "content-security-policy" not in names:
                policy = environ.get(POLICY) or (FILE_POLICY if _user_file(environ, status) else PAGE_POLICY)
                extra.append(("Content-Security-Policy", policy))
            headers = [*headers, *extra]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        return self.app(environ, start)


def _user_file(environ: dict, status: str) -> bool:
    """A successful or revalidated GET/HEAD of a path not ending in '/' (WsgiDAV serves listings
    only there). A 304 counts: a browser gives its cached copy the 304's headers, so a 304
    without `sandbox` let an uploaded page run its script from its second view."""
    return (
        (status[:1] == "2" or status[:3] == "304")
        and environ.get("REQUEST_METHOD") in ("GET", "HEAD")
        and not environ.get(OWN_PAGE)
        and not (environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")).endswith("/")
    )
