"""The decision table (davsync/client/plan/table.py): every row, in every mode, is built as a real
situation, planned by the core, and the plan's action is the row's cell. The planner consults the
table for it (every row is looked up by at least one mode), every guard trips in its own test, and
the README's "What happens when..." section is the table's own rendering."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from planmodel import (
    World,
    add_local,
    add_remote,
    agreed,
    check_run,
    edit_local,
    edit_remote,
    mv_local,
    mv_remote,
    rm_local,
    rm_remote,
    touch_local,
)

from davsync.client.plan import JournalEntry, Kind, LocalEntry, Mode, Options, Plan, readme, table

M1, M2, M3 = "1" * 32, "2" * 32, "3" * 32
README = Path(__file__).resolve().parent.parent / "README.md"


def _other() -> World:
    """A second file that stays in sync, so no emptiness guard trips on one file's deletion."""
    return agreed({"a": M1, "b": M2})


def _edited_here_equal() -> World:
    w = _other()
    w.base["a"] = replace(w.base["a"], md5=M3)  # the local half of the base differs from the server's content
    touch_local(w, "a")
    return w


def _edited_there_equal() -> World:
    w = _other()
    w.base["a"] = replace(w.base["a"], remote_md5=M3, remote_etag="before")
    touch_local(w, "a")  # (a changed stat: the scan reads the MD5)
    return w


def _with(*steps: Callable[[World], None], start: Callable[[], World] = _other) -> Callable[[], World]:
    def build() -> World:
        w = start()
        for step in steps:
            step(w)
        return w

    return build


def _fresh() -> World:
    return agreed({"b": M2})


def _base_folder_only(local: LocalEntry | None) -> Callable[[], World]:
    """The base knew `a` as a folder; the server no longer has it; `local` stands there now."""

    def build() -> World:
        w = _fresh()
        w.base["a"] = JournalEntry(True)
        if local is not None:
            w.local["a"] = local
        return w

    return build


def _folder_gone(side: str, inside: str | None) -> Callable[[], World]:
    """Folder `d` deleted on `side` (here or there). `inside`: "refilled" (the other side edited
    d/x, so it comes back to the side that deleted the folder), "keeps" (d holds only an excluded
    file, which stays on the other side) or None (d was an empty folder)."""

    def build() -> World:
        if inside == "refilled":
            w = agreed({"d/x": M1, "b": M2})
        elif inside == "keeps":
            w = agreed({"d/keep.tmp": M1, "b": M2})
        else:
            w = agreed({"b": M2}, dirs=("d",))
        (rm_local if side == "here" else rm_remote)(w, "d")
        if inside == "refilled":
            (edit_remote if side == "here" else edit_local)(w, "d/x", M3)
        return w

    return build


def _excluded(path: str, is_dir: bool) -> bool:
    return path.endswith(".tmp")


# Row id -> (how to build the situation, the path whose action the row names[, options]).
SITUATIONS: dict[str, tuple[Callable[[], World], str] | tuple[Callable[[], World], str, dict[str, bool]]] = {
    "in-sync": (_with(lambda w: touch_local(w, "a")), "a"),
    "edited-here": (_with(lambda w: edit_local(w, "a", M3)), "a"),
    "edited-here-equal": (_edited_here_equal, "a"),
    "edited-there": (_with(lambda w: edit_remote(w, "a", M3)), "a"),
    "edited-there-equal": (_edited_there_equal, "a"),
    "edited-both": (_with(lambda w: edit_local(w, "a", M3), lambda w: edit_remote(w, "a", "4" * 32)), "a"),
    "edited-both-equal": (_with(lambda w: edit_local(w, "a", M3), lambda w: edit_remote(w, "a", M3)), "a"),
    "new-both": (_with(lambda w: add_local(w, "a", M1), lambda w: add_remote(w, "a", M3), start=_fresh), "a"),
    "new-both-equal": (_with(lambda w: add_local(w, "a", M1), lambda w: add_remote(w, "a", M1), start=_fresh), "a"),
    "deleted-here": (_with(lambda w: rm_local(w, "a")), "a"),
    "deleted-there": (_with(lambda w: rm_remote(w, "a")), "a"),
    "edited-here-deleted-there": (_with(lambda w: edit_local(w, "a", M3), lambda w: rm_remote(w, "a")), "a"),
    "deleted-here-edited-there": (_with(lambda w: rm_local(w, "a"), lambda w: edit_remote(w, "a", M3)), "a"),
    "deleted-both": (_with(lambda w: rm_local(w, "a"), lambda w: rm_remote(w, "a")), "a"),
    "new-here": (_base_folder_only(LocalEntry(False, 10, 5, 6, M1)), "a"),  # (pull looks only at what it tracks)
    "new-there": (_with(lambda w: add_remote(w, "a", M1), start=_fresh), "a"),
    "forgotten": (_with(lambda w: rm_local(w, "a"), lambda w: rm_remote(w, "a")), "a", {"union": True}),
    "file-here-folder-there": (_with(lambda w: rm_remote(w, "a"), lambda w: add_remote(w, "a/x", M3)), "a"),
    "new-file-here-folder-there": (
        _with(lambda w: add_local(w, "a", M1), lambda w: add_remote(w, "a/x", M3), start=_fresh),
        "a",
    ),
    "folder-here-file-there": (
        _with(lambda w: add_local(w, "a/x", M1), lambda w: add_remote(w, "a", M3), start=_fresh),
        "a",
    ),
    "folder-in-sync": (lambda: agreed({"d/x": M1, "b": M2}), "d"),
    "folder-new-both": (
        _with(lambda w: add_local(w, "d/x", M1), lambda w: add_remote(w, "d/y", M3), start=_fresh),
        "d",
    ),
    "folder-new-here": (_with(lambda w: add_local(w, "d"), start=_fresh), "d"),
    "folder-new-there": (_with(lambda w: add_remote(w, "d"), start=_fresh), "d"),
    "folder-deleted-there-refilled": (_folder_gone("there", "refilled"), "d"),
    "folder-deleted-there-keeps": (_folder_gone("there", "keeps"), "d"),
    "folder-deleted-there": (_folder_gone("there", None), "d"),
    "folder-deleted-here-refilled": (_folder_gone("here", "refilled"), "d"),
    "folder-deleted-here-keeps": (_folder_gone("here", "keeps"), "d"),
    "folder-deleted-here": (_folder_gone("here", None), "d"),
    "folder-deleted-both": (
        _with(lambda w: rm_local(w, "d"), lambda w: rm_remote(w, "d"), start=lambda: agreed({"d/x": M1, "b": M2})),
        "d",
    ),
    "renamed-here": (_with(lambda w: mv_local(w, "a", "c")), "c"),
    "renamed-there": (_with(lambda w: mv_remote(w, "a", "c")), "c"),
    "folder-renamed-here-edited-there": (
        _with(
            lambda w: mv_local(w, "d", "e"),
            lambda w: edit_remote(w, "d/x", M3),
            start=lambda: agreed({"d/x": M1, "b": M2}),
        ),
        "e/x",
    ),
}

