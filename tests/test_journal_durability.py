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


def test_every_column_of_a_row_comes_back_as_written(tmp_path: Path) -> None:
    """load, get and under build rows positionally (a sync loads them all each run): each field,
    the in-flight `prev` too, must come back in its own place."""
    prev = JournalEntry(False, 1, 2, 3, "a" * 32, "e0", 1, 0.5, "b" * 32, None, None, 7)
    row = JournalEntry(False, 11, 12, 13, "c" * 32, "e1", 14, 15.5, "d" * 32, "Cafe\u0301.txt", prev, 16)
    folder = JournalEntry(True)
    journal = Journal(tmp_path / "state.db")
    journal.put("f/x.txt", row)
    journal.put("f", folder)
    journal.commit()
    assert journal.load() == {"f/x.txt": row, "f": folder}
    assert journal.get(["f/x.txt"]) == {"f/x.txt": row}
    assert journal.under("f") == {"f/x.txt": row, "f": folder}
    journal.close()
