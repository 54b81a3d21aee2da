"""The journal commits a placed file's row only after its folder's rename is durable
(Journal.before_commit), whichever call happens to commit it."""

from __future__ import annotations

from pathlib import Path

from davsync.client.journal import Intent, Journal
from davsync.client.plan import JournalEntry


def test_an_intent_commits_earlier_rows_only_after_their_renames_are_durable(tmp_path: Path) -> None:
    """A download's row is settled after its rename (its folder's fsync deferred to the next
    commit); the next file's intent commits it. Without the folder fsync first, a power cut
    could keep the row and lose the rename: the old file (or none) under a row saying the new
    one is there, which sync would then send to the server as a local edit (or deletion)."""
    synced: list[int] = []
    journal = Journal(tmp_path / "state.db")
    journal.before_commit = lambda: synced.append(1)
    row = JournalEntry(False, 3, 1, 1, "0" * 32, "e", 3, 1.0, "0" * 32)
    journal.settle("a.bin", row)  # placed: its row waits for the next commit
    journal.intend(Intent("b.bin", "place", row))
    assert synced, "the intent committed a.bin's row before a.bin's rename was made durable"
    journal.close()
