"""How a pull talks to the person running it: rich progress on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO, cast

from ..units import human_size, plural
from .plan import Action, Kind, Mode, Plan
from .results import RunResult, is_folder, refused, server_only

VERBS = {
    Kind.MKDIR: "created folder",
    Kind.DOWNLOAD: "downloaded",
    Kind.UPDATE: "updated",
    Kind.CONFLICT: "CONFLICT",
    Kind.DELETE: "deleted (to trash)",
    Kind.RMDIR: "removed folder",
    Kind.RENAME: "renamed",
    Kind.UPLOAD: "uploaded",
    Kind.UPLOAD_EDIT: "uploaded",
    Kind.REMOTE_MKDIR: "created folder on the server",
    Kind.REMOTE_DELETE: "deleted on the server",
    Kind.REMOTE_RMDIR: "removed folder on the server",
    Kind.REMOTE_MOVE: "moved on the server",
    Kind.LOCAL_MOVE: "moved here",
}


class PlainReporter:
    """One line per file acted on; good for logs and pipes."""

    def __init__(self, out: TextIO | None = None, command: str = "pull") -> None:
        self.out = out or sys.stdout
        self.command = command  # pull only downloads; sync and push transfer both ways
        self._lock = threading.Lock()

    def begin(self, files: int, total_bytes: int) -> None:
        if files:
            verb = "Downloading" if self.command == "pull" else "Transferring"
            self._line(f"{verb} {plural(files, 'file')}, {human_size(total_bytes)}")

    def file_started(self, path: str, size: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def file_done(self, action: Action, note: str = "") -> None:
        verb = VERBS.get(action.kind)
        if verb is None:  # a file only reported, not acted on: the summary lists a few (--json all)
            return
        extra = f" (your version kept as {note})" if action.kind == Kind.CONFLICT and note else ""
        self._line(f"{verb}: {action.path}{extra}")

    def warn(self, message: str) -> None:
        self._line(f"warning: {message}")

    def note(self, message: str) -> None:
        """Something the user should see about a file in flight ("big.iso: resuming at 3.9 GB")."""
        self._line(message)

    def end(self) -> None: ...

    def _line(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)


class RichReporter(PlainReporter):
    """Overall files and bytes, speed, ETA, and the files in flight."""

    def __init__(self, console: Any = None, command: str = "pull") -> None:
        # rich is imported here: it costs ~40 ms at start-up, and only a terminal needs it.
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.console = console or Console(stderr=False)
        super().__init__(cast(TextIO, self.console.file), command)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[current]}", style="dim"),
            console=self.console,
            transient=False,
        )
        self._bytes_task: Any = None  # rich's TaskID once started
        self._current: list[str] = []

    def begin(self, files: int, total_bytes: int) -> None:
        if not files:
            return
        self.progress.start()
        self._bytes_task = self.progress.add_task(self.command, total=max(total_bytes, 1), current="")
        self._files = files
        self._done = 0

    def file_started(self, path: str, size: int) -> None:
        with self._lock:
            self._current.append(path)
            self._refresh()

    def advance(self, nbytes: int) -> None:
        if self._bytes_task is not None:
            self.progress.advance(self._bytes_task, nbytes)

    def file_done(self, action: Action, note: str = "") -> None:
        with self._lock:
            if action.path in self._current:
                self._current.remove(action.path)
            self._refresh()
        if action.kind in (Kind.CONFLICT, Kind.DELETE) or self._bytes_task is None:
            super().file_done(action, note)

    def _refresh(self) -> None:
        if self._bytes_task is not None:
            shown = ", ".join(p.rsplit("/", 1)[-1] for p in self._current[:3])
            self.progress.update(self._bytes_task, current=shown[:60])

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {message}")

    def note(self, message: str) -> None:
        self.console.print(message, markup=False)

    def end(self) -> None:
        if self._bytes_task is not None:
            self.progress.stop()


STATUS_LABELS = [
    (Kind.DOWNLOAD, "new"),
    (Kind.UPDATE, "changed"),
    (Kind.MKDIR, "new folders"),
    (Kind.RENAME, "renamed (letter case)"),
    (Kind.CONFLICT, "conflicts"),
    (Kind.LOCAL_MODIFIED, "locally-modified"),
    (Kind.KEPT_HERE, "deleted-remotely"),
    (Kind.DELETE, "to delete"),
    (Kind.RMDIR, "folders to remove"),
    (Kind.ADOPT, "already identical, to record"),
    (Kind.BLOCKED, "blocked"),
]
# sync and push: what goes which way.
TWO_WAY_LABELS = [
    (Kind.UPLOAD, "to upload (new here)"),
    (Kind.UPLOAD_EDIT, "to upload (changed here)"),
    (Kind.REMOTE_MKDIR, "folders to create on the server"),
    (Kind.REMOTE_MOVE, "to move on the server (renamed here)"),
    (Kind.DOWNLOAD, "to download (new on the server)"),
    (Kind.UPDATE, "to download (changed on the server)"),
    (Kind.MKDIR, "folders to create here"),
    (Kind.LOCAL_MOVE, "to move here (renamed on the server)"),
    (Kind.CONFLICT, "conflicts"),
    (Kind.REMOTE_DELETE, "to delete on the server (deleted here)"),
    (Kind.REMOTE_RMDIR, "folders to remove on the server"),
    (Kind.DELETE, "to delete here (deleted on the server; to the trash)"),
    (Kind.RMDIR, "folders to remove here"),
    (Kind.ADOPT, "already identical, to record"),
    (Kind.LOCAL_MODIFIED, "changed here, not uploaded"),
    (Kind.LOCAL_ONLY, "new here, not uploaded"),
    (Kind.KEPT_ON_SERVER, "deleted here, kept on the server"),
    (Kind.KEPT_HERE, "deleted on the server, kept here"),
    (Kind.SERVER_CHANGED, "changed on the server, not overwritten"),
    (Kind.BLOCKED, "blocked"),
]
_WITH_REASON = {
    Kind.CONFLICT, Kind.BLOCKED, Kind.KEPT_HERE, Kind.RENAME, Kind.KEPT_ON_SERVER,
    Kind.LOCAL_ONLY, Kind.LOCAL_MODIFIED,
}  # fmt: skip (server-changed: its label below says it all)

# push's server-changed, said as what it is (the planner files all four under one kind).
SERVER_ONLY = "on the server only, not deleted (push deletes only what it pushed from here)"
_NEVER_PUSHED = "on the server too, never pushed from here, not overwritten"
_SERVER_CHANGED_LABELS = [
    "changed on the server, not overwritten", "changed on the server, not deleted", _NEVER_PUSHED, SERVER_ONLY,
]  # fmt: skip


def server_changed_label(a: Action) -> str:
    if server_only(a):
        return SERVER_ONLY
    if a.base is None:
        return _NEVER_PUSHED
    return _SERVER_CHANGED_LABELS[1] if a.local is None else _SERVER_CHANGED_LABELS[0]


def _server_changed_groups(actions: list[Action]) -> list[tuple[str, list[Action]]]:
    return [(label, [a for a in actions if server_changed_label(a) == label]) for label in _SERVER_CHANGED_LABELS]


def _restores(a: Action) -> bool:
    """A transfer that brings back a file the other side deleted (it had a base as a file)."""
    return a.base is not None and not a.base.is_dir


# Two-way transfers of a file one side deleted and the other changed: said as such, not "new".
_RESTORE_LABELS = {
    Kind.DOWNLOAD: "to download (changed on the server; deleted here)",
    Kind.UPLOAD: "to upload (changed here; deleted on the server)",
}


def plan_lines(plan: Plan, limit: int = 50, *, two_way: bool = False) -> list[str]:
    """The plan as `status` and `--dry-run` print it."""
    lines = []
    for kind, label in TWO_WAY_LABELS if two_way else STATUS_LABELS:
        groups = [(label, plan.of(kind))]
        if two_way and kind in _RESTORE_LABELS:
            groups = [
                (label, [a for a in groups[0][1] if not _restores(a)]),
                (_RESTORE_LABELS[kind], [a for a in groups[0][1] if _restores(a)]),
            ]
        elif kind == Kind.SERVER_CHANGED:
            groups = _server_changed_groups(groups[0][1])
        for shown, actions in groups:
            if not actions:
                continue
            folders = {a.path for a in actions if _is_dir(a)}
            count = _items([a.path for a in actions], folders) if folders else str(len(actions))
            lines.append(f"{shown}: {count}")  # files and folders apart, as the warnings count files
            for a in actions[:limit]:
                where = f"{a.src} -> {a.path}" if a.src else a.path
                detail = f"  ({a.reason})" if kind in _WITH_REASON and (two_way or kind != Kind.LOCAL_MODIFIED) else ""
                lines.append(f"  {where}{detail}")
            if len(actions) > limit:
                lines.append(f"  … and {len(actions) - limit} more (--json lists them all)")
    return lines


_is_dir = is_folder


def _items(paths: list[str], folders: set[str]) -> str:
    """`30 files and 3 folders`: the same count a guard's warning gives (it counts files)."""
    dirs = sum(1 for p in paths if p in folders)
    files = len(paths) - dirs
    if dirs and files:
        return f"{plural(files, 'file')} and {plural(dirs, 'folder')}"
    return plural(dirs, "folder") if dirs else plural(files, "file")


