"""The command line: a thin Typer shell over davsync.server and davsync.client.

main.py assembles the `davsync` command from one module per concern: common.py (what every
command shares), users.py, serve.py, share.py, versions.py, locks.py, client.py (the PC's
commands) and davsync.app.cli (`davsync app`).
"""

from .main import app, command, run, run_windowless

__all__ = ["app", "command", "run", "run_windowless"]
