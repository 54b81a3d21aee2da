"""The server's fast paths answer exactly as the general WsgiDAV path would, only cheaper.

Each fast path is checked against the slow one on the same files (parsed, not byte-compared),
and where it takes a shortcut (sendfile, a watch mask) the shortcut is shown to hold.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import Share, wait_until
from watchdog.events import FileSystemEvent

from davsync.server import watcher


def test_reads_do_not_wake_the_change_tracker(start_share, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening and reading a file is not a change: inotify is not even asked to report it (every
    GET would otherwise cost the server an event handled in Python)."""
    seen: list[tuple[str, str]] = []
    original = watcher._Handler.on_any_event

    def record(self: watcher._Handler, event: FileSystemEvent) -> None:
        seen.append((event.event_type, os.fsdecode(event.src_path)))
        original(self, event)

    monkeypatch.setattr(watcher._Handler, "on_any_event", record)
    share: Share = start_share()
    (share.root / "read-me.txt").write_bytes(b"x" * 100)
    share.wait_indexed()
    seen.clear()
    for _ in range(3):
        assert share.request("GET", "read-me.txt").content == b"x" * 100
        (share.root / "read-me.txt").read_bytes()
    (share.root / "written.txt").write_bytes(b"new")  # inotify delivers in order: this comes after the reads
    wait_until(lambda: any(p.endswith("written.txt") for _, p in seen), what="the write to be seen")
    assert [kind for kind, p in seen if Path(p).name == "read-me.txt"] == []
