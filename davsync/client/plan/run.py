"""What one run of the planner is given (options, the two snapshots) and gives back (the plan, its exit status)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ...exitcodes import Exit
from .kinds import Kind, Mode
from .model import ATTENTION, Action, LocalEntry, RemoteEntry


@dataclass(frozen=True)
class Options:
    delete: bool = False  # pull and push: deletions are opt-in (sync always propagates them)
    max_delete: int | None = None  # refuse a side's deletions when more files than this would go
    max_delete_percent: float | None = None  # ... or more than this share of the tracked files
    mode: Mode = Mode.PULL
    read_only: bool = False  # the account cannot write: sync behaves as pull, local changes reported
    union: bool = False  # lost journal or changed server identity: ignore the base, delete nothing

    def delete_limit(self, tracked_files: int) -> int | None:
        limits = []
        if self.max_delete is not None:
            limits.append(self.max_delete)
        if self.max_delete_percent is not None:
            # One file is never a mass deletion: a share (or folder) of one file may lose it.
            limits.append(max(1, int(tracked_files * self.max_delete_percent / 100)))
        return min(limits) if limits else None


def parse_max_delete(text: str) -> tuple[int | None, float | None]:
    """`--max-delete` as given: "N" files or "P%" of the tracked files."""
    value = text.strip()
    try:
        if value.endswith("%"):
            percent = float(value[:-1])
            if not 0 <= percent <= 100:
                raise ValueError
            return None, percent
        count = int(value)
        if count < 0:
            raise ValueError
        return count, None
    except ValueError:
        raise ValueError(f"--max-delete takes a file count or a percentage such as 50%, not {text!r}.") from None


@dataclass(frozen=True)
class LocalView:
    """The local snapshot: a full walk, or only what changed (then the rest is as the base says)."""

    entries: Mapping[str, LocalEntry | None]
    complete: bool = True
    failed: frozenset[str] = frozenset()  # folders that could not be read: frozen


@dataclass(frozen=True)
class RemoteView:
    """The server's snapshot: a full listing, or the changes from a sync-collection REPORT."""

    entries: Mapping[str, RemoteEntry]
    complete: bool = True
    removed: frozenset[str] = frozenset()  # incremental: paths the server reports gone
    failed: frozenset[str] = frozenset()  # folders whose listing failed: frozen
    looks_empty: bool | None = None  # incremental: would the share be empty afterwards?


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    guards: list[str] = field(default_factory=list)  # names of the guards that tripped
    refused_deletions: int = 0  # deletions a guard refused: files left out of sync, reported as a problem
    # Union only: the old rows are not trusted. The executor drops them all before recording
    # this run's bases, so a later run does not judge against them.
    reset_journal: bool = False

    def of(self, *kinds: Kind) -> list[Action]:
        return [a for a in self.actions if a.kind in kinds]

    @property
    def in_sync(self) -> bool:
        return not any(a.kind not in (Kind.REFRESH, Kind.FORGET) for a in self.actions)

    @property
    def changes(self) -> list[Action]:
        """Actions that change a file or folder on either side."""
        return [a for a in self.actions if a.changes_something]

    @property
    def needs_attention(self) -> bool:
        return any(a.kind in ATTENTION for a in self.actions)

    def explain(self) -> list[str]:
        return [a.explain() for a in self.actions]


def exit_code(
    plan: Plan, *, errors: int = 0, conflicts: int = 0, skipped: int = 0, ran: bool = True, status: bool = False
) -> Exit:
    """The exit status of a run, a dry run (`ran=False`) or `status`, from its plan and results:
    the one place this is decided. Fatal errors (connection, local disk, usage) are decided where
    they are caught."""
    if status:
        return Exit.OK if plan.in_sync and not errors else Exit.OUT_OF_SYNC
    if errors or conflicts or skipped or plan.refused_deletions:
        return Exit.PARTIAL  # files left out of sync
    if plan.of(Kind.SERVER_CHANGED):
        return Exit.PARTIAL  # push kept a server version it had not seen
    if not ran and plan.of(Kind.CONFLICT, Kind.BLOCKED):
        return Exit.PARTIAL  # a dry run's conflicts and blocks are not yet results
    return Exit.OK


def failed_where(here: Iterable[str], there: Iterable[str], limit: int = 3) -> str:
    """Which folders failed to list, and on which side (`on this computer: Photos; on the server: a, b, c
    and 2 more`): a warning that names none leaves the user nothing to check."""

    def few(folders: Iterable[str]) -> str:
        names = sorted(f or "/" for f in folders)  # "" is the top folder itself
        shown = ", ".join(names[:limit])
        return f"{shown} and {len(names) - limit} more" if len(names) > limit else shown

    sides = (("on this computer", here), ("on the server", there))
    return "; ".join(f"{side}: {few(folders)}" for side, folders in sides if folders)

