"""`davsync locks list|break`: the WebDAV locks the server keeps, for an admin on the Pi.

A client that crashed while holding a lock (Windows Explorer, an office suite) leaves it until it
times out; this shows who holds what, and breaks a lock by its token or its path. The lock
table is the running server's own file, so this works while no server runs on the state dir.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import IO

import typer

from ..exitcodes import Exit
from ..units import local_time
from .common import ConfigOpt, RootOpt, StateOpt, fail, listed_in_full
from .versions import server_settings

locks_app = typer.Typer(help="WebDAV locks kept by `serve`: list them, break one.", no_args_is_help=True)


def _stopped(root: Path | None, state_dir: Path | None, config: Path | None) -> tuple[Path, IO[bytes]]:
    from ..server.runlock import try_exclusive

    settings = server_settings(root, state_dir, config)
    held = try_exclusive(settings.state_dir)
    if held is None:
        raise fail(
            "a server is running on this state dir and owns its lock table; stop it first "
            "(for the systemd service: sudo systemctl stop davsync), then run this again.",
            Exit.USAGE,
        )
    return settings.state_dir, held


@locks_app.command("list")
def list_cmd(root: Path | None = RootOpt, state_dir: Path | None = StateOpt, config: Path | None = ConfigOpt,
             json_out: bool = typer.Option(False, "--json", help="One JSON array.")) -> None:  # fmt: skip
    """The locks in force: path, user, the client's owner text, and when each expires."""
    from ..server.lockstore import list_locks
    from ..server.runlock import release

    folder, held = _stopped(root, state_dir, config)
    try:
        found = list_locks(folder)
    finally:
        release(held)
    if listed_in_full([info.as_json() for info in found], json_out, "No locks."):
        return
    for info in found:
        left = max(0, int(info.expires - time.time()))
        until = local_time(info.expires)
        who = f"{info.user or '-'}  {info.owner or '-'}"
        typer.echo(f"{info.path}  {who}  until {until} ({left // 60} min)  {info.token}")


@locks_app.command("break")
def break_cmd(what: str = typer.Argument(..., help="A lock token (opaquelocktoken:...) or a path in the share."),
              root: Path | None = RootOpt, state_dir: Path | None = StateOpt,
              config: Path | None = ConfigOpt) -> None:  # fmt: skip
    """Remove a lock, so its file can be written again."""
    from ..server.lockstore import break_locks
    from ..server.runlock import release

    folder, held = _stopped(root, state_dir, config)
    try:
        gone = break_locks(folder, what)
    finally:
        release(held)
    if not gone:
        raise fail(f"no lock matches {what!r}; `davsync locks list` shows them.", Exit.PARTIAL)
    for info in gone:
        owner = info.owner or "no owner given"
        typer.echo(f"Broke the lock on {info.path} held by {info.user or 'a guest'} ({owner}).")
