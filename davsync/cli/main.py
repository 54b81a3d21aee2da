"""The `davsync` command, assembled: its groups and commands, and the entry points that turn an
expected failure into one line and a bug into one line plus a crash log."""

from __future__ import annotations

from typing import cast

import typer

from .. import __version__, typer_coerce
from ..app.cli import app_cmd  # the `davsync app` command lives with the app
from ..console import utf8_streams
from ..exitcodes import Exit
from .client import doctor, login, pull, push, status, sync, watch
from .locks import locks_app
from .serve import serve
from .share import share_app
from .users import user_app
from .versions import versions_app

typer_coerce.install()  # no pydantic on every run (see typer_coerce.py)
app = typer.Typer(
    pretty_exceptions_enable=False,
    help=(
        "Serve a folder over WebDAV with trustworthy MD5s, and mirror it safely.\n\n"
        "Environment: DAVSYNC_URL (share URL), DAVSYNC_DEST (local folder), DAVSYNC_USER (user name), "
        "DAVSYNC_PASSWORD (password, instead of `davsync login` or the prompt)."
    ),
    no_args_is_help=True,
    add_completion=True,
)
app.add_typer(user_app, name="user")
app.add_typer(share_app, name="share")
app.add_typer(versions_app, name="versions")
app.add_typer(locks_app, name="locks")


def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"davsync {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """davsync: WebDAV file sync for a home server."""


for _command in (serve, pull, sync, push, status, watch, login, doctor):
    app.command()(_command)
app.command("app")(app_cmd)


def command() -> typer.core.TyperGroup:
    """The click command behind `app`, with help that reads as a user expects: an on/off
    flag shows no `<bool>` value, since it takes none."""
    cmd = typer.main.get_command(app)
    stack = [cmd]
    while stack:
        c = stack.pop()
        stack.extend(getattr(c, "commands", {}).values())
        help_option = c.get_help_option(typer.Context(c))  # built once and cached by the command
        for param in [*c.params, *([help_option] if help_option else [])]:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
    return cast("typer.core.TyperGroup", cmd)  # get_command types it as the click base class


def run() -> None:
    """Entry point: expected failures print one line; a bug prints one line and a crash log."""
    utf8_streams()
    try:
        command()(prog_name="davsync")
    except SystemExit:
        raise
    except KeyboardInterrupt:
        typer.secho("davsync: interrupted.", err=True, fg=typer.colors.RED)
        raise SystemExit(int(Exit.INTERRUPTED)) from None
    except Exception as e:  # a bug: keep the details, show one line
        import traceback

        from ..console import crash_log

        where = crash_log(traceback.format_exc())
        where_text = f" Details: {where}" if where else ""
        typer.secho(f"davsync: internal error ({e.__class__.__name__}: {e}).{where_text} Please report it.", err=True,
                    fg=typer.colors.RED)  # fmt: skip
        raise SystemExit(70) from None


def run_windowless() -> None:
    """`davsyncw`: the same commands without a console window (pythonw), for Task Scheduler.
    There is no stdout or stderr there: output goes to --log-file, or nowhere."""
    from ..console import attach_null_streams

    attach_null_streams()
    run()


if __name__ == "__main__":
    run()
