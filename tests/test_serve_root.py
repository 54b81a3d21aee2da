"""The server knows its root: an identity marker in the share, an unmounted disk refused, and no
partial tree published while the first scan after start-up runs (issue 24, item 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import PASSWORDS, free_port, wait_until
from test_sync_collection import parse, report

from davsync.server.index import HashIndex
from davsync.server.names import SHARE_MARKER

PROPFIND = '<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>'


def listing(share, path: str = "/"):
    return share.request("PROPFIND", path, data=PROPFIND, headers={"Depth": "1"})


def fill(root: Path) -> None:
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.txt").write_text("alpha")
    (root / "b.txt").write_text("bravo")


def live(state_dir: Path) -> dict[str, bool]:
    index = HashIndex(state_dir / "index.sqlite")
    try:
        return index.live_paths()
    finally:
        index.close()


def test_first_serve_marks_the_root_and_no_client_sees_or_touches_the_marker(start_share, tmp_path: Path) -> None:
    root = tmp_path / "root"
    fill(root)
    share = start_share(root)
    marker = root / SHARE_MARKER
    assert marker.is_file()
    mine = marker.read_bytes()
    r = listing(share)
    assert r.status_code == 207 and SHARE_MARKER not in r.text and "b.txt" in r.text
    changed, _removed, _token = parse(report(share))
    assert not any(SHARE_MARKER in href for href in changed)
    assert SHARE_MARKER not in share.index.live_paths()
    assert share.request("GET", SHARE_MARKER).status_code == 404
    assert share.request("PUT", SHARE_MARKER, data=b"mine now").status_code in (403, 404)
    assert share.request("DELETE", SHARE_MARKER).status_code in (403, 404)
    assert marker.read_bytes() == mine


def _serve(root: Path, state: Path, users: Path) -> subprocess.CompletedProcess[str]:
    """`davsync serve` as a user runs it, when it is expected to refuse (it exits by itself)."""
    cmd = [sys.executable, "-m", "davsync", "serve", str(root), "--host", "127.0.0.1", "--port", str(free_port()),
           "--state-dir", str(state), "--users", str(users), "--no-qr"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_a_root_without_its_marker_is_refused_and_the_index_kept(serve_process, users_file: Path, tmp_path: Path) -> None:
    root, state = tmp_path / "disk", tmp_path / "state"
    fill(root)
    first = serve_process(root, state_dir=state)
    wait_until(lambda: set(live(state)) == {"docs", "docs/a.txt", "b.txt"}, 30, "the first scan")
    first.stop()
    before = live(state)

    os.rename(root, tmp_path / "disk-away")  # the disk is unplugged: an empty mount point is left
    root.mkdir()
    refused = _serve(root, state, users_file)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    message = (refused.stdout + refused.stderr).strip()
    assert "unmounted" in message and "Traceback" not in message and len(message.splitlines()) == 1, message
    assert live(state) == before  # nothing became a deletion
    assert list(root.iterdir()) == []  # and the empty mount point was not claimed

    root.rmdir()
    os.rename(tmp_path / "disk-away", root)  # the disk is back
    again = serve_process(root, state_dir=state)

    def listed() -> requests.Response | None:
        r = requests.request("PROPFIND", again.url, data=PROPFIND, headers={"Depth": "1"},
                             auth=("alice", PASSWORDS["alice"]), timeout=30)  # fmt: skip
        return r if r.status_code == 207 else None

    assert "b.txt" in wait_until(listed, 30, "a listing").text
    assert live(state) == before  # the same share: nothing re-recorded


def test_a_root_with_another_identity_is_a_new_server_for_clients(start_share, tmp_path: Path) -> None:
    first_root, other_root, state = tmp_path / "one", tmp_path / "other", tmp_path / "state"
    fill(first_root)
    share = start_share(first_root, state_dir=state)
    _changed, _removed, token = parse(report(share))
    share.server.stop()
    (other_root / "c.txt").parent.mkdir(parents=True)
    (other_root / "c.txt").write_text("charlie")
    start_share(other_root, state_dir=tmp_path / "other-state").server.stop()  # another share, marked

    os.rename(first_root, tmp_path / "one-away")
    os.rename(other_root, first_root)  # another disk mounted where the first one was
    again = start_share(first_root, state_dir=state)
    stale = report(again, token)
    assert stale.status_code == 403 and "valid-sync-token" in stale.text  # a new server: clients do a union
    assert set(again.index.live_paths()) == {"c.txt"}


def test_the_disk_vanishing_under_a_running_server_deletes_nothing(start_share, tmp_path: Path) -> None:
    root = tmp_path / "root"
    fill(root)
    share = start_share(root)
    before = share.index.live_paths()
    seq = share.index.current_seq

    os.rename(root, tmp_path / "away")
    root.mkdir()  # an empty mount point under the running server
    assert share.server.tracker.sweep(20) is False  # the rescan refuses to read an unmarked root
    share.server.tracker.refresh("b.txt")  # nor does an event for a path now missing remove it
    assert share.index.live_paths() == before and share.index.current_seq == seq
    r = listing(share)
    assert r.status_code == 503 and r.headers.get("Retry-After"), r.status_code
    assert share.request("PUT", "new.txt", data=b"x").status_code == 503
    assert not (root / "new.txt").exists()

    root.rmdir()
    os.rename(tmp_path / "away", root)
    r = wait_until(lambda: (x := listing(share)).status_code == 207 and x, 20, "listings again")
    assert "b.txt" in r.text and share.index.current_seq == seq


@pytest.fixture
def slow_tree(tmp_path: Path) -> Path:
    """A root whose first scan takes seconds: a large sparse file (no disk space, all read)."""
    root = tmp_path / "root"
    fill(root)
    return root


def test_listings_and_every_token_wait_for_the_first_scan(start_share, slow_tree: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    share = start_share(slow_tree, state_dir=state)
    _changed, _removed, token = parse(report(share))
    share.server.stop()
    with open(slow_tree / "big.bin", "wb") as f:
        f.truncate(4 << 30)  # hashed at start-up: seconds, on any machine

    again = start_share(slow_tree, state_dir=state, wait_scan=False)
    busy = listing(again)
    busy_report = report(again, token)
    assert not again.server.scan_done.is_set(), "the first scan ended before the requests; make big.bin larger"
    assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1
    assert busy_report.status_code == 503 and int(busy_report.headers["Retry-After"]) >= 1
    assert listing(again, "/docs/").status_code == 503
    wait_until(again.server.scan_done.is_set, 300, "the first scan")
    changed, _removed, _token = parse(report(again, token))
    assert any(href.endswith("/big.bin") for href in changed)
    assert listing(again).status_code == 207


def test_share_link_listings_wait_for_the_first_scan_too(start_share, slow_tree: Path, tmp_path: Path) -> None:
    """A share link's folder is part of the share: its listing is as partial as the share's."""
    from davsync.server.links import LinkStore

    state = tmp_path / "state"
    share = start_share(slow_tree, state_dir=state)
    share.server.stop()
    with open(slow_tree / "big.bin", "wb") as f:
        f.truncate(4 << 30)
    token = LinkStore(state).create("docs", "read-only", expires_in=3600, password=None).token

    again = start_share(slow_tree, state_dir=state, wait_scan=False)
    busy = requests.request("PROPFIND", f"{again.url}s/{token}/", data=PROPFIND, headers={"Depth": "1"}, timeout=30)
    assert not again.server.scan_done.is_set(), "the first scan ended before the request; make big.bin larger"
    assert busy.status_code == 503 and int(busy.headers["Retry-After"]) >= 1, busy.status_code
    wait_until(again.server.scan_done.is_set, 300, "the first scan")
    done = requests.request("PROPFIND", f"{again.url}s/{token}/", data=PROPFIND, headers={"Depth": "1"}, timeout=30)
    assert done.status_code == 207 and "a.txt" in done.text


def test_a_client_waits_for_the_first_scan_and_says_why(start_share, slow_tree: Path, tmp_path: Path) -> None:
    from test_pull import pull_cli

    dest, state = tmp_path / "mirror", tmp_path / "state"
    share = start_share(slow_tree, state_dir=state)
    assert pull_cli(share.url, dest, "--exclude", "big.bin").returncode == 0
    (slow_tree / "c.txt").write_text("charlie")
    share.server.stop()
    with open(slow_tree / "big.bin", "wb") as f:
        f.truncate(4 << 30)

    again = start_share(slow_tree, state_dir=state, wait_scan=False)
    r = pull_cli(again.url, dest, "--exclude", "big.bin", "--delete")
    assert again.server.scan_done.is_set()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "still reading its share" in r.stdout + r.stderr  # why it waited
    assert (dest / "c.txt").read_text() == "charlie" and (dest / "b.txt").exists()


def test_a_root_the_server_cannot_mark_is_still_served(start_share, tmp_path: Path) -> None:
    """A read-only disk (simulated: the marker's temp name is taken by a folder, as root may
    write anywhere): served without a marker, with a warning, and again after a restart."""
    root, state = tmp_path / "ro", tmp_path / "state"
    fill(root)
    (root / f"{SHARE_MARKER}.tmp").mkdir()
    share = start_share(root, state_dir=state)
    assert not (root / SHARE_MARKER).exists()
    assert listing(share).status_code == 207
    share.server.stop()
    again = start_share(root, state_dir=state)
    r = listing(again)
    assert r.status_code == 207 and "b.txt" in r.text


def test_new_share_is_a_flag_for_one_start_never_a_config_setting(tmp_path: Path) -> None:
    from davsync.server.settings import SettingsError, load_config

    config = tmp_path / "davsync.toml"
    config.write_text('root = "share"\nnew-share = true\n')
    with pytest.raises(SettingsError, match="Unknown setting 'new-share'"):
        load_config(config)


def test_the_disk_coming_back_is_read_again_before_it_is_listed(start_share, tmp_path: Path) -> None:
    """Changed while away (plugged into another computer): when the marker is back, the server
    scans the root again, and only then answers listings and the change feed."""
    root = tmp_path / "root"
    fill(root)
    share = start_share(root)
    _changed, _removed, token = parse(report(share))
    os.rename(root, tmp_path / "away")
    root.mkdir()
    assert listing(share).status_code == 503  # the server notices the disk is gone
    (tmp_path / "away" / "b.txt").unlink()
    (tmp_path / "away" / "docs" / "new.txt").write_text("written elsewhere")
    root.rmdir()
    os.rename(tmp_path / "away", root)

    def feed() -> tuple[dict[str, str | None], list[str], str] | None:
        r = report(share, token)
        return parse(r) if r.status_code == 207 else None

    changed, removed, _token = wait_until(feed, 30, "the change feed to answer again")
    assert any(h.endswith("/docs/new.txt") for h in changed), changed
    assert any(h.endswith("/b.txt") for h in removed), removed
