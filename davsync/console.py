"""The process's edges that differ between consoles and platforms: text streams, log files,
crash logs, and the ways a user or the OS asks a run to stop.

Windows specifics handled here: redirected output is encoded in the ANSI code page with
strict errors (the first Japanese file name would abort the run), a `pythonw` process has
no streams at all, Ctrl-Break is SIGBREAK, and closing the console window is
CTRL_CLOSE_EVENT, after which Windows gives the process about five seconds.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from .units import local_time

CLOSE_GRACE = 4.0  # of the ~5 s Windows allows after CTRL_CLOSE_EVENT


def utf8_streams() -> None:
    """Never die on a character the output cannot show: UTF-8 when not on a console
    (files, pipes, PowerShell), replacement characters where a console lacks one."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is None:
            continue
        try:
            if stream.isatty():
                reconfigure(errors="replace")
            else:
                reconfigure(encoding="utf-8", errors="replace")
        except (OSError, ValueError):
            pass


def can_prompt() -> bool:
    """Someone can answer a prompt: stdin is an interactive terminal or console. On Windows,
    isatty() is True for every character device, NUL included, and getpass then waits on the
    console for ever (a scheduled task, `< NUL`); only a real console input handle has a mode."""
    stdin = sys.stdin
    try:
        fd = stdin.fileno() if stdin is not None else -1
    except (AttributeError, OSError, ValueError):
        return False
    if fd < 0:
        return False
    from .osfs import is_console

    return is_console(fd)


def attach_null_streams() -> None:
    """A windowless process (pythonw) starts with sys.stdout/stderr set to None."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))


def log_to(path: Path | None) -> None:
    """Send stdout and stderr to `path` (appended, UTF-8, a line at a time)."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        log: TextIO = open(path, "a", encoding="utf-8", errors="replace", buffering=1)
    except OSError as e:
        print(f"davsync: cannot write the log file {path}: {e.strerror}.", file=sys.stderr)
        raise SystemExit(2) from None
    log.write(f"--- {local_time(time.time(), seconds=True)} davsync {' '.join(sys.argv[1:])}\n")
    sys.stdout = sys.stderr = log


def crash_log(text: str) -> Path | None:
    """Write a traceback where the platform keeps logs; its path, or None if that failed."""
    import platformdirs

    for folder in (Path(platformdirs.user_log_dir("davsync", appauthor=False)), Path(_tempdir())):
        log = folder / "davsync-crash.log"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            log.write_text(text, encoding="utf-8", errors="replace")
            return log
        except OSError:
            continue
    return None


def _tempdir() -> str:
    import tempfile

    return tempfile.gettempdir()


@contextmanager
def stop_signals(
    stop: threading.Event | None = None, *, interrupt: bool = False, also: Callable[[], None] | None = None
) -> Iterator[threading.Event]:
    """Turn the polite ways to end a process into `stop` being set: SIGTERM, Ctrl-Break
    (SIGBREAK) and closing the console window; Ctrl-C (SIGINT) too when `interrupt`,
    else it stays KeyboardInterrupt. `also` runs with it (the client cuts its connections).
    Handlers are restored on exit; off the main thread nothing is installed."""
    stop = stop or threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if also is not None:
            also()

    names = ["SIGTERM", "SIGBREAK"] + (["SIGINT"] if interrupt else [])
    previous: dict[int, Any] = {}
    for name in names:
        signum = getattr(signal, name, None)
        if signum is not None:
            previous[signum] = signal.signal(signum, on_signal)
    finished = threading.Event()
    console = _console_close_handler(stop, finished)
    try:
        yield stop
    finally:
        finished.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if console is not None:
            console()


def _console_close_handler(stop: threading.Event, finished: threading.Event) -> Any:
    """Windows: on console close, log-off or shut-down, set `stop` and give the run a few
    seconds to commit its journal. Returns a function that removes the handler."""
    if sys.platform != "win32":
        return None
    import ctypes
    from ctypes import wintypes

    CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT = 2, 5, 6
    handler_type = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.DWORD)

    def handler(event: int) -> bool:
        if event in (CTRL_CLOSE_EVENT, CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT):
            stop.set()
            finished.wait(CLOSE_GRACE)
            return True
        return False  # Ctrl-C and Ctrl-Break go on to Python's own handlers

    callback = handler_type(handler)
    kernel32 = ctypes.windll.kernel32
    kernel32.SetConsoleCtrlHandler(callback, True)

    def remove() -> None:
        kernel32.SetConsoleCtrlHandler(callback, False)

    return remove
