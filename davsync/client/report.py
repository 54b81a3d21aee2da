"""How a pull talks to the person running it: rich progress on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO, cast

from ..units import human_size
from .plan import Action, Kind, Mode, Plan
from .results import RunResult

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
            self._line(f"{verb} {files} file(s), {human_size(total_bytes)}")

    def file_started(self, path: str, size: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def file_done(self, action: Action, note: str = "") -> None:
        verb = VERBS.get(action.kind, action.kind.value)
        extra = f" (your version kept as {note})" if action.kind == Kind.CONFLICT and note else ""
        self._line(f"{verb}: {action.path}{extra}")

    def warn(self, message: str) -> None:
        self._line(f"warning: {message}")

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
    (Kind.REMOTE_DELETED, "deleted-remotely"),
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
    (Kind.LOCAL_DELETED, "deleted here, kept on the server"),
    (Kind.REMOTE_DELETED, "deleted on the server, kept here"),
    (Kind.SERVER_CHANGED, "changed on the server, not overwritten"),
    (Kind.BLOCKED, "blocked"),
]
_WITH_REASON = {
    Kind.CONFLICT, Kind.BLOCKED, Kind.REMOTE_DELETED, Kind.RENAME, Kind.LOCAL_DELETED, Kind.SERVER_CHANGED,
    Kind.LOCAL_ONLY, Kind.LOCAL_MODIFIED,
}  # fmt: skip


def plan_lines(plan: Plan, limit: int = 50, *, two_way: bool = False) -> list[str]:
    """The plan as `status` and `--dry-run` print it."""
    lines = []
    for kind, label in TWO_WAY_LABELS if two_way else STATUS_LABELS:
        actions = plan.of(kind)
        if not actions:
            continue
        lines.append(f"{label}: {len(actions)}")
        for a in actions[:limit]:
            where = f"{a.src} -> {a.path}" if a.src else a.path
            detail = f"  ({a.reason})" if kind in _WITH_REASON and (two_way or kind != Kind.LOCAL_MODIFIED) else ""
            lines.append(f"  {where}{detail}")
        if len(actions) > limit:
            lines.append(f"  … and {len(actions) - limit} more")
    return lines


def summary_lines(result: RunResult) -> list[str]:
    n = result.count
    parts = [f"{n(Kind.DOWNLOAD, Kind.UPDATE)} downloaded ({human_size(result.bytes_downloaded)})"]
    if result.command != Mode.PULL:
        parts.append(f"{n(Kind.UPLOAD, Kind.UPLOAD_EDIT)} uploaded ({human_size(result.bytes_uploaded)})")
    for kinds, label in (
        ((Kind.CONFLICT,), "conflicts"),
        ((Kind.LOCAL_MOVE, Kind.REMOTE_MOVE), "moved"),
        ((Kind.DELETE,), "deleted here (to the trash)" if result.command != Mode.PULL else "deleted"),
        ((Kind.REMOTE_DELETE,), "deleted on the server"),
        ((Kind.ADOPT,), "adopted"),
        ((Kind.RENAME,), "renamed"),
    ):
        if n(*kinds):
            parts.append(f"{n(*kinds)} {label}")
    if n(Kind.REMOTE_DELETED):
        parts.append(f"{n(Kind.REMOTE_DELETED)} deleted on the server but kept")
    if n(Kind.LOCAL_MODIFIED):
        parts.append(f"{n(Kind.LOCAL_MODIFIED)} modified locally, left alone")
    if n(Kind.LOCAL_DELETED):
        parts.append(f"{n(Kind.LOCAL_DELETED)} deleted here but kept on the server")
    if n(Kind.LOCAL_ONLY):
        parts.append(f"{n(Kind.LOCAL_ONLY)} new here, not uploaded")
    if n(Kind.SERVER_CHANGED):
        parts.append(f"{n(Kind.SERVER_CHANGED)} changed on the server, not overwritten")
    if result.errors:
        parts.append(f"{len(result.errors)} error(s)")
    if result.skipped:
        parts.append(f"{len(result.skipped)} skipped")
    if result.deferred:
        parts.append(f"{len(result.deferred)} still being written, left for the next run")
    if result.plan.refused_deletions:
        parts.append(f"{result.plan.refused_deletions} deletion(s) refused")
    return ["Done: " + ", ".join(parts) + "."] + problem_lines(result)


def problem_lines(result: RunResult) -> list[str]:
    """Everything a pull left out of sync, and why: what --quiet still prints."""
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
    return lines
