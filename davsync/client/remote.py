"""Talking WebDAV: what each request means (PROPFIND listings, sync-collection REPORT, PUT,
MKCOL, DELETE, MOVE) and which answer is which error.

The connection itself (sessions, login, TLS, what a network failure means) is transport.py;
the XML bodies and the multistatus parser are davxml.py. Both are re-exported here, so
`from davsync.client.remote import Remote, RemoteError, ConnectionSettings, ...` keeps working.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urljoin, urlsplit

import requests
from webdav3.client import Client

from .. import osfs
from ..checksums import md5_checksum
from . import retry
from .davxml import (
    MAX_ENTRY_BYTES,
    PROPFIND_BODY,
    ROOT_PROPFIND_BODY,
    SYNC_BODY,
    ParsedEntry,
    RefusedAnswer,
    TooManyEntries,
    etag_text,
    md5_text,
    names_a_file,
    parse_document,
    parse_multistatus,
    sync_token,
    xml_escape,
)
from .filelink import file_link
from .paths import HrefResolver, Skipped, UnsafeHref, nfc, shown, url_segments
from .plan import RemoteEntry
from .refusals import (
    NotAShare,
    NotFound,
    ParentMissing,
    PreconditionFailed,
    SourceChanged,
    WriteRefused,
    not_held,
    write_error,
)
from .transport import (
    BodyReader,
    ConnectionSettings,
    RemoteError,
    Transport,
)
from .upload_body import SourceFailed, UploadBody


@dataclass(frozen=True)
class PutRequest:
    """One file to upload and the conditions it goes under, passed whole from the executor to
    the single PUT, the resumable session and the delta push, which all carry the same headers."""

    path: str
    source: Path
    md5: str | None  # what the caller hashed earlier: sent as OC-Checksum (None: hashed as it is sent)
    mtime_ns: int | None = None
    if_match: str | None = None  # an edit of this version
    if_none_match: bool = False  # a new file: none may stand there
    href: str = ""  # the server's own href for the path, when listed

    def headers(self) -> dict[str, str]:
        """The checksum, modification time and preconditions, as any upload of it sends them."""
        headers = {"Content-Type": "application/octet-stream"}
        if self.md5 is not None:  # (else a resumable session gives it with its last part)
            headers["OC-Checksum"] = md5_checksum(self.md5)
        if self.mtime_ns is not None:
            headers["X-OC-Mtime"] = str(self.mtime_ns // 1_000_000_000)
        if self.if_match:
            headers["If-Match"] = quoted_etag(self.if_match)
        if self.if_none_match:
            headers["If-None-Match"] = "*"
        return headers


@dataclass(frozen=True)
class Uploaded:
    """A finished PUT. `sent_md5` differs from the MD5 the caller declared only when the file
    changed while streaming and the server ignores OC-Checksum (rclone): then the server holds
    `sent_md5`'s bytes, and the local file must not be recorded as synced."""

    entry: RemoteEntry  # the new version as the server now lists it (etag, size, mtime, md5)
    sent_md5: str  # MD5 of the bytes actually streamed (hashed while sending)


