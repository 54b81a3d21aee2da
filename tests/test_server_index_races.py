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

    monkeypatch.setattr(watcher, "Observer", no_inotify)


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

