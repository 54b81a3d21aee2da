"""The `davsync app` command. davsync/cli/main.py only registers it; heavy imports wait until it runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from ..exitcodes import Exit


def app_cmd(
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Dashboard port on 127.0.0.1 (0: any free port)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open the dashboard in a browser."),
    no_tray: bool = typer.Option(False, "--no-tray", help="Do not show a tray icon."),
    open_running: bool = typer.Option(
        False, "--open", help="Open the dashboard of the app already running (a fresh one-time link), then exit."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="Folder pairs file (default: app.toml in the user's config dir)."
    ),
    state_dir: Path | None = typer.Option(None, "--state-dir", help="Where the app keeps what needs attention."),
    install_autostart: bool = typer.Option(False, "--install-autostart", help="Start the app at login, then exit."),
    uninstall_autostart: bool = typer.Option(
        False, "--uninstall-autostart", help="Stop starting it at login, then exit."
    ),
) -> None:
    """Sync every folder pair in the background, with a dashboard in the browser and a tray icon."""
    from . import autostart
    from .config import ConfigError, default_config_file, default_state_dir

    config_file = (config or default_config_file()).expanduser().absolute()
    if open_running:
        _open_running((state_dir or default_state_dir()).expanduser().absolute(), browser=not no_browser)
        return
    if install_autostart or uninstall_autostart:
        extra = [] if config is None else ["--config", str(config_file)]
        if state_dir is not None:
            extra += ["--state-dir", str(state_dir.expanduser().absolute())]
        try:
            typer.echo(autostart.install(extra) if install_autostart else autostart.uninstall())
        except OSError as e:
            typer.secho(f"davsync: could not change the login items: {e}.", err=True, fg=typer.colors.RED)
            raise typer.Exit(int(Exit.LOCAL)) from None
        return
    from .main import run_app

    try:
        run_app(config_file, (state_dir or default_state_dir()).expanduser().absolute(), port=port,
                open_browser=not no_browser, tray=not no_tray, say=typer.echo)  # fmt: skip
    except ConfigError as e:
        typer.secho(f"davsync: {e}", err=True, fg=typer.colors.RED)
        raise typer.Exit(int(Exit.USAGE)) from None
    except OSError as e:
        typer.secho(f"davsync: cannot start the dashboard on 127.0.0.1:{port}: {e.strerror or e}. "
                    "Choose another --port.", err=True, fg=typer.colors.RED)  # fmt: skip
        raise typer.Exit(int(Exit.USAGE)) from None
    # Quit ends the process now: not when a check of a server that does not answer times out (the
    # interpreter would wait for a transfer's worker threads), and not never (on Windows CPython the
    # interpreter's own finalisation hung after pystray's win32 icon had run). Everything that keeps
    # state was closed by run_app, which logs any work in flight that was cut short.
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    os._exit(0)


def _open_running(state_dir: Path, *, browser: bool) -> None:
    import webbrowser

    from .login import AppNotRunning, request_login_url

    try:
        printed, launched = request_login_url(state_dir), request_login_url(state_dir) if browser else ""
    except AppNotRunning as e:
        typer.secho(f"davsync: {e}", err=True, fg=typer.colors.RED)
        raise typer.Exit(int(Exit.USAGE)) from None
    typer.echo(f"Dashboard (a one-time link):\n  {printed}")
    if browser and not webbrowser.open(launched):
        typer.echo("Could not open a browser; open the link above yourself.")
