"""The pure planner: table tests for every case, and properties that protect data."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from davsync.client.plan import (
    Action,
    JournalEntry,
    Kind,
    LocalEntry,
    Options,
    RemoteEntry,
    plan,
)

MD5_A, MD5_B, MD5_C = "a" * 32, "b" * 32, "c" * 32


def R(md5: str | None = MD5_A, size: int = 10, etag: str = "e1", mtime: float = 1000.0) -> RemoteEntry:
    return RemoteEntry("f", False, size, mtime, etag, md5)


def RD() -> RemoteEntry:
    return RemoteEntry("f", True)


def L(size: int = 10, mtime_ns: int = 1000 * 10**9, ino: int = 7, md5: str | None = None) -> LocalEntry:
    return LocalEntry(False, size, mtime_ns, ino, md5)


def LD() -> LocalEntry:
    return LocalEntry(True)


def J(md5: str | None = MD5_A, remote_md5: str | None = MD5_A, etag: str = "e1", size: int = 10) -> JournalEntry:
    return JournalEntry(False, size, 1000 * 10**9, 7, md5, etag, size, 1000.0, remote_md5)


def JD() -> JournalEntry:
    return JournalEntry(True)


def one(remote=None, journal=None, local=None, **opts) -> Action | None:  # type: ignore[no-untyped-def]
    other = RemoteEntry("other", False, 1, 1.0, "x", MD5_C)  # keeps the remote from looking empty
    p = plan(
        {"f": remote, "other": other} if remote else {"other": other},
        {"f": local, "other": None},
        {"f": journal} if journal else {},
        options=Options(**opts),
    )
    mine = [a for a in p.actions if a.path == "f"]
    assert len(mine) <= 1
    return mine[0] if mine else None


# fmt: off
TABLE = [
    # name,                                   remote,              journal,  local,                  options,          expected
    ("new file",                               R(),                 None,     None,                   {},               Kind.DOWNLOAD),
    ("in sync",                                R(),                 J(),      L(),                    {},               None),
    ("remote changed, local unchanged",        R(MD5_B, etag="e2"), J(),      L(),                    {},               Kind.UPDATE),
    ("same-size same-mtime remote edit (md5)", R(MD5_B),            J(),      L(),                    {},               Kind.UPDATE),
    ("etag moved, md5 same",                   R(etag="e2"),        J(),      L(),                    {},               Kind.REFRESH),
    ("local edited, remote unchanged",         R(),                 J(),      L(size=11, md5=MD5_C),  {},               Kind.LOCAL_MODIFIED),
    ("both changed",                           R(MD5_B, etag="e2"), J(),      L(size=11, md5=MD5_C),  {},               Kind.CONFLICT),
    ("both changed to the same content",       R(MD5_B, etag="e2"), J(),      L(ino=8, md5=MD5_B),    {},               Kind.ADOPT),
    ("local touched, content same",            R(),                 J(),      L(mtime_ns=5, md5=MD5_A), {},             Kind.REFRESH),
    ("local touched, remote changed",          R(MD5_B, etag="e2"), J(),      L(mtime_ns=5, md5=MD5_A), {},             Kind.UPDATE),
    ("deleted locally: restore",               R(),                 J(),      None,                   {},               Kind.DOWNLOAD),
    ("untracked local equals remote",          R(),                 None,     L(md5=MD5_A),           {},               Kind.ADOPT),
    ("untracked local differs",                R(),                 None,     L(md5=MD5_C),           {},               Kind.CONFLICT),
    ("untracked, no server md5, same stat",    R(None),             None,     L(),                    {},               Kind.ADOPT),
    ("untracked, no server md5, other size",   R(None, size=3),     None,     L(),                    {},               Kind.CONFLICT),
    ("no md5: etag changed",                   R(None, etag="e2"),  J(remote_md5=None), L(),          {},               Kind.UPDATE),
    ("no md5: unchanged",                      R(None),             J(remote_md5=None), L(),          {},               None),
    ("remote deleted, kept without --delete",  None,                J(),      L(),                    {},               Kind.KEPT_HERE),
    ("remote deleted, --delete",               None,                J(),      L(),                    {"delete": True}, Kind.DELETE),
    ("remote deleted, local edited",           None,                J(),      L(size=3, md5=MD5_C),   {"delete": True}, Kind.KEPT_HERE),
    ("gone on both sides",                     None,                J(),      None,                   {"delete": True}, Kind.FORGET),
    ("remote folder, nothing local",           RD(),                None,     None,                   {},               Kind.MKDIR),
    ("remote folder, local folder untracked",  RD(),                None,     LD(),                   {},               Kind.REFRESH),
    ("remote folder, tracked",                 RD(),                JD(),     LD(),                   {},               None),
    ("remote folder over local file",          RD(),                None,     L(),                    {},               Kind.CONFLICT),
    ("remote file over local folder",          R(),                 None,     LD(),                   {},               Kind.BLOCKED),
    ("remote folder deleted, --delete",        None,                JD(),     LD(),                   {"delete": True}, Kind.RMDIR),
    ("remote folder deleted, kept",            None,                JD(),     LD(),                   {},               Kind.KEPT_HERE),
]
# fmt: on


@pytest.mark.parametrize("name,remote,journal,local,opts,expected", TABLE, ids=[t[0] for t in TABLE])
def test_table(name, remote, journal, local, opts, expected) -> None:  # type: ignore[no-untyped-def]
    action = one(remote, journal, local, **opts)
    assert (action.kind if action else None) == expected


def test_deletions_skipped_when_a_listing_failed() -> None:
    p = plan({"": RemoteEntry("", True), "x": R()}, {"f": L(), "x": L()}, {"f": J(), "x": J()},
             failed_folders={"sub"}, options=Options(delete=True))  # fmt: skip
    assert not p.of(Kind.DELETE) and p.of(Kind.KEPT_HERE) and p.warnings


def test_nothing_below_a_failed_folder_is_judged() -> None:
    p = plan({}, {"sub/f": L()}, {"sub/f": J()}, failed_folders={"sub"}, options=Options(delete=True))
    assert p.actions == []


def test_empty_remote_with_nonempty_mirror_refuses_deletions() -> None:
    journal = {f"f{i}": J() for i in range(5)}
    local = {p: L() for p in journal}
    p = plan({}, local, journal, options=Options(delete=True))
    assert not p.of(Kind.DELETE) and len(p.of(Kind.KEPT_HERE)) == 5
    assert "empty" in p.warnings[0]


def test_max_delete_refuses_all() -> None:
    journal = {f"f{i}": J() for i in range(5)}
    remote = {"keep": R()}
    local = {p: L() for p in journal}
    assert len(plan(remote, local, journal, options=Options(delete=True, max_delete=5)).of(Kind.DELETE)) == 5
    refused = plan(remote, local, journal, options=Options(delete=True, max_delete=4))
    assert not refused.of(Kind.DELETE) and "--max-delete" in refused.warnings[0]


def test_rmdir_deepest_first() -> None:
    journal = {"a": JD(), "a/b": JD(), "a/b/c": JD()}
    local = {p: LD() for p in journal}
    p = plan({"keep": R()}, local, journal, options=Options(delete=True))
    assert [a.path for a in p.of(Kind.RMDIR)] == ["a/b/c", "a/b", "a"]


# --- properties ------------------------------------------------------------------

md5s = st.sampled_from([MD5_A, MD5_B, None])
remote_files = st.builds(
    lambda md5, size, etag: RemoteEntry("", False, size, 1000.0, etag, md5),
    md5s, st.integers(0, 3), st.sampled_from(["e1", "e2"]),
)  # fmt: skip
locals_ = st.one_of(
    st.none(),
    st.just(LocalEntry(True)),
    st.builds(lambda size, ino, md5: LocalEntry(False, size, 1000 * 10**9, ino, md5),
              st.integers(0, 3), st.integers(1, 2), md5s),
)  # fmt: skip
journals = st.one_of(
    st.none(),
    st.just(JournalEntry(True)),
    st.builds(lambda size, md5, rmd5, etag: JournalEntry(False, size, 1000 * 10**9, 1, md5, etag, size, 1000.0, rmd5),
              st.integers(0, 3), md5s, md5s, st.sampled_from(["e1", "e2"])),
)  # fmt: skip
names = st.sampled_from(["a", "b", "c", "d/e", "d/f"])


@st.composite
def worlds(draw):  # type: ignore[no-untyped-def]
    paths = draw(st.sets(names, max_size=5))
    remote, local, journal = {}, {}, {}
    for p in paths:
        r = draw(st.one_of(st.none(), remote_files))
        if r is not None:
            remote[p] = RemoteEntry(p, r.is_dir, r.size, r.mtime, r.etag, r.md5)
        j = draw(journals)
        if j is not None:
            journal[p] = j
        local[p] = draw(locals_)
    opts = Options(delete=draw(st.booleans()), max_delete=draw(st.one_of(st.none(), st.integers(0, 3))))
    failed = draw(st.sets(st.sampled_from(["d"]), max_size=1))
    return remote, local, journal, opts, failed


def _unchanged(j: JournalEntry, loc: LocalEntry) -> bool:
    if loc.md5 is not None:
        return loc.md5 == j.md5
    return j.matches_local(loc)


@settings(max_examples=1500, deadline=None)
@given(worlds())
def test_properties_that_protect_data(world) -> None:  # type: ignore[no-untyped-def]
    remote, local, journal, opts, failed = world
    p = plan(remote, local, journal, failed_folders=failed, options=opts)
    seen = [a.path for a in p.actions]
    assert len(seen) == len(set(seen)), "a path got two actions"
    deletes = p.of(Kind.DELETE)
    if deletes:
        assert opts.delete and not failed
        assert opts.max_delete is None or len(deletes) <= opts.max_delete
        tracked = sum(1 for j in journal.values() if not j.is_dir)
        # (one tracked file gone is that file's deletion, not a share gone: issue 24 item 5)
        assert any(k for k in remote) or tracked == 1, "deleted while the remote looked empty"
    for a in p.actions:
        j, loc = journal.get(a.path), local.get(a.path)
        if a.kind == Kind.DELETE:
            assert j is not None and loc is not None and _unchanged(j, loc), "deleted a file davsync did not place"
        if a.kind == Kind.UPDATE:
            assert j is not None and loc is not None and _unchanged(j, loc), "overwrote a local edit"
        if a.kind == Kind.DOWNLOAD:
            assert loc is None, "download over an existing file without a conflict copy"
        if j is None and loc is not None and not loc.is_dir:
            assert a.kind in (Kind.ADOPT, Kind.CONFLICT, Kind.BLOCKED), "untracked local file at risk"


@settings(max_examples=800, deadline=None)
@given(worlds())
def test_applying_the_plan_converges(world) -> None:  # type: ignore[no-untyped-def]
    """After doing what the plan says, a second plan has nothing left to transfer."""
    remote, local, journal, opts, _ = world
    p = plan(remote, local, journal, options=opts)
    local, journal = dict(local), dict(journal)
    for a in p.actions:
        r = a.remote
        if a.kind in (Kind.DOWNLOAD, Kind.UPDATE, Kind.CONFLICT, Kind.ADOPT, Kind.REFRESH) and r is not None:
            if r.is_dir:
                local[a.path], journal[a.path] = LocalEntry(True), JournalEntry(True)
            else:
                placed = LocalEntry(False, r.size or 0, 5, 99, None)
                local[a.path] = placed
                journal[a.path] = JournalEntry(False, placed.size, 5, 99, r.md5, r.etag, r.size, r.mtime, r.md5)
        elif a.kind == Kind.MKDIR:
            local[a.path], journal[a.path] = LocalEntry(True), JournalEntry(True)
        elif a.kind in (Kind.DELETE, Kind.FORGET):
            local[a.path] = None
            journal.pop(a.path, None)
    again = plan(remote, local, journal, options=opts)
    assert not again.of(Kind.DOWNLOAD, Kind.UPDATE, Kind.CONFLICT, Kind.MKDIR, Kind.ADOPT), again.actions


def test_in_flight_placement_is_resolved_either_way() -> None:
    """A crash between recording a placement and the rename must not look like a local edit."""
    from dataclasses import replace

    from davsync.client.plan import resolve_in_flight

    old = J(md5=MD5_A)
    new = replace(J(md5=MD5_B, remote_md5=MD5_B, etag="e2"), ino=99, prev=old)
    assert resolve_in_flight(new, L(ino=99)) is new  # the rename happened
    assert resolve_in_flight(new, L()) is old  # it did not: the old file, as davsync placed it
    assert resolve_in_flight(new, L(ino=5, size=3)) is new  # something else: judged against the new entry
    assert resolve_in_flight(new, None) is new
    assert resolve_in_flight(old, L()) is old