@dataclass
class FolderListing:
    folder: str
    entries: list[RemoteEntry] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class Remote:
    """One share, spoken to in WebDAV. The connection is `self.transport`; `request`, `session`,
    `close`, `client`, `base_url` and `requests_sent` are its own, offered here too."""

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self.transport = Transport(settings)
        self.base_url = self.transport.base_url
        # Is the server still answering at all? Shared by every request and retry of a run.
        self.outage = retry.Outage(urlsplit(self.base_url).netloc, probe=self._probe)
        self.transport.outage = self.outage
        self.options_headers: Mapping[str, str] | None = None  # the share root's last OPTIONS answer

    def _probe(self) -> None:
        """Does the server answer anything? (OPTIONS on the share, once; see retry.Outage.)"""
        self.request("OPTIONS", self.base_url).close()

    # --- the connection (transport.py) ------------------------------------------

    @property
    def client(self) -> Client:
        return self.transport.client

    @property
    def requests_sent(self) -> int:
        return self.transport.requests_sent

    def session(self) -> requests.Session:
        return self.transport.session()

    def request(self, method: str, url: str, **kw: Any) -> requests.Response:
        return self.transport.request(method, url, **kw)

    def chunks(self, resp: requests.Response, size: int, what: str) -> Iterator[bytes]:
        return self.transport.chunks(resp, size, what)

    def body_reader(self, resp: requests.Response, what: str) -> BodyReader:
        return self.transport.body_reader(resp, what)

    def close(self) -> None:
        self.transport.close()

    def get_small(self, path: str, href: str = "", limit: int = 4 * 1024 * 1024) -> tuple[int, bytes]:
        """GET a whole small file in one piece, reading at most `limit` + 1 bytes (see Transport.get_small)."""
        return self.transport.get_small(self.url_for(path, href=href), shown(path), limit)

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

    # --- listing -------------------------------------------------------------

    @property
    def server(self) -> str:
        """How refusals name the server."""
        return f"the server at {self.base_url}"

    def check_root(self) -> str | None:
        """Fail early, with the reason, when the share cannot be listed at all.

        Returns the share's sync token (RFC 6578), or None when the server has none.
        Ask for it before walking, so changes made during the walk show up next time.
        """
        resp = self.request("PROPFIND", self.base_url, data=ROOT_PROPFIND_BODY, headers=_PROPFIND_HEADERS_0,
                            stream=True)  # fmt: skip
        with resp:
            if resp.status_code == 207:
                body = bytearray()
                for chunk in self.chunks(resp, 65536, "reading the share's root was cut off"):
                    body += chunk
                    if len(body) > MAX_ENTRY_BYTES:
                        raise RefusedAnswer(f"{self.server} answered a one-entry listing with more than 1 MiB; "
                                            "refusing it", fatal=True)  # fmt: skip
                root = parse_document(bytes(body))
                if root is None:
                    raise RemoteError(
                        f"the server at {self.base_url} sent malformed XML; it may not be a WebDAV server.", fatal=True
                    )
                if names_a_file(root):
                    shown_url = self.base_url.rstrip("/")
                    parent = shown_url.rsplit("/", 1)[0] + "/"
                    raise NotAShare(
                        f"{shown_url} is a file, not a folder: give the URL of a folder to mirror, e.g. {parent}",
                        fatal=True,
                    )
                return sync_token(root)
        if resp.status_code == 403:
            raise RemoteError(f"the server denies access to {self.base_url} (403).", fatal=True, status=403)
        if resp.status_code == 404:
            # The server answered: a wrong path in the URL is a configuration error (exit 2), not a connection one.
            raise NotAShare(
                f"the server has no folder at {self.base_url} (404): check the path in the URL.", fatal=True, status=404
            )
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
            cut_off = f"listing {folder or '/'} was cut off"
            hrefs = HrefResolver(url, self.base_url)
            for href, entry in parse_multistatus(self.chunks(resp, 65536, cut_off), self.server):
                if entry.removed or entry.token is not None:
                    continue
                rel = self._member(hrefs, href, listing.skipped)
                if rel is None or rel == folder:
                    continue
                parent = rel.rpartition("/")[0]
                if parent != folder:
                    listing.skipped.append(Skipped(rel, f"listed under {folder or '/'} but is not a direct member"))
                    continue
                listing.entries.append(  # the href resolved here: a relative one means this folder
                    RemoteEntry(rel, entry.is_dir, entry.size, entry.mtime, entry.etag, entry.md5, hrefs.absolute(href))
                )
            listing.entries, collided = split_collisions(listing.entries, self)
            listing.skipped += collided
            return listing
        finally:
            resp.close()

    def _member(self, hrefs: HrefResolver, href: str, skipped: list[Skipped]) -> str | None:
        """A listed href's path below the share; None, and the reason kept, for one that leaves it."""
        try:
            return hrefs.relpath(href)
        except UnsafeHref as e:
            skipped.append(Skipped(_display(href, self.base_url), str(e)))
            return None

    def sync_collection(self, token: str) -> Changes:
        """What changed since `token` (RFC 6578, sync-level infinite), following truncation."""
        changes = Changes(token=token)
        hrefs = HrefResolver(self.base_url, self.base_url)
        for _round in range(10_000):
            body = SYNC_BODY.format(token=xml_escape(changes.token)).encode()
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
                answer = self.chunks(resp, 65536, "the change list was cut off")
                for href, entry in _whole_share_list(parse_multistatus(answer, self.server)):
                    if href == "" and entry.token is not None:
                        new_token = entry.token
                        continue
                    if entry.token == "truncated":
                        truncated = True
                        continue
                    rel = self._member(hrefs, href, changes.skipped)
                    if rel is None or rel == "":
                        continue
                    if entry.removed:
                        old = changes.changed.get(rel)
                        if old is not None and old.href and _comparable_href(old.href) != _comparable_href(href):
                            continue  # a Unicode twin's other spelling was added: it stays (and a listing follows)
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
                            hrefs.absolute(href),
                        )
                        old = changes.changed.get(rel)
                        if old is not None and old.href and _comparable_href(old.href) != _comparable_href(href):
                            changes.collided[rel] = [old, new]
                        changes.changed[rel] = new
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

    # --- writing -------------------------------------------------------------

    def stat(self, path: str, href: str = "") -> RemoteEntry | None:
        """One resource as the server lists it now (Depth-0 PROPFIND), or None if it is not there."""

        def once() -> RemoteEntry | None:
            url = self.url_for(path, href=href)
            resp = self.request("PROPFIND", url, data=PROPFIND_BODY, headers=_PROPFIND_HEADERS_0, stream=True)
            try:
                if resp.status_code == 404:
                    return None
                if resp.status_code != 207:
                    raise write_error("PROPFIND", path, resp)
                # The response for this href (a server answering more than asked lists others too);
                # the only one when its href is spelled otherwise (encoding, Unicode form).
                want = nfc(_comparable_href(url))
                found: list[tuple[bool, RemoteEntry | None]] = []
                answer = self.chunks(resp, 65536, f"reading {shown(path)} was cut off")
                for listed, entry in parse_multistatus(answer, self.server):
                    if entry.token is not None:
                        continue
                    mine = None if entry.removed else RemoteEntry(
                        path, entry.is_dir, entry.size, entry.mtime, entry.etag, entry.md5, url
                    )
                    found.append((nfc(_comparable_href(listed)) == want, mine))
                exact = [e for same, e in found if same]
                if exact:
                    return exact[0]
                return found[0][1] if len(found) == 1 else None
            finally:
                resp.close()

        return self._retrying(once)

    def can_write(self) -> bool:
        """May this account write? Asked of OPTIONS' Allow header at the share root: davsync
        lists no write method for a read-only user. A server that does not say counts as writable
        (its writes then fail with WriteRefused)."""

        def once() -> bool:
            resp = self.request("OPTIONS", self.base_url)
            resp.close()
            if retry.transient_status(resp.status_code):
                raise RemoteError(f"OPTIONS answered HTTP {resp.status_code}", status=resp.status_code)
            if resp.status_code == 200:
                self.options_headers = resp.headers  # what the server offers (bundle.features reads it)
            allow = resp.headers.get("Allow")
            link = file_link(resp.headers)  # its root offers no writes; its one file may be replaced
            if link is not None:
                return link.get("mode") == "read-write"
            if resp.status_code >= 400 or allow is None:
                return True
            methods = {m.strip().upper() for m in allow.split(",")}
            return bool(methods & {"PUT", "DELETE", "MKCOL", "MOVE", "PROPPATCH"})

        return self._retrying(once)

    def mkcol(self, path: str) -> None:
        """Create one collection; an existing one counts as success (also on a retried request)."""

        def once() -> None:
            resp = self.request("MKCOL", self.url_for(path, is_dir=True))
            resp.close()
            if resp.status_code in (200, 201, 204):
                return
            if resp.status_code == 405:  # RFC 4918: something is mapped there already
                existing = self.stat(path)
                if existing is not None and existing.is_dir:
                    return
                if existing is not None:
                    raise WriteRefused(
                        f"cannot create the folder {shown(path)} on the server: a file has that name.", status=405
                    )
            raise write_error("MKCOL", path, resp)

        self._retrying(once)

    def delete(self, path: str, *, if_match: str | None = None, href: str = "", if_empty: bool = False) -> None:
        """DELETE, only if the server still holds version `if_match`; already gone is success.
        `if_empty`: a folder, only if it is empty (davsync's servers check it; others ignore it)."""
        headers = {"If-Match": quoted_etag(if_match)} if if_match else {}
        if if_empty:
            headers["X-Davsync-If-Empty"] = "1"
        attempts = 0

        def once() -> None:
            nonlocal attempts
            attempts += 1
            resp = self.request("DELETE", self.url_for(path, href=href), headers=headers)
            resp.close()
            if resp.status_code in (200, 202, 204, 404):
                return
            if resp.status_code == 412 and attempts > 1 and self.stat(path, href) is None:
                return  # the first attempt's answer was lost; it did delete
            raise write_error("DELETE", path, resp)

        self._retrying(once)

    def move(
        self, src: str, dst: str, *, if_match: str | None = None, overwrite: bool = False, src_href: str = ""
    ) -> RemoteEntry | None:
        """MOVE src to dst on the server (a folder moves whole). `Overwrite: F` unless `overwrite`,
        so an existing dst is a PreconditionFailed, as is a src no longer at version `if_match`.
        Returns dst as the server now lists it (None if it vanished meanwhile)."""
        headers = {"Destination": self.url_for(dst), "Overwrite": "T" if overwrite else "F"}
        if if_match:
            headers["If-Match"] = quoted_etag(if_match)
        attempts = 0

        def once() -> RemoteEntry | None:
            nonlocal attempts
            attempts += 1
            resp = self.request("MOVE", self.url_for(src, href=src_href), headers=headers)
            resp.close()
            if resp.status_code in (200, 201, 204):
                return self.stat(dst)
            if resp.status_code in (404, 412) and attempts > 1 and self.stat(src, src_href) is None:
                return self.stat(dst)  # the first attempt's answer was lost; it did move
            if resp.status_code == 404:
                raise NotFound(f"cannot move {shown(src)}: it is no longer on the server.", status=404)
            if resp.status_code == 412:
                raise PreconditionFailed(
                    f"the server refused to move {shown(src)} to {shown(dst)}: "
                    "the destination exists or the source changed there meanwhile (412).",
                    status=412,
                )
            raise write_error("MOVE", src, resp)

        return self._retrying(once)

    def put_file(
        self, req: PutRequest, *, progress: Callable[[int], None] | None = None, stop: threading.Event | None = None
    ) -> Uploaded:
        """PUT `req.source` to its final name, streamed from disk and hashed while it is sent.

        `req.md5` (what the caller hashed earlier) goes out as OC-Checksum: a server that checks it
        refuses a body that changed meanwhile, and that is raised as SourceChanged. `if_match`
        (an edit of that version) or `if_none_match` (a new file) make the PUT conditional, and
        only a conditional PUT is retried: after a lost answer, the retry's 412 with our MD5 on
        the server means the first attempt landed. A source that cannot be read raises its OSError.
        """
        path, source, md5, mtime_ns, href = req.path, req.source, req.md5, req.mtime_ns, req.href
        url = self.url_for(path, href=href)
        headers = req.headers()
        attempts = 0

        def once() -> Uploaded:
            nonlocal attempts
            attempts += 1
            with UploadBody(osfs.extended_path(source), path, progress, stop) as body:
                try:
                    resp = self.request("PUT", url, data=body if len(body) else b"", headers=headers)
                except SourceFailed:  # reading the source, not the network, failed
                    assert body.failure is not None
                    raise body.failure from None
                resp.close()
                sent_md5 = body.digest.hexdigest()
                if resp.status_code in (200, 201, 204):
                    up = self._uploaded(path, url, resp, body.sent, sent_md5, mtime_ns)
                    if up.entry.md5 and up.entry.md5 != sent_md5:
                        raise not_held(path, up.entry.md5, sent_md5)
                    return up
                if resp.status_code == 412 and attempts > 1:
                    now = self.stat(path, href)
                    if now is not None and not now.is_dir and now.md5 == sent_md5:
                        return Uploaded(now, sent_md5)  # the lost first answer: it did land
                if resp.status_code == 400 and sent_md5 != md5:
                    raise SourceChanged(
                        f"{shown(path)} changed while it was being uploaded; the server kept its version.",
                        sent_md5=sent_md5,
                        status=400,
                    )
                if resp.status_code == 404:
                    raise ParentMissing(
                        f"cannot upload {shown(path)}: its folder does not exist on the server.", status=404
                    )
                raise write_error("PUT", path, resp)

        return self._retrying(once, safe=bool(req.if_match or req.if_none_match))

    def _uploaded(
        self, path: str, url: str, resp: requests.Response, size: int, sent_md5: str, mtime_ns: int | None
    ) -> Uploaded:
        """The new version from the PUT's answer (davsync sends ETag, OC-Checksum and says whether it
        took X-OC-Mtime); from a Depth-0 PROPFIND when the answer does not say it all."""
        etag = etag_text(resp.headers.get("OC-ETag") or resp.headers.get("ETag"))
        md5 = md5_text(resp.headers.get("OC-Checksum"))
        mtime_taken = mtime_ns is not None and resp.headers.get("X-OC-MTime", "").lower() == "accepted"
        if etag and md5 and mtime_taken and mtime_ns is not None:
            return Uploaded(RemoteEntry(path, False, size, float(mtime_ns // 1_000_000_000), etag, md5, url), sent_md5)
        listed = self.stat(path)
        if listed is not None and not listed.is_dir and (etag is None or listed.etag == etag):
            return Uploaded(listed, sent_md5)
        # Another writer changed it between our PUT and the PROPFIND: what we know of ours.
        return Uploaded(RemoteEntry(path, False, size, None, etag, md5, url), sent_md5)

    def _retrying(self, once: Callable[[], _T], *, safe: bool = True) -> _T:
        """Run one write-side request with the one retry policy (retry.TRANSFER), again on a
        transient failure only if repeating it is safe."""
        return retry.call(once, retry.TRANSFER if safe else None, self.outage)


_REPORT_HEADERS = {"Depth": "0", "Content-Type": "application/xml; charset=utf-8"}
_PROPFIND_HEADERS_0 = {"Depth": "0", "Content-Type": "application/xml; charset=utf-8"}
_PROPFIND_HEADERS_1 = {"Depth": "1", "Content-Type": "application/xml; charset=utf-8"}
_T = TypeVar("_T")


def _whole_share_list(entries: Iterator[tuple[str, ParsedEntry]]) -> Iterator[tuple[str, ParsedEntry]]:
    """A change list too long for one answer is a reason to list folder by folder, not a failure."""
    try:
        yield from entries
    except TooManyEntries as e:
        raise SyncUnsupported(f"{e}; listing folder by folder instead") from None


def quoted_etag(etag: str) -> str:
    """An ETag as a header wants it: listings give it bare (see _etag), the wire needs quotes."""
    return etag if etag.startswith(('"', "W/")) else f'"{etag}"'


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
