"""RFC 6578 sync-collection: what changed since a token, from the index's change journal.

Tokens are URIs, `urn:davsync:sync:<instance>:<seq>`. The instance changes when the
index is created anew, so tokens from a previous index are refused; tokens older
than the last compaction are refused too. Both get 403 with DAV:valid-sync-token,
which tells a client to fall back to a full listing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from lxml import etree
from wsgidav import util, xml_tools
from wsgidav.dav_error import HTTP_BAD_REQUEST, HTTP_FORBIDDEN, HTTP_NOT_FOUND, DAVError

from .index import Change, HashIndex
from .provider import rel_of
from .request_server import send_multistatus

TOKEN_RE = re.compile(r"^urn:davsync:sync:([0-9a-f]{32}):(\d{1,18})$")
PRECONDITION_VALID_TOKEN = "{DAV:}valid-sync-token"
PRECONDITION_LIMIT = "{DAV:}number-of-matches-within-limits"
MAX_LIMIT = 1_000_000


def make_token(index: HashIndex, seq: int | None = None) -> str:
    return f"urn:davsync:sync:{index.instance}:{index.current_seq if seq is None else seq}"


class _PreconditionError(DAVError):
    """A DAVError whose body is `<D:error><precondition/></D:error>` (as RFC 6578 asks)."""

    def __init__(self, status: int, condition: str, message: str) -> None:
        super().__init__(status, message)
        self._condition = condition

    def get_response_page(self) -> tuple[str, bytes]:
        err = etree.Element("{DAV:}error", nsmap={"D": "DAV:"})
        etree.SubElement(err, self._condition)
        return "application/xml; charset=utf-8", etree.tostring(err, xml_declaration=True, encoding="utf-8")


def parse_token(index: HashIndex, text: str) -> int:
    """The seq a token stands for; 403 valid-sync-token if it is not one of ours or too old."""
    if text == "":
        return -1
    m = TOKEN_RE.match(text)
    if not m or m.group(1) != index.instance:
        raise _PreconditionError(HTTP_FORBIDDEN, PRECONDITION_VALID_TOKEN, "Unknown sync token; list in full.")
    seq = int(m.group(2))
    if seq > index.current_seq or seq < index.min_valid_seq:
        raise _PreconditionError(HTTP_FORBIDDEN, PRECONDITION_VALID_TOKEN, "Expired sync token; list in full.")
    return seq


def _in_scope(path: str, base: str, level: str) -> bool:
    if path == base:
        return False
    if base and not path.startswith(base + "/"):
        return False
    if level == "1":
        return path.rpartition("/")[0] == base
    return True


def do_report(server: Any, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
    """REPORT handler (bound into our request server); only sync-collection is supported."""
    provider = server._davProvider
    index: HashIndex = provider.index
    path = environ["PATH_INFO"]
    res = provider.get_resource_inst(path, environ)
    if res is None:
        raise DAVError(HTTP_NOT_FOUND, path)
    body = util.parse_xml_body(environ)
    if body.tag != "{DAV:}sync-collection":
        raise _PreconditionError(HTTP_FORBIDDEN, "{DAV:}supported-report", "Only sync-collection is supported.")
    if not res.is_collection:
        raise DAVError(HTTP_FORBIDDEN, "sync-collection needs a collection.")
    if environ.get("HTTP_DEPTH", "0") not in ("0", ""):
        raise DAVError(HTTP_BAD_REQUEST, "sync-collection takes Depth: 0 (use sync-level).")

    token_el = body.find("{DAV:}sync-token")
    level = (body.findtext("{DAV:}sync-level") or "").strip()
    if token_el is None or level not in ("1", "infinite"):
        raise DAVError(HTTP_BAD_REQUEST, "sync-collection needs sync-token and sync-level 1 or infinite.")
    names = [
        p.tag
        for p in (body.find("{DAV:}prop") if body.find("{DAV:}prop") is not None else [])
        if isinstance(p.tag, str)
    ]
    limit = _limit(body)
    since = parse_token(index, (token_el.text or "").strip())

    base = rel_of(path)
    changes: list[Change] = []
    last_seq = index.current_seq
    truncated = False
    for change in index.changes_since(since):
        if since < 0 and change.deleted:
            continue  # an initial sync lists what exists
        if not _in_scope(change.path, base, level):
            continue
        if limit is not None and len(changes) >= limit:
            truncated = True
            break
        changes.append(change)
    if truncated:
        last_seq = changes[-1].seq if changes else since

    share = provider.mount_path + provider.share_path

    def responses() -> Iterator[etree._Element]:
        for change in changes:
            href = _href(share, change.path, change.is_dir)
            member = None if change.deleted else provider.get_resource_inst("/" + change.path, environ)
            holder = xml_tools.make_multistatus_el()
            if member is None:
                response = etree.SubElement(holder, "{DAV:}response")
                etree.SubElement(response, "{DAV:}href").text = href
                etree.SubElement(response, "{DAV:}status").text = "HTTP/1.1 404 Not Found"
            else:
                props = member.get_properties("named", name_list=names) if names else []
                props.sort(key=lambda item: isinstance(item[1], DAVError))
                util.add_property_response(holder, member.get_href(), props)
            yield holder[0]

    tail = []
    holder = xml_tools.make_multistatus_el()
    if truncated:
        response = etree.SubElement(holder, "{DAV:}response")
        etree.SubElement(response, "{DAV:}href").text = res.get_href()
        etree.SubElement(response, "{DAV:}status").text = "HTTP/1.1 507 Insufficient Storage"
        err = etree.SubElement(response, "{DAV:}error")
        etree.SubElement(err, PRECONDITION_LIMIT)
        tail.append(response)
    token = etree.SubElement(holder, "{DAV:}sync-token")
    token.text = make_token(index, max(last_seq, since, 0))
    tail.append(token)
    return send_multistatus(environ, start_response, responses(), stream=True, tail=tail)


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
        raise _PreconditionError(507, PRECONDITION_LIMIT, "The limit is larger than this server allows.")
    return value


def _href(share: str, path: str, is_dir: bool) -> str:
    from urllib.parse import quote

    return quote(f"{share}/{path}" + ("/" if is_dir else ""))
