"""The tray on Linux with AppIndicator (pystray's first choice where PyGObject and the Ayatana
AppIndicator typelib are importable), under Xvfb with a real tray host.

Debian's python3-gi and gir1.2-ayatanaappindicator3-0.1 are the system's; the app's interpreter
imports them through PYTHONPATH, set for that process only. With no StatusNotifierWatcher on the
session bus (a private dbus-daemon here: no desktop panel), libayatana-appindicator shows the icon
the XEmbed way, so it docks into trayer like any tray icon on an X11 desktop. The icon is found in
the tray (its X window), clicked with XTest, and its menu driven with the keyboard as a person
would: Pause syncing pauses the pairs, Quit ends the process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until
from test_app_process import QUIT_BOUND, _clean, _report, app_process, xvfb  # noqa: F401  (fixtures)

SYSTEM_PACKAGES = "/usr/lib/python3/dist-packages"  # Debian's python3-gi
IMPORTS_APPINDICATOR = (
    "import gi; gi.require_version('Gtk', '3.0'); gi.require_version('AyatanaAppIndicator3', '0.1');"
    "from gi.repository import AyatanaAppIndicator3"
)


@pytest.fixture
def session_bus() -> Iterator[str]:
    """A private D-Bus session bus (libayatana-appindicator asks it for a StatusNotifierWatcher;
    there is none, so it falls back to XEmbed), stopped by PID."""
    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon is not installed (apt-get install dbus-daemon)")
    probe = subprocess.run([sys.executable, "-c", IMPORTS_APPINDICATOR], env={**os.environ, "PYTHONPATH": SYSTEM_PACKAGES},
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip("AppIndicator is not importable: apt-get install python3-gi gir1.2-ayatanaappindicator3-0.1 "
                    f"(for this Python's version) ({probe.stderr.strip().splitlines()[-1:]})")  # fmt: skip
    bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address=1"], text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert bus.stdout is not None
        address = bus.stdout.readline().strip()
        assert address.startswith("unix:"), address
        yield address
    finally:
        bus.terminate()
        bus.wait(10)


def docked_icon(display: str) -> tuple[int, int] | None:
    """The centre (root coordinates) of the app's icon docked in the tray: an XEmbed client window
    of class "davsync" inside another window; None while there is none."""
    from Xlib import display as xdisplay

    d = xdisplay.Display(display)
    try:
        root = d.screen().root
        xembed = d.intern_atom("_XEMBED_INFO")
        todo = [(child, root) for child in root.query_tree().children]
        while todo:
            window, parent = todo.pop()
            try:
                cls = window.get_wm_class()
                props = window.list_properties()
                children = window.query_tree().children
            except Exception:  # a window that went away meanwhile (Xlib's own error types)
                continue
            if cls and cls[0] == "davsync" and xembed in props and parent != root:
                geometry = window.get_geometry()
                at = window.translate_coords(root, 0, 0)  # (root's origin in the window: minus its position)
                return -at.x + geometry.width // 2, -at.y + geometry.height // 2
            todo += [(child, window) for child in children]
        return None
    finally:
        d.close()


def click_and_type(display: str, at: tuple[int, int], button: int, keys: list[str]) -> None:
    """A click on the icon (its menu opens), then keys pressed one by one, through XTest."""
    from Xlib import XK, X
    from Xlib import display as xdisplay
    from Xlib.ext import xtest

    d = xdisplay.Display(display)
    try:
        xtest.fake_input(d, X.MotionNotify, x=at[0], y=at[1])
        xtest.fake_input(d, X.ButtonPress, button)
        xtest.fake_input(d, X.ButtonRelease, button)
        d.sync()
        kind, menu = d.intern_atom("_NET_WM_WINDOW_TYPE"), d.intern_atom("_NET_WM_WINDOW_TYPE_POPUP_MENU")

        def menu_shown() -> bool:
            for w in d.screen().root.query_tree().children:
                prop = w.get_full_property(kind, X.AnyPropertyType)
                if prop is not None and menu in prop.value and w.get_attributes().map_state == X.IsViewable:
                    return True
            return False

        wait_until(menu_shown, 15, "the tray icon's menu to open")
        for key in keys:
            code = d.keysym_to_keycode(XK.string_to_keysym(key))
            xtest.fake_input(d, X.KeyPress, code)
            xtest.fake_input(d, X.KeyRelease, code)
            d.sync()
    finally:
        d.close()


def test_tray_with_appindicator_shows_its_icon_and_its_menu_acts(app_process, xvfb, session_bus: str,  # noqa: F811
                                                                 tmp_path: Path, record_property: Any) -> None:  # fmt: skip
    screen = xvfb(tray_host=True)
    folder = tmp_path / "mirror"
    config = f"[[pair]]\nurl = 'http://127.0.0.1:9/'\nlocal = '{folder.as_posix()}'\ninterval = 0.5\n"
    app = app_process({"DISPLAY": screen.name, "WAYLAND_DISPLAY": "", "PYSTRAY_BACKEND": "",  # pystray's own choice
                       "PYTHONPATH": SYSTEM_PACKAGES, "DBUS_SESSION_BUS_ADDRESS": session_bus}, config=config)  # fmt: skip
    app.connect(app.read_until(r"\?code=").strip())
    tray = wait_until(lambda: (t := app.get("/api/tray"))["running"] and t, 30, "the tray icon to run")
    assert tray["backend"] == "appindicator" and tray["error"] is None, tray
    assert tray["menu"] == ["Open dashboard", "Sync now", "Pause syncing", "Open folder", "Quit"]
    at = wait_until(lambda: docked_icon(screen.name), 20, "the icon in the tray")

    # the menu as a person uses it: Pause syncing is its third entry
    click_and_type(screen.name, at, 1, ["Down", "Down", "Down", "Return"])
    wait_until(lambda: app.get("/api/state")["all_paused"], 15, "Pause syncing to pause the pairs")
    assert app.get("/api/tray")["menu"][2] == "Resume syncing"

    # ... and Quit its last: the process ends
    started = time.monotonic()
    click_and_type(screen.name, at, 3, ["Up", "Return"])
    try:
        out, _ = app.proc.communicate(timeout=QUIT_BOUND + 15)  # (includes opening the menu)
    except subprocess.TimeoutExpired:
        app.proc.kill()
        out, _ = app.proc.communicate(timeout=10)
        raise AssertionError(f"Quit in the tray's menu did not end the app: {out}") from None
    _report(record_property, "tray with AppIndicator (menu Quit)", time.monotonic() - started)
    _clean(out)
    assert app.proc.returncode == 0, out
