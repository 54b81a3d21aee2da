"""`davsync user add|remove|list`: who may connect to `davsync serve` (the users file)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..exitcodes import Exit
from .common import UsersOpt, fail, load_users, read_password, users_path

user_app = typer.Typer(help="Manage who may connect to `davsync serve`.", no_args_is_help=True)


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="User name."),
    read_only: bool = typer.Option(False, "--read-only", help="May read but never write."),
    admin: bool = typer.Option(False, "--admin", help="May use the admin page of `serve --admin`."),
    update: bool = typer.Option(
        False, "--update", help="Change an existing user's password (and access, as given by the other options)."
    ),
    users: Path | None = UsersOpt,
) -> None:
    """Add a user (--update: change an existing user's password and access). The password is
    prompted for (hidden) or taken from DAVSYNC_PASSWORD; only hashes are stored."""
    from ..users import UsersFileError

    path = users_path(users)
    db = load_users(path)
    if name in db.users and not update:
        # a typo or a second run of a setup script must not silently replace someone's password
        raise fail(
            f"user {name!r} already exists in {path}; to change their password, run: davsync user add {name} --update",
            Exit.USAGE,
        )
    password = read_password(f"Password for {name}", confirm=True)
    if not password:
        raise fail("an empty password is not allowed.", Exit.USAGE)
    existed = name in db.users
    try:
        db.add(name, password, read_only=read_only, admin=admin)
        db.save(path)
    except UsersFileError as e:
        raise fail(str(e), Exit.USAGE) from None
    except OSError as e:
        raise fail(f"could not write {path}: {e.strerror}.", Exit.LOCAL) from None
    access = ("read-only" if read_only else "read-write") + (" admin" if admin else "")
    typer.echo(f"{'Updated' if existed else 'Added'} {access} user {name!r} in {path}.")


@user_app.command("remove")
def user_remove(name: str = typer.Argument(..., help="User name."), users: Path | None = UsersOpt) -> None:
    """Remove a user."""
    path = users_path(users)
    db = load_users(path)
    if not db.remove(name):
        raise fail(f"there is no user {name!r} in {path}.", Exit.USAGE)
    db.save(path)
    typer.echo(f"Removed user {name!r} from {path}.")


@user_app.command("list")
def user_list(users: Path | None = UsersOpt) -> None:
    """List users and their access."""
    path = users_path(users)
    db = load_users(path)
    if not db.users:
        typer.echo(f"No users in {path}. Add one with: davsync user add NAME")
    for u in db.users.values():
        typer.echo(f"{u.name}\t{'read-only' if u.read_only else 'read-write'}{chr(9) + 'admin' if u.admin else ''}")
