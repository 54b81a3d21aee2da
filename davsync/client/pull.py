"""`pull`: mirror the share into a folder. One mode of the engine (client/engine.py); these
names stay for the library's callers (the app, scripts, tests)."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from .dest import DestLockedError, dest_lock, dest_problem
from .engine import Engine, RunOptions, run_once
from .plan import Mode
from .results import RunResult
from .steps import Reporter, SilentReporter
from .transport import ConnectionSettings

PullOptions = RunOptions  # mode PULL by default
PullResult = RunResult
Puller = Engine


def run_pull(
    conn: ConnectionSettings,
    dest: Path,
    options: RunOptions,
    reporter: Reporter | None = None,
    stop: threading.Event | None = None,
) -> RunResult:
    return run_once(conn, dest, replace(options, mode=Mode.PULL), reporter, stop)


__all__ = [
    "DestLockedError", "Puller", "PullOptions", "PullResult", "Reporter", "SilentReporter",
    "dest_lock", "dest_problem", "run_pull",
]  # fmt: skip
