"""Talking WebDAV: the connection (webdavclient3's Client), PROPFIND listings and their parsing.

webdavclient3's high-level calls are slow or unsafe for sync (see field notes), so
its Client holds the URL, credentials, TLS settings and timeouts, and the requests
here are our own: Depth-1 PROPFIND with named properties, parsed incrementally by
an XML parser that expands no entities and fetches nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import requests
import urllib3
from lxml import etree
from requests.adapters import HTTPAdapter
from requests.auth import HTTPDigestAuth
from webdav3.client import Client

from ..checksums import is_md5, md5_token
from .neterrors import connection_message, tls_message
from .paths import Skipped, UnsafeHref, href_to_relpath, shown, url_segments
from .plan import RemoteEntry

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


class RemoteError(Exception):
    """A failure talking to the server; `fatal` ones (auth, TLS, unreachable) stop the run."""

    def __init__(self, message: str, *, fatal: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.status = status


class NotAShare(RemoteError):
    """The URL answers, but names something that cannot be mirrored (a file): a usage error."""


@dataclass(frozen=True)
class ConnectionSettings:
    url: str
    user: str | None = None
    password: str | None = None
    ca_cert: str | None = None
    insecure: bool = False
    timeout: float = 30.0
    jobs: int = 4


@dataclass
class FolderListing:
    folder: str
    entries: list[RemoteEntry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


# What may stay literal in a path segment (RFC 3986 pchar minus '%'); all else is encoded.
_SEGMENT_SAFE = "!$&'()*+,;=:@~"


def normalize_base(url: str) -> str:
    """The share URL with its path percent-encoded once, canonically, ending in '/'.

    A URL typed with literal spaces or non-ASCII letters and one copied from a browser
    (`%20`) name the same folder; hrefs from the server are compared segment by segment
    after decoding, so either spelling works. The Unicode form is kept as given: a share
    folder named in NFD on the server is found only by its NFD spelling.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = f"http://{url.strip().lstrip('/')}" if "://" not in url else "http://raspberrypi.local:8080/"
        hint += "" if hint.endswith("/") else "/"
        raise RemoteError(f"'{url}' is not an http(s) URL: write it like {hint}.", fatal=True)
    if parts.username is not None or parts.password is not None:
        raise RemoteError(
            "the URL holds a user name or password: give the user with --user and the password with "
            "DAVSYNC_PASSWORD or the prompt, so it never shows in process lists or logs.",
            fatal=True,
        )
    try:
        _ = parts.port  # urllib parses the port lazily: reading it validates it
    except ValueError:
        raise RemoteError(f"the port in '{url}' is not a number from 1 to 65535.", fatal=True) from None
    segments = [quote(unquote(seg), safe=_SEGMENT_SAFE) for seg in parts.path.split("/")]
    path = "/".join(segments)
    if not path.startswith("/"):
        path = "/" + path
    if not path.endswith("/"):
        path += "/"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class Remote:
    """One share. Each thread gets its own kept-alive session (a shared pool would overflow)."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.base_url = normalize_base(settings.url)
        self.client = Client(
            {
                "webdav_hostname": self.base_url,
                "webdav_login": settings.user or "",
                "webdav_password": settings.password or "",
                "webdav_timeout": settings.timeout,
                "disable_check": True,
            }
        )
        self.client.verify = settings.ca_cert or (not settings.insecure)
        if settings.insecure:
            # The user chose this and the CLI says so once; urllib3 would repeat it per request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        self._local = threading.local()
        self._use_digest = False
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self.requests_sent = 0
        self._proxies = requests.utils.get_environ_proxies(self.base_url)

    # --- sessions ------------------------------------------------------------

    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self.client.session if not self._sessions else requests.Session()
            adapter = HTTPAdapter(pool_connections=2, pool_maxsize=4, max_retries=0)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
            s.verify = self.client.verify
            s.auth = self._auth()
            # Looking up proxy variables on every request costs more than the request itself.
            s.trust_env = False
            s.proxies = self._proxies
            s.headers["User-Agent"] = "davsync"
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    def _auth(self) -> requests.auth.AuthBase | tuple[str, str] | None:
        user = self.client.webdav.login
        if not user:
            return None
        password = self.client.webdav.password or ""
        return HTTPDigestAuth(user, password) if self._use_digest else (user, password)

    def close(self) -> None:
        with self._lock:
            for s in self._sessions:
                s.close()
            self._sessions.clear()
        pool = getattr(self._local, "pool", None)
        if pool is not None:
            pool.clear()

    def _pool(self) -> urllib3.PoolManager:
        pool = getattr(self._local, "pool", None)
        if pool is None:
            verify = self.client.verify
            kw: dict = {"cert_reqs": "CERT_REQUIRED" if verify else "CERT_NONE"}
            if isinstance(verify, str):
                kw["ca_certs"] = verify
            elif verify:
                import certifi

                kw["ca_certs"] = certifi.where()
            pool = urllib3.PoolManager(num_pools=2, maxsize=2, retries=False, **kw)
            self._local.pool = pool
        return pool

    def get_small(self, path: str, href: str = "") -> tuple[int, bytes]:
        """GET a whole small file: urllib3 directly, as requests' per-call overhead is larger
        than a small file's transfer. Digest logins take the requests path."""
        url = self.url_for(path, href=href)
        if self._use_digest:
            with self.request("GET", url, headers={"Accept-Encoding": "identity"}) as via_requests:
                return via_requests.status_code, via_requests.content
        headers = {"User-Agent": "davsync", "Accept-Encoding": "identity"}
        if self.client.webdav.login:
            headers.update(
                urllib3.make_headers(basic_auth=f"{self.client.webdav.login}:{self.client.webdav.password or ''}")
            )
        with self._lock:
            self.requests_sent += 1
        timeout = urllib3.Timeout(connect=self.settings.timeout, read=self.settings.timeout)
        try:
            resp = self._pool().request("GET", url, headers=headers, timeout=timeout, redirect=False)
        except urllib3.exceptions.SSLError as e:
            raise RemoteError(tls_message(e, self.base_url, self.settings.ca_cert), fatal=True) from None
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise RemoteError(f"GET {shown(path)} failed: {connection_message(e, self.base_url)}") from None
        if resp.status == 401:
            # Let the requests path work out Digest or report the refused login.
            with self.request("GET", url, headers={"Accept-Encoding": "identity"}) as again:
                return again.status_code, again.content
        return resp.status, resp.data

    def url_for(self, path: str, is_dir: bool = False, href: str = "") -> str:
        """The URL to ask for `path`: the server's own href when it listed one.

        Names are NFC here, but the server may spell them in NFD (files from a Mac);
        only its own spelling finds them. Hrefs reach this point only after
        href_to_relpath has checked they stay inside the share.
        """
        if href:
            return urljoin(self.base_url, href)
        if path == "":
            return self.base_url
        return self.base_url + quote(path, safe="/") + ("/" if is_dir else "")

    def server_name(self, entry: RemoteEntry) -> str | None:
        """The server's own spelling of an entry's path, when it differs from the local (NFC) one."""
        if not entry.href:
            return None
        depth = len(url_segments(urlsplit(self.base_url).path))
        segments = url_segments(urlsplit(urljoin(self.base_url, entry.href)).path)[depth:]
        name = "/".join(unquote(s) for s in segments)
        return name if name != entry.path else None

    def request(self, method: str, url: str, **kw) -> requests.Response:  # type: ignore[no-untyped-def]
        kw.setdefault("timeout", self.settings.timeout)
        with self._lock:
            self.requests_sent += 1
        try:
            resp = self.session().request(method, url, **kw)
        except requests.exceptions.SSLError as e:
            raise RemoteError(tls_message(e, self.base_url, self.settings.ca_cert), fatal=True) from None
        except requests.exceptions.ConnectionError as e:
            raise RemoteError(connection_message(e, self.base_url), fatal=False) from None
        except requests.exceptions.Timeout:
            raise RemoteError(
                f"the server at {self.base_url} did not answer within {self.settings.timeout:g}s."
            ) from None
        except requests.exceptions.RequestException as e:
            raise RemoteError(connection_message(e, self.base_url)) from None
        if resp.status_code == 401:
            challenge = resp.headers.get("WWW-Authenticate", "").lower()
            if not self._use_digest and "digest" in challenge and "basic" not in challenge and self.client.webdav.login:
                self._use_digest = True
                self._local.session.auth = self._auth()
                resp.close()
                return self.request(method, url, **kw)
            resp.close()
            if not self.client.webdav.login:
                raise RemoteError(
                    "this share needs a login: "
                    "add --user NAME (the password is asked for, or read from DAVSYNC_PASSWORD).",
                    fatal=True,
                    status=401,
                )
            raise RemoteError(
                f"the server refused the login for user '{self.client.webdav.login}'. "
                "Check --user and the password (DAVSYNC_PASSWORD).",
                fatal=True,
                status=401,
            )
        return resp

    # --- listing -------------------------------------------------------------

    def check_root(self) -> str | None:
        """Fail early, with the reason, when the share cannot be listed at all.

        Returns the share's sync token (RFC 6578), or None when the server has none.
        Ask for it before walking, so changes made during the walk show up next time.
        """
        resp = self.request("PROPFIND", self.base_url, data=ROOT_PROPFIND_BODY, headers=_PROPFIND_HEADERS_0)
        try:
            if resp.status_code == 207:
                root = etree.fromstring(resp.content, etree.XMLParser(resolve_entities=False, no_network=True))
                if _names_a_file(root):
                    shown_url = self.base_url.rstrip("/")
                    parent = shown_url.rsplit("/", 1)[0] + "/"
                    raise NotAShare(
                        f"{shown_url} is a file, not a folder: give the URL of a folder to mirror, e.g. {parent}",
                        fatal=True,
                    )
                for ps in root.iter("{DAV:}propstat"):
                    if " 200" in (ps.findtext("{DAV:}status") or ""):
                        token = ps.findtext("{DAV:}prop/{DAV:}sync-token")
                        if token and token.strip():
                            return token.strip()
                return None
        except etree.XMLSyntaxError:
            raise RemoteError(
                f"the server at {self.base_url} sent malformed XML; it may not be a WebDAV server.", fatal=True
            ) from None
        finally:
            resp.close()
        if resp.status_code == 403:
            raise RemoteError(f"the server denies access to {self.base_url} (403).", fatal=True, status=403)
        if resp.status_code == 404:
            raise RemoteError(f"there is no share at {self.base_url} (404). Check the URL.", fatal=True, status=404)
        if resp.status_code in (200, 405, 501):  # a web page, or PROPFIND refused: no WebDAV here
            raise NotAShare(
                f"{self.base_url} is not a WebDAV share (PROPFIND answered HTTP {resp.status_code}): "
                "check the URL and the port.",
                fatal=True,
                status=resp.status_code,
            )
        raise RemoteError(f"listing {self.base_url} failed: HTTP {resp.status_code}.", status=resp.status_code)

    def list_folder(self, folder: str, href: str = "") -> FolderListing:
        """Depth-1 PROPFIND of one folder; unsafe hrefs are skipped with a reason."""
        url = self.url_for(folder, is_dir=True, href=href)
        if href and not url.endswith("/"):
            url += "/"
        resp = self.request("PROPFIND", url, data=PROPFIND_BODY, headers=_PROPFIND_HEADERS_1, stream=True)
        try:
            if resp.status_code != 207:
                raise RemoteError(f"listing {folder or '/'} failed: HTTP {resp.status_code}", status=resp.status_code)
            listing = FolderListing(folder)
            for href, entry in parse_multistatus(resp.iter_content(65536)):
                if entry.removed or entry.token is not None:
                    continue
                try:
                    rel = href_to_relpath(href, url, self.base_url)
                except UnsafeHref as e:
                    listing.skipped.append(Skipped(_display(href, self.base_url), str(e)))
                    continue
                if rel == folder:
                    continue
                parent = rel.rpartition("/")[0]
                if parent != folder:
                    listing.skipped.append(Skipped(rel, f"listed under {folder or '/'} but is not a direct member"))
                    continue
                listing.entries.append(  # the href resolved here: a relative one means this folder
                    RemoteEntry(rel, entry.is_dir, entry.size, entry.mtime, entry.etag, entry.md5, urljoin(url, href))
                )
            listing.entries, collided = split_collisions(listing.entries, self)
            listing.skipped += collided
            return listing
        except requests.exceptions.RequestException as e:
            raise RemoteError(f"listing {folder or '/'} was cut off: {connection_message(e, self.base_url)}") from None
        finally:
            resp.close()

    def sync_collection(self, token: str) -> Changes:
        """What changed since `token` (RFC 6578, sync-level infinite), following truncation."""
        changes = Changes(token=token)
        for _round in range(10_000):
            body = SYNC_BODY.format(token=_xml_escape(changes.token)).encode()
            resp = self.request("REPORT", self.base_url, data=body, headers=_REPORT_HEADERS, stream=True)
            try:
                if resp.status_code == 403 and b"valid-sync-token" in resp.content:
                    raise SyncTokenInvalid("the server no longer knows our sync token", status=403)
                if resp.status_code != 207:
                    raise SyncUnsupported(
                        f"REPORT sync-collection answered HTTP {resp.status_code}", status=resp.status_code
                    )
                truncated = False
                new_token = None
                for href, entry in parse_multistatus(resp.iter_content(65536)):
                    if href == "" and entry.token is not None:
                        new_token = entry.token
                        continue
                    if entry.token == "truncated":
                        truncated = True
                        continue
                    try:
                        rel = href_to_relpath(href, self.base_url, self.base_url)
                    except UnsafeHref as e:
                        changes.skipped.append(Skipped(_display(href, self.base_url), str(e)))
                        continue
                    if rel == "":
                        continue
                    if entry.removed:
                        changes.changed.pop(rel, None)
                        changes.removed.add(rel)
                    else:
                        changes.removed.discard(rel)
                        new = RemoteEntry(
                            rel,
                            entry.is_dir,
                            entry.size,
                            entry.mtime,
                            entry.etag,
                            entry.md5,
                            urljoin(self.base_url, href),
                        )
                        old = changes.changed.get(rel)
                        if old is not None and old.href and _comparable_href(old.href) != _comparable_href(href):
                            changes.collided[rel] = [old, new]
                        changes.changed[rel] = new
            except requests.exceptions.RequestException as e:
                raise RemoteError(f"the change list was cut off: {connection_message(e, self.base_url)}") from None
            finally:
                resp.close()
            if not new_token:
                raise SyncUnsupported("the server's sync-collection answer has no sync-token")
            changes.token = new_token
            if not truncated:
                for rel, pair in changes.collided.items():
                    changes.changed.pop(rel, None)
                    changes.skipped += split_collisions(pair, self)[1]
                return changes
        raise RemoteError("the server keeps truncating its change list")


