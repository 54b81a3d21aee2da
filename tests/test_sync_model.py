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
