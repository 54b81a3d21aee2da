"""RFC 6578 sync-collection: what changed since a token, from the index's change journal.

The tokens themselves belong to the index (HashIndex.sync_token / token_seq). An unknown
or expired token gets 403 with DAV:valid-sync-token, which tells a client to fall back to
a full listing. A `DAV:limit` is honoured as RFC 6578 3.6 allows: the first `nresults`
changes, a 507 response with DAV:number-of-matches-within-limits for the collection, and
a token that continues after the last change sent.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from lxml import etree
from wsgidav import util
from wsgidav.dav_error import HTTP_BAD_REQUEST, HTTP_FORBIDDEN, HTTP_NOT_FOUND, HTTP_SERVICE_UNAVAILABLE, DAVError

from .fastget import http_date
from .index import HashIndex
from .multistatus import PreconditionError, property_response, send_multistatus, status_response
from .names import etag_of, is_internal_path, rel_of
from .provider import CHECKSUMS, OC_NS
from .shareroot import RETRY_AFTER_SCAN, SCANNING

HREF_SAFE = "/!*'(),$-_|."  # WsgiDAV's get_href

if TYPE_CHECKING:
    from .provider import DavsyncProvider

PRECONDITION_VALID_TOKEN = "{DAV:}valid-sync-token"
PRECONDITION_LIMIT = "{DAV:}number-of-matches-within-limits"
MAX_LIMIT = 1_000_000
SWEEP_TIMEOUT = 10.0  # seconds a first sync-collection waits for the index to catch up with the disk


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

    if provider.scanned is not None and not provider.scanned.is_set():
        # Until the first scan after start-up is complete the index is half built: any answer
        # from it, for any token, would show files not scanned yet as deleted (shareroot.py).
        raise DAVError(HTTP_SERVICE_UNAVAILABLE, SCANNING, add_headers=[("Retry-After", str(RETRY_AFTER_SCAN))])
    if since < 0 and provider.sweep is not None and not provider.sweep(SWEEP_TIMEOUT):
        # A first listing answers from the index, which must first catch up with the disk. If it
        # cannot, the client walks the folders (PROPFIND reads the disk): no Retry-After, which
        # would make it wait for a rescan that may keep failing.
        raise DAVError(HTTP_SERVICE_UNAVAILABLE, "The index is still being built; list the folders instead.")
    last_seq = index.current_seq  # read first: a change made meanwhile is sent again next time, never lost
    share = provider.mount_path + provider.share_path
    if limit is None and level == "infinite" and isinstance(index, HashIndex) and names and set(names) <= FAST_PROPS:
        return _fast_answer(provider, index, start_response, share, names, since, last_seq, rel_of(path))
    changes = index.changes_since(
        since, None if limit is None else limit + 1,
        under=rel_of(path), children_only=level == "1", live_only=since < 0,
    )  # fmt: skip
    truncated = limit is not None and len(changes) > limit
    if truncated:
        del changes[limit:]
        last_seq = changes[-1].seq

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


# --- the common REPORT, answered from the index rows -------------------------------------

DAV = "{DAV:}"
FAST_PROPS = frozenset({"{DAV:}resourcetype", "{DAV:}getcontentlength", "{DAV:}getlastmodified", "{DAV:}getetag",
                        CHECKSUMS})  # fmt: skip
PAGE = 1000  # index rows per query, and responses per chunk sent
_NOT_FOUND = "HTTP/1.1 404 Not Found"
Row = tuple[str, int, int, int, int | None, int | None, int | None, int | None, int | None, str | None]


def _fast_answer(
    provider: DavsyncProvider,
    index: HashIndex,
    start_response: Callable[..., Any],
    share: str,
    names: list[str],
    since: int,
    last_seq: int,
    under: str,
) -> Iterable[bytes]:
    """The sync-collection answer a client asks for on every run (sync-level infinite, no limit,
    the listing properties), rendered from the index's rows page by page: one query per
    thousand changes, one lstat per member, the MD5 from the row when the file's identity
    still matches it (else hashed, as the slow path would). A first sync (the empty token)
    lists a whole share this way in one request, about as fast as the Depth-1 fast path.
    Same answer as the slow path: same hrefs and values, 200 propstat first, removed members
    (and members gone, or not served, since the row was written) as 404 responses."""
    render = _Renderer(provider, index, share, names)
    head = f'<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus xmlns:D="DAV:" xmlns:O="{OC_NS}">'
    token = index.sync_token(max(last_seq, since, 0))
    tail = f"<D:sync-token>{escape(token)}</D:sync-token></D:multistatus>"

    def pages() -> Iterator[str]:
        after = since
        while True:
            rows = index.change_rows(after, last_seq, PAGE, under=under, live_only=since < 0)
            if not rows:
                return
            yield "".join(render.response(row) for row in rows)
            if len(rows) < PAGE:
                return
            after = rows[-1][3]

    it = pages()
    first = next(it, "")
    if len(first) < 64 * 1024:  # small: all of it, with a Content-Length
        rest = "".join(it)
        data = (head + first + rest + tail).encode("utf-8", "surrogateescape")
        start_response("207 Multi-Status", _headers(str(len(data))))
        return [data]

    def chunks() -> Iterator[bytes]:
        yield (head + first).encode("utf-8", "surrogateescape")
        for page in it:
            yield page.encode("utf-8", "surrogateescape")
        yield tail.encode("utf-8")

    start_response("207 Multi-Status", _headers(None))
    return chunks()


def _headers(length: str | None) -> list[tuple[str, str]]:
    headers = [("Content-Type", "application/xml; charset=utf-8"), ("Date", http_date(int(time.time())))]
    if length is not None:
        headers.append(("Content-Length", length))
    return headers


class _Renderer:
    """One `<D:response>` per index row, as WsgiDAV's property layer would write it."""

    def __init__(self, provider: DavsyncProvider, index: HashIndex, share: str, names: list[str]) -> None:
        self.provider = provider
        self.index = index
        self.href_base = quote(share, safe=HREF_SAFE)
        self.names = names

    def response(self, row: Row) -> str:
        path, _is_dir, deleted, _seq, size, mtime_ns, ctime_ns, ino, dev, md5 = row
        st = None if deleted else self._stat(path)
        if st is None:
            return (f"<D:response><D:href>{self._href(path, bool(_is_dir))}</D:href>"
                    f"<D:status>{_NOT_FOUND}</D:status></D:response>")  # fmt: skip
        is_dir = stat.S_ISDIR(st.st_mode)
        found: list[str] = []
        missing: list[str] = []
        for name in self.names:
            if name == "{DAV:}resourcetype":
                found.append("<D:resourcetype><D:collection/></D:resourcetype>" if is_dir else "<D:resourcetype/>")
            elif name == "{DAV:}getlastmodified":
                found.append(f"<D:getlastmodified>{http_date(int(st.st_mtime))}</D:getlastmodified>")
            elif is_dir:
                missing.append(_empty(name))
            elif name == "{DAV:}getcontentlength":
                found.append(f"<D:getcontentlength>{st.st_size}</D:getcontentlength>")
            elif name == "{DAV:}getetag":
                found.append(f"<D:getetag>{etag_of(st)}</D:getetag>")
            else:  # CHECKSUMS
                fresh = (size, mtime_ns, ctime_ns, ino, dev) == (
                    st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)  # fmt: skip
                digest = md5 if fresh and md5 is not None else self._hash(path, st)
                if digest is None:
                    missing.append(_empty(name))
                else:
                    found.append(f"<O:checksums><O:checksum>MD5:{digest}</O:checksum></O:checksums>")
        stats = ""
        if found:
            stats += f"<D:propstat><D:prop>{''.join(found)}</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>"
        if missing:
            stats += f"<D:propstat><D:prop>{''.join(missing)}</D:prop><D:status>{_NOT_FOUND}</D:status></D:propstat>"
        return f"<D:response><D:href>{self._href(path, is_dir)}</D:href>{stats}</D:response>"

    def _href(self, path: str, is_dir: bool) -> str:
        return self.href_base + "/" + quote(path, safe=HREF_SAFE, errors="surrogateescape") + ("/" if is_dir else "")

    def _stat(self, path: str) -> os.stat_result | None:
        """The member as the provider would serve it: a file or folder inside the share, not a
        symlink, not a davsync-internal name; None otherwise (answered as removed)."""
        if is_internal_path(path):
            return None
        try:
            st = os.lstat(self.provider.file_path("/" + path))
        except (OSError, DAVError, ValueError):
            return None
        return st if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) else None

    def _hash(self, path: str, st: os.stat_result) -> str | None:
        try:
            return self.index.md5_for(path, self.provider.file_path("/" + path), st)
        except (OSError, DAVError):
            return None


def _empty(name: str) -> str:
    return {"{DAV:}getcontentlength": "<D:getcontentlength/>", "{DAV:}getetag": "<D:getetag/>"}.get(
        name, "<O:checksums/>"
    )