_REPORT_HEADERS = {"Depth": "0", "Content-Type": "application/xml; charset=utf-8"}


class SyncTokenInvalid(RemoteError):
    """403 valid-sync-token: list in full and start over."""


class SyncUnsupported(RemoteError):
    """The server has no usable sync-collection: walk."""


@dataclass
class Changes:
    token: str
    changed: dict[str, RemoteEntry] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    skipped: list[Skipped] = field(default_factory=list)
    collided: dict[str, list[RemoteEntry]] = field(default_factory=dict)


def _comparable_href(href: str) -> str:
    return unquote(urlsplit(href).path).rstrip("/")


def _display(href: str, base_url: str) -> str:
    """An href as a person reads it: its path below the share, decoded."""
    path = unquote(urlsplit(href).path)
    base = unquote(urlsplit(base_url).path)
    return (path[len(base) :] if path.startswith(base) else path) or href


def split_collisions(entries: list[RemoteEntry], remote: Remote) -> tuple[list[RemoteEntry], list[Skipped]]:
    """Names that differ only in Unicode normalisation (NFC café and NFD café) would be the
    same local file: neither can be mirrored faithfully, so both are reported and skipped."""
    groups: dict[str, list[RemoteEntry]] = {}
    for e in entries:
        groups.setdefault(e.path, []).append(e)
    kept: list[RemoteEntry] = []
    skipped: list[Skipped] = []
    for path, members in groups.items():
        if len(members) == 1:
            kept.append(members[0])
            continue
        # One report under the local path, so the journal's entry there is neither synced nor deleted.
        spellings = sorted({remote.server_name(m) or m.path for m in members})
        skipped.append(Skipped(path, f"the server has {len(members)} names that differ only in Unicode "
                                     f"normalisation ({', '.join(_escaped(n) for n in spellings)}); "
                                     "this computer can hold only one, so none is synced"))  # fmt: skip
    return kept, skipped


