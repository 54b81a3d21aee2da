"""`davsync sync` and `davsync push` end to end (issue 12): a real server, the client as its own
process, a phone (curl) as a third writer, and every invariant checked after every scenario
(tests/synchelp.py: nothing lost, convergence, a no-op second run, no partial file, honest bases).

The change table runs two ways: all rows at once in one world, each row in its own folder (the
default suite: one settle, one sync, one no-op run), and each row alone with its own exit status
and request counts (`slow`). The other scenarios (guards, races, kills, faults) are their own tests.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import KILLED, kill_hard
from synchelp import DIR, Exchange, Run, SyncWorld, conflict_copies, files_only, md5, read_journal

# --- the change table -------------------------------------------------------------------------

Op = tuple[str, ...]  # ("w", path, text) write, ("rm", path), ("mv", src, dst), ("md", path),
# ("touch", path) a new mtime only (local), ("same", path) the same content again (server: new etag)


@dataclass
class Row:
    id: str
    before: dict[str, str | None]  # agreed on both sides first (None: a folder)
    local: list[Op] = field(default_factory=list)
    remote: list[Op] = field(default_factory=list)
    after: dict[str, str | None] | None = None  # both sides afterwards, conflict copies aside (None: not asserted)
    copies: dict[str, str | None] = field(default_factory=dict)  # path -> text of its one conflict copy
    code: tuple[int, ...] = (0,)
    reqs: dict[str, int] = field(default_factory=dict)  # method -> exact count in this row's folder
    check: Callable[[list[Exchange], str], None] | None = None
    bug: str | None = None  # an engine bug: the row is left out of the batch and xfails alone

    def text(self, t: str) -> bytes:
        """Contents are unique per row, so no row can look like a rename of another's file."""
        return f"{self.id}: {t}\n".encode()


def _new_file_put(reqs: list[Exchange], prefix: str) -> None:
    puts = [ex for ex in reqs if ex.method == "PUT"]
    assert puts and all(ex.headers.get("if-none-match") == "*" for ex in puts), "a new file's PUT without If-None-Match: *"
    assert all(ex.headers.get("oc-checksum", "").lower().startswith("md5:") for ex in puts), "a PUT without OC-Checksum"


def _edit_put(reqs: list[Exchange], prefix: str) -> None:
    puts = [ex for ex in reqs if ex.method == "PUT"]
    assert len(puts) == 1 and puts[0].headers.get("if-match"), "an edit's PUT without If-Match"
    assert "if-none-match" not in puts[0].headers


def _conditional_delete(reqs: list[Exchange], prefix: str) -> None:
    dels = [ex for ex in reqs if ex.method == "DELETE"]
    assert dels and all(ex.headers.get("if-match") for ex in dels if not ex.path.endswith("folder")), "a DELETE without If-Match"


NO_TRANSFER = {"PUT": 0, "GET": 0, "MOVE": 0, "DELETE": 0, "MKCOL": 0}
A, B = "a.txt", "b.txt"

