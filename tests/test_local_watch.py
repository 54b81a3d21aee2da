"""The client's local watcher (davsync/client/localwatch.py) on real files with real watchdog events."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from davsync.client import localwatch
from davsync.client.localwatch import LocalWatcher

TIMEOUT = 10.0


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    root = tmp_path / "dest"
    (root / "docs").mkdir(parents=True)
    (root / ".davsync").mkdir()
    (root / "build").mkdir()
    return root


@pytest.fixture
def watcher(dest: Path) -> Iterator[LocalWatcher]:
    w = LocalWatcher(dest, excluded=lambda p, d: p == "build")
    w.start()
    assert w.watching
    yield w
    w.stop()


def collect(w: LocalWatcher, *wanted: str) -> set[str]:
    """Drain until every wanted path was reported (waiting on the watcher, never sleeping)."""
    seen: set[str] = set()
    deadline = time.monotonic() + TIMEOUT
    while not set(wanted) <= seen:
        left = deadline - time.monotonic()
        assert left > 0, f"not reported within {TIMEOUT}s: {set(wanted) - seen} (saw {seen})"
        if w.wait(left):
            got = w.drain()
            assert got is not None, "the watcher gave up on a handful of changes"
            seen |= got
    return seen


def test_writes_renames_and_deletions_are_reported(watcher: LocalWatcher, dest: Path) -> None:
    (dest / "docs" / "a.txt").write_bytes(b"one")
    assert "docs/a.txt" in collect(watcher, "docs/a.txt")
    os.rename(dest / "docs" / "a.txt", dest / "docs" / "b.txt")
    assert {"docs/a.txt", "docs/b.txt"} <= collect(watcher, "docs/a.txt", "docs/b.txt")
    (dest / "docs" / "b.txt").unlink()
    assert "docs/b.txt" in collect(watcher, "docs/b.txt")
    (dest / "new").mkdir()
    (dest / "new" / "inside.txt").write_bytes(b"x")
    assert {"new", "new/inside.txt"} <= collect(watcher, "new", "new/inside.txt")


def test_davsyncs_own_state_temp_names_and_excluded_folders_wake_nobody(watcher: LocalWatcher, dest: Path) -> None:
    (dest / ".davsync" / "state.db").write_bytes(b"journal")
    (dest / "docs" / "x.txt.davsync-case-77").write_bytes(b"half a case rename")
    (dest / "build" / "out.o").write_bytes(b"churn")
    (dest / "marker.txt").write_bytes(b"after the others")
    seen = collect(watcher, "marker.txt")
    assert not any(p.startswith((".davsync", "build")) or "davsync-case" in p for p in seen), seen
    assert not watcher.wait(0)  # nothing left behind


def test_wait_returns_false_when_quiet_and_at_once_after_stop(dest: Path) -> None:
    w = LocalWatcher(dest, excluded=lambda p, d: False)
    w.start()
    assert not w.wait(0.05)
    assert w.drain() == set()
    w.stop()
    started = time.monotonic()
    assert not w.wait(30)
    assert time.monotonic() - started < 5


def test_watchdog_trouble_asks_for_a_full_scan(watcher: LocalWatcher) -> None:
    """watchdog handles an inotify overflow itself and only logs it; that report must not be lost."""
    logging.getLogger("watchdog.observers.inotify_c").warning("Inotify queue overflowed; filesystem events were lost")
    assert watcher.wait(0)
    assert watcher.drain() is None
    assert watcher.drain() == set()  # asked once; then back to events


def test_too_many_changes_ask_for_a_full_scan(watcher: LocalWatcher, monkeypatch: pytest.MonkeyPatch) -> None:
    assert localwatch.MAX_PENDING >= 10_000
    monkeypatch.setattr(localwatch, "MAX_PENDING", 100)  # the same logic, without 10,000 events
    for i in range(101):
        watcher.notice(os.path.join(watcher.root, f"f{i}"), False)
    assert watcher.drain() is None


def test_dest_itself_going_away_asks_for_a_full_scan(watcher: LocalWatcher, dest: Path) -> None:
    shutil.rmtree(dest)
    deadline = time.monotonic() + TIMEOUT
    while True:
        assert watcher.wait(max(0.0, deadline - time.monotonic())), "no news after DEST was deleted"
        if watcher.drain() is None:
            break


def test_a_folder_that_cannot_be_watched_always_asks_for_a_full_scan(tmp_path: Path) -> None:
    w = LocalWatcher(tmp_path / "missing", excluded=lambda p, d: False)
    w.start()
    try:
        assert not w.watching
        assert w.wait(0) and w.drain() is None and w.drain() is None
    finally:
        w.stop()
