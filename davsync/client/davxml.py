"""WebDAV XML: the request bodies we send and the multistatus answers we read.

Answers come from an untrusted server, so they are parsed incrementally (memory stays per
response) by a parser that expands no entities, loads no DTD and fetches nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from lxml import etree

from ..checksums import is_md5, md5_token
from .transport import RemoteError


class RefusedAnswer(RemoteError):
    """An answer refused for what it is (a DTD, entities, an absurd size): asking again would
    bring the same, so it is never retried."""


class TooManyEntries(RefusedAnswer):
    """More entries in one answer than MAX_MEMBERS: a whole-share change list this long is
    listed folder by folder instead; one folder this long is refused."""


OC_NS = "http://owncloud.org/ns"
PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>'
    b"<d:resourcetype/><d:getcontentlength/><d:getlastmodified/><d:getetag/><oc:checksums/>"
    b"</d:prop></d:propfind>"
)
ROOT_PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:sync-token/></d:prop></d:propfind>'
)
SYNC_BODY = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<d:sync-collection xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">'
    "<d:sync-token>{token}</d:sync-token><d:sync-level>infinite</d:sync-level>"
    "<d:prop><d:resourcetype/><d:getcontentlength/><d:getlastmodified/><d:getetag/><oc:checksums/></d:prop>"
    "</d:sync-collection>"
)
MAX_LISTING_BYTES = 512 * 1024 * 1024
# What one answer may hold. The whole listing is kept for planning, so these bound the memory a
# hostile server can make the client spend: 200,000 entries cost about 100 MB.
MAX_MEMBERS = 200_000  # responses in one answer (one folder, or one page of changes)
MAX_ENTRY_BYTES = 1024 * 1024  # the XML of one response (an endless property is refused here)
MAX_HREF_CHARS = 16 * 1024  # a path, percent-encoded (PATH_MAX 4096 bytes, each up to 3 characters)


def xml_escape(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text)


def etag_text(value: str | None) -> str | None:
    """An ETag bare (no W/, no quotes), as listings and the journal keep it."""
    if not value:
        return None
    value = value.strip()
    return (value[2:] if value.startswith("W/") else value).strip('"') or None


def md5_text(value: str | None) -> str | None:
    """The MD5 from an `OC-Checksum` header (several checksums may be listed)."""
    digest = md5_token(value or "")
    return digest if digest is not None and is_md5(digest) else None


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    is_dir: bool
    size: int | None
    mtime: float | None
    etag: str | None
    md5: str | None
    removed: bool = False
    token: str | None = None


def parse_document(content: bytes) -> etree._Element | None:
    """A whole small answer (a Depth-0 PROPFIND) parsed as safely as listings; None if malformed."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        return etree.fromstring(content, parser)
    except etree.XMLSyntaxError:
        return None


def safe_parser(**kw) -> etree.XMLPullParser:  # type: ignore[no-untyped-def]
    """No entity expansion, no DTD loading, no network, no huge-tree mode."""
    return etree.XMLPullParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, dtd_validation=False, **kw
    )


def parse_multistatus(chunks: Iterator[bytes], server: str = "the server") -> Iterator[tuple[str, ParsedEntry]]:
    """Yield (href, entry) per <D:response> as bytes arrive; memory stays per-response.

    A member reported removed (a response whose status is 404, as in RFC 6578) comes as
    an entry with `removed=True`; a top-level <D:sync-token> comes as ("", entry) with
    the token in `token`. `server` names the server in refusals ("the server at URL").
    """
    # Events only for what is read: a listing has a dozen elements per member.
    parser = safe_parser(events=("end",), tag=("{DAV:}response", "{DAV:}sync-token"))
    total = members = pending = 0  # pending: bytes fed since a response last ended
    try:
        for chunk in chunks:
            total += len(chunk)
            pending += len(chunk)
            if total > MAX_LISTING_BYTES:
                raise RefusedAnswer(f"{server} sent a listing larger than 512 MiB; refusing it")
            if pending > MAX_ENTRY_BYTES:
                raise RefusedAnswer(f"{server} sent a listing entry larger than 1 MiB (an endless property?); "
                                    "refusing the listing")  # fmt: skip
            if b"<!ENTITY" in chunk or b"<!DOCTYPE" in chunk:
                raise RefusedAnswer(f"{server} sent a listing that contains a DTD/entities; refusing it (XML bomb?)")
            parser.feed(chunk)
            for href, entry in _drain(parser):
                pending = 0
                members += 1
                if members > MAX_MEMBERS:
                    raise TooManyEntries(f"{server} sent more than {MAX_MEMBERS:,} entries in one listing; "
                                        "refusing it (split such a folder into smaller ones)")  # fmt: skip
                if len(href) > MAX_HREF_CHARS:
                    raise RefusedAnswer(f"{server} sent a path longer than {MAX_HREF_CHARS:,} characters; refusing "
                                        "its listing")  # fmt: skip
                if entry is not None:
                    yield href, entry
        parser.close()
        yield from ((h, e) for h, e in _drain(parser) if e is not None)
    except etree.XMLSyntaxError as e:
        line = f" (line {e.lineno})" if getattr(e, "lineno", None) else ""
        raise RemoteError(
            f"{server} sent malformed XML{line}; it may not be a WebDAV server, or the answer was cut."
        ) from None