def _folders(result: RunResult) -> set[str]:
    return {a.path for a in result.plan.actions if _is_dir(a)}


def _transfers(result: RunResult) -> tuple[int, int]:
    """Files downloaded and uploaded, a conflict's too: its server version came down, and in
    sync the local copy went up, so the counts agree with the bytes beside them."""
    n = result.count
    remote_files = {a.path for a in result.plan.of(Kind.CONFLICT) if a.remote is not None and not a.remote.is_dir}
    fetched = sum(1 for c in result.conflicts if c.path in remote_files)
    sent = sum(1 for c in result.conflicts if c.uploaded)
    return n(Kind.DOWNLOAD, Kind.UPDATE) + fetched, n(Kind.UPLOAD, Kind.UPLOAD_EDIT) + sent


def summary_lines(
    result: RunResult, *, url: str = "URL", folder: str = "DEST", connect: str = "", list_paths: bool = False
) -> list[str]:
    """The one-line summary of a run, then (`list_paths`) a few paths of each kind only reported,
    then its problems."""
    n = result.count
    folders = _folders(result)
    down, up = _transfers(result)
    parts = []
    if result.command != Mode.PUSH:  # push never downloads
        parts.append(f"{down} downloaded ({human_size(result.bytes_downloaded)})")
    if result.command != Mode.PULL:
        parts.append(f"{up} uploaded ({human_size(result.bytes_uploaded)})")
    if n(Kind.CONFLICT):
        parts.append(plural(n(Kind.CONFLICT), "conflict"))
    for kinds, label in (
        ((Kind.LOCAL_MOVE, Kind.REMOTE_MOVE), "moved"),
        ((Kind.DELETE,), "deleted here (to the trash)" if result.command != Mode.PULL else "deleted"),
        ((Kind.REMOTE_DELETE,), "deleted on the server"),
        ((Kind.ADOPT,), "adopted"),
        ((Kind.RENAME,), "renamed"),
    ):
        if n(*kinds):
            parts.append(f"{n(*kinds)} {label}")
    for label, paths in _held_groups(result):
        if paths and label != SERVER_ONLY:  # not a problem: listed below, not counted here
            parts.append(f"{_items(paths, folders)} {label}")
    if result.errors:
        parts.append(plural(len(result.errors), "error"))
    if result.skipped:
        parts.append(f"{len(result.skipped)} skipped")
    if result.deferred:
        parts.append(f"{len(result.deferred)} still being written, left for the next run")
    lines = ["Done: " + ", ".join(parts) + "."]
    if list_paths:
        lines += held_lines(result)
    return lines + problem_lines(result, url=url, folder=folder, connect=connect)