ROWS = [
    # one side changes
    Row("local-new", {A: "a"}, local=[("w", "new.txt", "n")], after={A: "a", "new.txt": "n"},
        reqs={"PUT": 1, "GET": 0}, check=_new_file_put),
    Row("local-edit", {A: "a"}, local=[("w", A, "a2")], after={A: "a2"}, reqs={"PUT": 1, "GET": 0}, check=_edit_put),
    Row("local-delete", {A: "a", B: "b"}, local=[("rm", A)], after={B: "b"}, reqs={"DELETE": 1, "PUT": 0, "GET": 0},
        check=_conditional_delete),
    Row("local-new-folder", {A: "a"}, local=[("w", "sub/deeper/n.txt", "n")],
        after={A: "a", "sub": None, "sub/deeper": None, "sub/deeper/n.txt": "n"}, reqs={"MKCOL": 2, "PUT": 1}),
    Row("local-empty-folder", {A: "a"}, local=[("md", "empty")], after={A: "a", "empty": None}, reqs={"MKCOL": 1, "PUT": 0}),
    Row("local-folder-delete", {A: "a", "f/x.txt": "x", "f/y.txt": "y"}, local=[("rm", "f")], after={A: "a"},
        reqs={"PUT": 0, "GET": 0}),
    Row("local-touch-only", {A: "a"}, local=[("touch", A)], after={A: "a"}, reqs=NO_TRANSFER),
    Row("local-empty-file", {A: "a"}, local=[("w", "zero", "")], after={A: "a", "zero": ""}, reqs={"PUT": 1}),
    Row("remote-new", {A: "a"}, remote=[("w", "new.txt", "n")], after={A: "a", "new.txt": "n"},
        reqs={"GET": 1, "PUT": 0}),
    Row("remote-edit", {A: "a"}, remote=[("w", A, "a2")], after={A: "a2"}, reqs={"GET": 1, "PUT": 0}),
    Row("remote-delete", {A: "a", B: "b"}, remote=[("rm", A)], after={B: "b"}, reqs=NO_TRANSFER),
    Row("remote-new-folder", {A: "a"}, remote=[("w", "sub/n.txt", "n")], after={A: "a", "sub": None, "sub/n.txt": "n"},
        reqs={"GET": 1, "PUT": 0, "MKCOL": 0}),
    Row("remote-empty-folder", {A: "a"}, remote=[("md", "empty")], after={A: "a", "empty": None}, reqs=NO_TRANSFER),
    Row("remote-folder-delete", {A: "a", "f/x.txt": "x", "f/y.txt": "y"}, remote=[("rm", "f")], after={A: "a"},
        reqs=NO_TRANSFER),
    Row("remote-same-content", {A: "a"}, remote=[("same", A)], after={A: "a"}, reqs=NO_TRANSFER),
    # both sides
    Row("both-new-identical", {A: "a"}, local=[("w", "n.txt", "same")], remote=[("w", "n.txt", "same")],
        after={A: "a", "n.txt": "same"}, reqs=NO_TRANSFER),
    Row("both-edit-identical", {A: "a"}, local=[("w", A, "same")], remote=[("w", A, "same")], after={A: "same"},
        reqs=NO_TRANSFER),
    Row("both-new-different", {A: "a"}, local=[("w", "n.txt", "mine")], remote=[("w", "n.txt", "theirs")],
        after={A: "a", "n.txt": "theirs"}, copies={"n.txt": "mine"}, code=(3,)),
    Row("both-edit-different", {A: "a"}, local=[("w", A, "mine")], remote=[("w", A, "theirs")], after={A: "theirs"},
        copies={A: "mine"}, code=(3,)),
    Row("both-delete", {A: "a", B: "b"}, local=[("rm", A)], remote=[("rm", A)], after={B: "b"}, reqs=NO_TRANSFER),
    Row("local-edit-remote-delete", {A: "a", B: "b"}, local=[("w", A, "kept")], remote=[("rm", A)],
        after={A: "kept", B: "b"}, code=(0, 3), reqs={"PUT": 1, "DELETE": 0}),
    Row("remote-edit-local-delete", {A: "a", B: "b"}, local=[("rm", A)], remote=[("w", A, "kept")],
        after={A: "kept", B: "b"}, code=(0, 3), reqs={"GET": 1, "DELETE": 0}),
    Row("local-folder-delete-remote-add", {"f/x.txt": "x", B: "b"}, local=[("rm", "f")], remote=[("w", "f/new.txt", "new")],
        after={"f": None, "f/new.txt": "new", B: "b"}, code=(0, 3)),
    Row("remote-folder-delete-local-add", {"f/x.txt": "x", B: "b"}, local=[("w", "f/new.txt", "new")], remote=[("rm", "f")],
        after={"f": None, "f/new.txt": "new", B: "b"}, code=(0, 3)),
    # renames and moves
    Row("local-rename", {A: "a", B: "b"}, local=[("mv", A, "renamed.txt")], after={"renamed.txt": "a", B: "b"},
        reqs={"MOVE": 1, "PUT": 0, "GET": 0, "DELETE": 0}),
    Row("local-move-to-folder", {A: "a", "f/x.txt": "x"}, local=[("mv", A, "f/a.txt")],
        after={"f": None, "f/a.txt": "a", "f/x.txt": "x"}, reqs={"MOVE": 1, "PUT": 0, "GET": 0, "DELETE": 0}),
    Row("local-folder-rename", {A: "a", "f/x.txt": "x", "f/g/y.txt": "y"}, local=[("mv", "f", "h")],
        after={A: "a", "h": None, "h/x.txt": "x", "h/g": None, "h/g/y.txt": "y"}, reqs={"MOVE": 1, "PUT": 0, "GET": 0, "DELETE": 0}),
    Row("local-case-rename", {"photo.jpg": "p", B: "b"}, local=[("mv", "photo.jpg", "Photo.JPG")], after={"Photo.JPG": "p", B: "b"},
        reqs={"MOVE": 1, "PUT": 0, "GET": 0, "DELETE": 0}),
    Row("local-rename-and-edit", {A: "a", B: "b"}, local=[("mv", A, "c.txt"), ("w", "c.txt", "edited")],
        after={"c.txt": "edited", B: "b"}, reqs={"GET": 0}),
    Row("remote-rename", {A: "a", B: "b"}, remote=[("mv", A, "renamed.txt")], after={"renamed.txt": "a", B: "b"}, reqs=NO_TRANSFER),
    Row("remote-move-to-folder", {A: "a", "f/x.txt": "x"}, remote=[("mv", A, "f/a.txt")],
        after={"f": None, "f/a.txt": "a", "f/x.txt": "x"}, reqs=NO_TRANSFER),
    Row("remote-folder-rename", {A: "a", "f/x.txt": "x", "f/g/y.txt": "y"}, remote=[("mv", "f", "h")],
        after={A: "a", "h": None, "h/x.txt": "x", "h/g": None, "h/g/y.txt": "y"}, reqs=NO_TRANSFER),
    Row("remote-case-rename", {"photo.jpg": "p", B: "b"}, remote=[("mv", "photo.jpg", "Photo.JPG")],
        after={"Photo.JPG": "p", B: "b"}, reqs=NO_TRANSFER),
    Row("both-same-rename", {A: "a", B: "b"}, local=[("mv", A, "c.txt")], remote=[("mv", A, "c.txt")],
        after={"c.txt": "a", B: "b"}, reqs=NO_TRANSFER),
    Row("local-rename-remote-edit", {A: "a", B: "b"}, local=[("mv", A, "c.txt")], remote=[("w", A, "a2")], code=(0, 3)),
    Row("remote-rename-local-edit", {A: "a", B: "b"}, local=[("w", A, "a2")], remote=[("mv", A, "c.txt")], code=(0, 3)),
    Row("both-rename-different", {A: "a", B: "b"}, local=[("mv", A, "mine.txt")], remote=[("mv", A, "theirs.txt")], code=(0, 3)),
    # folder against file
    Row("local-file-remote-folder", {A: "a"}, local=[("w", "x", "file")], remote=[("w", "x/in.txt", "in")],
        after={A: "a", "x": None, "x/in.txt": "in"}, copies={"x": "file"}, code=(3,)),
    Row("local-folder-remote-file", {A: "a"}, local=[("w", "y/in.txt", "in")], remote=[("w", "y", "file")],
        after={A: "a", "y": "file"}, copies={"y": None}, code=(3,)),
    Row("unicode-names", {"naïve.txt": "n"}, local=[("w", "日本語 ü.txt", "j")], remote=[("w", "café #1.txt", "c")],
        after={"naïve.txt": "n", "日本語 ü.txt": "j", "café #1.txt": "c"}),
]


def _apply(world: SyncWorld, row: Row, prefix: str) -> None:
    for op, *args in row.local:
        p = [prefix + a for a in args[: 2 if op == "mv" else 1]]
        if op == "w":
            world.write(p[0], row.text(args[1]) if args[1] else b"")
        elif op == "rm":
            world.rm(p[0])
        elif op == "mv":
            world.mv(p[0], p[1])
        elif op == "md":
            world.mkdir(p[0])
        elif op == "touch":
            t = os.stat(world.dest / p[0]).st_mtime + 7
            os.utime(world.dest / p[0], (t, t))
    for op, *args in row.remote:
        p = [prefix + a for a in args[: 2 if op == "mv" else 1]]
        if op == "w":
            world.rput(p[0], row.text(args[1]) if args[1] else b"")
        elif op == "rm":
            world.rrm(p[0])
        elif op == "mv":
            world.rmv(p[0], p[1])
        elif op == "md":
            world.rmkdir(p[0])
        elif op == "same":
            world.rput(p[0], (world.root / p[0]).read_bytes())


