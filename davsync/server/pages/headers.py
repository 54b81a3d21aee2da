"""The security headers every page davsync renders for a browser carries.

One list, so the folder pages, their assets and their zips say the same thing: no MIME
sniffing, no framing by another site, no referrer (a share link's token is in its URL), and a
CSP that lets the page load only its own script and style.
"""

from __future__ import annotations

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "frame-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def security_headers(csp: str | None = PAGE_CSP) -> list[tuple[str, str]]:
    """nosniff, no framing, no referrer, and `csp` (None leaves the CSP out: a download)."""
    headers = [("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer")]
    if csp:
        headers.append(("Content-Security-Policy", csp))
    return headers
