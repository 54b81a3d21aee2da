"""The folder-by-folder walk both sides share: the server's index rescans and the client's local look.

One folder's entries are held at a time, so a walk of 100,000 files stays small, and the
caller reads what it needs from each `os.DirEntry` (on Linux `is_dir`/`is_symlink` come from
the listing itself, so a folder costs one scandir and a file one lstat when asked for).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator

Descend = Callable[[str, "os.DirEntry[str]"], bool]
OnError = Callable[[str, OSError], None]


def plain_folder(rel: str, entry: os.DirEntry[str]) -> bool:
    """Descend into real folders only, never through a symbolic link."""
    return entry.is_dir(follow_symlinks=False)


def iter_folders(
    root: str,
    *,
    descend: Descend = plain_folder,
    on_error: OnError | None = None,
    stop: threading.Event | None = None,
    before_listing: Callable[[str], object] | None = None,
) -> Iterator[tuple[str, list[os.DirEntry[str]]]]:
    """Yield (relative folder, its entries) for ROOT and every folder below it that `descend` allows
    (it is asked of folders only: `is_dir(follow_symlinks=False)`, which the listing answers).

    Relative paths use '/'; folders are opened through `DirEntry.path` (the OS's own
    separator, so a Windows `\\\\?\\` long-path root keeps working). A folder that cannot be
    listed is passed to `on_error` (or silently left out) and nothing below it is visited.
    `before_listing` is called with each folder just before it is listed: a caller comparing
    the listing with its own record reads the record there, so an entry added to both while
    the folder is walked never looks vanished.
    """
    stack: list[tuple[str, str]] = [("", root)]
    while stack:
        if stop is not None and stop.is_set():
            return
        rel, path = stack.pop()
        if before_listing is not None:
            before_listing(rel)
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError as e:
            if on_error is not None:
                on_error(rel, e)
            continue
        yield rel, entries
        for entry in entries:
            try:
                if not entry.is_dir(follow_symlinks=False):
                    continue  # a file: no path built, no call (a walk of 100,000 files asks 100,000 times)
                child = f"{rel}/{entry.name}" if rel else entry.name
                if descend(child, entry):
                    stack.append((child, entry.path))
            except OSError:
                continue


def iter_tree(root: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Yield (relative path, entry) for every regular file and folder, skipping symlinks."""
    for rel, entries in iter_folders(root):
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_symlink():
                    continue
                if entry.is_dir(follow_symlinks=False) or entry.is_file(follow_symlinks=False):
                    yield child, entry
            except OSError:
                continue


def md5_of_file(file_path: str | os.PathLike[str]) -> str:
    """The MD5 of a file's content (hashlib reads it without holding the GIL)."""
    with open(file_path, "rb", buffering=0) as f:
        return hashlib.file_digest(f, "md5").hexdigest()
