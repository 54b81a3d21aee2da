"""A no-op pull's own work, after its imports (issue 27): one REPORT, and the journal's table
passed over as few times as the run needs. Each pass reads every row (held deletions, the file
count), about 3 ms for 20,000 files and five times that for 100,000, so a pass made twice for the
same answer is start-up time lost on every run of the app's timer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import PASSWORDS, Share

from davsync.client import journal
from davsync.client.engine import RunOptions, run_once
from davsync.client.transport import ConnectionSettings


def _traced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement the journals opened from now on run."""
    statements: list[str] = []
    real_init = journal.Journal.__init__

    def tracing(self: journal.Journal, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        self._db.set_trace_callback(statements.append)

    monkeypatch.setattr(journal.Journal, "__init__", tracing)
    return statements


def test_a_no_op_pull_passes_over_the_journal_once_per_question(share: Share, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    for i in range(30):
        f = share.root / f"d{i % 3}" / f"f{i}.txt"
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"x" * i)
    share.wait_indexed()
    dest = tmp_path / "m"
    conn = ConnectionSettings(share.url, "alice", PASSWORDS["alice"])
    assert run_once(conn, dest, RunOptions()).exit_code == 0
    (share.root / "d1" / "f1.txt").unlink()  # kept here (no --delete): a held deletion, judged every run
    share.wait_indexed()
    first = run_once(conn, dest, RunOptions())
    assert first.exit_code == 0 and (dest / "d1" / "f1.txt").exists()  # kept: deletions are opt-in

    statements = _traced(monkeypatch)
    result = run_once(conn, dest, RunOptions())
    assert result.exit_code == 0 and result.requests_sent == 1 and result.mode == "sync-collection"
    held = [s for s in statements if s == journal.ROUND_QUESTIONS["gone"]]
    counted = [s for s in statements if "COUNT(*) FROM placed" in s]
    assert len(held) == 1, f"the held deletions were read {len(held)} times"
    assert len(counted) <= 1, f"the files were counted {len(counted)} times"

    # The one read still serves: a later --delete pull judges the held deletion and carries it out.
    deleted = run_once(conn, dest, RunOptions(delete=True))
    assert deleted.exit_code == 0 and not (dest / "d1" / "f1.txt").exists()


def test_the_questions_every_round_asks_read_no_whole_table(tmp_path: Path) -> None:
    """Held deletions and refused ones are asked of the journal on every round of `sync --watch`
    (every 2 s); with 20,000 files a scan of the table for each cost about 5 ms of a 23 ms idle
    round. Asked through an index, they read only the few rows held."""
    j = journal.Journal(tmp_path / "state.db")
    try:
        plans = {}
        for name, sql in journal.ROUND_QUESTIONS.items():
            rows = j._db.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            plans[name] = " | ".join(str(r[-1]) for r in rows)
        assert plans and all("USING" in p and "INDEX" in p for p in plans.values()), plans
    finally:
        j.close()
