"""The `davsync` command, assembled: its groups and commands, and the entry points that turn an
expected failure into one line and a bug into one line plus a crash log."""

from __future__ import annotations

import gc
from typing import cast

import typer

from .. import __version__, typer_coerce
from ..console import utf8_streams
from ..exitcodes import Exit
from .lazy import LazyGroup, lazy_sources, plain_flags

typer_coerce.install()  # no pydantic on every run (see typer_coerce.py)

# Every command, in the order `davsync --help` lists them; each module is imported, and its command
# built, only when that command runs or help is shown (lazy.py).
COMMANDS = {
    "serve": "davsync.cli.serve:serve",
    **{name: f"davsync.cli.client:{name}" for name in ("pull", "sync", "push", "status", "watch", "login", "doctor")},
    "app": "davsync.app.cli:app_cmd",  # the `davsync app` command lives with the app
    "user": "davsync.cli.users:user_app",
    "share": "davsync.cli.share:share_app",
    "versions": "davsync.cli.versions:versions_app",
    "locks": "davsync.cli.locks:locks_app",
}


class _Commands(LazyGroup):
    """The `davsync` group (its sources are set below, once `app` exists)."""


app = typer.Typer(
    cls=_Commands,
    pretty_exceptions_enable=False,
    help=(
        "Serve a folder over WebDAV with trustworthy MD5s, and mirror it safely.\n\n"
        "Environment: DAVSYNC_URL (share URL), DAVSYNC_DEST (local folder), DAVSYNC_USER (user name), "
        "DAVSYNC_PASSWORD (password, instead of `davsync login` or the prompt)."
    ),
    no_args_is_help=True,
    add_completion=True,
)
_Commands.sources = lazy_sources(app, COMMANDS)


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


def command() -> typer.core.TyperGroup:
    """The click command behind `app`, with help that reads as a user expects: an on/off
    flag shows no `<bool>` value, since it takes none (each command is built so, when used)."""
    return cast("typer.core.TyperGroup", plain_flags(typer.main.get_command(app)))  # typed as click's base class


def run() -> None:
    """Entry point: expected failures print one line; a bug prints one line and a crash log."""
    utf8_streams()
    try:
        command()(prog_name="davsync")
    except SystemExit:
        _ending()
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


def _ending() -> None:
    """The process ends next: spare the interpreter's last garbage collections, which walk every
    object the imports made (about 0.03 s CPU, a seventh of a no-op pull). Finalizers still run
    (atexit, and every object freed as the modules go); what davsync writes is closed or flushed
    where it is written (the journal, placed files), and stdout, stderr and --log-file (line-buffered,
    as sys.stdout) are flushed by the interpreter."""
    gc.freeze()


def run_windowless() -> None:
    """`davsyncw`: the same commands without a console window (pythonw), for Task Scheduler.
    There is no stdout or stderr there: output goes to --log-file, or nowhere."""
    from ..console import attach_null_streams

    attach_null_streams()
    run()


if __name__ == "__main__":
    run()