def _seed(world: SyncWorld, rows: list[Row], prefix: Callable[[Row], str]) -> None:
    files: dict[str, bytes | str] = {f"ballast/b{i}.txt": f"ballast {i}" for i in range(10)}
    dirs = []
    for row in rows:
        for rel, text in row.before.items():
            if text is None:
                dirs.append(prefix(row) + rel)
            else:
                files[prefix(row) + rel] = row.text(text)
    world.seed(files, dirs)


def _row_problems(world: SyncWorld, row: Row, prefix: str, run: Run) -> list[str]:
    problems = []
    share, dest = world.share_tree(), world.dest_tree()
    folder = prefix.rstrip("/")

    def mine(t: dict[str, str]) -> dict[str, str]:
        return {k[len(prefix) :]: v for k, v in t.items() if k.startswith(prefix)}

    s, d = mine(share), mine(dest)
    for side, t in (("share", s), ("DEST", d)):
        copies = conflict_copies(t)
        plain = {k: v for k, v in t.items() if not any(k == c or k.startswith(c + "/") for c in copies)}
        if row.after is not None:
            want = {k: DIR if v is None else md5(row.text(v) if v else b"") for k, v in row.after.items()}
            if plain != want:
                problems.append(f"{row.id}: {side} holds {sorted(plain.items())}, expected {sorted(want.items())}")
        for of, text in row.copies.items():
            found = conflict_copies(t, of)
            want_v = DIR if text is None else md5(row.text(text))
            if [v for v in found.values()] != [want_v]:
                problems.append(f"{row.id}: {side} should hold one conflict copy of {of} ({want_v}), holds {found}")
        if not row.copies and copies:
            problems.append(f"{row.id}: an unexpected conflict copy in {side}: {sorted(copies)}")
    reqs = [ex for ex in run.requests
            if ex.path == folder or ex.path.startswith(prefix) or (ex.destination or "").startswith(prefix)]  # fmt: skip
    for method, n in row.reqs.items():
        got = [str(ex) for ex in reqs if ex.method == method]
        if len(got) != n:
            problems.append(f"{row.id}: expected {n} {method}, the client sent {got}")
    if row.check is not None:
        try:
            row.check(reqs, prefix)
        except AssertionError as e:
            problems.append(f"{row.id}: {e}")
    return problems


def local_case_renames_work(folder: Path) -> bool:
    """Can a local rename change only the letter case? Real Windows can; wine on a case-sensitive
    Linux filesystem cannot (it leaves `photo.jpg` as it was)."""
    probe = folder / "case-probe.tmp"
    probe.write_bytes(b"")
    probe.rename(folder / "CASE-PROBE.TMP")
    works = "CASE-PROBE.TMP" in os.listdir(folder)
    (folder / "CASE-PROBE.TMP").unlink()
    return works


def test_change_table_all_rows_at_once(world: SyncWorld, tmp_path: Path) -> None:
    """Every row of the table, each in its own folder, in one sync: per-row outcomes and requests."""
    rows = [r for r in ROWS if r.bug is None]
    if not local_case_renames_work(tmp_path):  # the row is left out here, said in the output (-rs shows no reason)
        rows = [r for r in rows if r.id != "local-case-rename"]
        print("local-case-rename left out: this filesystem cannot rename only the letter case (wine)")
    _seed(world, rows, lambda r: f"{r.id}/")
    world.settle()
    for row in rows:
        _apply(world, row, f"{row.id}/")
    run = world.sync()
    assert run.code == max(max(r.code) for r in rows), run
    problems = [p for row in rows for p in _row_problems(world, row, f"{row.id}/", run)]
    assert not problems, "\n".join(problems) + f"\n{run}"
    world.check(run, converged=True, second_codes=(0,))


@pytest.mark.slow
@pytest.mark.parametrize("row", [pytest.param(r, id=r.id, marks=[pytest.mark.xfail(strict=True, reason=r.bug)] if r.bug else [])
                                 for r in ROWS])  # fmt: skip
def test_change_table_row_alone(world: SyncWorld, row: Row) -> None:
    """One row alone in its share (beside ballast): its own exit status and requests."""
    prefix = f"{row.id}/"
    _seed(world, [row], lambda r: prefix)
    world.settle()
    _apply(world, row, prefix)
    run = world.sync()
    assert run.code in row.code, run
    problems = _row_problems(world, row, prefix, run)
    assert not problems, "\n".join(problems) + f"\n{run}"
    world.check(run, converged=True, second_codes=(0,))


# --- helpers for the scenarios below ----------------------------------------------------------


def agreed(world: SyncWorld, n: int = 10, folder: str = "docs", extra: dict[str, bytes | str] | None = None) -> dict[str, bytes]:
    """n files (plus `extra`) on the share, synced into DEST: both sides and the journal agree."""
    files: dict[str, bytes] = {f"{folder}/f{i:02}.txt": f"{folder} file {i}\n".encode() for i in range(n)}
    files.update({k: v.encode() if isinstance(v, str) else v for k, v in (extra or {}).items()})
    world.seed(dict(files))
    world.settle()
    return files


def no_deletions(run: Run) -> None:
    assert not run.of("DELETE"), f"a deletion reached the server: {run.of('DELETE')}"


def trashed(world: SyncWorld) -> list[str]:
    trash = world.dest / ".davsync" / "trash"
    return sorted(p.name for p in trash.rglob("*") if p.is_file()) if trash.exists() else []


def clean_message(run: Run) -> None:
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout, run


# --- deletion guards ---------------------------------------------------------------------------

HELD_EXIT_3 = "deletions a guard held are refused deletions: exit 3"


