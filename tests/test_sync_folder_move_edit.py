"""A folder renamed on the PC while a phone edits a file inside it (issue 24, item 4): the folder
MOVE happens on the server, and the phone's edit lands at the new path here; nothing is split
into a recreated old folder."""

from __future__ import annotations

from synchelp import SyncWorld
from test_sync_scenarios import agreed, no_deletions, trashed


def test_a_folder_renamed_here_while_the_phone_edits_inside_it(world: SyncWorld) -> None:
    agreed(world, n=4, extra={"other.txt": "o"})
    world.mv("docs", "papers")
    world.rput("docs/f01.txt", "edited on the phone")
    run = world.sync()
    assert run.code == 0, run
    no_deletions(run)
    assert len(run.of("MOVE")) == 1, run
    assert not (world.root / "docs").exists() and not (world.dest / "docs").exists(), run
    assert (world.root / "papers" / "f01.txt").read_text() == "edited on the phone"
    assert (world.dest / "papers" / "f01.txt").read_text() == "edited on the phone"
    assert trashed(world) == []
    world.check(run)
