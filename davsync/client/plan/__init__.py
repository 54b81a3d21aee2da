"""The planning core: base + local snapshot + remote snapshot + options -> a typed plan. No I/O.

Every rule that protects data (design.md, "Rules that protect data" and "Two-way sync") is
decided here, so it can be tested exhaustively. `pull`, `sync` and `push` share this one core.

The model
- **Base** (`JournalEntry`, one per path): the version both sides last agreed on, with each
  side's own view of it (local size, mtime_ns, file id, MD5; remote etag, MD5, size, mtime).
  Each side is compared only with its own half of the base: a local mtime is never compared
  with a server one. A side is *same*, *modified*, *new* or *deleted* relative to the base.
- **Snapshots** (`LocalView`, `RemoteView`): a complete listing (absent = gone), or only the
  changes (a sync-collection REPORT, a watcher's events) with every other path taken as
  unchanged, i.e. as the base says. A folder whose listing failed is *frozen*: nothing at or
  below it is judged, and no deletion happens anywhere in that run.
- **Decision** per path from (local status, remote status) and the mode, read from the decision
  table (`table.py`, the one place the rules are written down; README's "What happens when..."
  is generated from it):
  `pull` mirrors the server (today's behaviour, unchanged); `sync` carries changes both ways;
  `push` makes the server follow the local folder but never overwrites or deletes a server
  version it has not seen. Identical content is never a conflict. Modify beats delete, both
  ways. Both changed and different: the server's version keeps the name on both sides, the
  local one becomes NAME.sync-conflict-YYYYMMDD-HHMMSS.EXT and is uploaded too (sync). A file
  against a folder keeps both, the local one renamed.
- **Renames** (sync, push): a local path gone plus a new one with the same file id (or size
  and mtime), confirmed by MD5, is a server MOVE; a server delete plus add with the same MD5 is
  a local rename. A folder whose whole content moved the same way is one MOVE. Renames are
  found before the deletion guards count anything.
- **Guards**, decided before anything runs, turn deletions into reports ("held"): a failed
  listing (all deletions), an empty server listing while the base is not (local deletions),
  an empty or missing DEST while the base is not (server deletions), more than --max-delete
  (N or a percentage of tracked files) on a side (that side's deletions). A lost journal or a
  changed server identity is *union only*: the base is ignored (and dropped: `reset_journal`),
  so nothing is deleted and differences become conflict copies. Excluded paths are not judged at all (a newly excluded
  path is left alone on both sides, and so is its journal row).
- **Actions** say per side what changes (`local_ops`, `remote_ops`), why (`reason`), and what
  the journal records when they succeed (`journal`, `to_record`/`entry_after`, `extra`): a base
  is recorded only for a version present on both sides. They come in execution order: a file
  against a folder, folders and moves (shallow first), transfers, deletions, folder removals
  (deepest first), reports. `exit_code` turns a plan and its results into the
  process's exit status, in one place.

Where: `kinds` (modes, action kinds), `model` (entries, base, Action), `run` (options, views,
Plan, exit status), `compare` (changed? equal? paths, conflict names), `table` (the rules),
`pull`, `twoway` (sync and push) on `snapshots` (one run's state) with `renames` and `guards`,
`order` (execution order). This module is the entry point: `reconcile`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime

from . import readme, table
from .compare import conflict_name, learns_ctime
from .kinds import Kind, Mode
from .model import (
    ATTENTION,
    TRANSFERS,
    UPLOADS,
    Action,
    JournalEntry,
    JournalOp,
    LocalEntry,
    LocalOp,
    RemoteEntry,
    RemoteOp,
    complete,
    resolve_in_flight,
    same_ctime,
    stat_matches,
)
from .pull import plan_pull
from .run import LocalView, Options, Plan, RemoteView, exit_code, failed_where, parse_max_delete
from .twoway import TwoWay


def reconcile(
    base: Mapping[str, JournalEntry],
    local: LocalView | Mapping[str, LocalEntry | None],
    remote: RemoteView | Mapping[str, RemoteEntry],
    options: Options = Options(),
    *,
    now: datetime | None = None,
    excluded: Callable[[str, bool], bool] | None = None,
    tracked_files: int | None = None,
) -> Plan:
    """Decide one run of pull, sync or push.

    base: the journal rows for every path in question (all of them for complete views; for
        incremental views at least the changed paths and the rows below removed folders).
    now: names conflict copies (required by sync and push).
    excluded: paths not to judge at all (their journal rows stay as they are). The views should
        still hold them: a folder whose only content is excluded must not look empty.
    tracked_files: files in the whole journal, when `base` holds only part of it (for
        --max-delete percentages and the empty-side guards).
    """
    lv = local if isinstance(local, LocalView) else LocalView(local)
    rv = remote if isinstance(remote, RemoteView) else RemoteView(remote)
    if options.mode == Mode.PULL:
        return plan_pull(base, lv, rv, options, tracked_files)
    if now is None:
        raise ValueError("sync and push need the time to name conflict copies")
    return TwoWay(base, lv, rv, options, now, excluded, tracked_files).plan()


def plan(
    remote: dict[str, RemoteEntry],
    local: dict[str, LocalEntry | None],
    journal: dict[str, JournalEntry],
    *,
    failed_folders: frozenset[str] | set[str] = frozenset(),
    options: Options = Options(),
    remote_looks_empty: bool | None = None,
) -> Plan:
    """Decide what a pull does (the core in pull mode, with pull's own argument order).

    remote: every path listed (below folders that listed successfully), or for an incremental
        pull only the changed ones, with `journal` holding just the rows in question.
    local: the stat of every path in remote or journal (None when absent).
    failed_folders: folders whose listing failed; nothing below them is judged.
    remote_looks_empty: for an incremental plan, whether the share would be empty afterwards;
        computed from `remote` when None.
    """
    view = RemoteView(remote, failed=frozenset(failed_folders), looks_empty=remote_looks_empty)
    return reconcile(journal, LocalView(local), view, replace(options, mode=Mode.PULL))


__all__ = [
    "ATTENTION", "TRANSFERS", "UPLOADS", "Action", "JournalEntry", "JournalOp", "Kind", "LocalEntry", "LocalOp",
    "LocalView", "Mode", "Options", "Plan", "RemoteEntry", "RemoteOp", "RemoteView", "complete", "conflict_name",
    "exit_code", "failed_where", "learns_ctime", "parse_max_delete", "plan", "reconcile", "resolve_in_flight",
    "same_ctime", "stat_matches", "table", "readme",
]  # fmt: skip
