"""`davsync watch`: pull what changed, again and again, through server restarts and network drops."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

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
    out: TextIO = sys.stdout,
    stop: threading.Event | None = None,
) -> Exit:
    """Runs until stopped (SIGINT/SIGTERM or `stop`); returns the exit status."""
    stop = stop or threading.Event()

    def say(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=out, flush=True)

    puller = Puller(conn, dest, options, None if quiet else PlainReporter(out))

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        puller.stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    say(f"watching {puller.remote.base_url} -> {dest} every {interval:g}s (Ctrl-C to stop)")
    delay = interval
    down_since: float | None = None
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
                say(f"server unreachable ({result.fatal}); retrying in {delay:.0f}s")
            else:
                if down_since is not None:
                    say(f"connected again after {time.monotonic() - down_since:.0f}s")
                    down_since = None
                delay = interval
                acted = any(k for k in result.done if k not in ("locally-modified", "deleted-remotely"))
                if acted or result.errors:
                    for line in summary_lines(result):
                        say(line)
            stop.wait(delay)
    finally:
        puller.close()
    say("stopped")
    return code
