"""A short path for listing a folder: PROPFIND Depth 0/1 with named properties.

WsgiDAV answers a Depth-1 PROPFIND by making a resource object per member, asking each
property through several layers, looking its MD5 up in one query per file, building an lxml
tree per member and serialising it: about 0.15 ms per file. Sync clients list folders all the
time (davsync, rclone, gio, Explorer), always with a named property set. This path answers
those from one scandir, one index query per folder and plain string formatting, with the same
multistatus WsgiDAV would send (same hrefs, values, propstat grouping and order; 200 first).

It takes only what it can answer exactly: an authorised PROPFIND (anonymous read, Basic
credentials the users file accepts, or a checked Digest login) of a folder, Depth 0 or 1, no conditional headers, a
`<prop>` body whose names are the live properties below or names that live nowhere (answered
from the dead-property store, like WsgiDAV). allprop, propname, lock and quota properties,
sync-token, bodies it cannot parse and everything else go on to WsgiDAV.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from lxml import etree
from wsgidav import xml_tools
from wsgidav.dav_error import DAVError, as_DAVError, get_http_status_string

from ..users import Users
from .fastget import authorised, http_date, mime_type
from .names import etag_of, is_internal_name, is_internal_path, rel_of
from .provider import CHECKSUMS, FEATURES, OC_NS, WIN32_MTIME, DavsyncProvider
from .request_server import parse_propfind

log = logging.getLogger("davsync.server")

MAX_BODY = 64 * 1024
STREAM_AFTER = 500  # responses; a larger listing is sent chunked, batch by batch
HREF_SAFE = "/!*'(),$-_|."  # WsgiDAV's get_href
DAV = "{DAV:}"
# What this path computes itself (for files; folders have a subset, the rest is 404 or dead).
LIVE = frozenset({
    "{DAV:}resourcetype", "{DAV:}getcontentlength", "{DAV:}getlastmodified", "{DAV:}getetag",
    "{DAV:}displayname", "{DAV:}creationdate", "{DAV:}getcontenttype", CHECKSUMS, WIN32_MTIME,
})  # fmt: skip
# Live elsewhere in WsgiDAV or our provider, answered by WsgiDAV.
LEAVE = frozenset({
    "{DAV:}lockdiscovery", "{DAV:}supportedlock", "{DAV:}quota-used-bytes", "{DAV:}quota-available-bytes",
    "{DAV:}sync-token", "{DAV:}supported-report-set", *FEATURES,
})  # fmt: skip
_CONDITIONS = ("HTTP_IF", "HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_UNMODIFIED_SINCE")
OK = "200 OK"
NOT_FOUND = get_http_status_string(404)
_TEXT = {"\r": "&#13;"}  # (a raw CR would be read back as LF)


def iso_date(secs: float) -> str:
    """RFC 3339, as WsgiDAV's creationdate."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(secs))


class FastPropfind:
    def __init__(self, app: Callable[..., Iterable[bytes]], provider: DavsyncProvider, users: Users, anonymous: str,
                 config: dict) -> None:  # fmt: skip
        self.app = app
        self.provider = provider
        self.users = users
        self.anonymous = anonymous
        self.config = config

    def __call__(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes]:
        served = self._try(environ, start_response) if environ["REQUEST_METHOD"] == "PROPFIND" else None
        return served if served is not None else self.app(environ, start_response)

    def _try(self, environ: dict, start_response: Callable[..., Any]) -> Iterable[bytes] | None:
        depth = environ.get("HTTP_DEPTH")
        if depth not in ("0", "1") or environ.get("QUERY_STRING") or any(h in environ for h in _CONDITIONS):
            return None
        if "HTTP_TRANSFER_ENCODING" in environ or not authorised(self.users, self.anonymous, environ):
            return None
        length = (environ.get("CONTENT_LENGTH") or "0").strip()
        if not length.isdigit() or int(length) > MAX_BODY:
            return None
        raw = environ.get("PATH_INFO", "")
        try:
            path = raw.encode("latin-1").decode("utf-8")
        except UnicodeError:
            return None
        parts = path.split("/")
        if parts[0] != "" or any(p in ("", ".", "..") for p in parts[1:-1]) or parts[-1] in (".", ".."):
            return None
        if "\x00" in path or is_internal_path(path):
            return None
        try:
            folder = self.provider.file_path(path)
            st = os.lstat(folder)
        except (DAVError, OSError, ValueError):
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
        body = environ["wsgi.input"].read(int(length)) if int(length) else b""
        names = _named_props(body)
        if names is None:
            environ["wsgi.input"] = io.BytesIO(body)  # WsgiDAV reads it again
            return None
        try:
            entries = _members(folder) if depth == "1" else []
        except OSError:
            environ["wsgi.input"] = io.BytesIO(body)
            return None
        listing = _Listing(self, environ, path, folder, st, names)
        chunks = listing.render(entries)
        first = next(chunks)
        if len(entries) < STREAM_AFTER:
            data = first + b"".join(chunks)
            headers = [("Content-Type", "application/xml; charset=utf-8"), ("Date", http_date(int(time.time()))),
                       ("Content-Length", str(len(data)))]  # fmt: skip
            body_iter: Iterable[bytes] = [data]
        else:
            headers = [("Content-Type", "application/xml; charset=utf-8"), ("Date", http_date(int(time.time())))]
            body_iter = _chain(first, chunks)
        start_response("207 Multi-Status", headers)
        if log.isEnabledFor(logging.INFO):
            log.info('%s - "PROPFIND %s" depth %s, %d members (fast path)', environ.get("REMOTE_ADDR"), path, depth,
                     len(entries))  # fmt: skip
        return body_iter


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _named_props(body: bytes) -> list[str] | None:
    """The property names of a `<prop>` PROPFIND body this path can answer, else None."""
    if not body.strip() or b"<!" in body:  # allprop, or a DOCTYPE: WsgiDAV's
        return None
    try:
        root = etree.XML(body, parser=etree.XMLParser(resolve_entities=False, no_network=True))
        mode, names = parse_propfind(root)
    except (etree.XMLSyntaxError, DAVError, ValueError):
        return None
    if mode != "named" or not names or any(n in LEAVE for n in names):
        return None
    return names


