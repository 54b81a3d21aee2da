"""The tray icon: mirrors the overall state and offers Open dashboard, Sync now, Pause syncing,
Open folder and Quit.

Optional: pystray and Pillow may be missing, there may be no display (a server, an SSH session)
or no notification area, or the icon may fail to appear. Then `start_tray` returns the reason and
the app runs on without a tray; nothing the tray does can keep the process alive after Quit.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .core import App, CommandError

log = logging.getLogger("davsync.app")
START_WAIT = 5.0  # seconds for the icon to appear before the app says there is none
STOP_WAIT = 1.0  # seconds Quit waits for the icon to go away


@dataclass(frozen=True)
class IconSpec:
    color: str
    glyph: str  # what is drawn on the disc: check, arrows, bang, cross, clock, pause, dots
    green: bool = False


ICONS: dict[str, IconSpec] = {
    "ok": IconSpec("#1a7f37", "check", green=True),
    "syncing": IconSpec("#0969da", "arrows"),
    "error": IconSpec("#cf222e", "bang"),
    "attention": IconSpec("#cf222e", "bang"),
    "offline": IconSpec("#bf5700", "cross"),
    "stale": IconSpec("#bf5700", "clock"),
    "paused": IconSpec("#6e7781", "pause"),
    "checking": IconSpec("#6e7781", "dots"),
    "empty": IconSpec("#6e7781", "dots"),
}
UNKNOWN = IconSpec("#6e7781", "dots")


def icon_for(state: str) -> IconSpec:
    """Only "ok" is green; a state this version does not know is shown grey, never green."""
    return ICONS.get(state, UNKNOWN)


def draw(spec: IconSpec, size: int = 64) -> Any:
    """A disc in the state's colour with a white glyph, as a PIL image."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.ellipse((2, 2, size - 3, size - 3), fill=spec.color)
    s = size / 64
    w = max(2, round(6 * s))
    white = "#ffffff"
    if spec.glyph == "check":
        d.line([(18 * s, 33 * s), (28 * s, 43 * s), (46 * s, 22 * s)], fill=white, width=w)
    elif spec.glyph == "arrows":
        d.arc((16 * s, 16 * s, 48 * s, 48 * s), 200, 340, fill=white, width=w)
        d.arc((16 * s, 16 * s, 48 * s, 48 * s), 20, 160, fill=white, width=w)
    elif spec.glyph == "bang":
        d.line([(32 * s, 14 * s), (32 * s, 38 * s)], fill=white, width=w + 1)
        d.ellipse((28 * s, 43 * s, 36 * s, 51 * s), fill=white)
    elif spec.glyph == "cross":
        d.line([(21 * s, 21 * s), (43 * s, 43 * s)], fill=white, width=w)
        d.line([(43 * s, 21 * s), (21 * s, 43 * s)], fill=white, width=w)
    elif spec.glyph == "clock":
        d.line([(32 * s, 16 * s), (32 * s, 33 * s), (44 * s, 40 * s)], fill=white, width=w)
    elif spec.glyph == "pause":
        d.rectangle((22 * s, 18 * s, 28 * s, 46 * s), fill=white)
        d.rectangle((36 * s, 18 * s, 42 * s, 46 * s), fill=white)
    else:
        for x in (20, 32, 44):
            d.ellipse(((x - 4) * s, 28 * s, (x + 4) * s, 36 * s), fill=white)
    return img


