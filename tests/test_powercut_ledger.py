"""The power-cut test's ledger (tests/powercut_ledger.py): each case is a sequence seen in a real
run of test_a_power_cut_loses_no_acknowledged_upload that the ledger misread as data lost."""

from __future__ import annotations

from powercut_ledger import Acks, mtimes_lost


def test_a_move_whose_curl_died_before_printing_a_status_may_have_happened() -> None:
    """The cut kills the curls: one killed before it read the dropped connection prints no
    status at all (not 000). The server may have done that MOVE durably, so the source may be
    gone after the cut (traced: the rename and both folders' fsyncs had reached the disk)."""
    acks = Acks(done={"a/file 5.bin": "m5"})
    acks.removal_sent("a/file 5.bin")
    acks.removal_answered("a/file 5.bin", "a/moved 9.bin", "")
    assert None in acks.allowed("a/file 5.bin")
    assert "m5" in acks.allowed("a/file 5.bin")  # or it did not happen


def test_a_delete_answered_with_a_refusal_leaves_the_file_where_it_was() -> None:
    acks = Acks(done={"a/x.bin": "mx"})
    acks.removal_sent("a/x.bin")
    acks.removal_answered("a/x.bin", None, "423")
    assert acks.allowed("a/x.bin") == {"mx"}


def test_an_unacknowledged_overwrite_that_landed_is_expected_with_its_own_mtime() -> None:
    """An overwrite cut off after the server made it durable is on disk after the cut, with the
    mtime that PUT sent: the next round must expect that mtime, not the older acknowledged one."""
    acks = Acks(done={"r/file 3.bin": "old"}, mtimes={"r/file 3.bin": 1_500_000_003})
    acks.put_sent("r/file 3.bin", "new", 1_500_000_049)
    acks.put_answered("r/file 3.bin", "new", 1_500_000_049, "")
    acks.settle({"r/file 3.bin": "new"})
    assert acks.done == {"r/file 3.bin": "new"}
    assert acks.expected() == {"r/file 3.bin": ("new", 1_500_000_049)}


def test_a_settled_path_whose_cut_off_attempt_did_not_land_keeps_its_acknowledged_mtime() -> None:
    acks = Acks(done={"r/f.bin": "old"}, mtimes={"r/f.bin": 7})
    acks.put_sent("r/f.bin", "new", 9)
    acks.put_answered("r/f.bin", "new", 9, "")
    acks.settle({"r/f.bin": "old"})
    assert acks.expected() == {"r/f.bin": ("old", 7)}


def test_mtimes_are_checked_on_the_acknowledged_content_only() -> None:
    """A file whose acknowledged content is on disk with another mtime is flagged; a file that
    holds a later, unacknowledged version that landed (its own mtime) is not."""
    expected = {"p28.txt": ("pushed", 100), "p4.txt": ("pushed4", 200)}
    disk = {"p28.txt": ("overwrite that landed", 1_500_000_034), "p4.txt": ("pushed4", 999)}
    assert mtimes_lost(expected, disk) == ["p4.txt"]
    assert mtimes_lost(expected, {"p4.txt": ("pushed4", 200)}) == []


def test_an_index_row_may_outlive_a_removal_cut_off_between_its_rename_and_its_index_commit() -> None:
    """The server makes a DELETE's rename durable, then commits the index: a cut between the two
    leaves a row for a file the disk no longer holds, which the restart's scan forgets. Not a
    lie told to anyone: that DELETE was never answered."""
    acks = Acks(done={"a/x.bin": "mx", "a/y.bin": "my"})
    acks.removal_sent("a/x.bin")
    acks.removal_answered("a/x.bin", None, "000")
    rows: dict[str, str | None] = {"a/x.bin": "mx", "a/y.bin": "my", "a/z.bin": "mz"}
    assert acks.unbacked_rows(rows, {"a/y.bin": "my"}) == ["a/z.bin"]