def _escaped(name: str) -> str:
    """Show a name's normalisation: NFD letters are spelled with their combining marks."""
    import unicodedata

    form = "NFC" if unicodedata.is_normalized("NFC", name) else "NFD"
    return f"{shown(name)} ({form})"


def _xml_escape(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text)


_PROPFIND_HEADERS_0 = {"Depth": "0", "Content-Type": "application/xml; charset=utf-8"}
_PROPFIND_HEADERS_1 = {"Depth": "1", "Content-Type": "application/xml; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class ParsedEntry:
    is_dir: bool
    size: int | None
    mtime: float | None
    etag: str | None
    md5: str | None
    removed: bool = False
    token: str | None = None


def safe_parser(**kw) -> etree.XMLPullParser:  # type: ignore[no-untyped-def]
    """No entity expansion, no DTD loading, no network, no huge-tree mode."""
    return etree.XMLPullParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, dtd_validation=False, **kw
    )


def parse_multistatus(chunks: Iterator[bytes]) -> Iterator[tuple[str, ParsedEntry]]:
    """Yield (href, entry) per <D:response> as bytes arrive; memory stays per-response.

    A member reported removed (a response whose status is 404, as in RFC 6578) comes as
    an entry with `removed=True`; a top-level <D:sync-token> comes as ("", entry) with
    the token in `token`.
    """
    parser = safe_parser(events=("end",))
    total = 0
    try:
        for chunk in chunks:
            total += len(chunk)
            if total > MAX_LISTING_BYTES:
                raise RemoteError("the server's listing is larger than 512 MiB; refusing it")
            if b"<!ENTITY" in chunk or b"<!DOCTYPE" in chunk:
                raise RemoteError("the server's listing contains a DTD/entities; refusing it (XML bomb?)")
            parser.feed(chunk)
            yield from _drain(parser)
        parser.close()
        yield from _drain(parser)
    except etree.XMLSyntaxError as e:
        line = f" (line {e.lineno})" if getattr(e, "lineno", None) else ""
        raise RemoteError(
            f"the server sent malformed XML{line}; it may not be a WebDAV server, or the answer was cut."
        ) from None


