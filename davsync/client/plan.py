"""The pure planning core: remote listing + local stat + journal -> actions.

No I/O here. Every rule that protects data (design.md, "Rules that protect data")
is decided in this module, so it can be tested exhaustively.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    path: str  # relative, NFC, '' is the root
    is_dir: bool
    size: int | None = None
    mtime: float | None = None  # unix seconds (from getlastmodified)
    etag: str | None = None
    md5: str | None = None
    href: str = ""  # how to ask the server for it


@dataclass(frozen=True, slots=True)
class LocalEntry:
    is_dir: bool
    size: int = 0
    mtime_ns: int = 0
    ino: int = 0
    md5: str | None = None  # only filled when the stat differs from the journal, or for untracked files


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """What davsync placed at a path, and what the remote looked like then."""

    is_dir: bool
    size: int = 0
    mtime_ns: int = 0
    ino: int = 0
    md5: str | None = None
    remote_etag: str | None = None
    remote_size: int | None = None
    remote_mtime: float | None = None
    remote_md5: str | None = None
    # The server's own spelling of the path when it differs from this NFC one (NFD names from a Mac).
    remote_name: str | None = None
    # Set while a placement is in flight: what was there before. If a crash stopped the
    # rename, the local file still matches this, and this is what the journal means.
    prev: "JournalEntry | None" = None

    def matches_local(self, local: LocalEntry) -> bool:
        return (
            not local.is_dir
            and (self.size, self.mtime_ns, self.ino) == (local.size, local.mtime_ns, local.ino)
        )


def resolve_in_flight(journal: JournalEntry | None, local: LocalEntry | None) -> JournalEntry | None:
    """The journal entry that describes the local file, given a placement that may not have happened."""
    if journal is None or journal.prev is None:
        return journal
    if local is not None and not journal.matches_local(local) and journal.prev.matches_local(local):
        return journal.prev  # the crash came before the rename: the old file is still there
    return journal


class Kind(str, Enum):
    MKDIR = "mkdir"
    DOWNLOAD = "download"  # new or missing locally
    UPDATE = "update"  # remote changed, local unchanged
    CONFLICT = "conflict"  # both changed: keep local as a conflict copy, place remote
    ADOPT = "adopt"  # local already equals remote: record it, download nothing
    REFRESH = "refresh"  # content unchanged; only the journal's stat/etag is updated
    LOCAL_MODIFIED = "locally-modified"  # local edit, remote unchanged: left alone
    DELETE = "delete"  # remote deleted, local unchanged, --delete: to trash
    REMOTE_DELETED = "deleted-remotely"  # kept (no --delete, or guarded)
    FORGET = "forget"  # gone on both sides: drop the journal row
    RMDIR = "rmdir"  # remote folder gone, --delete: remove if empty
    BLOCKED = "blocked"  # cannot be done (e.g. a local folder where the remote has a file)
    RENAME = "rename"  # renamed on the server in letter case only: renamed here too (case-insensitive DEST)


TRANSFERS = {Kind.DOWNLOAD, Kind.UPDATE, Kind.CONFLICT}


@dataclass(frozen=True, slots=True)
class Action:
    kind: Kind
    path: str
    remote: RemoteEntry | None = None
    local: LocalEntry | None = None
    reason: str = ""


@dataclass(frozen=True)
class Options:
    delete: bool = False
    max_delete: int | None = None


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    refused_deletions: int = 0  # deletions a guard refused: files left out of sync, reported as a problem

    def of(self, *kinds: Kind) -> list[Action]:
        return [a for a in self.actions if a.kind in kinds]

    @property
    def in_sync(self) -> bool:
        return not any(a.kind not in (Kind.REFRESH, Kind.FORGET) for a in self.actions)


def remote_changed(journal: JournalEntry, remote: RemoteEntry) -> bool:
    """Has the remote file changed since davsync placed it? MD5 decides when both sides have one."""
    if journal.remote_md5 and remote.md5:
        return journal.remote_md5 != remote.md5
    if journal.remote_etag and remote.etag:
        return journal.remote_etag != remote.etag or journal.remote_size != remote.size
    return (journal.remote_size, journal.remote_mtime) != (remote.size, remote.mtime)


def same_content(local: LocalEntry, remote: RemoteEntry) -> bool:
    """Does an untracked or edited local file already hold the remote content?"""
    if local.is_dir:
        return False
    if local.md5 and remote.md5:
        return local.md5 == remote.md5
    # Without a server MD5, equal size and mtime (to the second) is the best evidence there is.
    return (
        remote.size == local.size
        and remote.mtime is not None
        and abs(remote.mtime - local.mtime_ns / 1e9) < 1.0
    )


def _local_unchanged(j: JournalEntry, loc: LocalEntry) -> bool:
    """A known local MD5 decides; otherwise an unchanged stat means unchanged content."""
    if loc.md5 is not None:
        return loc.md5 == j.md5
    return j.matches_local(loc)


def _under(path: str, folder: str) -> bool:
    return folder == "" or path == folder or path.startswith(folder + "/")


def plan(
    remote: dict[str, RemoteEntry],
    local: dict[str, LocalEntry | None],
    journal: dict[str, JournalEntry],
    *,
    failed_folders: frozenset[str] | set[str] = frozenset(),
    options: Options = Options(),
    remote_looks_empty: bool | None = None,
) -> Plan:
    """Decide what a pull does.

    remote: every path listed (below folders that listed successfully).
    local: the stat of every path in remote or journal (None when absent).
    journal: what davsync placed.
    failed_folders: folders whose listing failed; nothing below them is judged.
    remote_looks_empty: for an incremental plan (remote holds only changes), whether the
        share would be empty afterwards; computed from `remote` when None.
    """
    result = Plan()
    deletions: list[Action] = []
    paths = sorted(set(remote) | set(journal))
    for path in paths:
        if path == "":
            continue
        r, j, loc = remote.get(path), journal.get(path), local.get(path)
        if r is None and any(_under(path, f) for f in failed_folders):
            continue  # unknown: its folder did not list
        action = _decide(path, r, j, loc)
        if action is None:
            continue
        if action.kind in (Kind.DELETE, Kind.RMDIR):
            deletions.append(action)
        else:
            result.actions.append(action)

    if remote_looks_empty is None:
        remote_looks_empty = not any(p for p in remote if p != "")
    guarded = _guard_deletions(deletions, remote_looks_empty, journal, failed_folders, options, result.warnings)
    if options.delete:
        result.refused_deletions = sum(1 for a in guarded if a.reason.startswith("deletion refused"))
    result.actions += guarded
    return result


def _decide(path: str, r: RemoteEntry | None, j: JournalEntry | None, loc: LocalEntry | None) -> Action | None:
    if r is not None and r.is_dir:
        if loc is None:
            return Action(Kind.MKDIR, path, r)
        if not loc.is_dir:
            if j is not None and j.matches_local(loc):
                return Action(Kind.CONFLICT, path, r, loc, "the remote replaced this file with a folder")
            return Action(Kind.CONFLICT, path, r, loc, "a local file stands where the remote has a folder")
        if j is None or not j.is_dir:
            return Action(Kind.REFRESH, path, r, loc, "folder exists")
        return None

    if r is not None:  # a remote file
        if loc is not None and loc.is_dir:
            return Action(Kind.BLOCKED, path, r, loc, "a local folder stands where the remote has a file")
        if loc is None:
            return Action(Kind.DOWNLOAD, path, r, None, "new" if j is None else "missing locally")
        if j is None or j.is_dir:
            if same_content(loc, r):
                return Action(Kind.ADOPT, path, r, loc, "local file already has the remote content")
            return Action(Kind.CONFLICT, path, r, loc, "an unsynced local file differs from the remote")
        local_same = _local_unchanged(j, loc)
        changed = remote_changed(j, r)
        if local_same:
            if changed:
                if loc.md5 is not None and r.md5 is not None and loc.md5 == r.md5:
                    return Action(Kind.REFRESH, path, r, loc, "remote metadata changed, content same")
                return Action(Kind.UPDATE, path, r, loc, "changed on the server")
            if not j.matches_local(loc) or j.remote_etag != r.etag:
                return Action(Kind.REFRESH, path, r, loc, "metadata changed, content same")
            return None
        if same_content(loc, r) and (loc.md5 is not None or not changed):
            return Action(Kind.ADOPT, path, r, loc, "local edit equals the remote")
        if changed:
            return Action(Kind.CONFLICT, path, r, loc, "changed both locally and on the server")
        return Action(Kind.LOCAL_MODIFIED, path, r, loc, "modified locally; the server's version is unchanged")

    # Gone from the remote.
    assert j is not None
    if loc is None:
        return Action(Kind.FORGET, path, None, None, "gone on both sides")
    if j.is_dir:
        if loc.is_dir:
            return Action(Kind.RMDIR, path, None, loc, "folder deleted on the server")
        return Action(Kind.FORGET, path, None, loc, "no longer the folder davsync made")
    if not _local_unchanged(j, loc):
        return Action(Kind.REMOTE_DELETED, path, None, loc, "deleted on the server, but modified locally: kept")
    return Action(Kind.DELETE, path, None, loc, "deleted on the server")


def _guard_deletions(
    deletions: list[Action],
    remote_empty: bool,
    journal: dict[str, JournalEntry],
    failed_folders: frozenset[str] | set[str],
    options: Options,
    warnings: list[str],
) -> list[Action]:
    """Turn deletions into kept files unless every guard allows them (design.md rule 4)."""
    files = [a for a in deletions if a.kind == Kind.DELETE]

    def keep(reason: str) -> list[Action]:
        return [
            Action(Kind.REMOTE_DELETED, a.path, None, a.local, reason) for a in deletions if a.kind == Kind.DELETE
        ] + [Action(Kind.BLOCKED, a.path, None, a.local, reason) for a in deletions if a.kind == Kind.RMDIR]

    if not deletions:
        return []
    if not options.delete:
        return keep("deleted on the server; kept (use --delete to remove)")
    if failed_folders:
        warnings.append("Deletions skipped: some folders could not be listed this run.")
        return keep("deletion skipped: a listing failed this run")
    mirror_nonempty = any(not j.is_dir for j in journal.values())
    if remote_empty and mirror_nonempty:
        warnings.append(
            "Deletions refused: the server lists an empty share while the mirror is not empty "
            "(an unmounted disk on the server?)."
        )
        return keep("deletion refused: the server's share looks empty")
    if options.max_delete is not None and len(files) > options.max_delete:
        warnings.append(f"Deletions refused: {len(files)} files would go, more than --max-delete {options.max_delete}.")
        return keep(f"deletion refused: more than --max-delete {options.max_delete}")
    # Remove deeper folders first so parents can empty out.
    dirs = sorted((a for a in deletions if a.kind == Kind.RMDIR), key=lambda a: -a.path.count("/"))
    return files + dirs
