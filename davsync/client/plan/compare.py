"""Changes against the base, content equality, paths and conflict names: the small facts the rules are made of."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from .model import JournalEntry, LocalEntry, RemoteEntry

_MISSING = object()


def remote_changed(journal: JournalEntry, remote: RemoteEntry) -> bool:
    """Has the remote file changed since the base? MD5 decides when both sides have one."""
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


def learns_ctime(j: JournalEntry, loc: LocalEntry) -> bool:
    """A row from before the journal kept ctime, for a file whose ctime is known: record it once."""
    return not j.ctime_ns and bool(loc.ctime_ns) and not loc.is_dir


def local_unchanged(j: JournalEntry, loc: LocalEntry) -> bool:
    """A known local MD5 decides; otherwise an unchanged stat means unchanged content."""
    if loc.md5 is not None:
        return loc.md5 == j.md5
    return j.matches_local(loc)


def under(path: str, folder: str) -> bool:
    return folder == "" or path == folder or path.startswith(folder + "/")


def parents(path: str) -> Iterable[str]:
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        yield path


def conflict_name(rel: str, now: datetime) -> str:
    """NAME.sync-conflict-YYYYMMDD-HHMMSS.EXT (Syncthing's convention)."""
    stamp = now.strftime("%Y%m%d-%H%M%S")
    folder, _, name = rel.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension, or a dotfile like ".bashrc"
        stem, dot, ext = name, "", ""
    new = f"{stem}.sync-conflict-{stamp}{dot}{ext}"
    return f"{folder}/{new}" if folder else new


def free_conflict_name(rel: str, now: datetime, taken: set[str]) -> str:
    """A conflict name no path on either side uses (numbered like keep_as_conflict does)."""
    base = conflict_name(rel, now)
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        stem, dot, ext = base.rpartition(".")
        candidate = f"{stem}-{n}.{ext}" if dot and "/" not in ext else f"{base}-{n}"
    taken.add(candidate)
    return candidate



def gone_above(path: str, entries: Mapping[str, object], removed: frozenset[str]) -> bool:
    """In a changes-only view: is a folder above this path removed, or now a file?"""
    for parent in parents(path):
        e = entries.get(parent, _MISSING)
        if e is _MISSING:
            if parent in removed:
                return True
            continue
        if e is None or not getattr(e, "is_dir", True):
            return True
    return False

