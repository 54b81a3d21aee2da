"""Model-based test of `davsync sync` against a real server (issue 12): hypothesis drives random
operations on the PC side, on the share (the phone, with real HTTP) and by the phone racing the
client during a run, interleaved with real sync runs; after every run, the invariants of
tests/synchelp.py (nothing lost, convergence after exit 0, a no-op second run, no partial file,
bases only for versions on both sides).

Few paths and few contents, so identical edits, renames, folder-against-file and
modify-against-delete come up often. The default suite runs a short budget; `--full` a larger one.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
from conftest import make_users
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from synchelp import SyncWorld

PATHS = ["a.txt", "b.txt", "d", "d/x.txt", "d/y.txt", "d/e/z.txt", "f/w.txt"]
FOLDERS = ["d", "d/e", "f", "g"]
TEXTS = ["one", "two", "three"]
TWINS = ["caf\u00e9.txt", "cafe\u0301.txt"]  # one name, NFC and NFD (issue 24 item 3)


def _blocked(side: Path, rel: str) -> bool:
    """A file cannot go here: a file sits where a parent folder must be, or a folder at the path."""
    parts = rel.split("/")
    for i in range(1, len(parts)):
        if (side / "/".join(parts[:i])).is_file():
            return True
    return (side / rel).is_dir()


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="davsync-model-"))
        make_users(self.tmp / "users.json")
        self.world = SyncWorld(self.tmp, self.tmp / "users.json")
        self.unique = 0
        self.syncs = 0

    def teardown(self) -> None:
        try:
            if self.world.server is not None:
                run = self.world.sync("--max-delete", "100%")
                if run.code == 0:
                    self.world.check(run, args=("--max-delete", "100%"))
        finally:
            self.world.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _content(self, text: str, fresh: bool) -> bytes:
        if fresh:
            self.unique += 1
            return f"{text} #{self.unique}\n".encode()
        return f"{text}\n".encode()

    # -- the PC --

    @rule(rel=st.sampled_from(PATHS), text=st.sampled_from(TEXTS), fresh=st.booleans())
    def local_write(self, rel: str, text: str, fresh: bool) -> None:
        if not _blocked(self.world.dest, rel):
            self.world.write(rel, self._content(text, fresh))

    @rule(rel=st.sampled_from(PATHS))
    def local_silent_edit(self, rel: str) -> None:
        """An edit in place that keeps size and mtime (issue 24, item 2): only ctime shows it."""
        p = self.world.dest / rel
        if not p.is_file():
            return
        old = p.read_bytes()
        new = old.swapcase()
        if new == old:
            return
        st = os.stat(p)
        with self.world._user_overwrites(p):
            with open(p, "r+b") as f:
                f.write(new)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))

    @rule(rel=st.sampled_from(PATHS + FOLDERS))
    def local_delete(self, rel: str) -> None:
        if (self.world.dest / rel).exists():
            self.world.rm(rel)

    @rule(src=st.sampled_from(PATHS + FOLDERS), dst=st.sampled_from(PATHS + FOLDERS))
    def local_rename(self, src: str, dst: str) -> None:
        d = self.world.dest
        if (d / src).exists() and not (d / dst).exists() and not dst.startswith(src + "/") and not _blocked(d, dst):
            self.world.mv(src, dst)

    @rule(rel=st.sampled_from(FOLDERS))
    def local_mkdir(self, rel: str) -> None:
        if not _blocked(self.world.dest, rel) and not (self.world.dest / rel).exists():
            self.world.mkdir(rel)

    # -- the share (the phone) --

    @rule(rel=st.sampled_from(PATHS), text=st.sampled_from(TEXTS), fresh=st.booleans())
    def remote_write(self, rel: str, text: str, fresh: bool) -> None:
        if not _blocked(self.world.root, rel):
            self.world.rput(rel, self._content(text, fresh))

    @rule(rel=st.sampled_from(PATHS + FOLDERS))
    def remote_delete(self, rel: str) -> None:
        if (self.world.root / rel).exists():
            self.world.rrm(rel)

    @rule(src=st.sampled_from(PATHS + FOLDERS), dst=st.sampled_from(PATHS + FOLDERS))
    def remote_rename(self, src: str, dst: str) -> None:
        r = self.world.root
        if (r / src).exists() and not (r / dst).exists() and not dst.startswith(src + "/") and not _blocked(r, dst):
            self.world.rmv(src, dst)

    # -- the edges of a real home (issue 24, items 1, 3, 4, 5) --

    @rule(form=st.sampled_from(TWINS), text=st.sampled_from(TEXTS))
    def remote_twin_write(self, form: str, text: str) -> None:
        """A Mac (NFD) and a phone (NFC) write the same name: Unicode twins on the server."""
        self.world.rput(form, self._content(text, True))

    @rule(form=st.sampled_from(TWINS))
    def remote_twin_delete(self, form: str) -> None:
        if os.path.lexists(self.world.root / form):
            self.world.rrm(form)

    @rule(folder=st.sampled_from(["d", "f"]), to=st.sampled_from(["g", "h"]), text=st.sampled_from(TEXTS),
          here=st.booleans())  # fmt: skip
    def folder_renamed_on_one_side_edited_on_the_other(self, folder: str, to: str, text: str, here: bool) -> None:
        """One side renames a folder while the other edits a file inside it (the next sync meets both)."""
        w = self.world
        renamer, editor = (w.dest, w.root) if here else (w.root, w.dest)
        inside = sorted(p for p in (editor / folder).glob("*") if p.is_file()) if (editor / folder).is_dir() else []
        if not (renamer / folder).is_dir() or (renamer / to).exists() or not inside:
            return
        rel = f"{folder}/{inside[0].name}"
        if here:
            w.mv(folder, to)
            w.rput(rel, self._content(text, True))
        else:
            w.rmv(folder, to)
            w.write(rel, self._content(text, True))

    @rule(keep=st.sampled_from(["a.txt", "b.txt"]), here=st.booleans())
    def one_file_share_loses_its_file(self, keep: str, here: bool) -> None:
        """A share holding one file, which one side deletes: a deletion like any, not "share empty"."""
        w = self.world
        if w.server is None or _blocked(w.root, keep):
            return
        for entry in sorted(os.listdir(w.root)):
            if entry != keep and not entry.startswith(".") and os.path.lexists(w.root / entry):
                w.rrm(entry)
        for entry in sorted(os.listdir(w.dest)) if w.dest.is_dir() else []:
            if entry != keep and not entry.startswith(".") and os.path.lexists(w.dest / entry):
                w.rm(entry)
        if not (w.root / keep).is_file():
            w.rput(keep, self._content("one", True))
        run = w.sync("--max-delete", "100%")
        if run.code != 0 or set(w.share_tree()) != {keep}:
            return  # a conflict or a twin left more than one file: not this edge
        w.check(run, second=False)
        w.rm(keep) if here else w.rrm(keep)
        run = w.sync("--max-delete", "100%")
        self.syncs += 1
        assert run.code == 0, run
        assert not (w.root / keep).exists() and not (w.dest / keep).exists(), f"the deletion was refused: {run}"
        w.check(run, args=("--max-delete", "100%"))

    @precondition(lambda self: self.syncs > 0)
    @rule()
    def remount(self) -> None:
        """The Pi rebooted with its disk not mounted yet (the root swapped for an empty folder):
        the server refuses to start on it, a sync meanwhile changes nothing; then the disk is
        back, the server restarts, and the next sync loses and trashes nothing. (A disk pulled
        from a running server answers 503 with Retry-After, which clients wait out for minutes:
        tests/test_remount.py and test_serve_root.py cover that.)"""
        from davsync.server.shareroot import RootRefused

        w = self.world
        if w.server is None:
            return
        trash = w.dest / ".davsync" / "trash"
        before, trashed = w.dest_tree(), sorted(trash.rglob("*")) if trash.exists() else []
        away = w.root.with_name(w.root.name + "-unmounted")
        w.stop_server()
        w.root.rename(away)
        w.root.mkdir()
        with pytest.raises(RootRefused):
            w.start_server()
        run = w.sync("--max-delete", "100%")
        assert run.code != 0, f"a sync against an unmounted share claimed success: {run}"
        assert w.dest_tree() == before, "a sync against an unmounted share changed DEST"
        assert (sorted(trash.rglob("*")) if trash.exists() else []) == trashed, "a sync trashed files meanwhile"
        w.root.rmdir()
        away.rename(w.root)
        w.start_server()
        run = w.sync("--max-delete", "100%")
        self.syncs += 1
        assert run.code in (0, 3), run
        w.check(run, args=("--max-delete", "100%"))

    # -- runs --

    @rule(limit=st.sampled_from(["100%", "100%", "50%"]))
    def sync(self, limit: str) -> None:
        run = self.world.sync("--max-delete", limit)
        self.syncs += 1
        assert run.code in (0, 3), run
        self.world.check(run, args=("--max-delete", limit))

    @rule(method=st.sampled_from(["PUT", "DELETE", "MOVE", "GET"]), rel=st.sampled_from(PATHS),
          text=st.sampled_from(TEXTS))  # fmt: skip
    def sync_while_the_phone_writes(self, method: str, rel: str, text: str) -> None:
        """The phone writes `rel` at the instant the client's first `method` reaches the server."""
        assert self.world.proxy is not None
        data = self._content(text, True)
        self.world.proxy.on(method, action=lambda ex: _blocked(self.world.root, rel) or self.world.phone.put(rel, data))
        run = self.world.sync("--max-delete", "100%")
        self.world.proxy.clear_triggers()
        assert run.code in (0, 3), run
        self.world.check(run, converged=False, second=False, journal="loose")

    @precondition(lambda self: self.syncs > 0)
    @rule(nth=st.integers(1, 4), phase=st.sampled_from(["request", "response"]))
    def sync_killed(self, nth: int, phase: str) -> None:
        assert self.world.proxy is not None
        holder: list = []
        self.world.proxy.on(None, nth=nth, phase=phase, action=lambda ex: holder and os.kill(holder[0].pid, signal.SIGKILL))
        proc = self.world.popen("sync", "--max-delete", "100%")
        holder.append(proc)
        proc.wait(120)
        self.world.kill(proc)
        self.world.proxy.clear_triggers()
        self.world.check(None, converged=False, second=False, journal="loose")

    @invariant()
    def nothing_lost_between_runs(self) -> None:
        lost = self.world.ledger - self.world.everywhere()
        assert not lost, f"content lost: {lost}"


_SETTINGS = {"deadline": None, "suppress_health_check": list(HealthCheck), "derandomize": False}


def test_sync_model_short() -> None:
    SyncMachine.TestCase.settings = settings(max_examples=3, stateful_step_count=6, **_SETTINGS)
    SyncMachine.TestCase().runTest()


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_sync_model_long() -> None:
    SyncMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=25, **_SETTINGS)
    SyncMachine.TestCase().runTest()