def _drain(parser: etree.XMLPullParser) -> Iterator[tuple[str, ParsedEntry]]:
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
            if href and entry is not None:
                yield href, entry


def _entry_from(response: etree._Element) -> ParsedEntry | None:
    status = response.findtext("{DAV:}status") or ""
    if " 404" in status:
        return ParsedEntry(False, None, None, None, None, removed=True)
    if " 507" in status:
        return ParsedEntry(True, None, None, None, None, token="truncated")
    props: dict[str, etree._Element] = {}
    ok = False
    for propstat in response.iterfind("{DAV:}propstat"):
        status = propstat.findtext("{DAV:}status") or ""
        if " 200" not in status:
            continue
        ok = True
        prop = propstat.find("{DAV:}prop")
        if prop is not None:
            for p in prop:
                if isinstance(p.tag, str):
                    props[etree.QName(p).localname] = p
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
    try:
        return parsedate_to_datetime(el.text.strip()).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _etag(el: etree._Element | None) -> str | None:
    if el is None or not el.text:
        return None
    text = el.text.strip()
    if text.startswith("W/"):
        text = text[2:]
    return text.strip('"') or None


def _md5(el: etree._Element | None) -> str | None:
    """`MD5:<hex>` from oc:checksums (several space-separated checksums may be listed)."""
    if el is None:
        return None
    for node in el.iter():
        if not isinstance(node.tag, str) or etree.QName(node).localname != "checksum":
            continue
        value = md5_token(node.text or "")
        if value is not None and is_md5(value):
            return value
    return None


def _names_a_file(root: etree._Element) -> bool:
    """Does a Depth-0 PROPFIND answer describe a non-collection?"""
    for ps in root.iter("{DAV:}propstat"):
        if " 200" in (ps.findtext("{DAV:}status") or ""):
            rt = ps.find("{DAV:}prop/{DAV:}resourcetype")
            if rt is not None:
                return rt.find("{DAV:}collection") is None
    return False
