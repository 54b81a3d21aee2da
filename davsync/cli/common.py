"""What every command shares: the one-line failure, passwords, the users file, where a server's
state is (the options `serve`, `share`, `versions` and `locks` take alike)."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..console import can_prompt
from ..exitcodes import Exit

if TYPE_CHECKING:  # imported where used: a client command never needs the users file's hashing
    from ..users import Users

def fail(message: str, code: Exit = Exit.USAGE) -> typer.Exit:
    """Print the one-line failure; the caller raises what this returns (its exit code)."""
    typer.secho(f"davsync: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(int(code))


def read_password(prompt: str, *, confirm: bool, hint: str = "") -> str:
    """DAVSYNC_PASSWORD for scripts, else a hidden prompt."""
    env = os.environ.get("DAVSYNC_PASSWORD")
    if env is not None:
        return env
    if not can_prompt():
        raise fail(
            f"no password: {hint or 'set DAVSYNC_PASSWORD, or run this in a terminal to be prompted.'}", Exit.USAGE
        )
    password = getpass.getpass(f"{prompt}: ")
    if confirm and getpass.getpass("Repeat it: ") != password:
        raise fail("the two passwords differ; nothing was changed.", Exit.USAGE)
    return password


def share_password(url: str, user: str, tls: str = "") -> str:
    """DAVSYNC_PASSWORD, else the one `davsync login` stored in the OS credential store, else a prompt.
    `tls` is the --ca-cert/--insecure the user gave: the `davsync login` suggested must run as printed."""
    hint = ""
    if os.environ.get("DAVSYNC_PASSWORD") is None:
        from ..client.credentials import load_password, store_available

        stored = load_password(url, user)
        if stored is not None:
            return stored
        if store_available():
            hint = f"run `davsync login {url} --user {user}{tls}` once to store it, or set DAVSYNC_PASSWORD."
        else:  # `davsync login` cannot help here: offer only what works
            hint = "set DAVSYNC_PASSWORD, or run this in a terminal to be asked (there is no credential store here)."
    return read_password(f"Password for {user}", confirm=False, hint=hint)


UsersOpt = typer.Option(None, "--users", help="Users file (default: ~/.config/davsync/users.json).")


def users_path(users: Path | None) -> Path:
    from ..server.settings import default_users_file

    return (users or default_users_file()).expanduser()


def load_users(path: Path) -> Users:
    from ..users import Users, UsersFileError

    try:
        return Users.load(path)
    except UsersFileError as e:
        raise fail(str(e), Exit.USAGE) from None


# Where a server's state is, given as `serve` takes it (share, versions and locks find it alike).
RootOpt = typer.Option(None, "--root", help="The folder `davsync serve` shares (finds its state dir).")
StateOpt = typer.Option(None, "--state-dir", help="The server's state dir (as given to `davsync serve`).")
ConfigOpt = typer.Option(None, "--config", help="The TOML file `davsync serve --config` uses.")


def listed_in_full(rows: list[dict[str, Any]], json_out: bool, none: str) -> bool:
    """A listing command's `--json` answer, or its one line for an empty list (`none`); True when
    that said it all and no table follows."""
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return True
    if not rows:
        typer.echo(none)
        return True
    return False