def test_guard_dest_emptied_deletes_nothing_on_the_server(world: SyncWorld) -> None:
    """An emptied DEST (a drive unplugged under the folder) while the journal is not empty."""
    files = agreed(world)
    for rel in files:
        world.rm(rel)
    run = world.sync()
    no_deletions(run)
    clean_message(run)
    assert "unplugged" in " ".join(run.json.get("warnings", [])), run
    assert files_only(world.share_tree()) == {k: md5(v) for k, v in files.items()}
    again = world.check(run, converged=False, second_codes=(0, 3))
    assert run.code == 3 and again is not None and again.code == 3, HELD_EXIT_3


@pytest.mark.slow
def test_guard_dest_missing_deletes_nothing_on_the_server(world: SyncWorld) -> None:
    files = agreed(world)
    import shutil

    shutil.rmtree(world.dest)
    run = world.sync()
    no_deletions(run)
    clean_message(run)
    assert files_only(world.share_tree()) == {k: md5(v) for k, v in files.items()}
    world.check(run, journal="strict" if run.code == 0 else "off")


@pytest.mark.slow
def test_guard_server_empty_deletes_nothing_here(world: SyncWorld) -> None:
    """The share lists empty (the Pi's disk not mounted) while the journal is not."""
    files = agreed(world)
    import shutil

    shutil.rmtree(world.root / "docs")
    world.wait_indexed()
    run = world.sync()
    clean_message(run)
    assert files_only(world.dest_tree()) == {k: md5(v) for k, v in files.items()}
    assert not trashed(world)
    again = world.check(run, converged=False, journal="off", second_codes=(0, 3))
    assert run.code == 3 and again is not None and again.code == 3, HELD_EXIT_3


@pytest.mark.slow
@pytest.mark.parametrize("side,limit", [("local", "3"), ("local", "30%"), ("remote", "3"), ("remote", "30%"), ("local", None),
                                        ("remote", None)])  # fmt: skip
def test_guard_max_delete(world: SyncWorld, side: str, limit: str | None) -> None:
    """4 of 10 deletions against a limit of 3 or 30%; 6 of 10 against the default 50%."""
    files = agreed(world)
    gone = sorted(files)[: 4 if limit else 6]
    for rel in gone:
        world.rm(rel) if side == "local" else world.rrm(rel)
    args = ("--max-delete", limit) if limit else ()
    run = world.sync(*args)
    assert run.code == 3, f"{HELD_EXIT_3}\n{run}"
    assert "Deletions refused" in " ".join(run.json.get("warnings", [])), run
    clean_message(run)
    no_deletions(run)
    if side == "local":
        assert all((world.root / rel).exists() for rel in gone), "the server lost files despite --max-delete"
    else:
        assert all((world.dest / rel).exists() for rel in gone) and not trashed(world), "DEST lost files despite --max-delete"
    world.check(run, converged=False, args=args, second_codes=(3,), journal="off")
    allowed = world.sync("--max-delete", "100%")
    assert allowed.code == 0, allowed
    if side == "local":
        assert len(allowed.of("DELETE")) == len(gone)
    else:
        assert len(trashed(world)) == len(gone)
    world.check(allowed, args=("--max-delete", "100%"))


@pytest.mark.slow
def test_guard_renames_do_not_count_as_deletions(world: SyncWorld) -> None:
    """A folder of 8 files renamed (of 10 tracked) is no deletion: the limit is not tripped."""
    agreed(world, n=8, extra={"x.txt": "x", "y.txt": "y"})
    world.mv("docs", "papers")
    run = world.sync("--max-delete", "1")
    assert run.code == 0, run
    assert len(run.of("MOVE")) == 1 and not run.of("PUT") and not run.of("DELETE"), run
    world.check(run, args=("--max-delete", "1"))


@pytest.mark.slow
def test_guard_failed_listing_freezes_deletions(world: SyncWorld) -> None:
    """The server cannot list one folder: no deletion anywhere; the rest still syncs."""
    from synchelp import INVALID_TOKEN, canned

    files = agreed(world, extra={"other/o1.txt": "o1", "other/o2.txt": "o2", "other/o3.txt": "o3"})
    assert world.proxy is not None
    world.rm("docs/f00.txt")  # a local deletion elsewhere: must wait
    world.rrm("other/o1.txt")  # a server deletion: must wait
    world.write("new-here.txt", "uploaded anyway")
    world.proxy.on("REPORT", respond=INVALID_TOKEN, times=100)  # no change list: the client walks
    world.proxy.on("PROPFIND", lambda p: p == "docs", respond=canned(503, "Service Unavailable"), times=1000)
    run = world.sync()
    assert run.code not in (0,), run
    clean_message(run)
    no_deletions(run)
    assert (world.root / "docs" / "f00.txt").exists() and (world.dest / "other" / "o1.txt").exists() and not trashed(world)
    world.check(run, converged=False, second=False, journal="loose")
    world.proxy.clear_triggers()
    healed = world.sync()
    assert healed.code == 0, healed
    assert not (world.root / "docs" / "f00.txt").exists() and not (world.dest / "other" / "o1.txt").exists()
    world.check(healed)
    _ = files


def test_lost_journal_is_union_only(world: SyncWorld) -> None:
    """DEST/.davsync lost: nothing is deleted on either side, differences become conflict copies."""
    agreed(world)
    world.write("docs/f00.txt", "edited here")
    world.rput("docs/f01.txt", "edited there")
    world.rm("docs/f02.txt")
    world.rrm("docs/f03.txt")
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (world.dest / ".davsync" / name).unlink(missing_ok=True)
    run = world.sync()
    assert run.code == 3, run
    no_deletions(run)
    share = world.share_tree()
    assert "docs/f02.txt" in share and "docs/f03.txt" in share, "a deletion went through without a journal"
    assert conflict_copies(share, "docs/f00.txt") or conflict_copies(share, "docs/f01.txt"), run
    world.check(run, converged=True, second_codes=(0,))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["new-identity", "restored-backup"])
