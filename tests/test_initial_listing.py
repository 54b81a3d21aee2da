"""A first run lists the whole share in one sync-collection REPORT (the empty token) instead of a
Depth-1 PROPFIND per folder; servers without it are walked; a failed or cut answer is never used."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urljoin

import pytest
from conftest import PASSWORDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from proxy import Faults, Proxy
from test_pull_hostile import GOOD, TRAVERSAL_HREFS, hostile, multistatus, response  # noqa: F401 (a fixture)

from davsync.client.engine import RunOptions, run_once
from davsync.client.paths import HrefResolver, UnsafeHref, href_to_relpath
from davsync.client.plan import RemoteEntry
from davsync.client.remote import Changes, Remote
from davsync.client.snapshot import RemoteSnapshot, initial_snapshot
from davsync.client.transport import ConnectionSettings, RemoteError
from davsync.server.names import is_internal_name

LISTING_PROPS = (
    "<d:prop><d:resourcetype/><d:getcontentlength/><d:getlastmodified/><d:getetag/><oc:checksums/></d:prop>"
)


def conn(url: str) -> ConnectionSettings:
    return ConnectionSettings(url, "alice", PASSWORDS["alice"])


def tree(root: Path, folders: int, per: int) -> None:
    for f in range(folders):
        for i in range(per):
            p = root / f"folder {f} é" / f"sub {f % 2}" / f"file {i}.txt"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(f"{f}/{i} ".encode() * (i + 1))


def mirror(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".davsync" not in p.relative_to(root).parts and not is_internal_name(p.name)}  # fmt: skip


def counter(share) -> Callable[[], dict[str, int]]:  # type: ignore[no-untyped-def]
    before = dict(share.server.app.counts)
    return lambda: {k: v - before.get(k, 0) for k, v in share.server.app.counts.items() if v - before.get(k, 0)}


def stored_token(dest: Path) -> str | None:
    with sqlite3.connect(dest / ".davsync" / "state.db") as db:
        row = db.execute("SELECT value FROM meta WHERE key='sync_token'").fetchone()
    return row[0] if row else None


def test_a_first_pull_lists_everything_in_one_report_and_the_next_is_incremental(share, tmp_path: Path) -> None:
    tree(share.root, 6, 5)
    (share.root / "skip.tmp").write_bytes(b"excluded")
    (share.root / "cache").mkdir()
    (share.root / "cache" / "deep.txt").write_bytes(b"below an excluded folder")
    share.wait_indexed()
    dest = tmp_path / "m"
    sent = counter(share)
    first = run_once(conn(share.url), dest, RunOptions(excludes=["*.tmp", "cache"]))
    assert first.exit_code == 0 and first.mode == "initial-report", (first.fatal, first.errors)
    asked = sent()
    # One listing request (the bundles are REPORTs too); the only PROPFIND is the first run's root check.
    assert asked.get("PROPFIND") == 1, asked
    expected = {p: b for p, b in mirror(share.root).items() if p not in ("skip.tmp", "cache/deep.txt")}
    assert mirror(dest) == expected and len(expected) == 30
    assert stored_token(dest) == share.index.sync_token()

    sent = counter(share)
    assert share.request("PUT", quote("/folder 1 é/sub 1/file 2.txt"), data=b"changed").status_code == 204
    second = run_once(conn(share.url), dest, RunOptions(excludes=["*.tmp", "cache"]))
    assert second.exit_code == 0 and second.mode == "sync-collection"
    assert second.done.get("update") == ["folder 1 é/sub 1/file 2.txt"] and sent().get("PROPFIND") is None
    assert mirror(dest)["folder 1 é/sub 1/file 2.txt"] == b"changed"


def test_the_fast_report_answers_as_the_general_one(share) -> None:
    """The REPORT a client sends on every run is answered from the index rows; a REPORT with a
    limit takes WsgiDAV's general path. Both must say the same of every member."""
    tree(share.root, 3, 4)
    (share.root / "gone.txt").write_bytes(b"x")
    share.wait_indexed()
    token = share.index.sync_token()
    assert share.request("DELETE", "/gone.txt").status_code == 204
    assert share.request("PUT", quote("/folder 0 é/sub 0/file 1.txt"), data=b"edited").status_code == 204

    def answer(token: str, limit: str = "") -> dict[str, object]:
        body = ('<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">'
                f"<d:sync-token>{token}</d:sync-token><d:sync-level>infinite</d:sync-level>{limit}"
                f"{LISTING_PROPS}</d:sync-collection>")  # fmt: skip
        r = share.request("REPORT", "/", data=body, headers={"Depth": "0"})
        assert r.status_code == 207, r.text
        root = etree.fromstring(r.content)
        out: dict[str, object] = {"token": root.findtext("{DAV:}sync-token")}
        for resp in root.findall("{DAV:}response"):
            props = {}
            for ps in resp.findall("{DAV:}propstat"):
                for p in ps.find("{DAV:}prop"):
                    inner = [(c.tag, (c.text or "").strip()) for c in p.iter()]
                    props[p.tag] = (ps.findtext("{DAV:}status"), inner)
            out[resp.findtext("{DAV:}href")] = (resp.findtext("{DAV:}status"), props)
        return out

    big = "<d:limit><d:nresults>100000</d:nresults></d:limit>"
    fast, general = answer(""), answer("", big)
    assert fast == general and len(fast) == 1 + 3 + 3 + 12  # the token, folders, sub-folders, files
    fast, general = answer(token), answer(token, big)
    assert fast == general and fast["/gone.txt"] == ("HTTP/1.1 404 Not Found", {}) and len(fast) == 3


