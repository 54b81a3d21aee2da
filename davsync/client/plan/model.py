"""The model: each side's entries, the base (the journal's row), and the typed actions a plan holds."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from .kinds import Kind


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
    ctime_ns: int = 0  # osfs.change_time_ns: 0 where unknown (then the stat alone is not sure)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """The base: what both sides held when they last agreed (for pull: what davsync placed)."""

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
    prev: JournalEntry | None = None
    # The file's ctime when recorded (0: unknown, a row from before davsync kept it): a silent
    # edit (same size, mtime restored) changes only this.
    ctime_ns: int = 0

    def matches_local(self, local: LocalEntry) -> bool:
        return stat_matches(self.size, self.mtime_ns, self.ino, self.ctime_ns, local)


def stat_matches(size: int | None, mtime_ns: int | None, ino: int | None, ctime_ns: int, local: LocalEntry) -> bool:
    """The rule that tells an unchanged local file from what was recorded of it: size, mtime,
    file ID and change time (where both are known) all equal. Spelled out (same_ctime inlined):
    a sync asks this of every file on every run; the journal's cheap full-scan base asks it of
    stat columns without building an entry (journal.Rows)."""
    return (
        not local.is_dir
        and size == local.size
        and mtime_ns == local.mtime_ns
        and ino == local.ino
        and (ctime_ns == local.ctime_ns or not ctime_ns or not local.ctime_ns)
    )


def same_ctime(a: int, b: int) -> bool:
    """Equal change times, where both are known (0 is unknown: a FAT volume, an old journal row)."""
    return a == b or not a or not b


def resolve_in_flight(journal: JournalEntry | None, local: LocalEntry | None) -> JournalEntry | None:
    """The journal entry that describes the local file, given a placement that may not have happened."""
    if journal is None or journal.prev is None:
        return journal
    if local is not None and not journal.matches_local(local) and journal.prev.matches_local(local):
        return journal.prev  # the crash came before the rename: the old file is still there
    return journal


def complete(entry: JournalEntry, local: LocalEntry | None = None, remote: RemoteEntry | None = None) -> JournalEntry:
    """A planned base with what only the run learns: the placed file's stat, the server's new etag."""
    if local is not None and not entry.is_dir:
        entry = replace(entry, size=local.size, mtime_ns=local.mtime_ns, ino=local.ino, md5=local.md5 or entry.md5,
                        ctime_ns=local.ctime_ns)  # fmt: skip
    if remote is not None and not entry.is_dir:
        entry = replace(
            entry,
            remote_etag=remote.etag,
            remote_size=remote.size,
            remote_mtime=remote.mtime,
            remote_md5=remote.md5 or entry.remote_md5,
        )
    return replace(entry, prev=None)


class LocalOp(str, Enum):
    MKDIR = "mkdir"
    WRITE = "write"  # place a downloaded version (temp + rename)
    SET_ASIDE = "set-aside"  # rename the local version to its conflict name
    RENAME = "rename"
    TRASH = "trash"
    RMDIR = "rmdir"


class RemoteOp(str, Enum):
    MKCOL = "mkcol"
    PUT_NEW = "put-new"  # If-None-Match: *
    PUT_EDIT = "put-edit"  # If-Match: base etag
    MOVE = "move"
    DELETE = "delete"  # If-Match: base etag
    DELETE_FOLDER = "delete-folder"


class JournalOp(str, Enum):
    KEEP = "keep"  # leave the row as it is
    PUT = "put"  # write `record` at the path
    DROP = "drop"  # remove the row at the path (a folder's rows below go with their own actions)


_LOCAL_OPS: dict[Kind, tuple[LocalOp, ...]] = {
    Kind.MKDIR: (LocalOp.MKDIR,),
    Kind.DOWNLOAD: (LocalOp.WRITE,),
    Kind.UPDATE: (LocalOp.WRITE,),
    Kind.DELETE: (LocalOp.TRASH,),
    Kind.RMDIR: (LocalOp.RMDIR,),
    Kind.LOCAL_MOVE: (LocalOp.RENAME,),
    Kind.RENAME: (LocalOp.RENAME,),
}
_REMOTE_OPS: dict[Kind, tuple[RemoteOp, ...]] = {
    Kind.UPLOAD: (RemoteOp.PUT_NEW,),
    Kind.UPLOAD_EDIT: (RemoteOp.PUT_EDIT,),
    Kind.REMOTE_MKDIR: (RemoteOp.MKCOL,),
    Kind.REMOTE_DELETE: (RemoteOp.DELETE,),
    Kind.REMOTE_RMDIR: (RemoteOp.DELETE_FOLDER,),
    Kind.REMOTE_MOVE: (RemoteOp.MOVE,),
}
_JOURNAL_OPS: dict[Kind, JournalOp] = {
    Kind.MKDIR: JournalOp.PUT,
    Kind.DOWNLOAD: JournalOp.PUT,
    Kind.UPDATE: JournalOp.PUT,
    Kind.CONFLICT: JournalOp.PUT,
    Kind.ADOPT: JournalOp.PUT,
    Kind.REFRESH: JournalOp.PUT,
    Kind.UPLOAD: JournalOp.PUT,
    Kind.UPLOAD_EDIT: JournalOp.PUT,
    Kind.REMOTE_MKDIR: JournalOp.PUT,
    Kind.REMOTE_MOVE: JournalOp.PUT,
    Kind.LOCAL_MOVE: JournalOp.PUT,
    Kind.DELETE: JournalOp.DROP,
    Kind.RMDIR: JournalOp.DROP,
    Kind.FORGET: JournalOp.DROP,
    Kind.REMOTE_DELETE: JournalOp.DROP,
    Kind.REMOTE_RMDIR: JournalOp.DROP,
}

TRANSFERS = {Kind.DOWNLOAD, Kind.UPDATE, Kind.CONFLICT}
UPLOADS = {Kind.UPLOAD, Kind.UPLOAD_EDIT}
# Kinds that leave the run needing a person's attention (exit 3), whatever else went well.
ATTENTION = {Kind.CONFLICT, Kind.BLOCKED, Kind.SERVER_CHANGED}


@dataclass(frozen=True, slots=True)
class Action:
    kind: Kind
    path: str
    remote: RemoteEntry | None = None  # the server's version judged (If-Match sends its etag)
    local: LocalEntry | None = None  # the local version judged (a change since means: plan again)
    reason: str = ""
    base: JournalEntry | None = None  # the base it was judged against
    src: str | None = None  # moves: where from
    conflict_copy: str | None = None  # conflicts (sync, push): the local version's new name
    upload_copy: bool = False  # conflicts (sync): the conflict copy is uploaded too
    record: JournalEntry | None = None  # the base at `path` once done (complete() adds run-time facts)
    extra: tuple[tuple[str, JournalEntry | None], ...] = ()  # other rows: a move's source (None: drop)
    guarded: bool = False  # a deletion a guard held back: only a complete listing may confirm it later

    @property
    def local_ops(self) -> tuple[LocalOp, ...]:
        """What changes in DEST, in order."""
        if self.kind == Kind.CONFLICT:
            if self.local is None:
                return (LocalOp.WRITE,)
            then = LocalOp.MKDIR if self.remote is not None and self.remote.is_dir else LocalOp.WRITE
            return (LocalOp.SET_ASIDE, then)
        return _LOCAL_OPS.get(self.kind, ())

    @property
    def remote_ops(self) -> tuple[RemoteOp, ...]:
        """What changes on the server, in order."""
        if self.kind == Kind.CONFLICT:
            return (RemoteOp.PUT_NEW,) if self.upload_copy else ()
        return _REMOTE_OPS.get(self.kind, ())

    @property
    def journal(self) -> JournalOp:
        return _JOURNAL_OPS.get(self.kind, JournalOp.KEEP)

    @property
    def changes_something(self) -> bool:
        return bool(self.local_ops or self.remote_ops)

    @property
    def to_record(self) -> JournalEntry | None:
        """The row to write at `path` once this succeeded (None unless `journal` is PUT).

        Two-way actions carry it in `record`; a pull's follows from what the action saw, and is
        built only when asked (a first pull of 100,000 files plans 100,000 downloads)."""
        if self.record is not None or self.journal != JournalOp.PUT:
            return self.record
        r, loc = self.remote, self.local
        if self.kind == Kind.MKDIR or r is None or r.is_dir:
            return JournalEntry(True)
        if self.kind in (Kind.ADOPT, Kind.REFRESH) and loc is not None:
            return file_record(r, loc, loc.md5 or r.md5 or (self.base.md5 if self.base else None))
        return file_record(r)

    def entry_after(self, local: LocalEntry | None = None, remote: RemoteEntry | None = None) -> JournalEntry | None:
        """The row to write at `path` once this succeeded, with the run's facts filled in."""
        entry = self.to_record
        return None if entry is None else complete(entry, local, remote)

    def explain(self) -> str:
        where = f"{self.src} -> {self.path}" if self.src else self.path
        copy = f" (local version kept as {self.conflict_copy})" if self.conflict_copy else ""
        return f"{self.kind.value}: {where}: {self.reason}{copy}"


def file_record(r: RemoteEntry, loc: LocalEntry | None = None, md5: str | None = None) -> JournalEntry:
    """The base after a download (local stat filled in by complete()) or an adoption (stat known)."""
    if loc is None:
        return JournalEntry(False, r.size or 0, 0, 0, r.md5, r.etag, r.size, r.mtime, r.md5)
    return JournalEntry(False, loc.size, loc.mtime_ns, loc.ino, md5, r.etag, r.size, r.mtime, r.md5,
                        ctime_ns=loc.ctime_ns)  # fmt: skip