# Kinds a run only reports (nothing was changed for them), as the summary says them.
_HELD = [
    (Kind.KEPT_HERE, "deleted on the server but kept here"),
    (Kind.LOCAL_MODIFIED, "modified locally, left alone"),
    (Kind.KEPT_ON_SERVER, "deleted here but kept on the server"),
    (Kind.LOCAL_ONLY, "new here, not uploaded"),
    (Kind.SERVER_CHANGED, "changed on the server, not overwritten"),
]


def _held_groups(result: RunResult) -> list[tuple[str, list[str]]]:
    """The paths of each reported kind under its label (server-changed split as it is said)."""
    groups = []
    for kind, label in _HELD:
        paths = result.done.get(kind, [])
        if kind == Kind.SERVER_CHANGED and paths:
            done = set(paths)
            actions = [a for a in result.plan.of(kind) if a.path in done]
            groups += [(shown, [a.path for a in group]) for shown, group in _server_changed_groups(actions)]
        else:
            groups.append((label, paths))
    return groups


def held_lines(result: RunResult, limit: int = 5) -> list[str]:
    """A few paths of each reported kind (folders end in /), then how many more: the full
    list is in --json. One line per file flooded the screen (311 refused deletions)."""
    folders = _folders(result)
    lines = []
    for label, paths in _held_groups(result):
        if not paths:
            continue
        lines.append(f"{label}:")
        lines += [f"  {p}/" if p in folders else f"  {p}" for p in paths[:limit]]
        if len(paths) > limit:
            lines.append(f"  … and {len(paths) - limit} more (--json lists them all)")
    return lines


