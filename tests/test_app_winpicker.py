"""Windows' folder dialog through ctypes (davsync/app/winpicker.py), on real Windows CPython.

The dialog is made and set up as the app's Choose… makes it: a folder picker (FOS_PICKFOLDERS),
file-system folders only, titled; that proves the COM calls and their vtable slots. Showing it
needs a person (or a desktop automation this lane does not have): not tested.
"""

from __future__ import annotations

import os
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "win32", reason="IFileOpenDialog exists only on Windows")


def test_the_dialog_is_a_folder_picker() -> None:
    if "WINEPREFIX" in os.environ and not os.environ.get("DISPLAY"):
        pytest.skip("under wine the shell's dialogs need an X display (run the lane under Xvfb)")
    from davsync.app import winpicker

    dialog = winpicker.make_dialog("Folder to keep in sync")
    try:
        options = winpicker.options_of(dialog)
    finally:
        winpicker.release(dialog)
    assert options & winpicker.FOS_PICKFOLDERS and options & winpicker.FOS_FORCEFILESYSTEM, hex(options)
