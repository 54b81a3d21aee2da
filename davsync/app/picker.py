"""The local-folder picker behind the Add form's "Choose…": the system's own dialog where one exists.

Windows: its own IFileOpenDialog (winpicker.py, ctypes), else tkinter's dialog where Python has
it (python.org's installer), else PowerShell's FolderBrowserDialog. Linux: zenity (GNOME) or kdialog
(KDE) when installed. macOS: osascript's "choose folder". Otherwise, or when the dialog
cannot start, the form keeps its typed path, which the checks validate as before.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TIMEOUT = 600.0  # a dialog left open this long is given up on
_PS = (
    "[Console]::OutputEncoding=[Text.Encoding]::UTF8; Add-Type -AssemblyName System.Windows.Forms; "
    "$d=New-Object System.Windows.Forms.FolderBrowserDialog; $d.Description='Folder to keep in sync'; "
    "$d.ShowNewFolderButton=$true; if($d.ShowDialog() -eq 'OK'){$d.SelectedPath}"
)


class PickerError(Exception):
    """No dialog could be shown; the message says to type the path instead."""


def command(start: str = "") -> list[str] | None:
    """The dialog program to run on this system, or None (tkinter on Windows is run in-process)."""
    start = start or str(Path.home())
    if sys.platform == "win32":
        return ["powershell", "-NoProfile", "-STA", "-Command", _PS]
    if sys.platform == "darwin":
        return ["osascript", "-e", 'POSIX path of (choose folder with prompt "Folder to keep in sync")']
    if shutil.which("zenity"):
        return ["zenity", "--file-selection", "--directory", "--title=Folder to keep in sync",
                f"--filename={start.rstrip(os.sep)}{os.sep}"]  # fmt: skip
    if shutil.which("kdialog"):
        return ["kdialog", "--getexistingdirectory", start, "--title", "Folder to keep in sync"]
    return None


def available() -> bool:
    return sys.platform == "win32" or command() is not None


def pick(start: str = "") -> str | None:
    """Show the dialog and wait: the chosen folder, or None when the person cancelled."""
    if sys.platform == "win32":
        from . import winpicker

        try:
            return winpicker.pick_folder()
        except OSError:
            pass  # no COM dialog here: tkinter's, else PowerShell's
        answered = _tk(start)
        if answered is not None:
            return answered or None
    cmd = command(start)
    if cmd is None:
        raise PickerError("No folder dialog is available on this computer: type the folder's path instead.")
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PickerError(f"The folder dialog could not be shown ({e}); type the folder's path instead.") from None
    chosen = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode != 0 or not chosen:
        return None  # zenity and kdialog answer 1 on Cancel
    return chosen


def _tk(start: str) -> str | None:
    """tkinter's folder dialog: the path, '' on Cancel, None when there is no tkinter."""
    try:
        import tkinter
        from tkinter import filedialog
    except ImportError:
        return None
    try:
        root = tkinter.Tk()
    except tkinter.TclError:
        return None
    try:
        root.withdraw()
        root.attributes("-topmost", True)
        return str(filedialog.askdirectory(initialdir=start or str(Path.home()), title="Folder to keep in sync") or "")
    finally:
        root.destroy()