def _members(folder: str) -> list[tuple[str, os.stat_result]]:
    """What DavsyncFolder.get_member_names lists, with each member's stat: files and folders,
    no symlinks, no davsync temp names, no names XML cannot carry; in directory order."""
    out = []
    with os.scandir(folder) as it:
        for entry in it:
            name = entry.name
            if is_internal_name(name) or _NOT_XML.search(name):
                continue
            try:
                if entry.is_symlink():
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone meanwhile: WsgiDAV skips it too
            if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                out.append((name, st))
    return out


# quote(name, safe=HREF_SAFE) for an ASCII name, as one str.translate
_HREF_TABLE = {c: (chr(c) if chr(c).isalnum() or chr(c) in "_.-~" + HREF_SAFE else f"%{c:02X}") for c in range(128)}
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")  # provider.xml_safe's complement
Render = Callable[["_Member"], tuple[str, str]]


class _Member:
    """One resource of the listing, as the renderers see it."""

    __slots__ = ("name", "st", "is_dir", "href", "ref_path")

    def __init__(self, name: str, st: os.stat_result, is_dir: bool, href: str, ref_path: str) -> None:
        self.name = name
        self.st = st
        self.is_dir = is_dir
        self.href = href
        self.ref_path = ref_path  # unquoted share path, for the dead-property store


