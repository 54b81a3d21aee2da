"""Property tests of the planning core: random base/local/remote triples, planned, applied in
memory (tests/planmodel.py) and planned again.

Invariants: no content lost (every version that differs from its base is afterwards on a side,
in a conflict copy or in the trash); a base is recorded only for a version on both sides; a
second plan changes nothing; tripped guards let no deletion through; pull never plans a server
change; a changes-only view plans like a full listing."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from planmodel import (
    NOW,
    World,
    add_local,
    add_remote,
    agreed,
    check_run,
    edit_local,
    edit_remote,
    fresh,
    mv_local,
    mv_remote,
    rm_local,
    rm_remote,
    touch_local,
)

from davsync.client.plan import Kind, LocalEntry, Mode, Options, reconcile

MD5S = ["1" * 32, "2" * 32, "3" * 32, "4" * 32]  # few contents: renames and equal edits happen often
FILES = ["a", "A", "b", "d", "d/x", "d/y", "d/e/z", "f/x", "f/y", "g"]
FOLDERS = ["d", "d/e", "f", "h"]


def _fits(side: dict, path: str) -> bool:  # type: ignore[type-arg]
    """Can a file go here without a file above it or anything below it?"""
    parts = path.split("/")
    for i in range(1, len(parts)):
        above = side.get("/".join(parts[:i]))
        if above is not None and not above.is_dir:
            return False
    return path not in side and not any(p.startswith(path + "/") for p in side)


@st.composite
def worlds(draw) -> World:  # type: ignore[no-untyped-def]
    files = draw(st.dictionaries(st.sampled_from(FILES), st.sampled_from(MD5S), max_size=6))
    dirs = tuple(sorted(draw(st.sets(st.sampled_from(FOLDERS), max_size=2))))
    w = agreed(files, dirs)
    for here in (True, False):
        side = w.local if here else w.remote
        for p in sorted(p for p, e in side.items() if not e.is_dir):
            op = draw(st.sampled_from(["keep", "keep", "keep", "edit", "delete", "rename", "touch"]))
            if op == "edit":
                md5 = draw(st.sampled_from(MD5S))
                (edit_local if here else edit_remote)(w, p, md5)
            elif op == "delete":
                (rm_local if here else rm_remote)(w, p)
            elif op == "touch":
                if here:
                    touch_local(w, p)
                else:  # a new etag, same content
                    e = w.remote[p]
                    w.remote[p] = e.__class__(p, False, e.size, e.mtime, f"e{fresh()}", e.md5)
            elif op == "rename":
                q = draw(st.sampled_from(FILES))
                if _fits(side, q):
                    (mv_local if here else mv_remote)(w, p, q)
        if draw(st.booleans()):  # a folder goes, with everything in it
            folder = draw(st.sampled_from(FOLDERS))
            if folder in side and side[folder].is_dir:
                (rm_local if here else rm_remote)(w, folder)
        for _ in range(draw(st.integers(0, 2))):
            q = draw(st.sampled_from(FILES + FOLDERS))
            if _fits(side, q):
                md5 = None if q in FOLDERS and draw(st.booleans()) else draw(st.sampled_from(MD5S))
                (add_local if here else add_remote)(w, q, md5)
        if here and draw(st.integers(0, 9)) == 0:  # a copy with a new file id and mtime
            p = draw(st.sampled_from(FILES))
            if p in side and not side[p].is_dir:
                e = side[p]
                side[p] = LocalEntry(False, e.size, fresh(), fresh(), e.md5)
    if draw(st.integers(0, 9)) == 0:
        w.base.clear()  # a lost journal
    return w


@st.composite
def options(draw) -> Options:  # type: ignore[no-untyped-def]
    mode = draw(st.sampled_from([Mode.SYNC, Mode.SYNC, Mode.SYNC, Mode.PUSH]))
    return Options(
        mode=mode,
        delete=draw(st.booleans()),
        max_delete=draw(st.one_of(st.none(), st.integers(0, 3))),
        max_delete_percent=draw(st.one_of(st.none(), st.sampled_from([10.0, 50.0]))),
        read_only=mode == Mode.SYNC and draw(st.integers(0, 5)) == 0,
        union=draw(st.integers(0, 7)) == 0,
    )


def _excluded_f(path: str, is_dir: bool) -> bool:
    return path == "f" or path.startswith("f/")


TROUBLE = st.sampled_from(["none", "remote-d", "local-d", "exclude-f"])


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), options(), TROUBLE)
def test_random_worlds_keep_every_invariant(world: World, opts: Options, trouble: str) -> None:
    _check_world(world, opts, trouble)


@pytest.mark.slow
@pytest.mark.timeout(2400)
@settings(max_examples=20000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), options(), TROUBLE)
def test_many_random_worlds_keep_every_invariant(world: World, opts: Options, trouble: str) -> None:
    _check_world(world, opts, trouble)


def _check_world(world: World, opts: Options, trouble: str) -> None:
    if not world.base:
        opts = Options(mode=opts.mode, delete=opts.delete, union=True, read_only=opts.read_only)
    check_run(
        world,
        opts,
        failed_remote=frozenset({"d"}) if trouble == "remote-d" else frozenset(),
        failed_local=frozenset({"d"}) if trouble == "local-d" else frozenset(),
        excluded=_excluded_f if trouble == "exclude-f" else None,
    )


@settings(max_examples=300, deadline=None)
@given(worlds(), st.booleans(), st.one_of(st.none(), st.integers(0, 3)))
def test_pull_never_plans_a_server_change(world: World, delete: bool, max_delete: int | None) -> None:
    p = reconcile(world.base, world.local_view(), world.remote_view(), Options(delete=delete, max_delete=max_delete))
    assert not any(a.remote_ops for a in p.actions)
    assert not p.of(Kind.UPLOAD, Kind.UPLOAD_EDIT, Kind.REMOTE_DELETE, Kind.REMOTE_MOVE, Kind.REMOTE_MKDIR)


@settings(max_examples=300, deadline=None)
@given(worlds(), options())
def test_a_changes_only_listing_plans_like_a_full_one(world: World, opts: Options) -> None:
    """A sync-collection REPORT (and a watcher's events) plan like full listings of both sides."""
    full = reconcile(world.base, world.local_view(), world.remote_view(), opts, now=NOW)
    shape = [(a.kind, a.path, a.src, a.conflict_copy) for a in full.actions]
    changes = reconcile(world.base, world.local_view(), world.changes_view(), opts, now=NOW)
    assert shape == [(a.kind, a.path, a.src, a.conflict_copy) for a in changes.actions]
    if "local-empty" not in full.guards:  # only a full walk can tell that DEST is empty
        both = reconcile(world.base, world.local_changes_view(), world.changes_view(), opts, now=NOW)
        assert shape == [(a.kind, a.path, a.src, a.conflict_copy) for a in both.actions]


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_guards_hold_every_deletion_when_tripped(world: World) -> None:
    """Max-delete 0 and a failed listing: whatever the world, nothing is deleted anywhere."""
    p = world.plan(Options(mode=Mode.SYNC, max_delete=0))
    assert not p.of(Kind.DELETE, Kind.REMOTE_DELETE)
    p = world.plan(Options(mode=Mode.SYNC), failed_remote=frozenset({"zz"}))
    assert not p.of(Kind.DELETE, Kind.REMOTE_DELETE, Kind.RMDIR, Kind.REMOTE_RMDIR)


@settings(max_examples=300, deadline=None)
@given(worlds(), st.sampled_from([Mode.SYNC, Mode.PULL]), st.booleans())
def test_a_remount_deletes_nothing_and_downloads_nothing_again(world: World, mode: Mode, changes: bool) -> None:
    """The remount step: the share is swapped for an empty folder (a disk not mounted) and comes
    back. Planned while it is away (a full listing, or the changes a server would report), then
    after: nothing deleted or moved away here, nothing downloaded again, by sync or `pull --delete`."""
    assume(sum(1 for j in world.base.values() if not j.is_dir) > 1)  # (one file gone is that file's deletion)
    opts = Options(mode=mode, delete=True)
    away = world.copy()
    away.remote = {}
    view = away.changes_view() if changes else away.remote_view()
    p = reconcile(away.base, away.local_view(), view, opts, now=NOW)
    assert not p.of(Kind.DELETE, Kind.RMDIR, Kind.RENAME, Kind.CONFLICT), "\n".join(p.explain())
    if mode == Mode.SYNC:
        p = replace(p, actions=[a for a in p.actions if not a.remote_ops])  # (nothing to upload into: a test of here)
    away.remote = dict(world.remote)  # the disk is back, as it was
    away.apply(p)
    back = away.plan(opts)
    unchanged = {
        path for path, j in world.base.items()
        if not j.is_dir and path in world.local and path in world.remote and j.matches_local(world.local[path])
        and (j.remote_etag, j.remote_md5) == (world.remote[path].etag, world.remote[path].md5)
    }  # fmt: skip
    again = {a.path for a in back.of(Kind.DOWNLOAD, Kind.UPDATE, Kind.CONFLICT)} & unchanged
    assert not again, f"downloaded again after the remount: {sorted(again)}"