def _held_files(plan: Plan) -> int:
    """The most files one side's guard held: what --max-delete must allow for them to go."""
    held = [a for a in refused(plan) if not _is_dir(a)]
    return max(sum(1 for a in held if a.kind == k) for k in (Kind.KEPT_ON_SERVER, Kind.KEPT_HERE))


def fix_lines(result: RunResult, *, url: str = "URL", folder: str = "DEST", connect: str = "") -> list[str]:
    """What to do about what this run left out of sync on purpose: one sentence each. A command
    it suggests runs as printed: `connect` holds the connection options the user gave (" --user me")."""
    lines = []
    guards = set(result.plan.guards)
    if result.plan.refused_deletions and "local-empty" in guards:
        lines.append(
            f"If you emptied {folder} on purpose, delete those files on the server yourself (a browser or any WebDAV "
            "client): davsync never empties the share because the local folder looks empty."
        )
    if result.plan.refused_deletions and "remote-empty" in guards:
        lines.append(
            f"If the share was emptied on purpose, delete the files in {folder} yourself: davsync never empties "
            "a local folder because the share looks empty."
        )
    if result.plan.refused_deletions and not guards & {"local-empty", "remote-empty"}:
        if guards & {"max-delete-local", "max-delete-remote"}:
            many = max(_held_files(result.plan), 1)  # pull, sync and push: one sentence
            lines.append(
                f"Check these deletions; if they are meant, run again with --max-delete 100% (or --max-delete {many})."
            )
    if any(not server_only(a) for a in result.plan.of(Kind.SERVER_CHANGED)):
        lines.append(
            "`davsync push` never overwrites or deletes a server file it has not seen: run "
            f"`davsync sync {url} {folder}{connect}` to take the server's changes in (where both sides changed, "
            "both versions are kept), or remove those files on the server and push again."
        )
    return lines


def trash_lines(result: RunResult, *, folder: str = "DEST") -> list[str]:
    """The one line --quiet prints when files went to the trash: a deletion is never silent."""
    n = result.count(Kind.DELETE)
    if not n:
        return []
    return [f"{plural(n, 'file')} deleted on the server moved to the trash: {folder}/.davsync/trash"]


def problem_lines(result: RunResult, *, url: str = "URL", folder: str = "DEST", connect: str = "") -> list[str]:
    """Everything a run left out of sync, why, and what to do: what --quiet still prints."""
    lines = []
    for c in result.conflicts:
        sent = " (and uploaded)" if c.uploaded else ""
        lines.append(f"conflict: {c.path}: {c.reason}; your version is kept as {c.local_copy}{sent}")
    for e in result.errors:
        lines.append(f"error: {e.path}: {e.error}")
    for s in result.skipped[:20]:
        lines.append(f"skipped: {s.path}: {s.reason}")
    if len(result.skipped) > 20:
        lines.append(f"skipped: … and {len(result.skipped) - 20} more")
    for p in result.deferred[:20]:
        lines.append(f"deferred: {p}: still being written; it is synced next time")
    for w in result.warnings:
        lines.append(f"warning: {w}")
    return lines + fix_lines(result, url=url, folder=folder, connect=connect)
