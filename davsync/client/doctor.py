"""`davsync doctor URL`: check a share from the client's side, one pass/fail line per check.

Every request goes through the client's transport, so a failure reads as it would in a pull:
one sentence saying what happened and what to do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests

from .davxml import PROPFIND_BODY, parse_document
from .filelink import share_link
from .refusals import NotAShare
from .remote import Remote
from .transport import ConnectionSettings, RemoteError

SKEW_LIMIT = 60.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    blocking: bool = False  # the share could not be reached or logged into: the checks stopped here


def reachability(conn: ConnectionSettings) -> Check:
    """Does the server answer at all, with valid TLS? Asked without credentials, so a user is
    never asked for a password by a check whose server cannot be reached."""
    try:
        remote = Remote(replace(conn, user=None, password=None))
    except RemoteError as e:  # a URL that cannot be used at all
        return Check("reachable", False, str(e), blocking=True)
    try:
        return _reach(remote)[0]
    finally:
        remote.close()


def run_checks(conn: ConnectionSettings) -> list[Check]:
    try:
        remote = Remote(conn)
    except RemoteError as e:  # a URL that cannot be used at all
        return [Check("reachable", False, str(e), blocking=True)]
    try:
        return _run(remote, conn)
    finally:
        remote.close()


def _reach(remote: Remote) -> tuple[Check, requests.Response | None, requests.Response | None]:
    """The first check, and the share's OPTIONS and PROPFIND answers without a login, when there are."""
    base = remote.base_url
    reachable = "reachable" + (" with valid TLS" if urlsplit(base).scheme == "https" else "")
    try:  # without credentials on purpose: what Explorer sees first
        options = remote.request("OPTIONS", base, login=False)
        options.close()
        probe = remote.request("PROPFIND", base, login=False, headers={"Depth": "0"})
        probe.close()
    except RemoteError as e:
        return Check(reachable, False, str(e), blocking=True), None, None
    server = options.headers.get("Server", "the server")
    return Check(reachable, True, f"HTTP {options.status_code} from {server}"), options, probe


def _run(remote: Remote, conn: ConnectionSettings) -> list[Check]:
    base = remote.base_url
    tls = urlsplit(base).scheme == "https"
    first, options, probe = _reach(remote)
    if options is None or probe is None:
        return [first]
    checks: list[Check] = [first]

    try:
        token = remote.check_root()
    except NotAShare as e:
        return [*checks, Check("WebDAV share", False, str(e), blocking=True)]
    except RemoteError as e:
        return [*checks, Check("authentication", False, str(e), blocking=True)]
    try:
        sent = time.time()
        root = remote.request("PROPFIND", base, data=PROPFIND_BODY, headers={"Depth": "1"})
        received = time.time()
        root.close()
        who = f"as {conn.user!r}" if conn.user else "anonymously"
        checks.append(Check("authentication", True, f"listed the share {who}"))

        writable = remote.can_write()
        checks.append(Check("access", True, "read-write" if writable else "read-only (writes are refused)"))
        authed = remote.request("OPTIONS", base)  # what this account may do, and the share link it is
        authed.close()
        link = share_link(authed.headers.get("X-Davsync-Link"))
        if link is not None:
            checks.append(_link_check(link))

        dav = authed.headers.get("DAV", "")
        classes = {c.strip() for c in dav.split(",")}
        if "2" in classes:
            checks.append(Check("DAV class and locking", True, f"DAV: {dav} (locking available)"))
        elif "1" in classes:
            checks.append(Check("DAV class and locking", not writable, f"DAV: {dav}; no locking"
                                + (" (Windows Explorer cannot write without it)" if writable else "")))  # fmt: skip
        else:
            checks.append(Check("DAV class and locking", False, "no DAV header: this is not a WebDAV share"))

        if link is not None and link.get("mode") == "drop":
            checks.append(Check("checksums and sync-collection", True, "not applicable: a drop link lists nothing"))
        else:
            if root.status_code == 207:
                checks.append(_checksums(root.content))
            else:
                what = f"a Depth-1 PROPFIND of the share answered HTTP {root.status_code}"
                checks.append(Check("checksums (oc:checksums)", False, what))
            checks.append(_sync_collection(remote, token))
        checks.append(_clock(root.headers.get("Date"), sent, received))
        checks.append(_explorer(probe, tls, options.status_code, root.status_code))
    except RemoteError as e:
        checks.append(Check("connection", False, str(e)))
    return checks