def test_changed_server_identity_is_union_only(world: SyncWorld, tmp_path: Path, how: str) -> None:
    """The server comes back with a new index (a reinstall), or restored from an older backup:
    the base cannot be trusted, so nothing is deleted and differences are kept as copies."""
    import shutil

    agreed(world)
    backup = tmp_path / "backup"
    shutil.copytree(world.root, backup)
    world.rput("docs/f05.txt", "edited on the share after the backup")
    world.rput("docs/late.txt", "created after the backup")
    world.settle()
    world.write("docs/f00.txt", "edited here")
    world.rm("docs/f02.txt")
    world.stop_server()
    if how == "restored-backup":
        shutil.rmtree(world.root)
        shutil.copytree(backup, world.root)
    world.start_server(state_dir=tmp_path / f"state-{how}")
    run = world.sync()
    assert run.code in (0, 3), run
    no_deletions(run)
    assert not trashed(world), "a local file went to the trash after the server changed identity"
    assert (world.dest / "docs" / "late.txt").exists()
    if how == "restored-backup":
        assert (world.root / "docs" / "late.txt").exists(), "a file newer than the backup was not put back"
    world.check(run, converged=True, second_codes=(0,))


@pytest.mark.slow
def test_newly_excluded_paths_are_left_alone(world: SyncWorld) -> None:
    agreed(world, extra={"cache/c1.bin": "c1", "cache/c2.bin": "c2"})
    world.rm("cache")  # the user stops syncing cache/ and clears it here
    world.rput("cache/c3.bin", "new on the share")
    run = world.sync("--exclude", "cache/")
    assert run.code == 0, run
    no_deletions(run)
    assert (world.root / "cache" / "c1.bin").exists() and not (world.dest / "cache").exists()
    world.check(run, args=("--exclude", "cache/"), ignore=lambda rel: rel == "cache" or rel.startswith("cache/"))


@pytest.mark.slow
def test_excluded_files_never_travel(world: SyncWorld) -> None:
    agreed(world)
    world.write("docs/scratch.tmp", "local scratch")
    world.rput("docs/phone.tmp", "phone scratch")
    world.write("docs/kept.txt", "kept")
    run = world.sync("--exclude", "*.tmp")
    assert run.code == 0, run
    assert not (world.root / "docs" / "scratch.tmp").exists() and not (world.dest / "docs" / "phone.tmp").exists()
    assert (world.root / "docs" / "kept.txt").exists()
    assert not [ex for ex in run.transfers if ex.path.endswith(".tmp")], run
    world.check(run, args=("--exclude", "*.tmp"), ignore=lambda rel: rel.endswith(".tmp"))


@pytest.mark.slow
def test_windows_forbidden_names_from_the_server(world: SyncWorld) -> None:
    """--name-rules windows: names Windows cannot hold are reported and skipped, never deleted
    on the server (they are missing here because they cannot exist here)."""
    bad = ["docs/what?.txt", "docs/CON.txt", "docs/a:b.txt", "docs/trailing."]
    world.seed({**{rel: f"bad {rel}" for rel in bad}, "docs/good.txt": "good"})
    run = world.sync("--name-rules", "windows")
    assert run.code == 3, run
    assert {s["path"] for s in run.json.get("skipped", [])} >= set(bad), run
    clean_message(run)
    world.write("docs/local.txt", "from here")
    again = world.sync("--name-rules", "windows")
    assert again.code == 3, f"names skipped earlier must stay reported in an incremental run\n{again}"
    no_deletions(again)
    assert all((world.root / rel).exists() for rel in bad)
    assert (world.root / "docs" / "local.txt").exists()
    world.check(again, converged=True, args=("--name-rules", "windows"), second_codes=(3,), ignore=lambda rel: rel in bad)


@pytest.mark.slow
def test_read_only_account_behaves_as_pull(world: SyncWorld) -> None:
    world.seed({"docs/a.txt": "a", "docs/b.txt": "b"})
    first = world.sync(user="bob")
    assert first.code in (0, 3), first
    world.write("docs/a.txt", "edited here")
    world.write("docs/mine.txt", "new here")
    world.rm("docs/b.txt")
    world.rput("docs/c.txt", "new there")
    run = world.sync(user="bob")
    assert run.code in (0, 3), run  # (the contract leaves it open; today 0, as pull with local edits)
    clean_message(run)
    assert not [ex for ex in run.requests if ex.method in ("PUT", "DELETE", "MOVE", "MKCOL", "COPY", "PROPPATCH")], run
    assert (world.dest / "docs" / "c.txt").exists(), "a read-only sync did not pull"
    assert (world.dest / "docs" / "a.txt").read_bytes() == b"edited here" and (world.dest / "docs" / "mine.txt").exists()
    assert (world.root / "docs" / "b.txt").exists()
    assert "read-only" in (run.stdout + run.stderr).lower() or run.json.get("warnings"), run
    world.check(run, converged=False, journal="loose", second_codes=(0, 3), user="bob")


@pytest.mark.slow
def test_sync_adopts_a_dest_made_by_pull(world: SyncWorld) -> None:
    world.seed({f"p/f{i}.txt": f"pulled {i}" for i in range(8)} | {"p/sub/x.txt": "x"})
    first = world.pull()
    assert first.code == 0, first
    run = world.sync()
    assert run.code == 0, run
    assert not run.transfers, f"sync re-transferred a pulled DEST: {run.transfers}"
    world.write("p/f1.txt", "edited after the pull")
    edit = world.sync()
    assert edit.code == 0 and len(edit.of("PUT")) == 1 and not edit.of("GET"), edit
    world.check(edit)


@pytest.mark.slow
def test_dry_run_changes_nothing(world: SyncWorld) -> None:
    agreed(world)
    world.write("docs/f00.txt", "edited here")
    world.rput("docs/f01.txt", "edited there")
    world.rm("docs/f02.txt")
    world.write("docs/new.txt", "new")
    before = (world.share_tree(), world.dest_tree())
    run = world.sync("--dry-run")
    assert run.code in (0, 1, 3), run
    assert not run.transfers, run
    assert (world.share_tree(), world.dest_tree()) == before
    real = world.sync()
    assert real.code == 0, real
    world.check(real)


# --- a third writer during a run (the phone races the client) ----------------------------------


def _race(world: SyncWorld, method: str, path: str, phone: Callable[[], object]) -> None:
    """The phone acts at the instant the client's request reaches the proxy (before the server)."""
    assert world.proxy is not None
    world.proxy.on(method, path, action=lambda ex: phone())


