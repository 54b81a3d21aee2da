"""The COPY/MOVE `Destination` header: split as a URL first, percent-decoded second.

Upstream bug (WsgiDAV 4.4, `RequestServer._copy_or_move`): it runs `unquote()` on the
whole header and only then `urlparse()`, so a name with an encoded `?` or `;`
(`victim%3Fnew.txt`, `victim%3Bnew.txt`) is cut at that character and an existing
file named `victim` is overwritten. It also compares the netloc *with* userinfo to the
Host header, so lftp's `http://user:pass@host:port/b.txt` is refused with 502, and it
reads raw (unencoded) UTF-8 in the header as Latin-1.

We keep upstream's COPY/MOVE logic (locks, If headers, Overwrite, multistatus) and swap
only its two parsing calls, through a copy of the function with its own globals, so
nothing else in WsgiDAV is touched. The same-origin check happens here, before it.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from wsgidav.dav_error import HTTP_BAD_GATEWAY, HTTP_BAD_REQUEST, DAVError

DEFAULT_PORTS = {"http": 80, "https": 443}


class DestinationError(ValueError):
    """A Destination that cannot name a resource on this share; the message says why."""


def destination_path(header: str) -> str:
    """The decoded path of a Destination header (WSGI gives headers as Latin-1 text).

    The URL is split first (a literal `#` stays part of the name, as WsgiDAV does: a
    Destination carries no fragment), then each byte escape is decoded, then UTF-8.
    A query part is refused rather than dropped: copying to the name before the `?`
    would write to a different file.
    """
    text = header.strip()
    parts = urlsplit(text, allow_fragments=False)
    if parts.query or text.endswith("?"):
        raise DestinationError("The Destination URL has a query part ('?'); write '?' in names as %3F.")
    try:
        path = unquote_to_bytes(parts.path.encode("latin-1")).decode("utf-8")
    except UnicodeDecodeError:
        raise DestinationError("The Destination URL is not valid UTF-8 once decoded.") from None
    if not path.startswith("/"):
        raise DestinationError("The Destination must be an absolute URL or an absolute path.")
    return path


def without_userinfo(url: str) -> str:
    """The URL with any `user:password@` removed, everything else byte for byte."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority = rest[:end]
    if "@" not in authority:
        return url
    return f"{scheme}://{authority.rpartition('@')[2]}{rest[end:]}"


def _origin(scheme: str, host: str) -> tuple[str, str, int | None]:
    """(scheme, host name, port) with the default port filled in; `host` may carry ':port'."""
    scheme = scheme.lower()
    try:
        parsed = urlsplit(f"{scheme}://{host}")
        name, port = (parsed.hostname or "").lower(), parsed.port
    except ValueError:
        return scheme, host.lower(), None
    return scheme, name, port if port is not None else DEFAULT_PORTS.get(scheme)


def check_same_origin(environ: dict) -> None:
    """Refuse (502, as RFC 4918 9.8.5 suggests) a Destination on another server.

    Userinfo is ignored; the host name is compared case-insensitively and an omitted
    port means the scheme's default. A reverse proxy's X-Forwarded-Proto/Host count too.
    """
    header = environ.get("HTTP_DESTINATION")
    if not header:
        return
    try:
        parts = urlsplit(header.strip(), allow_fragments=False)
        destination_path(header)
    except (DestinationError, ValueError, UnicodeError) as e:
        message = str(e) if isinstance(e, DestinationError) else "The Destination header is not a valid URL."
        raise DAVError(HTTP_BAD_REQUEST, message) from None
    if not parts.scheme and not parts.netloc:
        return  # an absolute path: same server by definition
    host = parts.netloc.rpartition("@")[2]
    wanted = _origin(parts.scheme or environ["wsgi.url_scheme"], host)
    here = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    accepted = {_origin(environ["wsgi.url_scheme"], here)}
    fwd_scheme = environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip()
    fwd_host = environ.get("HTTP_X_FORWARDED_HOST", "").split(",")[0].strip()
    if fwd_scheme or fwd_host:
        accepted.add(_origin(fwd_scheme or environ["wsgi.url_scheme"], fwd_host or here))
    if wanted not in accepted:
        raise DAVError(
            HTTP_BAD_GATEWAY,
            "The Destination is on another server (scheme, host or port differ); "
            "copy and move work only within this share.",
        )


def _no_unquote(text: str, *args: Any, **kwargs: Any) -> str:
    return text


def _parse_destination(url: str, scheme: str = "", allow_fragments: bool = True) -> tuple[str, ...]:
    """Stands in for `urlparse` inside upstream's `_copy_or_move`: check_same_origin has
    already vetted scheme and host, so only the decoded path is handed back."""
    return ("", "", destination_path(url), "", "", "")


def with_destination_fix(copy_or_move: Callable[..., Any]) -> Callable[..., Any]:
    """Upstream's `_copy_or_move`, with its `unquote`/`urlparse` replaced by ours."""
    g = dict(copy_or_move.__globals__)
    g.update(unquote=_no_unquote, urlparse=_parse_destination)
    fixed = types.FunctionType(
        copy_or_move.__code__, g, copy_or_move.__name__, copy_or_move.__defaults__, copy_or_move.__closure__
    )
    fixed.__kwdefaults__ = copy_or_move.__kwdefaults__
    fixed.__doc__ = copy_or_move.__doc__
    return fixed
