"""A server that stops answering in the middle of a run: the run ends promptly with one sentence,
keeps what it did (files placed, their journal rows) and does not advance the sync token; the
next run, once the server is back, finishes with nothing lost. The retries while the server is
away share one backoff budget across the run, not one per file."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from conftest import PASSWORDS, wait_until
from synchelp import SyncWorld, files_only, md5, read_journal

from davsync.client import retry
from davsync.client.engine import Engine, RunOptions
from davsync.client.transport import ConnectionSettings
from davsync.exitcodes import Exit

FILES = 300
JOBS = 4


def _token(dest: Path) -> str | None:
    conn = sqlite3.connect(str(dest / ".davsync" / "state.db"))
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'sync_token'").fetchone()
    finally:
        conn.close()
    return row[0] if row else None


def test_a_server_stopped_mid_pull_ends_the_run_within_the_retry_budget(
    sync_world: object, no_backoff: list[float]
) -> None:
    world: SyncWorld = sync_world()  # type: ignore[operator]
    files = {f"d{i % 6}/f{i:03d}.txt": (f"file {i} " * 500).encode() for i in range(FILES)}
    world.seed(files)  # ~1.2 MB of small files: they come in bundles, the rest (after a cut) one by one
    assert world.proxy is not None
    engine = Engine(ConnectionSettings(world.url, "alice", PASSWORDS["alice"]), world.dest, RunOptions(jobs=JOBS))
    at_stop: dict[str, int] = {}
    down = threading.Event()

    def kill_the_server() -> None:
        world.stop_server()  # the real server, stopped in this process (its listener closes)
        at_stop["requests"] = engine.remote.requests_sent
        at_stop["waits"] = len(no_backoff)
        down.set()

    # A third of the way into the first bundle's body: the server goes away for good.
    world.proxy.on("REPORT", phase="response-body", after=400_000, cut=True,
                   action=lambda ex: threading.Thread(target=kill_the_server).start())  # fmt: skip
    try:
        result = engine.run()
    finally:
        engine.close()
    wait_until(down.is_set, 30, "the server to stop")
    after = result.requests_sent - at_stop["requests"]
    out = result.as_json()
    assert result.exit_code == Exit.CONNECTION, out
    assert result.fatal is not None and "stopped answering" in result.fatal, out
    assert result.fatal.endswith("run again when it is back."), result.fatal
    assert result.retryable  # watch and the app wait and try again
    # Bounded by the run's shared budget (TRANSFER's rounds, each file in flight trying once per
    # round), not by the files left: before, every remaining file was tried 6 times in turn.
    budget = retry.TRANSFER.retries + 1
    assert after <= budget * JOBS + 2 * JOBS, (after, out["errors"][:5])
    assert len(no_backoff) - at_stop["waits"] <= budget + JOBS, no_backoff
    assert len(result.errors) <= JOBS, out["errors"]  # no per-file "gave up" for every file left

    # Everything placed is whole and recorded; the token is not advanced (the rest is still owed).
    journal = read_journal(world.dest)
    placed = files_only(world.dest_tree())
    assert 0 < len(placed) < FILES, len(placed)
    for rel, digest in placed.items():
        assert digest == md5(files[rel]) and journal[rel]["md5"] == digest, rel
    assert _token(world.dest) is None

    world.start_server()  # back (on a new port; the proxy follows it)
    again = Engine(ConnectionSettings(world.url, "alice", PASSWORDS["alice"]), world.dest, RunOptions(jobs=JOBS))
    try:
        second = again.run()
    finally:
        again.close()
    assert second.exit_code == Exit.OK and second.fatal is None, second.as_json()
    assert files_only(world.dest_tree()) == {rel: md5(data) for rel, data in files.items()}
    assert _token(world.dest) is not None
