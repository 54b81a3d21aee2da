"""The tray icon: mirrors the overall state and offers Open dashboard / Sync now / Pause / Quit.

Optional: pystray and Pillow may be missing, or there may be no display (a server, an SSH
session). Then `start_tray` returns the reason and the app runs on without a tray.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .core import App


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
        import pystray  # noqa: F401
    except Exception as e:  # pystray raises assorted errors when no backend works
        return f"pystray is not usable ({e.__class__.__name__}: {e}); pip install 'davsync[tray]'"
    return None


class Tray:
    def __init__(self, app: App, open_dashboard: Callable[[], None]) -> None:
        import pystray

        self.app = app
        self._open = open_dashboard
        self._state = "checking"
        menu = pystray.Menu(
            pystray.MenuItem("Open dashboard", lambda: self._open(), default=True),
            pystray.MenuItem("Sync now", lambda: self.app.sync_now()),
            pystray.MenuItem("Pause", self._toggle_pause, checked=lambda item: self.app.all_paused.is_set()),
            pystray.MenuItem("Quit", lambda: self.app.request_quit()),
        )
        self.icon = pystray.Icon("davsync", draw(icon_for("checking")), "davsync", menu)

    def _toggle_pause(self) -> None:
        self.app.set_paused(not self.app.all_paused.is_set())

    def _follow(self) -> None:
        seen = -1
        hub = self.app.hub
        while not hub.closed:
            o = hub.overall()
            if o["state"] != self._state:
                self._state = o["state"]
                self.icon.icon = draw(icon_for(self._state))
            self.icon.title = f"davsync: {o['label']}"
            seen = hub.wait(seen, 2.0)  # also re-judged by the clock: a check can become overdue

    def run_detached(self) -> None:
        threading.Thread(target=self._follow, name="davsync-tray", daemon=True).start()
        self.icon.run_detached()

    def stop(self) -> None:
        self.icon.stop()


def start_tray(app: App, open_dashboard: Callable[[], None]) -> tuple[Tray | None, str | None]:
    reason = tray_unavailable()
    if reason is not None:
        return None, reason
    try:
        tray = Tray(app, open_dashboard)
        tray.run_detached()
    except Exception as e:  # a broken desktop session must not take the syncing down with it
        return None, f"the tray icon could not start ({e.__class__.__name__}: {e})"
    return tray, None