def test_race_edit_against_phone_edit_is_a_conflict(world: SyncWorld) -> None:
    agreed(world)
    world.write("docs/f00.txt", "edited here")
    _race(world, "PUT", "docs/f00.txt", lambda: world.phone.put("docs/f00.txt", b"edited by the phone"))
    run = world.sync()
    assert run.code == 3, run
    assert any(ex.status == 412 for ex in run.of("PUT", "docs/f00.txt")), "the server did not refuse the stale If-Match"
    assert (world.root / "docs" / "f00.txt").read_bytes() == b"edited by the phone"
    assert [md5(b"edited here")] == list(conflict_copies(world.share_tree(), "docs/f00.txt").values())
    world.check(run, converged=True, second_codes=(0,))


@pytest.mark.slow
def test_race_new_file_against_phone_create(world: SyncWorld) -> None:
    agreed(world)
    world.write("docs/new.txt", "made here")
    _race(world, "PUT", "docs/new.txt", lambda: world.phone.put("docs/new.txt", b"made by the phone"))
    run = world.sync()
    assert run.code == 3, run
    assert any(ex.status == 412 for ex in run.of("PUT", "docs/new.txt")), "If-None-Match: * did not hold"
    assert (world.root / "docs" / "new.txt").read_bytes() == b"made by the phone"
    world.check(run, converged=True, second_codes=(0,))


@pytest.mark.slow
def test_race_identical_content_is_no_conflict(world: SyncWorld) -> None:
    agreed(world)
    world.write("docs/f00.txt", "the same edit")
    _race(world, "PUT", "docs/f00.txt", lambda: world.phone.put("docs/f00.txt", b"the same edit"))
    run = world.sync()
    assert run.code == 0, run
    assert not conflict_copies(world.share_tree()), run
    world.check(run)


@pytest.mark.slow
def test_race_delete_against_phone_edit_keeps_the_edit(world: SyncWorld) -> None:
    agreed(world)
    world.rm("docs/f00.txt")
    _race(world, "DELETE", "docs/f00.txt", lambda: world.phone.put("docs/f00.txt", b"edited by the phone"))
    run = world.sync()
    assert run.code in (0, 3), run
    assert (world.root / "docs" / "f00.txt").read_bytes() == b"edited by the phone"
    assert (world.dest / "docs" / "f00.txt").read_bytes() == b"edited by the phone", "modify did not beat delete"
    world.check(run, converged=True, second_codes=(0,))


@pytest.mark.slow
def test_race_move_against_phone_edit_keeps_both(world: SyncWorld) -> None:
    agreed(world)
    world.mv("docs/f00.txt", "docs/renamed.txt")
    _race(world, "MOVE", "docs/f00.txt", lambda: world.phone.put("docs/f00.txt", b"edited by the phone"))
    run = world.sync()
    assert run.code in (0, 3), run
    world.check(run, converged=True, second_codes=(0,))
    s = files_only(world.share_tree())
    assert md5(b"edited by the phone") in s.values() and md5(b"docs file 0\n") in s.values()


@pytest.mark.slow
def test_race_phone_edits_during_download(world: SyncWorld) -> None:
    """The phone replaces a file while the client downloads it: the client places a whole version."""
    agreed(world)
    world.rput("docs/big.bin", os.urandom(2_000_000))
    assert world.proxy is not None
    world.proxy.on("GET", "docs/big.bin", phase="response-body", after=500_000,
                   action=lambda ex: world.phone.put("docs/big.bin", os.urandom(2_000_000)))  # fmt: skip
    run = world.sync()
    assert run.code in (0, 3), run
    world.check(run, converged=False, second=False, journal="loose")
    final = world.sync()
    assert final.code == 0, final
    world.check(final)


@pytest.mark.slow
def test_phone_writes_while_the_client_runs(world: SyncWorld) -> None:
    agreed(world)
    for i in range(6):
        world.write(f"docs/up{i}.bin", os.urandom(150_000))
    assert world.proxy is not None
    writes = iter(range(100))
    world.proxy.on("PUT", action=lambda ex: world.phone.put(f"docs/phone{next(writes)}.txt", b"phone %d" % next(writes)),
                   times=3)  # fmt: skip
    run = world.sync()
    assert run.code in (0, 3), run
    world.check(run, converged=False, second=False, journal="loose")
    final = world.sync()
    assert final.code == 0, final
    world.check(final)


# --- cut connections, a restarted server ----------------------------------------------------


@pytest.mark.parametrize("method,phase,side", [("PUT", "response", "local-new")] + [pytest.param(*p, marks=pytest.mark.slow) for p in (
    ("PUT", "body", "local-new"), ("PUT", "response", "local-edit"), ("GET", "response-body", "remote-edit"),
    ("MOVE", "response", "local-rename"), ("DELETE", "response", "local-delete"), ("MKCOL", "response", "local-folder"))])  # fmt: skip
def test_cut_connection(world: SyncWorld, method: str, phase: str, side: str) -> None:
    """The connection drops once at a bad moment (mid-body, or after the server did it but before
    the client heard): the run recovers, and a lost answer is never a false conflict."""
    agreed(world)
    big = os.urandom(400_000)
    if side == "local-new":
        world.write("docs/new.bin", big)
    elif side == "local-edit":
        world.write("docs/f00.txt", big)
    elif side == "remote-edit":
        world.rput("docs/f00.txt", big)
    elif side == "local-rename":
        world.mv("docs/f00.txt", "docs/renamed.txt")
    elif side == "local-delete":
        world.rm("docs/f00.txt")
    elif side == "local-folder":
        world.write("docs/sub/n.txt", "n")
    assert world.proxy is not None
    t = world.proxy.on(method, phase=phase, after=100_000, cut=True)
    run = world.sync()
    assert t.fired, f"the {method} was never cut: {run}"
    if run.code != 0:
        assert run.code in (3, 4), run
        clean_message(run)
        world.check(run, converged=False, second=False, journal="loose")
        run = world.sync()
    assert run.code == 0, run
    assert not conflict_copies(world.share_tree()), f"a lost answer became a conflict: {run}"
    world.check(run)


