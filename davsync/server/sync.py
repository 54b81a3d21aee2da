"""RFC 6578 sync-collection: what changed since a token, from the index's change journal.

The tokens themselves belong to the index (HashIndex.sync_token / token_seq). An unknown
or expired token gets 403 with DAV:valid-sync-token, which tells a client to fall back to
a full listing. A `DAV:limit` is honoured as RFC 6578 3.6 allows: the first `nresults`
changes, a 507 response with DAV:number-of-matches-within-limits for the collection, and
a token that continues after the last change sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from lxml import etree
from wsgidav import util
from wsgidav.dav_error import HTTP_BAD_REQUEST, HTTP_FORBIDDEN, HTTP_NOT_FOUND, DAVError

from .multistatus import PreconditionError, property_response, send_multistatus, status_response
from .names import rel_of

if TYPE_CHECKING:
    from .provider import DavsyncProvider

PRECONDITION_VALID_TOKEN = "{DAV:}valid-sync-token"
PRECONDITION_LIMIT = "{DAV:}number-of-matches-within-limits"
MAX_LIMIT = 1_000_000


def sync_collection(provider: DavsyncProvider, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The REPORT; only sync-collection is supported."""
    index = provider.index
    path = environ["PATH_INFO"]
    res = provider.get_resource_inst(path, environ)
    if res is None:
        raise DAVError(HTTP_NOT_FOUND, path)
    body = util.parse_xml_body(environ)
    if body.tag != "{DAV:}sync-collection":
        raise PreconditionError(HTTP_FORBIDDEN, "{DAV:}supported-report", "Only sync-collection is supported.")
    if not res.is_collection:
        raise DAVError(HTTP_FORBIDDEN, "sync-collection needs a collection.")
    if environ.get("HTTP_DEPTH", "0") not in ("0", ""):
        raise DAVError(HTTP_BAD_REQUEST, "sync-collection takes Depth: 0 (use sync-level).")

    token_el = body.find("{DAV:}sync-token")
    level = (body.findtext("{DAV:}sync-level") or "").strip()
    if token_el is None or level not in ("1", "infinite"):
        raise DAVError(HTTP_BAD_REQUEST, "sync-collection needs sync-token and sync-level 1 or infinite.")
    prop = body.find("{DAV:}prop")
    names = [p.tag for p in (prop if prop is not None else []) if isinstance(p.tag, str)]
    limit = _limit(body)
    since = index.token_seq((token_el.text or "").strip())
    if since is None:
        raise PreconditionError(
            HTTP_FORBIDDEN, PRECONDITION_VALID_TOKEN, "The sync token is unknown or expired; list in full."
        )

    last_seq = index.current_seq  # read first: a change made meanwhile is sent again next time, never lost
    changes = index.changes_since(
        since, None if limit is None else limit + 1,
        under=rel_of(path), children_only=level == "1", live_only=since < 0,
    )  # fmt: skip
    truncated = limit is not None and len(changes) > limit
    if truncated:
        del changes[limit:]
        last_seq = changes[-1].seq

    share = provider.mount_path + provider.share_path

    def responses() -> Iterator[etree._Element]:
        for change in changes:
            member = None if change.deleted else provider.get_resource_inst("/" + change.path, environ)
            if member is None:
                yield status_response(_href(share, change.path, change.is_dir), "404 Not Found")
            else:
                props = member.get_properties("named", name_list=names) if names else []
                yield property_response(member.get_href(), props)

    tail = []
    if truncated:
        tail.append(status_response(res.get_href(), "507 Insufficient Storage", PRECONDITION_LIMIT))
    token = etree.Element("{DAV:}sync-token", nsmap={"D": "DAV:"})
    token.text = index.sync_token(max(last_seq, since, 0))
    tail.append(token)
    return send_multistatus(start_response, responses(), stream=True, tail=tail)


def _limit(body: Any) -> int | None:
    text = body.findtext("{DAV:}limit/{DAV:}nresults")
    if text is None:
        return None
    try:
        value = int(text.strip())
    except ValueError:
        raise DAVError(HTTP_BAD_REQUEST, "DAV:nresults must be a number.") from None
    if value < 1:
        raise DAVError(HTTP_BAD_REQUEST, "DAV:nresults must be positive.")
    if value > MAX_LIMIT:
        raise PreconditionError(507, PRECONDITION_LIMIT, "The limit is larger than this server allows.")
    return value


def _href(share: str, path: str, is_dir: bool) -> str:
    return quote(f"{share}/{path}" + ("/" if is_dir else ""))
