"""What one run of pull, sync or push did, typed: the CLI, `--json`, watch and the app read this.

`done` maps each Kind to the paths it was carried out for; problems are dataclasses, not
dicts of strings. The exit status comes from `plan.exit_code`, the one place it is decided.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..exitcodes import Exit
from .paths import Skipped
from .plan import Action, Kind, Mode, Plan, RemoteEntry, exit_code

# `--json` keeps the keys pull always printed; these were added with sync and push.
JSON_VERSION = 2


def server_only(a: Action) -> bool:
    """A server file push --delete leaves alone because it never pushed it (no base, nothing
    here): the server's own file, not a problem. The planner files it under SERVER_CHANGED."""
    return a.kind == Kind.SERVER_CHANGED and a.local is None and a.base is None


def planned_transfers(actions: Iterable[Action]) -> tuple[int, int]:
    """Files and bytes a run means to move, counted as its `Done:` line counts them: a conflict
    brings the server's version down and, in sync, sends the local copy up, two transfers."""
    files = size = 0
    for a in actions:
        down = a.kind in (Kind.DOWNLOAD, Kind.UPDATE) or a.kind == Kind.CONFLICT and _is_file(a.remote)
        up = a.kind in (Kind.UPLOAD, Kind.UPLOAD_EDIT) or a.kind == Kind.CONFLICT and a.upload_copy
        if down and a.remote is not None:
            files, size = files + 1, size + (a.remote.size or 0)
        if up and a.local is not None and not a.local.is_dir:
            files, size = files + 1, size + a.local.size
    return files, size


# How the planner words a deletion a guard held (pull; sync and push, each side).
_REFUSED = ("deletion refused", "deleted on the server; kept: ", "deleted here; kept on the server: ")


def refused(plan: Plan) -> list[Action]:
    """The deletions a guard refused: the one list every count of them is taken from (the
    warnings, --max-delete and the advice count their files; folders are said apart)."""
    kept = plan.of(Kind.KEPT_HERE, Kind.KEPT_ON_SERVER)
    held = [a for a in kept if a.reason.startswith(_REFUSED)]
    return held if held or not plan.refused_deletions else kept  # worded otherwise: every kept one


def is_folder(a: Action) -> bool:
    return any(e is not None and e.is_dir for e in (a.remote, a.local, a.base))


def refused_counts(plan: Plan) -> tuple[int, int]:
    """Files and folders a guard kept from being deleted."""
    held = refused(plan)
    folders = sum(1 for a in held if is_folder(a))
    return len(held) - folders, folders


def _is_file(entry: RemoteEntry | None) -> bool:
    return entry is not None and not entry.is_dir


@dataclass(frozen=True)
class Conflict:
    """Both sides changed differently: the server's version keeps `path`, the local one `local_copy`."""

    path: str
    local_copy: str
    reason: str
    uploaded: bool = False  # sync: the local copy went to the server too


@dataclass(frozen=True)
class Problem:
    """One path this run could not handle; the rest went on."""

    path: str
    error: str


@dataclass
class RunResult:
    command: Mode = Mode.PULL
    plan: Plan = field(default_factory=Plan)
    done: dict[Kind, list[str]] = field(default_factory=dict)
    kept_folders: list[str] = field(default_factory=list)  # folders not removed: something is inside
    conflicts: list[Conflict] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # being written while the run looked: next run
    warnings: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0
    bytes_uploaded: int = 0
    requests_sent: int = 0
    local_files_read: int = 0
    fatal: str | None = None
    interrupted: bool = False  # stopped early on request (SIGTERM, Ctrl-Break, console closed)
    retryable: bool = False  # the fatal error may go away by itself (server down, network)
    busy: bool = False  # the fatal error is another run holding DEST's lock: a watch waits its turn
    exit_code: Exit = Exit.OK
    mode: str = "walk"  # how the server was listed: "walk", "initial-report" or "sync-collection" (pull's JSON key)
    read_only: bool = False  # sync found an account that cannot write: it ran as a pull
    dry_run: bool = False  # --dry-run (and status): planned, nothing changed

    def record(self, kind: Kind, path: str) -> None:
        self.done.setdefault(kind, []).append(path)

    def error(self, path: str, message: str) -> None:
        self.errors.append(Problem(path, message))

    def count(self, *kinds: Kind) -> int:
        return sum(len(self.done.get(k, ())) for k in kinds)

    def decide_exit(self, *, ran: bool = True) -> Exit:
        """Partial or OK, from the plan and what happened (fatal errors are decided where caught)."""
        plan = self.plan
        if any(server_only(a) for a in plan.of(Kind.SERVER_CHANGED)):  # push did all it does
            plan = replace(plan, actions=[a for a in plan.actions if not server_only(a)])
        return exit_code(
            plan,
            errors=len(self.errors),
            conflicts=len(self.conflicts),
            skipped=len(self.skipped) + len(self.deferred),
            ran=ran,
        )

    def as_json(self) -> dict[str, Any]:
        done: dict[str, list[str]] = {k.value: v for k, v in self.done.items()}
        if self.kept_folders:
            done["kept-folder"] = list(self.kept_folders)  # pull's JSON always listed them here
        return {
            "version": JSON_VERSION,
            "command": self.command.value,
            "exit_code": int(self.exit_code),
            "mode": self.mode,
            "plan": {k.value: [a.path for a in self.plan.of(k)] for k in Kind if self.plan.of(k)},
            "done": done,
            "conflicts": [
                {"path": c.path, "local_copy": c.local_copy, "reason": c.reason, "uploaded": c.uploaded}
                for c in self.conflicts
            ],
            "errors": [{"path": e.path, "error": e.error} for e in self.errors],
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "deferred": list(self.deferred),
            "refused_deletions": refused_counts(self.plan)[0],  # files, as the warnings count them
            "refused_folders": refused_counts(self.plan)[1],
            "server_only": [a.path for a in self.plan.of(Kind.SERVER_CHANGED) if server_only(a)],
            "warnings": self.warnings,
            "bytes_downloaded": self.bytes_downloaded,
            "bytes_uploaded": self.bytes_uploaded,
            "requests": self.requests_sent,
            "read_only": self.read_only,
            "dry_run": self.dry_run,
            "fatal": self.fatal,
        }
