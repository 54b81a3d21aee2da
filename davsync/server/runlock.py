"""Is a server working on this state dir? A shared flock held by `serve`, tried exclusively by the CLI.

`davsync versions` must not undo a running server's in-flight work as if it had crashed,
and must leave the change journal to that server (its sequence numbers live in memory).
The kernel drops the lock when the server dies, even by kill -9.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO

LOCK_NAME = "serve.lock"


def hold_shared(state_dir: Path) -> IO[bytes]:
    """Taken by `serve` for its lifetime; waits while a `versions restore` holds it exclusively."""
    f = open(state_dir / LOCK_NAME, "ab")
    fcntl.flock(f, fcntl.LOCK_SH)
    return f


def try_exclusive(state_dir: Path) -> IO[bytes] | None:
    """The lock if no server runs on this state dir (keep it while working), else None."""
    state_dir.mkdir(parents=True, exist_ok=True)
    f = open(state_dir / LOCK_NAME, "ab")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def release(f: IO[bytes]) -> None:
    if f.closed:
        return
    try:
        fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        f.close()


__all__ = ["hold_shared", "try_exclusive", "release"]