def _link_check(link: dict[str, str]) -> Check:
    if link.get("kind") == "file":  # a link to one file: nothing can be added, moved or removed through it
        rights = {"read-only": "read its one shared file", "read-write": "read or replace its one shared file, "
                  "nothing else"}.get(link["mode"], link["mode"])  # fmt: skip
    else:
        rights = {"read-only": "browse and download", "read-write": "browse, download, upload, rename and delete",
                  "drop": "upload only (nothing is listed or overwritten)"}.get(link["mode"], link["mode"])  # fmt: skip
    expires = link.get("expires")
    if not expires:
        return Check("share link", True, f"{link['mode']} link {link.get('id', '')}: {rights}; never expires")
    try:
        left = parsedate_to_datetime(expires).timestamp() - time.time()
    except (TypeError, ValueError):
        return Check("share link", True, f"{link['mode']} link: {rights}; expires {expires}")
    when = f"{left / 86400:.1f} days" if left >= 86400 else f"{left / 3600:.1f} hours"
    return Check(
        "share link", True, f"{link['mode']} link {link.get('id', '')}: {rights}; expires {expires} (in {when})"
    )


def _checksums(listing: bytes) -> Check:
    tree = parse_document(listing)
    if tree is None:
        return Check("checksums (oc:checksums)", False, "the listing is not valid XML")
    files = checked = 0
    for resp in tree.iter("{DAV:}response"):
        if resp.find(".//{DAV:}collection") is not None:
            continue
        files += 1
        text = " ".join(el.text or "" for el in resp.iter("{http://owncloud.org/ns}checksum"))
        if "md5:" in text.lower():
            checked += 1
    if files == 0:
        return Check("checksums (oc:checksums)", True, "no files at the top level to check; not verified")
    if checked == files:
        return Check("checksums (oc:checksums)", True, f"MD5 published for {checked} of {files} files")
    return Check("checksums (oc:checksums)", False,
                 f"MD5 published for {checked} of {files} files; pulls fall back to size and mtime")  # fmt: skip


def _sync_collection(remote: Remote, token: str | None) -> Check:
    if not token:
        return Check("sync-collection (RFC 6578)", False, "no DAV:sync-token; every pull walks the whole share")
    try:
        remote.sync_collection(token)
    except RemoteError as e:
        return Check("sync-collection (RFC 6578)", False, f"REPORT failed: {e}")
    return Check("sync-collection (RFC 6578)", True, "incremental pulls ask only for changes")


def _clock(date_header: str | None, sent: float, received: float) -> Check:
    """The Date header says whole seconds, stamped somewhere between `sent` and `received`:
    a server whose clock agrees with ours may read up to a second behind, and that is no skew."""
    if not date_header:
        return Check("clock skew", False, "the server sends no Date header")
    try:
        stamped = parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return Check("clock skew", False, f"unreadable Date header '{date_header}'")
    earliest, latest = stamped - received, stamped + 1 - sent  # the server's offset lies in this window
    if earliest <= 0 <= latest:
        return Check("clock skew", True, "server clock agrees with this computer (to the Date header's 1 s resolution)")
    skew = earliest if earliest > 0 else latest
    ok = abs(skew) <= SKEW_LIMIT
    detail = f"server clock is at least {abs(skew):.1f} s {'ahead' if skew > 0 else 'behind'}"
    return Check("clock skew", ok, detail + ("" if ok else "; fix NTP on the server (mtimes will look wrong)"))


def _explorer(probe: requests.Response, tls: bool, options_status: int, propfind_status: int) -> Check:
    name = "Windows Explorer"
    if options_status >= 400 and options_status != 401:
        return Check(name, False, f"OPTIONS at the root answered {options_status}; Explorer needs it")
    if propfind_status != 207:
        return Check(name, False, "PROPFIND at the root failed; Explorer needs it")
    if probe.status_code == 401:
        schemes = probe.headers.get("WWW-Authenticate", "").lower()
        if not tls and "digest" not in schemes:
            return Check(name, False, "only Basic auth over plain http: Explorer refuses it unless BasicAuthLevel=2")
        return Check(name, True, "Digest offered over http" if not tls else "https with a login")
    return Check(name, True, "root OPTIONS and PROPFIND work (no login needed)")
