"""`davsync watch` and `davsync sync --watch`: keep a folder in sync, through server restarts and
network drops.

`watch` pulls what the server reports changed every --interval seconds. `sync --watch` also
watches the local folder: a local write is uploaded as soon as it has settled (a file modified
in the last two seconds is still being written), and a full walk of the folder every
FULL_SCAN_EVERY seconds catches whatever the watcher missed. An idle round is one REPORT request.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..concurrency import SLICE, sliced_wait
from ..console import stop_signals
from ..exitcodes import Exit
from ..units import local_zone, plural
from .deadline import WATCHDOG
from .engine import Engine, RunOptions
from .filters import Filter
from .local import IN_USE
from .plan import Kind, Mode
from .report import PlainReporter, summary_lines
from .results import RunResult
from .transport import ConnectionSettings

if TYPE_CHECKING:
    from .localwatch import LocalWatcher

MAX_BACKOFF = 60.0
FULL_SCAN_EVERY = 600.0  # sync --watch: the safety net behind the local watcher


def watch_loop(
    conn: ConnectionSettings,
    dest: Path,
    options: RunOptions,
    *,
    interval: float,
    quiet: bool = False,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
    full_every: float = FULL_SCAN_EVERY,
) -> Exit:
    """`watch` (options in pull mode) or `sync --watch` (any other mode): runs until stopped
    (Ctrl-C, SIGTERM, Ctrl-Break, console closed, or `stop`); returns the exit status."""
    with stop_signals(stop, interrupt=True, also=WATCHDOG.interrupt) as stop:
        try:
            return _watch(conn, dest, options, interval, quiet, out or sys.stdout, stop, full_every)
        finally:
            WATCHDOG.reset()


def _watch(
    conn: ConnectionSettings,
    dest: Path,
    options: RunOptions,
    interval: float,
    quiet: bool,
    out: TextIO,
    stop: threading.Event,
    full_every: float,
) -> Exit:
    def say(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=out, flush=True)

    reporter = None if quiet else PlainReporter(out, options.mode.value)
    pulling = options.mode == Mode.PULL
    engine = Engine(conn, dest, options if pulling else replace(options, wait_to_settle=False), reporter, stop)
    try:
        if pulling:
            code = _pull_rounds(engine, dest, options, interval, say, stop)
        else:
            code = _sync_rounds(engine, dest, options, interval, say, stop, full_every)
    finally:
        engine.close()
    say("stopped")
    return code


def _pull_rounds(
    engine: Engine, dest: Path, options: RunOptions, interval: float, say: Callable[[str], None], stop: threading.Event
) -> Exit:
    say(f"watching {engine.remote.base_url} -> {dest} every {interval:g}s (Ctrl-C to stop; times are {local_zone()})")
    rounds = _Rounds(dest, interval, say, stop)
    kept_reported: set[str] = set()  # deletions on the server already told about, not repeated each round
    while not stop.is_set():
        result = engine.run()
        verdict = rounds.verdict(result)
        if verdict == "end":
            break
        if verdict == "done":
            acted = any(k for k in result.done if k not in ("locally-modified", "deleted-remotely"))
            if acted or result.errors:
                for line in summary_lines(result):
                    say(line)
            kept = set(result.done.get(Kind.KEPT_HERE, []))
            for line in kept_lines(kept - kept_reported, options.delete):
                say(line)
            kept_reported = kept  # every run re-judges all kept files, so this is the whole set
        sliced_wait(stop, rounds.wait)
    return rounds.code


def kept_lines(paths: set[str], delete: bool, limit: int = 20) -> list[str]:
    """Files deleted on the server that stay here: said once, so the mirror is never silently a superset."""
    if not paths:
        return []
    why = "a deletion guard refused them (see the warning)" if delete else "run with --delete to remove them"
    are = "is" if len(paths) == 1 else "are"
    lines = [f"{plural(len(paths), 'file')} deleted on the server {are} kept here; {why}:"]
    lines += [f"  kept: {p}" for p in sorted(paths)[:limit]]
    if len(paths) > limit:
        lines.append(f"  … and {len(paths) - limit} more")
    return lines


_QUIET_KINDS = {Kind.LOCAL_MODIFIED, Kind.KEPT_HERE, Kind.KEPT_ON_SERVER, Kind.LOCAL_ONLY}


def _sync_rounds(
    engine: Engine,
    dest: Path,
    options: RunOptions,
    interval: float,
    say: Callable[[str], None],
    stop: threading.Event,
    full_every: float,
) -> Exit:
    from .localwatch import LocalWatcher  # watchdog is imported only by a watch

    watcher = LocalWatcher(engine.dest, Filter.load(dest, options.excludes).excluded)
    say(
        f"syncing {engine.remote.base_url} <-> {dest}: local changes go up within seconds, the server is asked "
        f"every {interval:g}s (Ctrl-C to stop; times are {local_zone()})"
    )
    rounds = _Rounds(dest, interval, say, stop)
    carry: set[str] = set()  # paths still being written last round: looked at again
    last_full = -full_every  # the first round scans everything
    reported: set[str] = set()
    started = False
    try:
        if engine.dest.is_dir():
            watcher.start()
            started = True
        while not stop.is_set():
            changed = watcher.drain()
            full = changed is None or time.monotonic() - last_full >= full_every
            paths = None if full else carry | (changed or set())
            result = engine.run(local_paths=paths)
            verdict = rounds.verdict(result)
            if verdict == "end":
                break
            if verdict != "done":  # what this round was to look at is looked at next round
                carry |= paths or set()
                if paths is None:
                    last_full = -full_every
                sliced_wait(stop, rounds.wait)
                continue
            if full:
                last_full = time.monotonic()
            if not started and engine.dest.is_dir():
                watcher.start()  # DEST was made by the first round
                started = True
                last_full = -full_every  # what changed before the watcher started: the next round scans
            in_use = {s.path for s in result.skipped if s.reason == IN_USE}  # held open elsewhere: tried again soon
            carry = set(result.deferred) | {e.path for e in result.errors} | in_use
            reported = _report_round(result, reported, say)
            # Wake for a local change (after it settles), a deferred file, or the next server poll.
            wait = min(interval, options.settle_s / 2) if carry else interval
            if _wait_for_change(watcher, stop, wait) and not stop.is_set():
                sliced_wait(stop, options.settle_s)  # a write just seen is still settling: let it finish
    finally:
        watcher.stop()
    return rounds.code


class _Rounds:
    """What each round's end asks of a watch loop, said once where it persists: the end (stopped,
    or a fatal error: `code`), another run holding DEST (wait a turn), the server unreachable
    (a doubling back-off, then one line when it is back), or a round done."""

    def __init__(self, dest: Path, interval: float, say: Callable[[str], None], stop: threading.Event) -> None:
        self.dest, self.interval, self.say, self.stop = dest, interval, say, stop
        self.code = Exit.OK  # the watch's exit status once it ends
        self.delay = interval  # the back-off while the server is unreachable
        self.wait = interval  # before the next round
        self.since: float | None = None  # monotonic time of the first failed round
        self.waiting = False  # another run holds DEST, already said

    def verdict(self, result: RunResult) -> str:
        """'end', 'busy', 'retry' (each said) or 'done'; `wait` is then the pause before the next round."""
        if self.stop.is_set():
            return "end"
        if result.busy:
            if not self.waiting:
                self.say(f"another davsync run is working on {self.dest}; this one goes on when it has finished")
            self.waiting, self.wait = True, self.interval
            return "busy"
        self.waiting = False
        if result.fatal is not None and not result.retryable:
            self.say(f"stopping: {result.fatal}")
            self.code = result.exit_code
            return "end"
        if result.fatal is not None:
            if self.since is None:
                self.since = time.monotonic()
            self.delay = min(MAX_BACKOFF, max(self.interval, self.delay * 2))
            self.say(f"server unreachable, retrying in {self.delay:.0f}s: {result.fatal}")
            self.wait = self.delay
            return "retry"
        if self.since is not None:
            self.say(f"connected again after {time.monotonic() - self.since:.0f}s")
            self.since = None
        self.delay = self.wait = self.interval
        return "done"


def _wait_for_change(watcher: LocalWatcher, stop: threading.Event, timeout: float) -> bool:
    """The watcher's wait in slices: Ctrl-C (it sets `stop`) is acted on at once, not when the
    interval ends, and on Windows a long Condition.wait could not be interrupted at all."""
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if watcher.wait(min(SLICE, left)):
            return True
    return False


def _report_round(result: RunResult, reported: set[str], say: Callable[[str], None]) -> set[str]:
    """Say what a round did; problems that persist are said once, not every round."""
    acted = any(k not in _QUIET_KINDS for k in result.done)
    if acted or result.conflicts:
        for line in summary_lines(result)[:1]:
            say(line)
    problems = {f"{e.path}: {e.error}" for e in result.errors} | {f"conflict: {c.path}" for c in result.conflicts}
    for line in sorted(problems - reported):
        say(line)
    return problems
