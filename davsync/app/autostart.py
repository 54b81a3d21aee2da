"""`davsync app --install-autostart`: start the app at login, without a console window.

- Windows: a value under HKCU\\...\\Run running pythonw.exe (no console flashes).
- Linux and other XDG desktops: ~/.config/autostart/davsync-app.desktop.
- macOS: a LaunchAgent plist in ~/Library/LaunchAgents.
Each starts `davsync app --no-browser`; the tray (or the printed URL) opens the dashboard.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
NAME = "davsync-app"


def command(extra: list[str] | None = None) -> list[str]:
    """The command line that starts the app; pythonw on Windows so no console window appears."""
    exe = Path(sys.executable)
    if sys.platform == "win32":
        windowless = exe.with_name("pythonw.exe")
        if windowless.exists():
            exe = windowless
    return [str(exe), "-m", "davsync", "app", "--no-browser", *(extra or [])]


def _xdg_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "autostart" / f"{NAME}.desktop"


def _mac_file() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / "net.davsync.app.plist"


def desktop_entry(cmd: list[str]) -> str:
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=davsync\n"
        "Comment=Keep folders in sync with your davsync server\n"
        f"Exec={' '.join(shlex.quote(c) for c in cmd)}\n"
        "Terminal=false\n"
        "X-GNOME-Autostart-enabled=true\n"
    )


def launch_agent(cmd: list[str]) -> str:
    from xml.sax.saxutils import escape

    args = "".join(f"    <string>{escape(c)}</string>\n" for c in cmd)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">\n'
        '<plist version="1.0"><dict>\n'
        "  <key>Label</key><string>net.davsync.app</string>\n"
        f"  <key>ProgramArguments</key><array>\n{args}  </array>\n"
        "  <key>RunAtLoad</key><true/>\n"
        "</dict></plist>\n"
    )


def install(extra: list[str] | None = None) -> str:
    """Install the login entry; returns a sentence saying where."""
    cmd = command(extra)
    if sys.platform == "win32":
        import subprocess
        import winreg

        with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
            winreg.SetValueEx(key, NAME, 0, winreg.REG_SZ, subprocess.list2cmdline(cmd))
        return f"davsync app starts at login (HKCU\\{RUN_KEY}\\{NAME})."
    if sys.platform == "darwin":
        target, text = _mac_file(), launch_agent(cmd)
    else:
        target, text = _xdg_file(), desktop_entry(cmd)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return f"davsync app starts at login ({target})."


def uninstall() -> str:
    if sys.platform == "win32":
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
                winreg.DeleteValue(key, NAME)
        except FileNotFoundError:
            return "davsync app was not set to start at login."
        return "davsync app no longer starts at login."
    target = _mac_file() if sys.platform == "darwin" else _xdg_file()
    if not target.exists():
        return "davsync app was not set to start at login."
    target.unlink()
    return f"davsync app no longer starts at login (removed {target})."
