"""`davsync app`: start the folder-pair loops, the dashboard and the tray; run until Quit or a signal."""

from __future__ import annotations

import html
import logging
import os
import signal
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from pathlib import Path

from .config import AppConfig
from .core import App
from .login import CODE_TTL, remove_handle, write_handle
from .web import Dashboard

LINK_FILE = "dashboard.html"  # in the state dir: opens the dashboard; there is no console under pythonw
LOG_FILE = "app.log"
QUIT_WITHIN = 1.5  # seconds Quit waits for work in flight before ending the process (the promise is 3)


def start(config_file: Path, state_dir: Path, port: int = 0) -> tuple[App, Dashboard]:
    """The app and its dashboard, both running. Raises ConfigError for a bad config file and
    OSError when the port is taken."""
    app = App(AppConfig.load(config_file), state_dir)
    dash = Dashboard(app, port)
    app.start()
    dash.start()
    return app, dash


def write_link(state_dir: Path, dash: Dashboard) -> Path:
    """A page that opens the dashboard, readable by this user only: it posts the app's secret to
    the dashboard's /login (web.py), never putting it in a URL (a URL is seen on command lines)."""
    path = state_dir / LINK_FILE
    action, secret = html.escape(f"http://127.0.0.1:{dash.port}/login"), html.escape(dash.token)
    page = (f'<!doctype html><meta charset="utf-8"><title>davsync</title>'
            f'<form method="post" action="{action}"><input type="hidden" name="secret" value="{secret}">'
            f'<button>Open the davsync dashboard</button></form>'
            f'<script>document.forms[0].submit()</script>\n')  # fmt: skip
    path.unlink(missing_ok=True)  # a fresh file gets the private mode below
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(page.encode("utf-8"))
    return path


def _log_to_file(path: Path) -> logging.Handler:
    """The app's log in its state dir: what it said, and what the tray library logs (pystray's
    tracebacks go here, not onto a console)."""
    handler = logging.FileHandler(path, encoding="utf-8", errors="replace")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    for name in ("davsync", "pystray"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    logging.getLogger("pystray").propagate = False
    return handler


def _can_show_a_browser() -> bool:
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_app(
    config_file: Path,
    state_dir: Path,
    *,
    port: int = 0,
    open_browser: bool = True,
    tray: bool = True,
    say: Callable[[str], None] = print,
) -> bool:
    """Run until Quit or a signal. True when every thread finished in time; False when some work
    (a transfer, a check of a server that does not answer) was cut short: the caller then ends the
    process at once, which is safe (every write is atomic and the journal a transaction)."""
    app, dash = start(config_file, state_dir, port)
    state_dir.mkdir(parents=True, exist_ok=True)
    handler = _log_to_file(state_dir / LOG_FILE)
    log = logging.getLogger("davsync.app")

    def note(message: str) -> None:
        say(message)
        log.info(message)

    try:
        write_handle(state_dir, dash.port, dash.token)
    except OSError as e:
        note(f"Could not write {state_dir}: {e.strerror or e}; `davsync app --open` will not find this app.")
    link = write_link(state_dir, dash)
    note(f"davsync app is running with {len(app.config.pairs)} folder pair(s) from {config_file}; "
         f"the file {link} opens its dashboard.")  # fmt: skip
    say(f"Dashboard (a one-time link, good for {CODE_TTL:.0f} s; `davsync app --open` makes a new one):\n"
        f"  {dash.login_url()}")
    def open_dashboard() -> None:
        webbrowser.open(dash.login_url())  # a fresh code each time: a used one is refused

    tray_icon = None
    if tray:
        from .tray import start_tray

        tray_icon, reason = start_tray(app, open_dashboard)
        app.tray_state = tray_icon.state if tray_icon is not None else app.tray_state
        if reason:
            note(f"No tray icon ({reason}): open the dashboard with the link above or the file {link}; "
                 "Quit on the page stops the app.")  # fmt: skip
            # the dashboard is then the only way in, so it opens even with --no-browser (the autostart)
            open_browser = open_browser or _can_show_a_browser()
    if open_browser and not webbrowser.open(dash.login_url()):
        note(f"Could not open a browser; open the link above (or {link}) yourself.")
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
                note(f"Reloaded {config_file}: {len(app.config.pairs)} folder pair(s).")
    except KeyboardInterrupt:
        pass
    note("Stopping…")
    deadline = time.monotonic() + QUIT_WITHIN
    app.hub.close()  # first: the tray's follower and open dashboards end their waits at once
    if tray_icon is not None:
        tray_icon.stop()
    app.stop(timeout=max(0.1, deadline - time.monotonic()))
    dash.stop()
    remove_handle(state_dir, dash.token)
    link.unlink(missing_ok=True)  # its secret is dead now
    me = threading.current_thread()
    busy = [t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]
    for t in busy:  # worker threads of a transfer in flight, which the interpreter would wait for
        t.join(max(0.0, deadline - time.monotonic()))
    finished = not any(t.is_alive() for t in busy)
    cut = ", ".join(t.name for t in busy if t.is_alive())
    log.info("Stopped." if finished else f"Stopped; work in flight ({cut}) was cut short; it resumes next time.")
    handler.close()
    for name in ("davsync", "pystray"):
        logging.getLogger(name).removeHandler(handler)
    return finished