def _drain(parser: etree.XMLPullParser) -> Iterator[tuple[str, ParsedEntry | None]]:
    """Every top-level response as (href, entry); entry is None for one that says nothing usable."""
    for _event, el in parser.read_events():
        parent = el.getparent()
        at_top = parent is not None and parent.getparent() is None
        if el.tag == "{DAV:}sync-token" and at_top:
            yield "", ParsedEntry(False, None, None, None, None, token=(el.text or "").strip())
        elif el.tag == "{DAV:}response" and at_top:
            href = (el.findtext("{DAV:}href") or "").strip()
            entry = _entry_from(el)
            el.clear()
            while el.getprevious() is not None:
                del parent[0]
            yield href, (entry if href else None)


def _entry_from(response: etree._Element) -> ParsedEntry | None:
    """One response's entry. Walks the children once (a listing has one per member, and
    findtext/iterfind/QName per property cost more than the rest of the parse)."""
    status = ""
    props: dict[str, etree._Element] = {}
    ok = False
    for child in response:
        tag = child.tag
        if tag == "{DAV:}status":
            status = status or child.text or ""
        elif tag == "{DAV:}propstat":
            prop = None
            good: bool | None = None
            for part in child:
                if part.tag == "{DAV:}status" and good is None:
                    good = " 200" in (part.text or "")
                elif part.tag == "{DAV:}prop" and prop is None:
                    prop = part
            if not good:
                continue
            ok = True
            if prop is not None:
                for p in prop:
                    if isinstance(p.tag, str):
                        props[p.tag.rpartition("}")[2]] = p
    if " 404" in status:
        return ParsedEntry(False, None, None, None, None, removed=True)
    if " 507" in status:
        return ParsedEntry(True, None, None, None, None, token="truncated")
    if not ok:
        return None
    rt = props.get("resourcetype")
    is_dir = rt is not None and rt.find("{DAV:}collection") is not None
    return ParsedEntry(
        is_dir=is_dir,
        size=_int(props.get("getcontentlength")),
        mtime=_http_date(props.get("getlastmodified")),
        etag=_etag(props.get("getetag")),
        md5=_md5(props.get("checksums")),
    )


def _int(el: etree._Element | None) -> int | None:
    try:
        value = int((el.text or "").strip()) if el is not None else None
    except ValueError:
        return None
    return value if value is None or value >= 0 else None


def _http_date(el: etree._Element | None) -> float | None:
    if el is None or not el.text:
        return None
    text = el.text.strip()
    if text in _dates:  # files of one folder often share their second
        return _dates[text]
    try:
        value: float | None = parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        value = None
    if len(_dates) > 4096:
        _dates.clear()
    _dates[text] = value
    return value


_dates: dict[str, float | None] = {}


def _etag(el: etree._Element | None) -> str | None:
    return etag_text(el.text) if el is not None else None


def _md5(el: etree._Element | None) -> str | None:
    """`MD5:<hex>` from oc:checksums (several space-separated checksums may be listed)."""
    if el is None:
        return None
    for node in el.iter():
        if not isinstance(node.tag, str) or node.tag.rpartition("}")[2] != "checksum":
            continue
        value = md5_token(node.text or "")
        if value is not None and is_md5(value):
            return value
    return None


def names_a_file(root: etree._Element) -> bool:
    """Does a Depth-0 PROPFIND answer describe a non-collection?"""
    for ps in root.iter("{DAV:}propstat"):
        if " 200" in (ps.findtext("{DAV:}status") or ""):
            rt = ps.find("{DAV:}prop/{DAV:}resourcetype")
            if rt is not None:
                return rt.find("{DAV:}collection") is None
    return False


def sync_token(root: etree._Element) -> str | None:
    """The DAV:sync-token a Depth-0 PROPFIND answer gives for the collection, if any."""
    for ps in root.iter("{DAV:}propstat"):
        if " 200" in (ps.findtext("{DAV:}status") or ""):
            token = ps.findtext("{DAV:}prop/{DAV:}sync-token")
            if token and token.strip():
                return token.strip()
    return None
