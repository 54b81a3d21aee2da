"""The server's change tracker racing requests: a sweep for a first listing, and a rescan
meeting an upload, each held at the exact moment that matters (the tracker's inotify is off, so
only the rescan under test can bring the index up to the disk)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import Share, wait_until


@pytest.fixture
def rescans_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that cannot watch its folder (no inotify) and relies on rescans."""
    from davsync.server import watcher

    def no_inotify() -> Any:
        raise OSError("inotify is not available")

    monkeypatch.setattr(watcher, "new_observer", no_inotify)


def test_a_sweep_asked_during_a_rescan_waits_for_one_that_starts_after_it(
    start_share: Callable[..., Share], rescans_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two clients' first listings overlap: the second one's sweep must not be answered by the
    rescan already under way for the first, which walked the disk before a file was copied in."""
    from davsync.server import watcher

    share = start_share()
    tracker = share.server.tracker
    real = watcher.rescan
    walked, release = threading.Event(), threading.Event()

    def held_after_walking(*args: Any, **kw: Any) -> Any:
        report = real(*args, **kw)
        if not walked.is_set():
            walked.set()
            assert release.wait(30)
        return report

    monkeypatch.setattr(watcher, "rescan", held_after_walking)
    first: list[bool] = []
    threading.Thread(target=lambda: first.append(tracker.sweep(30)), daemon=True).start()
    assert walked.wait(30), "the first sweep's rescan did not run"
    (share.root / "copied in meanwhile.txt").write_bytes(b"new")
    second: list[bool] = []
    asking = threading.Thread(target=lambda: second.append(tracker.sweep(30)), daemon=True)
    asking.start()
    wait_until(tracker._wake.is_set, 30, "the second sweep to be asked")  # (the rescan cleared it)
    release.set()
    asking.join(60)
    assert second == [True]
    assert "copied in meanwhile.txt" in share.index.live_paths()
    wait_until(lambda: first, 30, "the first sweep")
    assert first == [True]


def test_a_rescan_does_not_tombstone_a_file_uploaded_while_it_lists_the_folder(
    start_share: Callable[..., Share], rescans_only: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PUT lands (and is indexed) just after a rescan listed the folder: the rescan must not
    take it for a file that vanished. A tombstone would tell every client it was deleted (a
    mirror with --delete removes it) until the next look brings it back."""
    from davsync.server import scanner

    share = start_share()
    (share.root / "dir").mkdir()
    (share.root / "dir" / "old.txt").write_bytes(b"old")
    assert share.server.tracker.sweep(30)
    real = scanner.iter_folders
    put: list[int] = []

    def listing_then_a_put(*args: Any, **kw: Any) -> Iterator[Any]:
        for folder, entries in real(*args, **kw):
            if folder == "dir" and not put:
                put.append(share.request("PUT", "/dir/uploaded.txt", data=b"just uploaded").status_code)
            yield folder, entries

    monkeypatch.setattr(scanner, "iter_folders", listing_then_a_put)
    before = share.index.current_seq
    assert share.server.tracker.sweep(30)
    assert put == [201]
    changes = {c.path: c for c in share.index.changes_since(before)}
    assert "dir/uploaded.txt" in share.index.live_paths()
    assert not changes["dir/uploaded.txt"].deleted, "the rescan tombstoned a file it had not listed"
    assert set(changes) == {"dir/uploaded.txt"}, changes
