"""Windows' own folder dialog (IFileOpenDialog with FOS_PICKFOLDERS), through ctypes: the
embeddable Python has neither tkinter nor pywin32, and this is the dialog Explorer users know.

COM by hand: the interface pointers' vtables are called by index, in the order shobjidl.h
declares them (IUnknown 0-2, IModalWindow::Show 3, IFileDialog 4-26; IShellItem 3-7).
"""

from __future__ import annotations

import ctypes
import sys
from ctypes import POINTER, byref, c_uint32, c_void_p, c_wchar_p
from typing import Any

CLSID_FILE_OPEN_DIALOG = "{DC1C5A9C-E88A-4DDE-A5A1-60F82A20AEF7}"
IID_IFILE_OPEN_DIALOG = "{D57C7288-D4AD-4768-BE02-9D969532D960}"
FOS_PICKFOLDERS = 0x20
FOS_FORCEFILESYSTEM = 0x40
SIGDN_FILESYSPATH = 0x80058000
ERROR_CANCELLED = 0x800704C7  # HRESULT_FROM_WIN32(ERROR_CANCELLED): the person pressed Cancel
# vtable slots
RELEASE, SHOW, SET_OPTIONS, GET_OPTIONS, SET_TITLE, GET_RESULT = 2, 3, 9, 10, 17, 20
GET_DISPLAY_NAME = 5  # IShellItem


class _GUID(ctypes.Structure):
    _fields_ = [("data1", c_uint32), ("data2", ctypes.c_uint16), ("data3", ctypes.c_uint16),
                ("data4", ctypes.c_ubyte * 8)]  # fmt: skip


def _guid(text: str) -> _GUID:
    g = _GUID()
    ole32: Any = ctypes.windll.ole32  # type: ignore[attr-defined,unused-ignore]
    if ole32.CLSIDFromString(c_wchar_p(text), byref(g)) != 0:
        raise OSError(f"bad GUID {text}")
    return g


def _call(obj: c_void_p, slot: int, *args: Any, argtypes: tuple[Any, ...] = ()) -> int:
    """Call method `slot` of a COM interface pointer; returns its HRESULT (unsigned)."""
    vtable = ctypes.cast(obj, POINTER(POINTER(c_void_p))).contents
    proto = ctypes.WINFUNCTYPE(ctypes.c_long, c_void_p, *argtypes)  # type: ignore[attr-defined,unused-ignore]
    return int(proto(vtable[slot])(obj, *args)) & 0xFFFFFFFF


def _check(hr: int, what: str) -> None:
    if hr & 0x80000000:
        raise OSError(f"{what} failed (HRESULT 0x{hr:08X})")


def make_dialog(title: str) -> c_void_p:
    """A folder-picking IFileOpenDialog (not yet shown). The caller releases it with release()."""
    ole32: Any = ctypes.windll.ole32  # type: ignore[attr-defined,unused-ignore]
    ole32.CoInitializeEx(None, 0x2)  # apartment-threaded, as a dialog needs; S_FALSE if already
    dialog = c_void_p()
    clsid, iid = _guid(CLSID_FILE_OPEN_DIALOG), _guid(IID_IFILE_OPEN_DIALOG)
    _check(int(ole32.CoCreateInstance(byref(clsid), None, 1, byref(iid), byref(dialog))) & 0xFFFFFFFF,
           "CoCreateInstance(FileOpenDialog)")  # fmt: skip
    options = c_uint32()
    _check(_call(dialog, GET_OPTIONS, byref(options), argtypes=(POINTER(c_uint32),)), "GetOptions")
    _check(_call(dialog, SET_OPTIONS, c_uint32(options.value | FOS_PICKFOLDERS | FOS_FORCEFILESYSTEM),
                 argtypes=(c_uint32,)), "SetOptions")  # fmt: skip
    _check(_call(dialog, SET_TITLE, c_wchar_p(title), argtypes=(c_wchar_p,)), "SetTitle")
    return dialog


def options_of(dialog: c_void_p) -> int:
    options = c_uint32()
    _check(_call(dialog, GET_OPTIONS, byref(options), argtypes=(POINTER(c_uint32),)), "GetOptions")
    return options.value


def release(obj: c_void_p) -> None:
    if obj:
        _call(obj, RELEASE)


def pick_folder(title: str = "Folder to keep in sync") -> str | None:
    """Show the dialog and wait: the folder's path, or None on Cancel. OSError if COM fails."""
    if sys.platform != "win32":
        raise OSError("IFileOpenDialog exists only on Windows")
    dialog = make_dialog(title)
    try:
        hr = _call(dialog, SHOW, c_void_p(None), argtypes=(c_void_p,))
        if hr == ERROR_CANCELLED:
            return None
        _check(hr, "Show")
        item = c_void_p()
        _check(_call(dialog, GET_RESULT, byref(item), argtypes=(POINTER(c_void_p),)), "GetResult")
        try:
            name = c_wchar_p()
            _check(_call(item, GET_DISPLAY_NAME, c_uint32(SIGDN_FILESYSPATH), byref(name),
                         argtypes=(c_uint32, POINTER(c_wchar_p))), "GetDisplayName")  # fmt: skip
            path = name.value
            ctypes.windll.ole32.CoTaskMemFree(name)  # type: ignore[attr-defined,unused-ignore]
            return path
        finally:
            release(item)
    finally:
        release(dialog)
