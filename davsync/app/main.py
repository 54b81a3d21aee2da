"""`davsync app`: start the folder-pair loops, the dashboard and the tray; run until Quit or a signal."""

from __future__ import annotations

import signal
import sys
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path

from .config import AppConfig
from .core import App
from .login import CODE_TTL, remove_handle, write_handle
from .web import Dashboard


def start(config_file: Path, state_dir: Path, port: int = 0) -> tuple[App, Dashboard]:
    """The app and its dashboard, both running. Raises ConfigError for a bad config file and
    OSError when the port is taken."""
    app = App(AppConfig.load(config_file), state_dir)
    dash = Dashboard(app, port)
    app.start()
    dash.start()
    return app, dash


def run_app(
    config_file: Path,
    state_dir: Path,
    *,
    port: int = 0,
    open_browser: bool = True,
    tray: bool = True,
    say: Callable[[str], None] = print,
) -> None:
    app, dash = start(config_file, state_dir, port)
    try:
        write_handle(state_dir, dash.port, dash.token)
    except OSError as e:
        say(f"Could not write {state_dir}: {e.strerror or e}; `davsync app --open` will not find this app.")
    say(f"davsync app is running with {len(app.config.pairs)} folder pair(s) from {config_file}.")
    say(f"Dashboard (a one-time link, good for {CODE_TTL:.0f} s; `davsync app --open` makes a new one):\n"
        f"  {dash.login_url()}")

    def open_dashboard() -> None:
        webbrowser.open(dash.login_url())  # a fresh code each time: a used one is refused

    tray_icon = None
    if tray:
        from .tray import start_tray

        tray_icon, reason = start_tray(app, open_dashboard)
        if reason:
            say(f"No tray icon: {reason}. Use the dashboard link; stop with Ctrl-C or Quit on the page.")
    if open_browser and not webbrowser.open(dash.login_url()):
        say("Could not open a browser; open the link above yourself.")

    def on_signal(signum: int, frame: object) -> None:
        app.request_quit()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        if sys.platform == "win32" and hasattr(signal, "SIGBREAK"):
            signal.signal(signal.SIGBREAK, on_signal)
    try:
        while not app.quit.wait(1.0):  # a timeout, so Ctrl-C is seen on Windows before Python 3.14
            if app.reload_if_changed():
                say(f"Reloaded {config_file}: {len(app.config.pairs)} folder pair(s).")
    except KeyboardInterrupt:
        pass
    say("Stopping…")
    if tray_icon is not None:
        tray_icon.stop()
    app.stop()
    dash.stop()
    remove_handle(state_dir, dash.token)