@pytest.mark.slow
def test_server_restarted_mid_run(world: SyncWorld) -> None:
    agreed(world)
    for i in range(8):
        world.write(f"docs/up{i}.bin", os.urandom(100_000))
        world.rput(f"docs/down{i}.bin", os.urandom(100_000))
    assert world.proxy is not None
    restart = threading.Thread(target=world.restart_server)
    # the eight uploads travel in one bulk POST (bulk.py), cut as the server restarts under it
    world.proxy.on("POST", nth=1, action=lambda ex: restart.start(), cut=True)
    run = world.sync()
    assert restart.ident is not None, f"the run sent no bulk upload to cut: {run}"
    restart.join(60)
    clean_message(run)
    world.check(run, converged=run.code == 0, second=False, journal="loose")
    for _ in range(2):
        if run.code == 0:
            break
        run = world.sync()
    assert run.code == 0, run
    world.check(run)


# --- full disks, files changing during upload --------------------------------------------------


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


@pytest.mark.slow
def test_local_disk_full(sync_world: Callable[..., SyncWorld], tmp_path: Path) -> None:
    mnt = tmp_path / "tiny"
    if not _tmpfs(mnt, "4m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        world = sync_world(dest=mnt / "dest")
        agreed(world)
        world.write("docs/f00.txt", "edited here")
        world.rput("docs/huge.bin", os.urandom(6 * 1024 * 1024))
        run = world.sync()
        assert run.code == 5, run
        assert "disk" in (run.stderr + run.stdout).lower(), run
        clean_message(run)
        world.check(run, converged=False, second=False, journal="loose")
        subprocess.run(["mount", "-o", "remount,size=32m", str(mnt)], check=True)
        healed = world.sync()
        assert healed.code == 0, healed
        world.check(healed)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_server_disk_full(sync_world: Callable[..., SyncWorld], tmp_path: Path) -> None:
    mnt = tmp_path / "tiny-share"
    if not _tmpfs(mnt, "4m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        world = sync_world(root=mnt / "share")
        agreed(world)
        world.write("docs/huge.bin", os.urandom(6 * 1024 * 1024))
        world.write("docs/f00.txt", "a small edit")
        run = world.sync()
        assert run.code in (3, 5), run
        assert any(ex.status == 507 for ex in run.of("PUT")), run
        assert "full" in (run.stderr + run.stdout).lower(), run
        clean_message(run)
        assert (world.dest / "docs" / "huge.bin").stat().st_size == 6 * 1024 * 1024
        world.check(run, converged=False, second=False, journal="strict")
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        healed = world.sync()
        assert healed.code == 0, healed
        world.check(healed)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["in-place", "replaced"])
def test_file_changing_during_upload(world: SyncWorld, how: str) -> None:
    """Edited while its PUT streams: never recorded as synced; the next run sends the final version."""
    agreed(world)
    world.sampling = how != "in-place"  # this test itself writes the file in place mid-run
    first = os.urandom(4_000_000)
    path = world.write("docs/growing.bin", first)
    final = os.urandom(4_000_000)

    def edit(ex: Exchange) -> None:
        world.remember(md5(final))  # known before any of it is visible
        if how == "in-place":
            with open(path, "r+b") as f:
                f.write(final)
        else:
            tmp = path.with_name("growing.tmp-editor")
            tmp.write_bytes(final)
            os.replace(tmp, path)
        world.ledger.discard(md5(first))  # the user overwrote it before it was ever synced

    assert world.proxy is not None
    world.proxy.on("PUT", "docs/growing.bin", phase="body", after=200_000, action=edit)
    run = world.sync()
    assert run.code in (0, 3), run
    world.check(run, converged=False, second=False, journal="loose")
    rows = read_journal(world.dest)
    assert rows.get("docs/growing.bin", {}).get("md5") != md5(final) or (world.root / "docs" / "growing.bin").read_bytes() == final
    again = world.sync()
    assert again.code == 0, again
    assert (world.root / "docs" / "growing.bin").read_bytes() == final
    world.check(again)


@pytest.mark.slow
def test_a_file_still_being_written_waits(world: SyncWorld) -> None:
    """Saved a moment ago (mtime now): a one-shot sync waits until it settles, then sends it whole."""
    agreed(world)
    world.write("docs/just-saved.txt", "fresh", age=0)
    run = world.sync()
    assert run.code == 0, run
    assert (world.root / "docs" / "just-saved.txt").read_bytes() == b"fresh"
    world.check(run)


# --- push --------------------------------------------------------------------------------


@pytest.mark.slow
def test_push_makes_the_share_follow(world: SyncWorld) -> None:
    for i in range(5):
        world.write(f"src/f{i}.txt", f"local {i}")
    world.rput("extra.txt", "only on the share")
    run = world.push()
    assert run.code == 0, run
    assert not run.of("GET"), run
    assert (world.root / "src" / "f3.txt").read_bytes() == b"local 3" and (world.root / "extra.txt").exists()
    world.write("src/f0.txt", "edited")
    world.rm("src/f1.txt")
    world.mv("src/f2.txt", "src/moved.txt")
    kept = world.push()
    assert kept.code == 0, kept
    assert (world.root / "src" / "f1.txt").exists(), "push deleted without --delete"
    assert (world.root / "src" / "moved.txt").read_bytes() == b"local 2"
    mirrored = world.push("--delete")
    assert mirrored.code == 0, mirrored
    assert not (world.root / "src" / "f1.txt").exists()
    assert (world.root / "extra.txt").exists(), "push --delete removed a server file it had never seen"
    world.check(mirrored, verb="push", args=("--delete",), ignore=lambda rel: rel == "extra.txt")
    world.mv("src/f3.txt", "src/f3-renamed.txt")
    moved = world.push("--delete")
    assert moved.code == 0 and len(moved.of("MOVE")) == 1 and not moved.of("PUT"), moved
    world.check(moved, verb="push", args=("--delete",), ignore=lambda rel: rel == "extra.txt")


def test_push_never_overwrites_a_server_change(world: SyncWorld) -> None:
    world.write("src/a.txt", "pushed")
    world.write("src/b.txt", "pushed b")
    assert world.push().code == 0
    world.rput("src/a.txt", "changed on the share")
    world.write("src/a.txt", "changed here")
    run = world.push("--delete")
    assert run.code == 3, run
    assert (world.root / "src" / "a.txt").read_bytes() == b"changed on the share"
    assert (world.dest / "src" / "a.txt").read_bytes() == b"changed here"
    clean_message(run)
    again = world.push("--delete")
    assert again.code == 3, again
    assert (world.root / "src" / "a.txt").read_bytes() == b"changed on the share"
    assert not again.of("PUT"), f"the next push forgot the server change it reported\n{again}"
    world.check(run, verb="push", args=("--delete",), converged=False, second=False, journal="loose")


@pytest.mark.slow
def test_push_race_with_the_phone_exits_3(world: SyncWorld) -> None:
    world.write("src/a.txt", "pushed")
    assert world.push().code == 0
    world.write("src/a.txt", "edited here")
    _race(world, "PUT", "src/a.txt", lambda: world.phone.put("src/a.txt", b"edited by the phone"))
    run = world.push()
    assert run.code == 3, run
    assert (world.root / "src" / "a.txt").read_bytes() == b"edited by the phone"
    world.check(run, verb="push", converged=False, second_codes=(3,), journal="loose")


# --- kill -9 at random moments, changes on both sides ---------------------------------------------


def _kill_loop(world: SyncWorld, kills: int, seed: int, files: int = 12) -> int:
    """Kill the client at random exchange moments (or just after one) while both sides changed.

    The local side changes only L/ and the phone only R/, so no true conflict can arise: any
    conflict copy at the end is a false one, and the final trees must equal the model."""
    rng = random.Random(seed)
    model: dict[str, bytes] = {}
    for side in ("L", "R"):
        for i in range(files):
            model[f"{side}/f{i:02}.bin"] = rng.randbytes(rng.choice([300, 5_000, 120_000]))
    world.seed(dict(model))
    world.settle()
    killed = attempts = 0
    counter = iter(range(10**6))
    log: list[str] = []
    # A trigger is drawn at random (say the 3rd PUT, or a MKCOL) and a run may send no such request:
    # that run is checked like any other, it just was not killed. The budget keeps the loop bounded.
    budget = max(kills * 4, 20)
    while killed < kills:
        attempts += 1
        assert attempts < budget, f"only {killed} of {attempts} runs could be killed\n" + "\n".join(log[-60:])
        # local changes in L/
        for _ in range(rng.randint(1, 4)):
            mine = sorted(k for k in model if k.startswith("L/"))
            op = rng.choice(["new", "edit", "edit", "rename", "delete", "folder"])
            if op == "new" or not mine:
                rel = f"L/n{next(counter)}.bin"
            elif op == "folder":
                rel = f"L/d{next(counter)}/x.bin"
            else:
                rel = rng.choice(mine)
            if op == "rename" and mine:
                new = f"L/r{next(counter)}.bin"
                world.mv(rel, new)
                model[new] = model.pop(rel)
                log.append(f"  local mv {rel} {new}")
            elif op == "delete" and len(mine) > files * 2 // 3:
                world.rm(rel)
                model.pop(rel)
                log.append(f"  local rm {rel}")
            else:
                data = rng.randbytes(rng.choice([200, 40_000, 200_000]))
                world.write(rel, data)
                model[rel] = data
                log.append(f"  local write {rel} {md5(data)}")
        # phone changes in R/
        for _ in range(rng.randint(1, 4)):
            theirs = sorted(k for k in model if k.startswith("R/"))
            op = rng.choice(["new", "edit", "edit", "rename", "delete"])
            rel = rng.choice(theirs) if op != "new" and theirs else f"R/n{next(counter)}.bin"
            if op == "rename":
                new = f"R/r{next(counter)}.bin"
                world.rmv(rel, new)
                model[new] = model.pop(rel)
                log.append(f"  phone mv {rel} {new}")
            elif op == "delete" and len(theirs) > files * 2 // 3:
                world.rrm(rel)
                model.pop(rel)
                log.append(f"  phone rm {rel}")
            else:
                data = rng.randbytes(rng.choice([200, 40_000, 200_000]))
                world.rput(rel, data)
                model[rel] = data
                log.append(f"  phone write {rel} {md5(data)}")
        assert world.proxy is not None
        holder: list[subprocess.Popen[bytes]] = []
        delay = rng.choice([0.0, 0.0, rng.uniform(0.0, 0.05)])

        def kill(ex: Exchange, holder: list[subprocess.Popen[bytes]] = holder, delay: float = delay) -> None:
            if holder:
                if delay:
                    threading.Timer(delay, lambda: holder[0].poll() is None and kill_hard(holder[0].pid)).start()
                else:
                    kill_hard(holder[0].pid)

        method = rng.choice(["PUT", "PUT", "GET", "GET", "MOVE", "DELETE", "MKCOL", None])
        phase = rng.choice(["request", "body", "response", "response-body"] if method in ("PUT", "GET") else ["request", "response"])
        world.proxy.clear_triggers()
        world.proxy.on(method, phase=phase, after=rng.randint(0, 30_000), nth=rng.randint(1, 3), action=kill)
        mark = world.proxy.mark()
        proc = world.popen("sync")
        holder.append(proc)
        try:
            proc.wait(120)
        finally:
            was = proc.returncode == KILLED
            world.kill(proc)
        world.proxy.clear_triggers()
        killed += was
        log.append(f"run {attempts}: kill at {method} {phase} (delay {delay:.3f}): {'killed' if was else proc.returncode}")
        log += [f"    {ex}" for ex in world.proxy.since(mark)]
        try:
            world.check(None, converged=False, second=False, journal="loose")
        except AssertionError as e:
            raise AssertionError(f"{e}\n" + "\n".join(log[-80:])) from None
    final = world.sync()
    if final.code != 0:
        final = world.sync()
    assert final.code == 0, final
    assert not conflict_copies(world.share_tree()), f"a kill caused a false conflict: {sorted(conflict_copies(world.share_tree()))}"
    want = {k: md5(v) for k, v in model.items()}
    assert files_only(world.share_tree()) == want, "the share is not what both sides' changes make"
    world.check(final)
    return killed


def test_kill_loop_fast(world: SyncWorld) -> None:
    assert _kill_loop(world, kills=2, seed=11, files=6) == 2


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_kill_loop_full(world: SyncWorld) -> None:
    killed = _kill_loop(world, kills=24, seed=12)
    print(f"\nsync client kills survived: {killed}")
    assert killed >= 20
