"""The dashboard's effects on the local folder: resolving a conflict, browsing and restoring the trash.

Nothing here deletes a file: a version the person does not keep goes to DEST/.davsync/trash/,
where the Trash panel can bring it back. Paths come from the app's own lists, never straight
from a request, and are checked to stay inside DEST all the same.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from ..client.paths import STATE_DIR_NAME

TRASH_LIMIT = 1000
PREVIEW_TEXT = 20_000  # characters of a text file shown in a preview
PREVIEW_IMAGE = 8 * 1024 * 1024  # bytes: a bigger picture is opened, not previewed
IMAGES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}
TEXTS = {".txt", ".md", ".csv", ".log", ".json", ".xml", ".ini", ".toml", ".yaml", ".yml", ".html", ".css", ".js",
         ".py", ".tex", ".srt"}  # fmt: skip


class ActionError(Exception):
    """An action the person asked for cannot be done; the message says why and what to do."""


def inside(dest: Path, rel: str) -> Path:
    parts = PurePosixPath(rel).parts
    if not rel or rel.startswith("/") or "\\" in rel or ".." in parts or "\0" in rel or not parts:
        raise ActionError(f"{rel!r} is not a path inside the folder.")
    if parts[0].casefold() == STATE_DIR_NAME:
        raise ActionError(f"{rel!r} is inside davsync's own state folder.")
    return dest.joinpath(*parts)


def _stat(path: Path) -> dict[str, Any] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime": st.st_mtime}


def conflict_view(dest: Path, conflict: dict[str, Any]) -> dict[str, Any]:
    """The conflict as the page shows it: theirs (at the name) and mine (the conflict copy)."""
    return conflict | {
        "theirs": _stat(dest / conflict["path"]),
        "mine": _stat(dest / conflict["local_copy"]) if conflict.get("local_copy") else None,
    }


def still_open(dest: Path, conflict: dict[str, Any]) -> bool:
    """A conflict stays listed while its conflict copy exists (someone may resolve it by hand)."""
    copy = conflict.get("local_copy")
    return isinstance(copy, str) and bool(copy) and (dest / copy).exists()


def _stamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def to_trash(dest: Path, rel: str, stamp: str | None = None) -> str:
    src = inside(dest, rel)
    stamp = stamp or _stamp()
    target = dest / STATE_DIR_NAME / "trash" / stamp / rel
    n = 1
    while target.exists():
        n += 1
        target = dest / STATE_DIR_NAME / "trash" / f"{stamp}-{n}" / rel
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, target)
    except OSError as e:
        raise ActionError(
            f"could not move {rel} to the trash: {e.strerror}. Close programs using it and try again."
        ) from None
    return target.relative_to(dest).as_posix()


def resolve_conflict(dest: Path, conflict: dict[str, Any], choice: str) -> str:
    """mine | theirs | both. Returns a sentence saying what happened."""
    rel, copy = conflict["path"], conflict.get("local_copy") or ""
    theirs, mine = inside(dest, rel), inside(dest, copy) if copy else None
    if choice == "both":
        return f"Kept both: {rel} (the server's) and {copy} (yours)."
    if mine is None or not mine.exists():
        raise ActionError(
            f"your version {copy or rel} is no longer there; nothing to choose. Dismiss with 'keep both'."
        )
    if choice == "theirs":
        trashed = to_trash(dest, copy)
        return f"Kept the server's version of {rel}; yours is in the trash ({trashed})."
    if choice == "mine":
        moved_aside = to_trash(dest, rel) if theirs.exists() else None
        try:
            os.replace(mine, theirs)
        except OSError as e:
            raise ActionError(
                f"could not put your version back as {rel}: {e.strerror}. Close programs using it and try again."
            ) from None
        where = f"; the server's is in the trash ({moved_aside})" if moved_aside else ""
        return (f"Kept your version as {rel}{where}. In pull mode your version stays on this PC only; "
                "a later change on the server shows up as a new conflict.")  # fmt: skip
    raise ActionError(f"unknown choice {choice!r}: use mine, theirs or both.")


def list_trash(dest: Path) -> list[dict[str, Any]]:
    """Every file davsync moved aside, newest first."""
    root = dest / STATE_DIR_NAME / "trash"
    items: list[dict[str, Any]] = []
    if not root.is_dir():
        return items
    for batch in sorted(root.iterdir(), reverse=True):
        if not batch.is_dir():
            continue
        when = _parse_stamp(batch.name)
        for dirpath, _dirs, names in os.walk(batch):
            for name in sorted(names):
                full = Path(dirpath) / name
                st = _stat(full)
                items.append({
                    "id": f"{batch.name}/{full.relative_to(batch).as_posix()}",
                    "path": full.relative_to(batch).as_posix(),
                    "trashed_at": when,
                    "size": st["size"] if st else None,
                    "mtime": st["mtime"] if st else None,
                })  # fmt: skip
                if len(items) >= TRASH_LIMIT:
                    return items
    return items


def _parse_stamp(name: str) -> float | None:
    try:
        return datetime.strptime(name[:15], "%Y%m%d-%H%M%S").timestamp()
    except ValueError:
        return None


def restore(dest: Path, item_id: str) -> str:
    """Move a trashed file back to where it was; beside it if that name is taken again."""
    batch, _, rel = item_id.partition("/")
    if not batch or "/" in batch or batch in (".", ".."):
        raise ActionError(f"{item_id!r} is not an item of the trash.")
    src = inside(dest / STATE_DIR_NAME / "trash" / batch, rel)
    if not src.is_file():
        raise ActionError(f"{rel} is no longer in the trash.")
    target = inside(dest, rel)
    if target.exists():
        stem, dot, ext = target.name.rpartition(".")
        if not stem:
            stem, dot, ext = target.name, "", ""
        target = target.with_name(f"{stem}.restored-{batch}{dot}{ext}")
        if target.exists():
            raise ActionError(f"{target.name} already exists; move it away and restore again.")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, target)
    except OSError as e:
        raise ActionError(f"could not restore {rel}: {e.strerror}.") from None
    _prune_empty(src.parent, dest / STATE_DIR_NAME / "trash")
    return f"Restored {target.relative_to(dest).as_posix()}."


def _prune_empty(folder: Path, stop: Path) -> None:
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def open_folder(path: Path, select: Path | None = None) -> None:
    """Show a folder in the platform's file manager (the dashboard's 'Open folder'); on Windows
    and macOS with `select` highlighted."""
    if not path.is_dir():
        raise ActionError(f"{path} does not exist.")
    if sys.platform == "win32":
        if select is not None and select.exists():
            subprocess.Popen(["explorer", f"/select,{select}"])
        else:
            os.startfile(path)  # type: ignore[attr-defined,unused-ignore]
        return
    if sys.platform == "darwin":
        cmd = ["open", "-R", str(select)] if select is not None and select.exists() else ["open", str(path)]
    else:
        cmd = ["xdg-open", str(path)]
    try:
        subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        raise ActionError(f"no file manager could be started ({cmd[0]} is missing); the folder is {path}.") from None


def preview(path: Path) -> dict[str, Any]:
    """What the page can show of a file without opening it: a picture (as a data: URI, which the
    page's CSP allows and which cannot run script) or the start of a text; else say to open it."""
    suffix = path.suffix.lower()
    try:
        size = path.stat().st_size
        if suffix in IMAGES and size <= PREVIEW_IMAGE:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            return {"kind": "image", "data": f"data:{IMAGES[suffix]};base64,{data}"}
        if suffix in TEXTS or suffix == "":
            with open(path, "rb") as f:
                head = f.read(PREVIEW_TEXT * 4)
            if b"\0" not in head:
                text = head.decode("utf-8", "replace")[:PREVIEW_TEXT]
                return {"kind": "text", "text": text, "cut": size > len(head) or len(text) == PREVIEW_TEXT}
    except OSError as e:
        raise ActionError(f"could not read {path.name}: {e.strerror}.") from None
    return {"kind": "none", "message": f"No preview for {path.name}: use Open to see it in its own program."}


def open_file(path: Path) -> None:
    """Open a file in the program the system uses for it (a conflict's 'Open')."""
    if not path.is_file():
        raise ActionError(f"{path} is no longer there.")
    if sys.platform == "win32":
        os.startfile(path)  # type: ignore[attr-defined,unused-ignore]
        return
    cmd = ["open", str(path)] if sys.platform == "darwin" else ["xdg-open", str(path)]
    try:
        subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        raise ActionError(f"no program could open it ({cmd[0]} is missing); the file is {path}.") from None