COLUMNS = {  # column -> (mode, read-only account)
    "sync": (Mode.SYNC, False),
    "pull": (Mode.PULL, False),
    "push": (Mode.PUSH, False),
    "read-only": (Mode.SYNC, True),
}


def _cases() -> Iterator[tuple[str, str, bool]]:
    for r in table.ROWS:
        for column, d in (("sync", r.sync), ("pull", r.pull), ("push", r.push), ("read-only", r.read_only)):
            if d is table.NEVER:
                continue  # shown as n/a: no situation of this mode reaches it
            yield r.id, column, False
            if d.delete is not None:
                yield r.id, column, True


@contextmanager
def _consulted() -> Iterator[set[str]]:
    """The ids of the rows the planner looks up meanwhile."""
    seen: set[str] = set()
    real = table.cell

    def spy(r: table.Row, mode: Mode, *, read_only: bool = False, delete: bool = False) -> table.Do:
        seen.add(r.id)
        return real(r, mode, read_only=read_only, delete=delete)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(table, "cell", spy)
        yield seen


def _situation(row_id: str, column: str, delete: bool) -> tuple[World, Options, str]:
    build, path, *more = SITUATIONS[row_id]
    mode, read_only = COLUMNS[column]
    return build(), Options(mode=mode, read_only=read_only, delete=delete, **(more[0] if more else {})), path


def _plan(row_id: str, column: str, delete: bool) -> tuple[Plan, str, set[str]]:
    world, options, path = _situation(row_id, column, delete)
    with _consulted() as seen:
        plan = world.plan(options, excluded=_excluded)
    return plan, path, seen


def _kinds_at(plan: Plan, path: str) -> set[Kind]:
    """The actions at the path, or at a folder above it that carries it (a folder MOVE)."""
    above = {path.rsplit("/", i)[0] for i in range(path.count("/") + 1)}
    return {a.kind for a in plan.actions if a.path in above}


def _expected(row_id: str, column: str, delete: bool) -> table.Do:
    r = table.ROW_BY_ID[row_id]
    mode, read_only = COLUMNS[column]
    return table.cell(r, mode, read_only=read_only, delete=delete)


@pytest.mark.parametrize(("row_id", "column", "delete"),
                         [pytest.param(*c, id=f"{c[0]}-{c[1]}{'-delete' if c[2] else ''}") for c in _cases()])  # fmt: skip