class _Listing:
    """One multistatus: namespace prefixes, one renderer per asked name (for files and for
    folders), the folder's index rows; rendered member by member."""

    def __init__(self, fast: FastPropfind, environ: dict, path: str, folder: str, st: os.stat_result,
                 names: list[str]) -> None:  # fmt: skip
        self.fast = fast
        self.environ = environ
        self.names = names
        self.folder = folder
        self.folder_st = st
        provider = fast.provider
        self.preferred = path if path.endswith("/") else path + "/"  # get_preferred_path of a collection
        self.href_base = quote(provider.mount_path + provider.share_path + self.preferred, safe=HREF_SAFE)
        self.ref_base = provider.share_path + self.preferred
        self.rel = rel_of(path)
        self.prefixes: dict[str, str] = {"DAV:": "D"}
        for name in names:
            ns = name[1:].partition("}")[0] if name.startswith("{") else ""
            if ns and ns not in self.prefixes:
                self.prefixes[ns] = f"NS{len(self.prefixes)}"
        self.pm = provider.prop_manager
        self.known = provider.index.md5_rows_in(self.rel) if CHECKSUMS in names else {}
        self.for_files = [self._renderer(n, is_dir=False) for n in names]
        self.for_dirs = [self._renderer(n, is_dir=True) for n in names]

    def _qname(self, name: str) -> str:
        if not name.startswith("{"):
            return name
        ns, _, local = name[1:].partition("}")
        return f"{self.prefixes[ns]}:{local}"

    def render(self, members: list[tuple[str, os.stat_result]]) -> Iterator[bytes]:
        decls = "".join(f' xmlns:{p}="{escape(ns, {chr(34): "&quot;"})}"' for ns, p in self.prefixes.items())
        name = os.path.basename(self.folder.rstrip("/")) or self.folder
        head = f'<?xml version="1.0" encoding="utf-8"?>\n<D:multistatus{decls}>'
        batch = [head, self._response(_Member(name, self.folder_st, True, self.href_base, self.preferred))]
        href_base, ref_base = self.href_base, self.ref_base
        for i, (member, st) in enumerate(members, 1):
            is_dir = stat.S_ISDIR(st.st_mode)
            tail = "/" if is_dir else ""
            quoted = member.translate(_HREF_TABLE) if member.isascii() else quote(member, safe=HREF_SAFE)
            href = href_base + quoted + tail
            batch.append(self._response(_Member(member, st, is_dir, href, ref_base + member + tail)))
            if i % STREAM_AFTER == 0:
                yield "".join(batch).encode("utf-8")
                batch = []
        batch.append("</D:multistatus>")
        yield "".join(batch).encode("utf-8")

    def _response(self, m: _Member) -> str:
        results = [render(m) for render in (self.for_dirs if m.is_dir else self.for_files)]
        if all(status == OK for status, _ in results):
            props = "".join(x for _, x in results)
            stats = f"<D:propstat><D:prop>{props}</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>"
        else:
            groups: dict[str, list[str]] = {}
            for status, xml in results:
                groups.setdefault(status, []).append(xml)
            order = sorted(groups, key=lambda s: s != OK)  # 200 first (rclone reads only the first propstat)
            stats = "".join(f"<D:propstat><D:prop>{''.join(groups[s])}</D:prop><D:status>HTTP/1.1 {s}</D:status>"
                            "</D:propstat>" for s in order)  # fmt: skip
        return f"<D:response><D:href>{m.href}</D:href>{stats}</D:response>"

    def _renderer(self, prop: str, *, is_dir: bool) -> Render:
        """What WsgiDAV's get_property_value gives for this name, on a file or on a folder."""
        tag = self._qname(prop)
        missing = (NOT_FOUND, f"<{tag}/>")
        if prop == "{DAV:}resourcetype":
            found = (OK, f"<{tag}><D:collection/></{tag}>" if is_dir else f"<{tag}/>")
            return lambda m: found
        if prop == "{DAV:}getlastmodified" or (prop == WIN32_MTIME and not is_dir):
            return lambda m: (OK, f"<{tag}>{http_date(int(m.st.st_mtime))}</{tag}>")
        if prop == "{DAV:}displayname":
            return lambda m: (OK, f"<{tag}>{escape(m.name, _TEXT)}</{tag}>")
        if prop == "{DAV:}creationdate":
            return lambda m: (OK, f"<{tag}>{iso_date(int(m.st.st_ctime))}</{tag}>")
        if not prop.startswith(DAV) and (is_dir or prop not in LIVE):
            return lambda m: self._dead(prop, tag, m)
        if is_dir:
            return lambda m: missing
        if prop == "{DAV:}getcontentlength":
            return lambda m: (OK, f"<{tag}>{m.st.st_size}</{tag}>")
        if prop == "{DAV:}getetag":
            return lambda m: (OK, f"<{tag}>{etag_of(m.st)}</{tag}>")
        if prop == "{DAV:}getcontenttype":
            config, base = self.fast.config, self.preferred
            return lambda m: (OK, f"<{tag}>{escape(mime_type(base + m.name, config))}</{tag}>")
        if prop == CHECKSUMS:
            checksum = self._qname(f"{{{OC_NS}}}checksum")
            return lambda m: self._checksums(tag, checksum, m)
        return lambda m: missing  # any other {DAV:} name

    def _checksums(self, tag: str, checksum: str, m: _Member) -> tuple[str, str]:
        rel = f"{self.rel}/{m.name}" if self.rel else m.name
        st = m.st
        try:
            row = self.known.get(rel)
            fresh = row is not None and row[:5] == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
            md5 = row[5] if fresh and row is not None else None
            if md5 is None:  # hashed now, as WsgiDAV's path would
                md5 = self.fast.provider.index.md5_for(rel, os.path.join(self.folder, m.name), st)
        except Exception as e:  # WsgiDAV reports a failing property as its own propstat
            return get_http_status_string(as_DAVError(e)), f"<{tag}/>"
        if md5 is None:
            return NOT_FOUND, f"<{tag}/>"
        return OK, f"<{tag}><{checksum}>MD5:{md5}</{checksum}></{tag}>"

    def _dead(self, prop: str, tag: str, m: _Member) -> tuple[str, str]:
        """A name no resource has live: the dead-property store's value, or 404 (WsgiDAV's rule)."""
        if self.pm is not None:
            try:
                value = self.pm.get_property(quote(m.ref_path), prop, self.environ)
                if value is not None:
                    return OK, etree.tostring(xml_tools.string_to_xml(value), encoding="unicode")
            except Exception as e:
                return get_http_status_string(as_DAVError(e)), f"<{tag}/>"
        return NOT_FOUND, f"<{tag}/>"


__all__ = ["FastPropfind"]
