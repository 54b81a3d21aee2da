"""`davsync sync` against `rclone serve webdav`: a server with no checksums and no sync-collection.
Sync must still carry changes both ways, keep conflicts, and hold the invariants (here "nothing
lost" covers what was not yet synced: rclone keeps no previous versions)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from synchelp import SyncWorld, conflict_copies, files_only, md5


@pytest.fixture
def rworld(sync_world: Callable[..., SyncWorld]) -> SyncWorld:
    return sync_world(backend="rclone")


def test_sync_both_ways_against_rclone(rworld: SyncWorld) -> None:
    w = rworld
    w.seed({f"docs/f{i}.txt": f"file {i}" for i in range(6)} | {"docs/sub/deep.txt": "deep"})
    first = w.sync()
    assert first.code == 0, first
    w.check(first, second=False)
    w.write("docs/f0.txt", "edited here")
    w.write("docs/new-here.txt", "new here")
    w.rm("docs/f1.txt")
    w.mv("docs/f2.txt", "docs/renamed-here.txt")
    w.rput("docs/f3.txt", "edited there")
    w.rput("docs/new-there.txt", "new there")
    w.rrm("docs/f4.txt")
    run = w.sync()
    assert run.code == 0, run
    want = {
        "docs/f0.txt": md5(b"edited here"), "docs/new-here.txt": md5(b"new here"),
        "docs/renamed-here.txt": md5(b"file 2"), "docs/f3.txt": md5(b"edited there"),
        "docs/new-there.txt": md5(b"new there"), "docs/f5.txt": md5(b"file 5"), "docs/sub/deep.txt": md5(b"deep"),
    }  # fmt: skip
    assert files_only(w.share_tree()) == want
    assert not run.of("GET", "docs/f0.txt") and not run.of("PUT", "docs/f3.txt"), run
    w.check(run)


@pytest.mark.slow
def test_conflict_against_rclone(rworld: SyncWorld) -> None:
    w = rworld
    w.seed({"a.txt": "base"})
    assert w.sync().code == 0
    w.write("a.txt", "mine")
    w.rput("a.txt", "theirs")
    run = w.sync()
    assert run.code == 3, run
    assert (w.root / "a.txt").read_bytes() == b"theirs" and (w.dest / "a.txt").read_bytes() == b"theirs"
    assert list(conflict_copies(w.share_tree(), "a.txt").values()) == [md5(b"mine")]
    w.check(run, converged=True, second_codes=(0,))


@pytest.mark.slow
def test_same_size_edit_on_rclone_is_seen(rworld: SyncWorld) -> None:
    """Without checksums, a same-size edit on the server is still noticed (its ETag/mtime moved)."""
    w = rworld
    w.seed({"a.txt": "aaaa"})
    assert w.sync().code == 0
    w.rput("a.txt", "bbbb")
    run = w.sync()
    assert run.code == 0, run
    assert (w.dest / "a.txt").read_bytes() == b"bbbb"
    w.check(run)