def test_row(row_id: str, column: str, delete: bool) -> None:
    plan, path, _seen = _plan(row_id, column, delete)
    want = _expected(row_id, column, delete)
    kinds = _kinds_at(plan, path)
    if want.kind is None:
        assert not {a.kind for a in plan.actions if a.path == path}, plan.explain()
    elif want.kind == Kind.REFRESH and row_id == "folder-in-sync":
        raise AssertionError("an in-sync folder has nothing to refresh")
    else:
        assert want.kind in kinds, plan.explain()
        reasons = {a.reason for a in plan.actions if a.path == path and a.kind == want.kind}
        assert not reasons or any(r.startswith(want.why) for r in reasons), (want.why, reasons)
    # Whatever the cell says, a two-way run keeps every version, records bases only for versions
    # on both sides, and leaves nothing for a second run (tests/planmodel.py applies it in memory;
    # its World models two-way runs, and a folder kept for its excluded content is reported on
    # every run, by design).
    if column != "pull" and not row_id.endswith("-keeps"):
        world, options, _path = _situation(row_id, column, delete)
        check_run(world, options, excluded=_excluded)


def test_every_row_has_a_situation_and_is_consulted_by_the_planner() -> None:
    assert set(SITUATIONS) == set(table.ROW_BY_ID)
    consulted: set[str] = set()
    for row_id, column, delete in _cases():
        _plan_, _path, seen = _plan(row_id, column, delete)
        if row_id in seen:
            consulted.add(row_id)
    assert consulted == set(table.ROW_BY_ID), set(table.ROW_BY_ID) - consulted


def test_rows_are_unique_and_their_ids_stable_words() -> None:
    assert len(table.ROW_BY_ID) == len(table.ROWS)
    keys = [(r.what, r.here, r.there, r.also) for r in table.ROWS]
    assert len(set(keys)) == len(keys), "two rows for one situation"
    assert all(r.id == r.id.lower() and " " not in r.id for r in table.ROWS)


def test_a_situation_outside_the_table_is_an_error_not_a_guess() -> None:
    with pytest.raises(KeyError, match="no rule"):
        table.row("file", table.Change.NEW, table.Change.DELETED)


# --- guards ----------------------------------------------------------------------------------


def _guard_world(guard: str) -> tuple[World, Options, dict[str, object]]:
    w = agreed({"a": M1, "b": M2, "c": M3}, dirs=("f",))
    kw: dict[str, object] = {}
    opts = Options(mode=Mode.SYNC)
    if guard == "failed-listing":
        rm_remote(w, "a")
        rm_local(w, "b")
        kw = {"failed_remote": frozenset({"f"})}
    elif guard == "remote-empty":
        for p in ("a", "b", "c", "f"):
            rm_remote(w, p)
    elif guard == "local-empty":
        for p in ("a", "b", "c", "f"):
            rm_local(w, p)
    elif guard == "max-delete-local":
        rm_remote(w, "a")
        rm_remote(w, "b")
        opts = replace(opts, max_delete=1)
    elif guard == "max-delete-remote":
        rm_local(w, "a")
        rm_local(w, "b")
        opts = replace(opts, max_delete=1)
    elif guard == "union":
        rm_local(w, "a")
        rm_remote(w, "b")
        opts = replace(opts, union=True)
    elif guard == "excluded":
        rm_local(w, "a")
        kw = {"excluded": lambda p, is_dir: p == "a"}
    return w, opts, kw


@pytest.mark.parametrize("guard", [g.id for g in table.GUARDS])
def test_guard(guard: str) -> None:
    w, opts, kw = _guard_world(guard)
    plan = w.plan(opts, **kw)  # type: ignore[arg-type]
    deletions = table.LOCAL_DELETIONS | table.REMOTE_DELETIONS
    assert not plan.of(*deletions), plan.explain()
    g = table.GUARD_BY_ID[guard]
    if guard == "union":
        assert plan.reset_journal and {a.path: a.kind for a in plan.actions if a.path in "ab"} == {
            "a": Kind.DOWNLOAD,
            "b": Kind.UPLOAD,
        }
    elif guard == "excluded":
        assert not [a for a in plan.actions if a.path == "a"]
    else:
        assert guard in plan.guards
        held = plan.of(Kind.KEPT_HERE, Kind.KEPT_ON_SERVER)
        assert held and all(g.reason.format(limit=1) in a.reason for a in held), plan.explain()
        sides = {Kind.KEPT_HERE: "here", Kind.KEPT_ON_SERVER: "server"}
        assert {sides[a.kind] for a in held} <= ({"here", "server"} if g.holds == "both" else {g.holds})
        assert plan.refused_deletions == len(held)


# --- the README ------------------------------------------------------------------------------


def test_the_readme_section_is_the_table() -> None:
    text = README.read_text(encoding="utf-8")
    start, end = text.find(readme.BEGIN), text.find(readme.END)
    assert start >= 0 and end > start, "README.md lacks the decision-table markers"
    assert text[start : end + len(readme.END)] == readme.markdown(), (
        "README.md's decision table is stale: run `python -m davsync.client.plan --markdown`"
    )


def test_the_readme_writer_replaces_only_its_section(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text(f"intro\n\n{readme.BEGIN}\nold\n{readme.END}\n\noutro\n", encoding="utf-8")
    assert readme.write_readme(path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("intro\n\n") and text.endswith("\n\noutro\n") and readme.markdown() in text
    assert not readme.write_readme(path)  # a second run changes nothing