def tray_unavailable() -> str | None:
    """Why there can be no tray here, or None when there can be one."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no graphical display"
    try:
        import PIL  # noqa: F401
        import pystray
    except Exception as e:  # pystray raises assorted errors when no backend works
        return f"pystray is not usable ({e.__class__.__name__}: {e}); pip install 'davsync[tray]'"
    if backend_name(pystray.Icon) == "xorg" and not _x11_has_tray():
        return "this desktop has no system tray (notification area) to show it in"
    return None


def backend_name(icon_class: type) -> str:
    """pystray's backend in use: win32, darwin, appindicator, gtk or xorg (its module's name)."""
    return icon_class.__module__.rsplit(".", 1)[-1].lstrip("_")


def _x11_has_tray() -> bool:
    """An X11 tray icon is only shown where a program owns the system tray selection (a panel);
    without one, pystray's icon waits invisibly and logs a traceback for every update."""
    from Xlib import X
    from Xlib import display as xdisplay

    try:
        d = xdisplay.Display()
    except Exception:  # Xlib raises its own error types for unreachable displays
        return False
    try:
        return bool(d.get_selection_owner(d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}")) != X.NONE)
    finally:
        d.close()


def x11_title(text: str) -> str:
    """X11 window names are Latin-1 for python-xlib: '…' killed the tray's loop (UnicodeEncodeError).
    Plain ASCII is safe on every X server and panel."""
    return text.replace("\u2026", "...").encode("ascii", "replace").decode("ascii")


class Tray:
    """The icon, run on a daemon thread of ours.

    pystray starts its loop and setup threads from the thread that calls run(); a new thread is a
    daemon when its creator is one, so none of them can keep the process alive after Quit (pystray's
    non-daemon setup thread waits for ever when the loop ends before the icon is ready)."""

    def __init__(self, app: App, open_dashboard: Callable[[], None]) -> None:
        import pystray

        self.app = app
        self._open = open_dashboard
        self._state = "checking"
        self.backend = backend_name(pystray.Icon)
        self.error: str | None = None
        self.ready = threading.Event()  # the icon is shown
        self.ended = threading.Event()  # its loop has returned (or never started)
        self._settled = threading.Event()  # one of the two
        item = pystray.MenuItem
        menu = pystray.Menu(
            item("Open dashboard", lambda: self._open(), default=True),
            item("Sync now", lambda: self._do(self.app.sync_now)),
            item(lambda _: "Resume syncing" if self.app.all_paused.is_set() else "Pause syncing", self._toggle_pause,
                 checked=lambda _: self.app.all_paused.is_set()),
            item("Open folder", pystray.Menu(lambda: (
                item(p.local, self._open_folder(p.id)) for p in self.app.config.pairs)),
                enabled=lambda _: bool(self.app.config.pairs)),
            item("Quit", lambda: self.app.request_quit()),
        )  # fmt: skip
        self.icon = pystray.Icon("davsync", draw(icon_for("checking")), "davsync", menu)

    def _title(self, text: str) -> str:
        return x11_title(text) if self.backend == "xorg" else text

    def _do(self, command: Callable[[], object]) -> None:
        try:
            command()
        except CommandError as e:  # shown where the person looks next: the dashboard
            self.app.hub.set_notice(str(e))

    def _toggle_pause(self) -> None:
        self._do(lambda: self.app.set_paused(not self.app.all_paused.is_set()))

    def _open_folder(self, pair_id: str) -> Callable[[], None]:
        return lambda: self._do(lambda: self.app.open_folder(pair_id))

    def state(self) -> dict[str, object]:
        """What the tray shows now, for the dashboard's /api/tray (and the tests)."""
        menu = self.icon.menu
        return {
            "backend": self.backend,
            "running": self.ready.is_set() and not self.ended.is_set(),
            "has_menu": bool(self.icon.HAS_MENU),
            "menu": [i.text for i in menu.items if i.visible] if menu is not None else [],
            "title": self.icon.title,
            "error": self.error,
        }

    def _run(self) -> None:
        try:
            self.icon.run(setup=self._setup)
        except Exception as e:  # a broken desktop session must not take the syncing down with it
            self.error = f"{e.__class__.__name__}: {e}"
            log.info("the tray icon stopped: %s", self.error)
        finally:
            if self.error is None and not self.app.quit.is_set():
                self.error = "the tray icon's loop ended"
            self.ended.set()
            self._settled.set()

    def _setup(self, icon: object) -> None:
        """pystray's setup thread (its place for work beside the loop): show the icon, then keep
        it following the state, so only this one thread ever updates it."""
        self.icon.visible = True
        self.ready.set()
        self._settled.set()
        self._follow()

    def _follow(self) -> None:
        seen = -1
        hub = self.app.hub
        try:
            while not hub.closed and not self.ended.is_set():
                o = hub.overall()
                if o["state"] != self._state:
                    self._state = o["state"]
                    self.icon.icon = draw(icon_for(self._state))
                self.icon.title = self._title(f"davsync: {o['label']}")
                seen = hub.wait(seen, 2.0)  # also re-judged by the clock: a check can become overdue
        except Exception as e:  # the icon went away under us: the app and its dashboard go on
            self.error = self.error or f"{e.__class__.__name__}: {e}"
            log.info("the tray icon stopped following the state: %s", self.error)

    def start(self, wait: float = START_WAIT) -> str | None:
        """Show the icon; None once it is up, else why it is not (it may still appear later)."""
        threading.Thread(target=self._run, name="davsync-tray", daemon=True).start()
        self._settled.wait(wait)
        if self.ended.is_set():
            return f"the tray icon could not start ({self.error})"
        if not self.ready.is_set():
            return f"the tray icon did not appear within {wait:.0f} s"
        return None

    def stop(self, wait: float = STOP_WAIT) -> None:
        """Take the icon away and let its loop end (on Windows: the icon removed from the
        notification area, its windows destroyed) before the process ends, waiting at most `wait`
        in all (pystray may wait 5 s for its setup thread). Ending the process while the loop was
        still tearing down hung its exit under wine, past a kill."""
        deadline = time.monotonic() + wait
        stopper = threading.Thread(target=self.icon.stop, name="davsync-tray-stop", daemon=True)
        stopper.start()
        stopper.join(wait)
        self.ended.wait(max(0.0, deadline - time.monotonic()))


def start_tray(app: App, open_dashboard: Callable[[], None]) -> tuple[Tray | None, str | None]:
    reason = tray_unavailable()
    if reason is not None:
        return None, reason
    try:
        tray = Tray(app, open_dashboard)
    except Exception as e:  # a broken desktop session must not take the syncing down with it
        return None, f"the tray icon could not start ({e.__class__.__name__}: {e})"
    reason = tray.start()
    if reason is not None:
        tray.stop()  # an icon that turns up late would show a state nobody updates
        return None, reason
    return tray, None
