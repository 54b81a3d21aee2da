"""Share links made on the folder page by the signed-in user: create (for the folder or one of its
files), list their own, revoke.

The same LinkStore calls as `davsync share` (links.py), so a link made here is listed, reissued
and revoked by the CLI too; it records its owner, and the page lists and revokes only the
signed-in user's own links. Who may share: a named user who may write to the share. POST is a
write method (request_server.WRITE_METHODS), refused to read-only users and guests before this
code runs, so they get no share box; a link never gives more than its maker has (read-write and
drop links write), and a link cannot make links. A POST needs the page's `X-Davsync-Page`
header (deleted.py), which a form on another site cannot send.
"""

from __future__ import annotations

import time
from typing import Any

from ..links import MODES, LinkError, LinkStore, parse_duration
from ..names import is_internal_path
from ..wsgitypes import StartResponse
from .deleted import answer, page_json

LIFETIMES = ("1d", "7d", "30d", "never")  # the page's choices; parse_duration reads them
MAX_LABEL = 200


def sharer(environ: dict) -> str | None:
    """The signed-in user who may make links here, or None (a guest, a read-only user, a link)."""
    name = environ.get("wsgidav.auth.user_name")
    if not name or environ.get("davsync.readonly") or hasattr(environ.get("wsgidav.provider"), "mode"):
        return None
    return str(name)


def link_url(environ: dict, token: str) -> str:
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    return f"{environ.get('wsgi.url_scheme', 'http')}://{host}/s/{token}/"


def create(environ: dict, start_response: StartResponse, store: LinkStore, folder: str,
           kind: str = "folder") -> list[bytes]:  # fmt: skip
    """POST folder/?share or file?share {mode, expires, password?, label?}: a link to this folder
    or file (`kind`), its URL and QR."""
    import segno

    user = sharer(environ)
    if user is None:
        return answer(start_response, "403 Forbidden", {"error": "Only a signed-in user who may write makes links."})
    body = page_json(environ)
    if body is None:
        return answer(start_response, "403 Forbidden", {"error": "Make links from the folder page."})
    mode, expires = body.get("mode"), body.get("expires")
    password, label = body.get("password") or None, body.get("label") or ""
    if mode not in MODES or expires not in LIFETIMES or not isinstance(label, str) or len(label) > MAX_LABEL:
        return answer(start_response, "400 Bad Request", {"error": "Choose the link's access and lifetime."})
    if password is not None and not isinstance(password, str):
        return answer(start_response, "400 Bad Request", {"error": "The password must be text."})
    rel = folder.strip("/")
    if is_internal_path(rel):
        return answer(start_response, "403 Forbidden", {"error": "davsync's own folders cannot be shared."})
    try:
        issued = store.create(rel, mode, expires_in=parse_duration(expires), password=password, label=label.strip(),
                              owner=user, kind=kind)  # fmt: skip
    except LinkError as e:
        return answer(start_response, "400 Bad Request", {"error": _sentence(str(e))})
    except OSError as e:
        return answer(start_response, "500 Internal Server Error",
                      {"error": f"Could not save the link on the server: {e.strerror or e}."})  # fmt: skip
    url = link_url(environ, issued.token)
    return answer(start_response, "201 Created", {
        "message": "Link made. Copy it now: the server keeps only a fingerprint of it, so it cannot show it again.",
        "url": url, "qr": segno.make(url, error="m").svg_data_uri(scale=4, border=2), "link": _row(issued.link),
    })  # fmt: skip


def mine(environ: dict, start_response: StartResponse, store: LinkStore) -> list[bytes]:
    """GET folder/?links: the signed-in user's links, newest first (never their tokens)."""
    user = sharer(environ)
    if user is None:
        return answer(start_response, "403 Forbidden", {"error": "Only a signed-in user who may write makes links."})
    try:
        links = [_row(link) for link in reversed(store.links()) if link.owner == user]
    except LinkError as e:
        return answer(start_response, "500 Internal Server Error", {"error": _sentence(str(e))})
    return answer(start_response, "200 OK", links)


def revoke(environ: dict, start_response: StartResponse, store: LinkStore) -> list[bytes]:
    """POST folder/?unshare {id}: withdraw one of the user's own links; it stops working at once."""
    user = sharer(environ)
    body = page_json(environ) if user is not None else None
    if user is None or body is None:
        return answer(start_response, "403 Forbidden", {"error": "Withdraw your links from the folder page."})
    link_id = body.get("id")
    try:
        own = [link for link in store.links() if link.id == link_id and link.owner == user]
        if not own:
            return answer(start_response, "404 Not Found", {"error": "You have no link with that ID."})
        link = store.revoke(own[0].id)
    except LinkError as e:
        return answer(start_response, "409 Conflict", {"error": _sentence(str(e))})
    except OSError as e:
        return answer(start_response, "500 Internal Server Error",
                      {"error": f"Could not save the change on the server: {e.strerror or e}."})  # fmt: skip
    return answer(start_response, "200 OK", {"message": f"Link {link.id} withdrawn; it stops working at once."})


def _row(link: Any) -> dict[str, Any]:
    data = link.as_json()
    data["folder"] = "/" + link.path
    data["expires_iso"] = (
        None if link.expires is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(link.expires))
    )
    return dict(data)


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:]