# (an entry below a folder the answer does not list makes the whole answer walked instead: below)
REPORT_HOSTILE = [h for h in TRAVERSAL_HREFS if h != "/share/deep/notmine.txt"]


def test_hostile_hrefs_in_the_report_are_refused(hostile, tmp_path: Path) -> None:  # noqa: F811
    asked: list[str] = []

    def handler(environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
        method = environ["REQUEST_METHOD"]
        asked.append(f"{method} {environ.get('HTTP_DEPTH')}")
        if method == "PROPFIND":  # the root check only
            return "207 Multi-Status", [("Content-Type", "application/xml")], multistatus(response("/share/", is_dir=True))
        if method == "REPORT":
            items = [response("/share/", is_dir=True), response("/share/ok.txt", size=len(GOOD)),
                     response("/share/.davsync/", is_dir=True)]  # fmt: skip
            items += [response(h, size=len(GOOD)) for h in REPORT_HOSTILE]
            body = multistatus(*items).replace(b"</d:multistatus>", b"<d:sync-token>urn:t:1</d:sync-token></d:multistatus>")
            return "207 Multi-Status", [("Content-Type", "application/xml")], body
        if environ["PATH_INFO"] == "/share/ok.txt":
            return "200 OK", [("Content-Type", "application/octet-stream")], GOOD
        return "200 OK", [("Content-Type", "application/octet-stream")], b"pwned"

    dest = tmp_path / "deep" / "m"
    result = run_once(ConnectionSettings(hostile(handler)), dest, RunOptions())
    assert result.mode == "initial-report" and asked.count("PROPFIND 1") == 0, asked
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert all(w.startswith("deep/m/") for w in written), written
    assert (dest / "ok.txt").read_bytes() == GOOD and mirror(dest) == {"ok.txt": GOOD}
    assert len(result.skipped) == len(REPORT_HOSTILE) + 1, result.skipped  # and the .davsync folder itself


def test_a_server_without_sync_collection_is_walked(hostile, tmp_path: Path) -> None:  # noqa: F811
    asked: list[str] = []
    md5 = hashlib.md5(GOOD).hexdigest()
    listing = multistatus(response("/share/", is_dir=True), response("/share/f.txt", size=len(GOOD), md5=md5))

    def handler(environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
        method = environ["REQUEST_METHOD"]
        asked.append(method)
        if method == "PROPFIND":
            return "207 Multi-Status", [("Content-Type", "application/xml")], listing
        if method == "GET" and environ["PATH_INFO"] == "/share/f.txt":
            return "200 OK", [("Content-Type", "application/octet-stream")], GOOD
        return "405 Method Not Allowed", [("Allow", "OPTIONS, GET, HEAD, PROPFIND")], b""

    dest = tmp_path / "m"
    result = run_once(ConnectionSettings(hostile(handler)), dest, RunOptions())
    assert result.exit_code == 0 and result.mode == "walk", (result.fatal, result.errors)
    assert (dest / "f.txt").read_bytes() == GOOD and "REPORT" in asked


def test_a_cut_report_is_not_used_and_the_next_run_recovers(share, tmp_path: Path) -> None:
    tree(share.root, 10, 10)  # a listing of ~50 KB
    share.wait_indexed()
    # Cut mid-answer: a clean error, never a short listing.
    proxy = Proxy(share.server.port, Faults(cut_after=20_000, cuts_left=1, only_for="REPORT"))
    try:
        with pytest.raises(RemoteError) as cut:
            Remote(conn(proxy.url)).sync_collection("")
    finally:
        proxy.close()
    assert "cut" in str(cut.value) or "malformed" in str(cut.value), str(cut.value)

    # A first run whose listing is cut walks instead, completes, and the next run is incremental.
    dest = tmp_path / "m"
    proxy = Proxy(share.server.port, Faults(cut_after=20_000, cuts_left=1, only_for="REPORT"))
    try:
        walked = run_once(conn(proxy.url), dest, RunOptions())
        assert walked.exit_code == 0 and walked.mode == "walk", (walked.fatal, walked.errors)
        assert mirror(dest) == mirror(share.root)
        again = run_once(conn(proxy.url), dest, RunOptions())
    finally:
        proxy.close()
    assert again.mode == "sync-collection" and again.bytes_downloaded == 0 and not again.errors


HREFS = [*TRAVERSAL_HREFS, "/share/", "/share", "/share/a%20b/c%C3%A9.txt", "/share/a b/e\u0301.txt", "/share/%2e%2e/x",
         "/share/a%2fb", "/share/a//b", "/share/x?q=1", "/share/x#f", "//other/share/x", "/SHARE/x", "/share/%ff",
         "/share/./x", "/share/x/..", "/share/%2E/x", "http://h:1/share/ok", "https://h:1/share/ok", "/share/a%5cb",
         "/sha%72e/x", "/share/a\u0000b", "relative.txt", "sub/x.txt", "../x", "/share/.davsync/x", "/share/x/"]  # fmt: skip


@given(st.one_of(st.sampled_from(HREFS), st.text(min_size=1, max_size=30).map(lambda t: "/share/" + t),
                 st.text(max_size=30)))  # fmt: skip
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_the_href_short_path_agrees_with_href_to_relpath(href: str) -> None:
    """HrefResolver (what listings use) gives what href_to_relpath gives, or refuses the same."""
    for folder in ("http://h:1/share/", "http://h:1/share/sub/"):
        fast = HrefResolver(folder, "http://h:1/share/")
        try:
            want: str | type = href_to_relpath(href, folder, "http://h:1/share/")
        except UnsafeHref:
            want = UnsafeHref
        try:
            got: str | type = fast.relpath(href)
        except UnsafeHref:
            got = UnsafeHref
        assert got == want, (href, folder)
        if want is not UnsafeHref:
            assert fast.absolute(href) == urljoin(folder, href)


class _Answers:
    """A server's initial sync-collection answer, already parsed (what Remote.sync_collection returns)."""

    def __init__(self, changes: Changes) -> None:
        self.changes = changes

    def sync_collection(self, token: str) -> Changes:
        assert token == ""
        return self.changes


def _initial(paths: list[str]) -> RemoteSnapshot | None:
    changed = {p: RemoteEntry(p.rstrip("/"), p.endswith("/")) for p in paths}
    changes = Changes("t", {p.rstrip("/"): e for p, e in changed.items()})
    return initial_snapshot(_Answers(changes), excluded=lambda p, d: p == "skip", rules="posix",  # type: ignore[arg-type]
                            fold_case=False)  # fmt: skip


def test_an_answer_listing_entries_without_their_folder_is_not_used() -> None:
    """Files below a folder the answer left out would be dropped with the token stored, so no
    later run would offer them: such an answer (a race, a broken server) is walked instead."""
    assert _initial(["x/y/", "x/y/z.txt", "x/y/w/", "x/y/w/q.txt"]) is None
    snap = _initial(["x/", "x/y/", "x/y/z.txt", "skip/", "skip/hidden.txt"])
    assert snap is not None and sorted(snap.view.entries) == ["x", "x/y", "x/y/z.txt"] and snap.token == "t"


def test_a_deeply_nested_answer_is_listed_without_recursion() -> None:
    """A hostile server nesting thousands of folders cannot stop a first run (RecursionError)."""
    depth = 3000
    folders = ["/".join(f"d{i}" for i in range(n)) + "/" for n in range(depth, 0, -1)]  # deepest first
    snap = _initial([*folders, folders[0] + "leaf.txt"])
    assert snap is not None and len(snap.view.entries) == depth + 1


def test_a_first_listing_is_walked_when_the_servers_rescan_fails(share, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The one-REPORT listing answers from the index, brought up to the disk by a rescan first;
    if that rescan fails, the index may lack files on disk, so the server says 503 and the
    client walks the folders (which read the disk) instead."""
    from davsync.server import watcher

    tree(share.root, 2, 3)
    share.wait_indexed()

    def broken(*args, **kw):  # type: ignore[no-untyped-def]
        raise OSError("the disk went away for a moment")

    monkeypatch.setattr(watcher, "rescan", broken)
    dest = tmp_path / "m"
    result = run_once(conn(share.url), dest, RunOptions())
    assert result.exit_code == 0 and result.mode == "walk", (result.mode, result.errors)
    assert mirror(dest) == mirror(share.root) and len(mirror(dest)) == 6
