"""The local folder itself, before and around a run: one run at a time (its lock), what stops it
from being synced into, what the last run on it was (read without creating anything), and the
side files a killed run left in its state folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .. import osfs
from ..exitcodes import Exit
from .paths import STATE_DIR_NAME
from .plan import Mode


class DestLockedError(Exception):
    pass


@contextmanager
def dest_lock(state_dir: Path) -> Iterator[None]:
    """One run at a time per DEST (a watch and a scheduled pull must not interleave)."""
    osfs.make_dirs(state_dir)
    osfs.hide(state_dir)
    try:
        with osfs.exclusive_lock(state_dir / "lock"):
            yield
    except osfs.DestLocked:
        raise DestLockedError(
            f"another davsync pull, sync or watch is running on {osfs.display_path(state_dir.parent)}; "
            "wait for it or stop it."
        ) from None


def dest_problem(dest: Path, *, writing: bool, mode: Mode = Mode.PULL) -> tuple[str, Exit] | None:
    """What stops DEST from being synced into, said plainly, before anything is asked or made.
    push's SRC must be a folder that is there: push only sends, so a mistyped path must not
    become a new empty folder (nor, with --delete, an empty share)."""
    if mode == Mode.PUSH and not dest.is_dir():
        if dest.exists():
            return f"SRC {dest} is a file, not a folder; push sends a folder, so give its path.", Exit.USAGE
        return f"SRC {dest} does not exist; push sends a folder that is there, so check the path.", Exit.USAGE
    if dest.exists() and not dest.is_dir():
        return f"{dest} is a file, not a folder: give a folder to sync into (it is created if missing).", Exit.USAGE
    if not writing:
        return None
    existing = dest
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot create {dest}: {existing} is a file, not a folder.", Exit.USAGE
    if not os.access(existing, os.W_OK | os.X_OK):
        what = f"{dest} is not writable" if existing == dest else f"cannot create {dest}: {existing} is not writable"
        return f"{what} (permission denied): choose another folder or fix its permissions.", Exit.LOCAL
    return None


def last_mode(dest: Path) -> Mode:
    """The command last run on DEST (sync, push, or pull), read without creating anything."""
    from .journal import peek_meta

    value = peek_meta(Path(os.path.abspath(dest)) / STATE_DIR_NAME / "state.db", "last_mode")
    return Mode(value) if value in ("sync", "push") else Mode.PULL


def delete_key(mode: Mode) -> str:
    return f"{mode.value}_delete"


def last_delete(dest: Path, mode: Mode) -> bool:
    """Whether the last run of this command on DEST had --delete (status views it as it ran)."""
    from .journal import peek_meta

    if mode == Mode.SYNC:
        return False  # sync always propagates deletions; the flag is pull's and push's
    return peek_meta(Path(os.path.abspath(dest)) / STATE_DIR_NAME / "state.db", delete_key(mode)) == "1"


def sweep_side_files(partial: Path) -> None:
    """Side files of a run that was killed and that nothing resumes: bundles' small files (in
    sub-folders) and a delta's assembled file and fetched ranges (each as big as the file). A
    whole-file download's .part and .json stay: the next fetch resumes from them."""
    for pattern in ("**/*.small", "*.delta", "*.ranges"):
        for leftover in partial.glob(pattern):
            leftover.unlink(missing_ok=True)
