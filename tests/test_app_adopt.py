"""Adopting a big folder already on this PC: while the app reads the files here to compare them
with the server's, the dashboard says so, with n of m files and bytes; equal files are kept as
they are (nothing downloaded, nothing overwritten). A small folder is read too fast to show."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSWORDS

from davsync.app.runner import AppReporter
from davsync.app.status import PairStatus, StatusHub
from davsync.client.engine import Engine, RunOptions
from davsync.client.plan import Kind, Mode
from davsync.client.transport import ConnectionSettings


class Watching(AppReporter):
    """The app's own reporter; after each step it reads what a dashboard would be sent."""

    def __init__(self, hub: StatusHub, pair_id: str) -> None:
        super().__init__(hub, pair_id)
        self.seen: list[dict[str, Any]] = []

    def hashing(self, files_done: int, files_total: int, bytes_done: int, bytes_total: int) -> None:
        super().hashing(files_done, files_total, bytes_done, bytes_total)
        snap = self.hub.snapshot()
        self.seen.append({"pair": snap["pairs"][0], "overall": snap["overall"]})


@pytest.mark.parametrize("files", [120, 5])
def test_adopting_a_folder_shows_the_check(files: int, start_share, tmp_path: Path) -> None:
    root, dest = tmp_path / "root", tmp_path / "Photos here"
    for i in range(files):
        data = os.urandom(3000 + i)
        for side in (root, dest):
            (side / "2026" / f"img_{i:04}.jpg").parent.mkdir(parents=True, exist_ok=True)
            (side / "2026" / f"img_{i:04}.jpg").write_bytes(data)
        hour_ago = int((time.time() - 3600) * 1e9)  # settled: a file written just now is left for the next run
        os.utime(dest / "2026" / f"img_{i:04}.jpg", ns=(hour_ago, hour_ago))
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*.jpg")}
    share = start_share(root)
    hub = StatusHub()
    hub.add(PairStatus(id="p", url=share.url, local=str(dest), running=True))
    reporter = Watching(hub, "p")
    engine = Engine(ConnectionSettings(share.url, "alice", PASSWORDS["alice"]), dest,
                    RunOptions(mode=Mode.PULL, wait_to_settle=False), reporter)  # fmt: skip
    result = engine.run()

    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*.jpg")} == before  # kept, not rewritten
    assert not result.done.get(Kind.DOWNLOAD) and not result.done.get(Kind.UPDATE), result.done
    if files < 50:
        assert reporter.seen and all(s["pair"]["progress"] is None for s in reporter.seen)  # too soon over to show
        return
    done = [s["pair"]["progress"]["files_done"] for s in reporter.seen]
    assert done == sorted(done) and done[-1] == files
    last = reporter.seen[-1]
    assert last["pair"]["state"] == "syncing" and last["pair"]["progress"]["phase"] == "checking"
    assert last["pair"]["words"].startswith(f"Checking the files already here against the server: {files} of {files}")
    assert last["overall"]["label"] == f"Checking {files} of {files} files already here"
    assert last["pair"]["progress"]["bytes_total"] == sum(3000 + i for i in range(files))
    assert hub.pair("p").progress is None  # gone once the run ended: never a stale "checking"
