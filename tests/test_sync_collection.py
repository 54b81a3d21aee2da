"""RFC 6578 sync-collection on `davsync serve`, and pulls driven by it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import PASSWORDS, wait_until
from davhelp import md5sum_tool

from davsync.client.engine import RunOptions, run_once
from davsync.client.transport import ConnectionSettings

OC = "{http://owncloud.org/ns}"


def report(share, token: str = "", level: str = "infinite", limit: int | None = None, path: str = "/"):
    lim = f"<d:limit><d:nresults>{limit}</d:nresults></d:limit>" if limit else ""
    body = (
        '<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">'
        f"<d:sync-token>{token}</d:sync-token><d:sync-level>{level}</d:sync-level>{lim}"
        "<d:prop><d:getetag/><oc:checksums/><d:resourcetype/></d:prop></d:sync-collection>"
    )
    return share.request("REPORT", path, data=body, headers={"Depth": "0"})


def parse(r: requests.Response) -> tuple[dict[str, str | None], list[str], str]:
    """(changed href -> MD5 or None for folders, removed hrefs, new token)."""
    from lxml import etree

    assert r.status_code == 207, r.text
    root = etree.fromstring(r.content)
    changed: dict[str, str | None] = {}
    removed: list[str] = []
    for resp in root.findall("{DAV:}response"):
        href = resp.findtext("{DAV:}href")
        if resp.find("{DAV:}status") is not None:
            assert "404" in resp.findtext("{DAV:}status")
            removed.append(href)
            continue
        checksum = resp.findtext(f".//{OC}checksum")
        assert href not in changed, f"{href} listed twice"
        changed[href] = checksum
    return changed, removed, root.findtext("{DAV:}sync-token")


def md5(path: Path) -> str:
    return "MD5:" + md5sum_tool([path])[str(path)]


def test_initial_then_incremental_webdav_and_disk_changes(share) -> None:
    (share.root / "keep.txt").write_bytes(b"keep")
    (share.root / "dir").mkdir()
    (share.root / "dir" / "old.txt").write_bytes(b"old")
    (share.root / "gone-on-disk.txt").write_bytes(b"bye")
    (share.root / "edit-on-disk.txt").write_bytes(b"AAAA")
    (share.root / "del-by-dav.txt").write_bytes(b"d")
    (share.root / "move-me.txt").write_bytes(b"m")
    share.wait_indexed()
    changed, removed, token = parse(report(share))
    assert removed == [] and token.startswith("urn:davsync:sync:")
    assert changed["/keep.txt"] == md5(share.root / "keep.txt") and "/dir/" in changed
    assert len(changed) == 7

    # Through WebDAV.
    assert share.request("PUT", "/new-by-dav.txt", data=b"hello").status_code == 201
    assert share.request("DELETE", "/del-by-dav.txt").status_code == 204
    moved = share.request("MOVE", "/move-me.txt", headers={"Destination": share.url + "moved.txt"})
    assert moved.status_code == 201
    # Directly on disk.
    (share.root / "dir" / "new-on-disk.txt").write_bytes(b"fresh")
    target = share.root / "edit-on-disk.txt"
    st = target.stat()
    target.write_bytes(b"BBBB")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    (share.root / "gone-on-disk.txt").unlink()

    expected_changed = {"/new-by-dav.txt", "/moved.txt", "/dir/new-on-disk.txt", "/edit-on-disk.txt"}
    expected_removed = {"/del-by-dav.txt", "/move-me.txt", "/gone-on-disk.txt"}

    def caught_up():
        c, r, t = parse(report(share, token))
        return (c, r, t) if set(c) >= expected_changed and set(r) >= expected_removed else None

    changed, removed, token2 = wait_until(caught_up, 20, "disk changes to reach the change journal")
    assert set(changed) == expected_changed and sorted(removed) == sorted(expected_removed)
    assert changed["/edit-on-disk.txt"] == md5(target)
    assert changed["/new-by-dav.txt"] == "MD5:5d41402abc4b2a76b9719d911017c592"
    assert token2 != token
    # Nothing more since the new token.
    assert parse(report(share, token2))[:2] == ({}, [])


def test_sync_level_1_and_subcollection(share) -> None:
    (share.root / "a").mkdir()
    (share.root / "a" / "b").mkdir()
    (share.root / "a" / "x.txt").write_bytes(b"x")
    (share.root / "a" / "b" / "y.txt").write_bytes(b"y")
    (share.root / "top.txt").write_bytes(b"t")
    share.wait_indexed()
    level1, _, _ = parse(report(share, level="1"))
    assert set(level1) == {"/a/", "/top.txt"}
    sub, _, _ = parse(report(share, level="infinite", path="/a/"))
    assert set(sub) == {"/a/b/", "/a/x.txt", "/a/b/y.txt"}


def test_limit_truncates_with_507_and_continues(share) -> None:
    for i in range(7):
        (share.root / f"f{i}.txt").write_bytes(b"%d" % i)
    share.wait_indexed()
    seen: set[str] = set()
    token, rounds = "", 0
    while True:
        r = report(share, token, limit=3)
        assert r.status_code == 207
        truncated = "507" in r.text and "number-of-matches-within-limits" in r.text
        changed, _, token = parse_truncated(r)
        seen |= set(changed)
        rounds += 1
        if not truncated:
            break
    assert seen == {f"/f{i}.txt" for i in range(7)} and rounds == 3


def parse_truncated(r: requests.Response):  # type: ignore[no-untyped-def]
    from lxml import etree

    root = etree.fromstring(r.content)
    changed = [
        resp.findtext("{DAV:}href")
        for resp in root.findall("{DAV:}response")
        if resp.find("{DAV:}status") is None
    ]
    return changed, [], root.findtext("{DAV:}sync-token")


def test_a_limited_report_reads_only_what_it_answers(share, monkeypatch: pytest.MonkeyPatch) -> None:
    """nresults bounds the rows read from the change journal; only changes in scope count, also via a link."""
    from urllib.parse import unquote

    from lxml import etree

    from davsync.server.links import LinkStore

    for i in range(20):
        for folder in ("b", "a"):
            (share.root / folder).mkdir(exist_ok=True)
            (share.root / folder / f"{i}.txt").write_bytes(folder.encode())
    share.wait_indexed()
    # The write events may still be queued (a busy machine): settle them and rescan, so no change
    # lands between the pages below (it would rightly be sent again, in one more round).
    assert share.server.state.provider.sweep(30)
    rows_read: list[int] = []
    real = share.index.changes_since

    def counted(*args, **kw):  # type: ignore[no-untyped-def]
        changes = real(*args, **kw)
        rows_read.append(len(changes))
        return changes

    monkeypatch.setattr(share.index, "changes_since", counted)
    issued = LinkStore(share.state_dir).create("a", "read-only", expires_in=3600, password=None)
    via_link = requests.Session()
    via_link.request = lambda method, path, **kw: requests.request(  # type: ignore[method-assign]
        method, f"{share.url}s/{issued.token}{path}", timeout=30, **kw
    )
    for client, path, prefix in ((share, "/a/", "/a/"), (via_link, "/", f"/s/{issued.token}/")):
        seen: set[str] = set()
        token, pages = "", []
        while True:
            r = report(client, token, limit=8, path=path)
            changed, _, token = parse_truncated(r)
            seen |= {unquote(h) for h in changed}
            # Truncation is the collection's own 507 status, not the digits 507 anywhere in the
            # text: an etag or the token's instance id holds them in about one page in a hundred.
            statuses = [resp.findtext("{DAV:}status") or "" for resp in etree.fromstring(r.content)
                        .findall("{DAV:}response")]  # fmt: skip
            truncated = any(" 507 " in s for s in statuses)
            pages.append((len(statuses) - truncated, truncated))
            if not truncated:
                break
        assert seen == {f"{prefix}{i}.txt" for i in range(20)}
        # Nothing changes between the pages (the sweep settled the index), so every change is sent
        # once: a truncated page answers exactly the limit (changes out of scope do not count).
        assert pages == [(8, True), (8, True), (4, False)], pages
    assert rows_read and max(rows_read) <= 9  # limit + 1, to know whether there is more


def test_tokens_survive_restart_and_forged_tokens_are_refused(start_share, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a")
    first = start_share(root)
    _, _, token = parse(report(first))
    first.server.stop()
    (root / "b.txt").write_bytes(b"b while down")
    second = start_share(root)
    changed, removed, _ = parse(report(second, token))
    assert set(changed) == {"/b.txt"} and removed == []
    instance = token.split(":")[3]
    for forged in ("urn:davsync:sync:" + "0" * 32 + ":1", f"urn:davsync:sync:{instance}:999999", "nonsense"):
        r = report(second, forged)
        assert r.status_code == 403 and "valid-sync-token" in r.text


def test_compaction_invalidates_old_tokens(share) -> None:
    (share.root / "x").write_bytes(b"x")
    share.wait_indexed()
    _, _, token = parse(report(share))
    for i in range(5):
        share.request("PUT", f"/t{i}", data=b"t")
        share.request("DELETE", f"/t{i}")
    share.index.compact_tombstones(2)
    r = report(share, token)
    assert r.status_code == 403 and "valid-sync-token" in r.text


def test_sync_token_and_supported_reports_properties(share) -> None:
    body = '<d:propfind xmlns:d="DAV:"><d:prop><d:sync-token/><d:supported-report-set/></d:prop></d:propfind>'
    r = share.request("PROPFIND", "/", data=body, headers={"Depth": "0"})
    assert "urn:davsync:sync:" in r.text and "sync-collection" in r.text
    allprop = share.request("PROPFIND", "/", headers={"Depth": "0"})
    assert "sync-token" not in allprop.text
    assert "REPORT" in share.request("OPTIONS", "/").headers["Allow"]


def counting(share):  # type: ignore[no-untyped-def]
    before = dict(share.server.app.counts)
    return lambda: {k: v - before.get(k, 0) for k, v in share.server.app.counts.items() if v - before.get(k, 0)}


def test_pull_after_10_changes_is_one_report_plus_10_gets(share, tmp_path: Path) -> None:
    for d in range(20):  # big enough that a walk would show; what is asserted is the request count
        (share.root / f"d{d:02}").mkdir()
        for f in range(30):
            (share.root / f"d{d:02}" / f"f{f:03}.txt").write_bytes(b"%d-%d" % (d, f))
    conn = ConnectionSettings(share.url, "alice", PASSWORDS["alice"])
    dest = tmp_path / "mirror"
    first = run_once(conn, dest, RunOptions())
    assert first.exit_code == 0 and first.mode == "initial-report" and len(first.done["download"]) == 600
    changed = [share.root / f"d{i:02}" / "f007.txt" for i in range(10)]
    for i, p in enumerate(changed):
        p.write_bytes(b"changed %d" % i)
    index = share.index
    wait_until(lambda: all(index.fresh_md5(str(p.relative_to(share.root)), p.stat()) for p in changed), 20,
               "the server to index the edits")  # fmt: skip
    delta = counting(share)
    second = run_once(conn, dest, RunOptions())
    assert second.exit_code == 0 and second.mode == "sync-collection"
    assert sorted(second.done["update"]) == sorted(str(p.relative_to(share.root)) for p in changed)
    # the change list, then the 10 small files in one bundle (after asking once what the server offers)
    assert delta() == {"REPORT": 2, "OPTIONS": 1}
    for p in changed:
        assert (dest / p.relative_to(share.root)).read_bytes() == p.read_bytes()
    delta = counting(share)
    third = run_once(conn, dest, RunOptions())
    assert third.done == {} and delta() == {"REPORT": 1}


def test_incremental_pull_handles_deletes_conflicts_and_folders(share, tmp_path: Path) -> None:
    (share.root / "dir").mkdir()
    (share.root / "dir" / "a.txt").write_bytes(b"a")
    (share.root / "b.txt").write_bytes(b"b")
    (share.root / "c.txt").write_bytes(b"c")
    conn = ConnectionSettings(share.url, "alice", PASSWORDS["alice"])
    dest = tmp_path / "m"
    run_once(conn, dest, RunOptions())
    (dest / "c.txt").write_bytes(b"local edit")
    share.request("PUT", "/c.txt", data=b"server edit")
    share.request("DELETE", "/dir/")
    share.request("MKCOL", "/newdir/")
    share.request("PUT", "/newdir/n.txt", data=b"n")
    result = run_once(conn, dest, RunOptions(delete=True))
    assert result.mode == "sync-collection"
    assert result.conflicts and result.conflicts[0].path == "c.txt"
    assert not (dest / "dir").exists() and (dest / "newdir" / "n.txt").read_bytes() == b"n"
    assert (dest / "c.txt").read_bytes() == b"server edit"
    full = run_once(conn, dest, RunOptions(full=True))
    assert full.mode == "walk" and not full.done.get("download") and not full.done.get("update")


def test_incremental_refuses_to_empty_the_mirror(share, tmp_path: Path) -> None:
    for i in range(3):
        (share.root / f"f{i}").write_bytes(b"x")
    conn = ConnectionSettings(share.url, "alice", PASSWORDS["alice"])
    dest = tmp_path / "m"
    run_once(conn, dest, RunOptions())
    for i in range(3):
        share.request("DELETE", f"/f{i}")
    result = run_once(conn, dest, RunOptions(delete=True))
    assert result.mode == "sync-collection" and "delete" not in result.done
    assert all((dest / f"f{i}").exists() for i in range(3))


def test_fallback_when_server_has_no_sync_collection(rclone_webdav, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a")
    url = rclone_webdav(src)
    first = run_once(ConnectionSettings(url), tmp_path / "m", RunOptions())
    (src / "b.txt").write_bytes(b"b")
    second = run_once(ConnectionSettings(url), tmp_path / "m", RunOptions())
    assert first.mode == second.mode == "walk"
    assert second.done == {"download": ["b.txt"]}


def test_watch_follows_disk_writes_stops_on_sigterm_and_survives_restarts(serve_process, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "first.txt").write_bytes(b"1")
    server = serve_process(root)
    dest = tmp_path / "mirror"
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    log = tmp_path / "watch.log"
    with open(log, "w") as out:
        watcher = subprocess.Popen([sys.executable, "-m", "davsync", "watch", server.url, str(dest), "-u", "alice",
                                    "--interval", "0.3"], env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until(lambda: (dest / "first.txt").exists(), 30, "the first pull")
        (root / "sub").mkdir()
        (root / "sub" / "written on the pi.txt").write_bytes(b"fresh from disk")
        wait_until(lambda: (dest / "sub" / "written on the pi.txt").exists(), 15, "watch to pull a disk write")
        assert (dest / "sub" / "written on the pi.txt").read_bytes() == b"fresh from disk"

        port = int(server.url.rsplit(":", 1)[1].strip("/"))
        server.stop()
        wait_until(lambda: "unreachable" in log.read_text(), 15, "watch to notice the server is down")
        (root / "while-down.txt").write_bytes(b"made while the server was down")
        serve_process(root, port=port, state_dir=server.state_dir)
        wait_until(lambda: (dest / "while-down.txt").exists(), 60, "watch to recover after a restart")
        # The file is placed inside the run; the message follows when the run returns.
        wait_until(lambda: "connected again" in log.read_text(), 15, "watch to say it is connected again")

        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(15) == 0
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert "stopped" in log.read_text() and "Traceback" not in log.read_text()
    placed = [p for p in dest.rglob("*") if ".davsync" not in p.parts]
    assert not [p for p in placed if p.name.endswith((".part", ".small"))]


@pytest.mark.parametrize("body", [b"<d:sync-collection xmlns:d='DAV:'/>", b"<not-xml", b"<d:foo xmlns:d='DAV:'/>"])
def test_bad_report_bodies_are_4xx(share, body: bytes) -> None:
    r = share.request("REPORT", "/", data=body, headers={"Depth": "0"})
    assert 400 <= r.status_code < 500


def test_kept_deletions_are_remembered_for_a_later_delete(share, tmp_path: Path) -> None:
    for name in ("a", "b", "keep"):
        (share.root / name).write_bytes(name.encode())
    conn = ConnectionSettings(share.url, "alice", PASSWORDS["alice"])
    dest = tmp_path / "m"
    run_once(conn, dest, RunOptions())
    share.request("DELETE", "/a")
    share.request("DELETE", "/b")
    kept = run_once(conn, dest, RunOptions())
    assert kept.mode == "sync-collection" and sorted(kept.done["deleted-remotely"]) == ["a", "b"]
    share.request("PUT", "/b", data=b"b")  # back, identical
    later = run_once(conn, dest, RunOptions(delete=True))
    assert later.mode == "sync-collection" and later.done.get("delete") == ["a"]
    assert not (dest / "a").exists() and (dest / "b").read_bytes() == b"b"
    again = run_once(conn, dest, RunOptions(delete=True))
    assert "delete" not in again.done and (dest / "b").exists()
