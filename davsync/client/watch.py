"""`davsync watch`: pull what changed, again and again, through server restarts and network drops."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from ..concurrency import sliced_wait
from ..console import stop_signals
from ..exitcodes import Exit
from .pull import Puller, PullOptions
from .remote import ConnectionSettings
from .report import PlainReporter, summary_lines

MAX_BACKOFF = 60.0


def watch_loop(
    conn: ConnectionSettings,
    dest: Path,
    options: PullOptions,
    *,
    interval: float,
    quiet: bool = False,
    out: TextIO | None = None,
    stop: threading.Event | None = None,
) -> Exit:
    """Runs until stopped (Ctrl-C, SIGTERM, Ctrl-Break, console closed, or `stop`); returns
    the exit status."""
    with stop_signals(stop, interrupt=True) as stop:
        return _loop(conn, dest, options, interval, quiet, out or sys.stdout, stop)


def _loop(
    conn: ConnectionSettings,
    dest: Path,
    options: PullOptions,
    interval: float,
    quiet: bool,
    out: TextIO,
    stop: threading.Event,
) -> Exit:
    def say(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=out, flush=True)

    puller = Puller(conn, dest, options, None if quiet else PlainReporter(out), stop=stop)

    say(f"watching {puller.remote.base_url} -> {dest} every {interval:g}s (Ctrl-C to stop)")
    delay = interval
    down_since: float | None = None
    kept_reported: set[str] = set()  # deletions on the server already told about, not repeated each round
    code = Exit.OK
    try:
        while not stop.is_set():
            result = puller.run()
            if stop.is_set():
                break
            if result.fatal is not None:
                if not result.retryable:
                    say(f"stopping: {result.fatal}")
                    code = result.exit_code
                    break
                if down_since is None:
                    down_since = time.monotonic()
                delay = min(MAX_BACKOFF, max(interval, delay * 2))
                say(f"server unreachable, retrying in {delay:.0f}s: {result.fatal}")
            else:
                if down_since is not None:
                    say(f"connected again after {time.monotonic() - down_since:.0f}s")
                    down_since = None
                delay = interval
                acted = any(k for k in result.done if k not in ("locally-modified", "deleted-remotely"))
                if acted or result.errors:
                    for line in summary_lines(result):
                        say(line)
                kept = set(result.done.get("deleted-remotely", []))
                for line in kept_lines(kept - kept_reported, options.delete):
                    say(line)
                kept_reported = kept  # every run re-judges all kept files, so this is the whole set
            sliced_wait(stop, delay)
    finally:
        puller.close()
    say("stopped")
    return code


def kept_lines(paths: set[str], delete: bool, limit: int = 20) -> list[str]:
    """Files deleted on the server that stay here: said once, so the mirror is never silently a superset."""
    if not paths:
        return []
    why = "a deletion guard refused them (see the warning)" if delete else "run with --delete to remove them"
    lines = [f"{len(paths)} file(s) deleted on the server are kept here; {why}:"]
    lines += [f"  kept: {p}" for p in sorted(paths)[:limit]]
    if len(paths) > limit:
        lines.append(f"  … and {len(paths) - limit} more")
    return lines
