"""pull: the mirror. Its view of each path goes to the decision table; its deletions are opt-in and guarded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from . import table
from .compare import learns_ctime, local_unchanged, remote_changed, same_content, under
from .kinds import Kind, Mode
from .model import Action, JournalEntry, LocalEntry, RemoteEntry
from .run import LocalView, Options, Plan, RemoteView, failed_where
from .table import Also, Change


def plan_pull(
    journal: Mapping[str, JournalEntry], lv: LocalView, rv: RemoteView, options: Options, tracked: int | None = None
) -> Plan:
    remote, failed_folders = rv.entries, rv.failed
    result = Plan()
    deletions: list[Action] = []
    paths = sorted(set(remote) | set(journal))
    for path in paths:
        if path == "":
            continue
        r, j, loc = remote.get(path), journal.get(path), lv.entries.get(path)
        if r is None and any(under(path, f) for f in failed_folders):
            continue  # unknown: its folder did not list
        action = _decide_pull(path, r, j, loc, options.delete)
        if action is None:
            continue
        if action.kind in (Kind.DELETE, Kind.RMDIR):
            deletions.append(action)
        else:
            result.actions.append(action)

    remote_looks_empty = rv.looks_empty
    if remote_looks_empty is None:
        remote_looks_empty = not any(p for p in remote if p != "")
    if tracked is None:
        tracked = sum(1 for j in journal.values() if not j.is_dir)
    guarded = _guard_pull_deletions(deletions, remote_looks_empty, tracked, failed_folders, options, result)
    result.refused_deletions = sum(1 for a in guarded if a.reason.startswith("deletion refused"))
    result.actions += guarded
    return result


def _pulled(
    j: JournalEntry | None,
    kind: Kind,
    path: str,
    r: RemoteEntry | None,
    loc: LocalEntry | None = None,
    reason: str = "",
) -> Action:
    """A pull's action, with the base it was judged against (its record is derived when asked)."""
    return Action(kind, path, r, loc, reason, j)


def _decide_pull(path: str, r: RemoteEntry | None, j: JournalEntry | None, loc: LocalEntry | None,
                 delete: bool = False) -> Action | None:  # fmt: skip
    """Work out the situation (table.py's terms) and let the table decide."""
    situation = _pull_situation(r, j, loc)
    if situation is None:
        return None
    d = table.decide(*situation, Mode.PULL, delete=delete)
    if d.kind is None:
        return None
    return _pulled(j, d.kind, path, r, loc, d.why)


def _pull_situation(
    r: RemoteEntry | None, j: JournalEntry | None, loc: LocalEntry | None
) -> tuple[str, Change, Change, Also] | None:
    """pull's view of a path: the server's side, and what davsync last placed here (the base)."""
    A, S, M, N, D = Change.ABSENT, Change.SAME, Change.MODIFIED, Change.NEW, Change.DELETED
    if r is not None and r.is_dir:
        if loc is None:
            return ("folder", A, N, Also.ANY) if j is None else ("folder", D, S, Also.EMPTY)
        if not loc.is_dir:
            if j is not None and j.matches_local(loc):
                return "file vs folder", S, N, Also.UNCHANGED
            return "file vs folder", N, N, Also.CHANGED
        return ("folder", N, N, Also.ANY) if j is None or not j.is_dir else ("folder", S, S, Also.ANY)
    if r is not None:  # a remote file
        if loc is not None and loc.is_dir:
            return "folder vs file", N, N, Also.ANY
        if loc is None:
            return ("file", A, N, Also.ANY) if j is None else ("file", D, S, Also.ANY)
        if j is None or j.is_dir:
            return "file", N, N, Also.EQUAL if same_content(loc, r) else Also.DIFFERENT
        changed = remote_changed(j, r)
        if local_unchanged(j, loc):
            if changed:
                equal = loc.md5 is not None and r.md5 is not None and loc.md5 == r.md5
                return "file", S, M, Also.EQUAL if equal else Also.DIFFERENT
            if not j.matches_local(loc) or j.remote_etag != r.etag or learns_ctime(j, loc):
                return "file", S, S, Also.ANY  # a refresh: metadata changed, content same
            return None
        equal = same_content(loc, r) and (loc.md5 is not None or not changed)
        return "file", M, M if changed else S, Also.EQUAL if equal else Also.DIFFERENT
    assert j is not None  # gone from the server
    if loc is None:
        return "folder" if j.is_dir else "file", D, D, Also.ANY
    if j.is_dir:
        return ("folder", S, D, Also.EMPTY) if loc.is_dir else ("file", N, A, Also.ANY)
    return "file", S if local_unchanged(j, loc) else M, D, Also.ANY



def _guard_pull_deletions(
    deletions: list[Action],
    remote_empty: bool,
    tracked: int,
    failed_folders: frozenset[str],
    options: Options,
    plan: Plan,
) -> list[Action]:
    """Turn deletions into kept files unless every guard allows them (design.md rule 4)."""
    files = [a for a in deletions if a.kind == Kind.DELETE]

    def keep(guard: str, limit: int | None = None) -> list[Action]:
        # A held deletion is kept like a file deleted on the server without --delete (reported,
        # remembered, judged again next run). A refusal is counted (refused_deletions) by the
        # caller; a failed listing is reported by its own warning.
        plan.guards.append(guard)
        verb = "skipped" if guard == "failed-listing" else "refused"
        reason = f"deletion {verb}: " + table.GUARD_BY_ID[guard].reason.format(limit=limit)
        return [replace(a, kind=table.HELD[a.kind], reason=reason, record=None, guarded=True) for a in deletions]

    if not deletions:
        return []
    if failed_folders:
        plan.warnings.append(
            f"Deletions skipped: some folders could not be listed this run ({failed_where((), failed_folders)})."
        )
        return keep("failed-listing")
    if remote_empty and tracked > 1:  # (one file gone is that file's deletion, not a share gone)
        plan.warnings.append(
            "Deletions refused: the server lists an empty share while the mirror is not empty "
            "(an unmounted disk on the server?)."
        )
        return keep("remote-empty")
    limit = options.delete_limit(tracked)
    if limit is not None and len(files) > limit:
        plan.warnings.append(f"Deletions refused: {len(files)} files would go, more than --max-delete {limit}.")
        return keep("max-delete-local", limit)
    # Remove deeper folders first so parents can empty out.
    dirs = sorted((a for a in deletions if a.kind == Kind.RMDIR), key=lambda a: -a.path.count("/"))
    return files + dirs

