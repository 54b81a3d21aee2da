"""A model of two-way sync at speed: hypothesis drives edits, deletions and renames on the PC (real
files in a temp folder) and on the share (tests/fakeserver.py, in memory, keeping the server's
ETag / If-Match / If-None-Match / MD5 promises), phone writes that race the client's requests
(a lost race is a 412), and sync runs through the real scanner, planner, executor and journal.
Only the HTTP is left out, so it runs ten thousand steps in the default suite;
tests/test_sync_model.py runs the same kind of model against the real server.

After every run: nothing that was on either side is lost (it is on a side, in a conflict copy,
in the trash, or kept by the server as a version). After a second, undisturbed run: both sides
hold the same files, and a third run has nothing to do.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import cast

from fakeserver import FakeServer
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from davsync.client.execute import Executor
from davsync.client.journal import Journal
from davsync.client.local import scan_local
from davsync.client.paths import effective_rules
from davsync.client.plan import Mode, Options, Plan, RemoteView, complete, reconcile
from davsync.client.remote import Remote
from davsync.client.results import RunResult
from davsync.client.steps import Context, SilentReporter

PATHS = ["a.txt", "b.txt", "d/x.txt", "d/y.txt", "d/e/z.txt", "f/w.txt"]
FOLDERS = ["d", "d/e", "f", "g"]
TEXTS = ["one", "two", "three"]
RULES = effective_rules(None)
STEPS = {"count": 0}


def _nothing(path: str, is_dir: bool) -> bool:
    return False


class FastWorld:
    """DEST on disk with its journal, the share in memory, and one sync run at a time."""

    def __init__(self, tmp: Path) -> None:
        self.dest = tmp / "dest"
        self.dest.mkdir()
        self.state = self.dest / ".davsync"
        self.journal = Journal(None)  # (in memory: the durable journal has its own tests)
        self.server = FakeServer()
        self.runs = 0
        self.last = RunResult()

    def close(self) -> None:
        self.journal.close()

    # -- one run --

    def _plan(self, paths: set[str] | None = None) -> Plan:
        base = self.journal.load() if paths is None else self.journal.get(sorted(paths))
        scan = scan_local(self.dest, base, excluded=_nothing, rules=RULES, fold_case=False, settle_s=0.0)
        view = RemoteView({p: e for p, e in self.server.listing().items() if paths is None or p in paths},
                          complete=paths is None,
                          removed=frozenset(p for p in (paths or ()) if self.server.entry(p) is None))  # fmt: skip
        local = scan.view
        if paths is not None:
            local = type(local)({p: e for p, e in local.entries.items() if p in paths}, complete=False)
        return reconcile(base, local, view, Options(mode=Mode.SYNC, max_delete_percent=100.0), now=datetime.now(),
                         excluded=lambda p, is_dir: scan.not_judged(p), tracked_files=self.journal.count_files())  # fmt: skip

    def _resolve_uploads(self) -> None:
        """As the engine does first: an upload left in flight (its answer lost, or an error) is
        done when the server holds what was sent (tests its own bookkeeping, not the engine's)."""
        for intent in self.journal.intents():
            if intent.op != "put":
                continue
            r = self.server.entry(intent.path)
            done = r is not None and not r.is_dir and r.md5 == intent.entry.md5
            self.journal.settle(intent.path, complete(intent.entry, None, r) if done and r is not None else None)

    def sync(self) -> RunResult:
        self.runs += 1
        self._resolve_uploads()
        plan = self._plan()
        result = RunResult(command=Mode.SYNC, plan=plan)
        ctx = Context(
            dest=self.dest, state_dir=self.state, remote=cast(Remote, None), journal=self.journal,
            reporter=SilentReporter(), stop=threading.Event(), jobs=1, stamp=f"run-{self.runs:05d}",
            replan=self._plan, server_side=self.server,
        )  # fmt: skip
        Executor(ctx, result).run(plan)
        result.exit_code = result.decide_exit()
        self.last = result
        return result

    # -- what is where --

    def local_files(self) -> dict[str, bytes]:
        out = {}
        for p in self.dest.rglob("*"):
            rel = p.relative_to(self.dest).as_posix()
            if p.is_file() and not rel.startswith(".davsync"):
                out[rel] = p.read_bytes()
        return out

    def everywhere(self) -> set[bytes]:
        trash = self.state / "trash"
        kept = {p.read_bytes() for p in trash.rglob("*") if p.is_file()} if trash.is_dir() else set()
        return (
            set(self.local_files().values()) | set(self.server.contents().values()) | kept | set(self.server.versions)
        )


def _blocked(side: Path, rel: str) -> bool:
    parts = rel.split("/")
    return any((side / "/".join(parts[:i])).is_file() for i in range(1, len(parts))) or (side / rel).is_dir()


class FastSyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="davsync-fast-"))
        self.world = FastWorld(self.tmp)
        self.unique = 0

    def teardown(self) -> None:
        self.world.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _content(self, text: str, fresh: bool) -> bytes:
        if fresh:
            self.unique += 1
            return f"{text} #{self.unique}\n".encode()
        return f"{text}\n".encode()

    def _step(self) -> None:
        STEPS["count"] += 1

    # -- the PC --

    @rule(rel=st.sampled_from(PATHS), text=st.sampled_from(TEXTS), fresh=st.booleans())
    def local_write(self, rel: str, text: str, fresh: bool) -> None:
        self._step()
        p = self.world.dest / rel
        if not _blocked(self.world.dest, rel):
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(self._content(text, fresh))

    @rule(rel=st.sampled_from(PATHS + FOLDERS))
    def local_delete(self, rel: str) -> None:
        self._step()
        p = self.world.dest / rel
        if p.is_dir():
            shutil.rmtree(p)
        elif p.is_file():
            p.unlink()

    @rule(src=st.sampled_from(PATHS + FOLDERS), dst=st.sampled_from(PATHS + FOLDERS))
    def local_rename(self, src: str, dst: str) -> None:
        self._step()
        d = self.world.dest
        if (d / src).exists() and not (d / dst).exists() and not dst.startswith(src + "/") and not _blocked(d, dst):
            (d / dst).parent.mkdir(parents=True, exist_ok=True)
            (d / src).rename(d / dst)

    @rule(rel=st.sampled_from(FOLDERS))
    def local_mkdir(self, rel: str) -> None:
        self._step()
        if not _blocked(self.world.dest, rel) and not (self.world.dest / rel).exists():
            (self.world.dest / rel).mkdir(parents=True)

    # -- the share (a phone) --

    @rule(rel=st.sampled_from(PATHS), text=st.sampled_from(TEXTS), fresh=st.booleans())
    def remote_write(self, rel: str, text: str, fresh: bool) -> None:
        self._step()
        if self.world.server.is_free(rel):
            self.world.server.write(rel, self._content(text, fresh))

    @rule(rel=st.sampled_from(PATHS + FOLDERS))
    def remote_delete(self, rel: str) -> None:
        self._step()
        self.world.server.remove(rel)

    @rule(src=st.sampled_from(PATHS + FOLDERS), dst=st.sampled_from(PATHS + FOLDERS))
    def remote_rename(self, src: str, dst: str) -> None:
        self._step()
        s = self.world.server
        if s.entry(src) is not None and s.entry(dst) is None and not dst.startswith(src + "/") and s.is_free(dst):
            s.mkdirs(dst.rpartition("/")[0])
            s.move(src, dst)

    # -- runs --

    @rule()
    def sync(self) -> None:
        self._step()
        before = self.world.everywhere()
        first = self.world.sync()
        assert first.exit_code in (0, 3), (first.errors, first.plan.explain())
        assert not before - self.world.everywhere(), "a sync lost content"
        second = self.world.sync()
        assert second.exit_code in (0, 3), (second.errors, second.plan.explain())
        if first.plan.guards or second.plan.guards:
            return  # deletions held (an emptied folder): by design the sides differ until confirmed
        assert self.world.local_files() == self.world.server.contents(), second.plan.explain()
        third = self.world.sync()
        assert not third.plan.changes, third.plan.explain()

    @rule(method=st.sampled_from(["PUT", "DELETE", "MOVE", "GET", "MKCOL"]), rel=st.sampled_from([None, *PATHS]),
          text=st.sampled_from(TEXTS))  # fmt: skip
    def sync_while_the_phone_writes(self, method: str, rel: str | None, text: str) -> None:
        """The phone writes `rel` (None: the very path of the request) just before the client's
        first `method` reaches the server."""
        self._step()
        server, data = self.world.server, self._content(text, True)
        fired: list[str] = []

        def phone(m: str, path: str) -> None:
            target = path if rel is None else rel
            if m == method and not fired and server.is_free(target):
                fired.append(target)
                server.write(target, data)

        server.before = phone
        before = self.world.everywhere()
        try:
            run = self.world.sync()
        finally:
            server.before = lambda m, p: None
        assert run.exit_code in (0, 3), (run.errors, run.plan.explain())
        lost = before - self.world.everywhere()
        assert not lost, f"a sync lost content: {lost}"
        if fired:  # never overwritten or deleted unseen: on a side, not only among the server's versions
            shown = set(self.world.local_files().values()) | set(server.contents().values())
            assert data in shown, f"the phone's write of {fired} at the client's {method} is gone: {run.plan.explain()}"

    @invariant()
    def intents_are_left_only_where_a_run_reported_an_error(self) -> None:
        left = {i.path for i in self.world.journal.intents()}
        assert left <= {e.path for e in self.world.last.errors}, left


def test_ten_thousand_steps_of_two_way_sync_on_the_in_memory_server() -> None:
    """At least 10,000 model steps (printed with the rate; the suite's timeout bounds the time)."""
    STEPS["count"] = 0
    started = time.monotonic()
    conf = settings(max_examples=100, stateful_step_count=50, deadline=None, derandomize=False,
                    suppress_health_check=list(HealthCheck))  # fmt: skip
    while STEPS["count"] < 10_000:
        run_state_machine_as_test(FastSyncMachine, settings=conf)
    took = time.monotonic() - started
    print(f"fast sync model: {STEPS['count']} steps in {took:.1f} s ({STEPS['count'] / took:.0f} steps/s)")
    assert STEPS["count"] >= 10_000
