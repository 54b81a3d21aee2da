"""The local look: what DEST holds now, compared with the journal's base, in one place.

`scan_local` walks all of DEST (the folder-by-folder walk the server's rescans use), or looks
only at named paths (a server change list, a watcher's events). Either way it reads
a file to hash it only when its stat (size, mtime_ns, ctime, file ID) differs from its base row or
it has none, so an unchanged tree costs one lstat per file and no reads.

What the result promises the planner and the executor:
- `view.entries` lists every path that exists (excluded, deferred and skipped ones too, so a
  folder whose content is left alone never looks empty). A file entry has its MD5 unless its
  stat equals its base row's (the planner then takes the base's MD5), or it is not judged,
  or `sent_unhashed` takes it: a big new file the server does not have, hashed as it is sent
  (client/resume.py) rather than read twice. None is taken while a base file of its size is
  missing (a rename is told by MD5).
- Not judged this run, on either side: every path in `skipped` or `deferred`, and everything
  below a skipped path (`LocalScan.not_judged`). Nothing below a folder in `view.failed`
  is judged either (the planner freezes it).
- Links and junctions inside DEST are never followed: neither listed through nor read.

Against the journal's stat columns (journal.Rows, a sync's full scan) a file below the root
whose name is its row's and whose lstat gives exactly its settled row (`journal.settled_file`)
is told unchanged by that one tuple comparison, with no entry built (`view.entries` gives the
row's stat when asked). Everything else takes the full look: new, changed and in-flight rows,
folders, links, special files, names the rules refuse now, davsync's temp names, Unicode and
case twins, files on another device, and every file on Windows (its change time is read
from the file) or on volumes without stable file IDs. Excludes are not asked of such a file:
an unchanged, recorded file is left as it is whether excluded or not, and the planner asks
them of every path it judges.
"""

from __future__ import annotations

import os
import stat
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import fileid, osfs
from ..concurrency import bounded
from ..scan import iter_folders
from . import blockmemo
from .journal import Rows, settled_file
from .paths import STATE_DIR_NAME, NameRules, Skipped, filter_names, name_problem, shown
from .plan import JournalEntry, LocalEntry, LocalView, resolve_in_flight

SETTLE_S = 2.0  # a file modified this recently is still being written: judged (or set aside) later
HASH_WORKERS = 3  # hashlib releases the GIL: a few threads overlap reading large files
Hashed = Callable[[int, int, int, int], None]  # files read, of files, bytes read, of bytes
Unhashed = Callable[[str, int], bool]  # (path, size): a new file to hash as it is sent, not now
SMALL_FILE = 256 * 1024  # read on the scanning thread: a hand-off to a thread costs more
LINK_REASON = "a link or junction in DEST, left alone"
_UNREAD = LocalEntry(False)  # exists, but its stat could not be read: listed, never judged

Excluded = Callable[[str, bool], bool]


@dataclass
class LocalScan:
    view: LocalView  # complete=True after a full scan, False after a partial look (or a stopped scan)
    deferred: set[str] = field(default_factory=set)  # modified within `settle_s` (still being written)
    skipped: list[Skipped] = field(default_factory=list)  # name-rule refusals, links, unreadable entries
    files_hashed: int = 0  # files read to hash them
    # Rows whose placement was in flight when a crash came (`prev` set), resolved against the
    # file found (resolve_in_flight): plan with these instead of the stored rows.
    resolved: dict[str, JournalEntry] = field(default_factory=dict)
    # NFC path -> the spelling on disk, where they differ (a name written in NFD by a Mac tool).
    on_disk: dict[str, str] = field(default_factory=dict)
    # Files a journal.Rows base told unchanged (as it tells them: Rows.same), so nobody asks again.
    unchanged: set[str] = field(default_factory=set)
    _left_alone: set[str] = field(default_factory=set, init=False, repr=False, compare=False)
    _skips_seen: int = field(default=0, init=False, repr=False, compare=False)

    def not_judged(self, path: str) -> bool:
        """Is this path, or a folder above it, skipped or deferred? Then neither side of it is changed."""
        if path in self.deferred:
            return True
        if self._skips_seen != len(self.skipped):
            self._left_alone, self._skips_seen = {s.path for s in self.skipped}, len(self.skipped)
        if not self._left_alone:
            return False
        parts = path.split("/")
        return any("/".join(parts[:i]) in self._left_alone for i in range(1, len(parts) + 1))

    def disk_path(self, dest: Path, path: str) -> Path:
        """Where an NFC path of the view lives on disk."""
        return dest / self.on_disk.get(path, path)

    @property
    def built(self) -> Mapping[str, LocalEntry | None]:
        """The entries the walk built: all of `view.entries` but the files it told unchanged
        from their journal rows alone (those are all in `unchanged`)."""
        entries = self.view.entries
        return entries.built if isinstance(entries, Seen) else entries


class Seen(Mapping[str, LocalEntry | None]):
    """`view.entries` of a full scan against journal.Rows: the entries the walk built, and the
    files it told unchanged from their stat rows alone, whose entry is built when asked."""

    def __init__(self, built: dict[str, LocalEntry | None], unchanged: set[str], recorded: int, rows: Rows) -> None:
        """`recorded`: how many paths of `unchanged` are not in `built`."""
        self.built, self._unchanged, self._recorded, self._rows = built, unchanged, recorded, rows

    def __getitem__(self, path: str) -> LocalEntry | None:
        if path in self.built:
            return self.built[path]
        if path in self._unchanged:
            return self._rows.recorded(path)
        raise KeyError(path)

    def __contains__(self, path: object) -> bool:
        return path in self.built or path in self._unchanged

    def __iter__(self) -> Iterator[str]:
        yield from self.built
        yield from (p for p in self._unchanged if p not in self.built)

    def __len__(self) -> int:
        return len(self.built) + self._recorded


def scan_local(
    dest: Path,
    base: Mapping[str, JournalEntry],
    *,
    paths: Iterable[str] | None = None,
    excluded: Excluded,
    rules: NameRules,
    fold_case: bool,
    hash_all: bool = False,
    settle_s: float = SETTLE_S,
    now_ns: int | None = None,
    stop: threading.Event | None = None,
    on_hashed: Hashed | None = None,
    sent_unhashed: Unhashed | None = None,
) -> LocalScan:
    """Walk all of DEST (not DEST/.davsync nor davsync's own temp names): every file and folder,
    known to the journal or not. A folder that cannot be read goes in `view.failed`; one that
    vanished during the walk is simply gone. Stopped early, the view is marked incomplete
    (what was not seen is as the base says, so nothing looks deleted). `on_hashed` hears
    (files, of files, bytes, of bytes) as the files that need it are read (adopting a big folder).

    With `paths`, look only at those (NFC, relative) paths; the view is incomplete (every other
    path is as the base says). A named folder the base does not know as a folder (made here, or
    moved in whole) is walked, so what came with it is found; a known folder's new content
    is found when it is named itself (a watcher names it) or by the next full scan."""
    look = _Look(dest, base, excluded, rules, fold_case, hash_all, settle_s, now_ns, stop, on_hashed)
    look.sent_unhashed = None if hash_all else sent_unhashed
    if paths is None:
        look.walk("", os.fspath(dest))
        return look.finish(complete=not look.stopped())
    for path in sorted(set(paths), key=lambda p: (p.count("/"), p)):  # folders before what is inside
        if look.stopped():
            break
        if path:
            look.one(path)
    return look.finish(complete=False)


class _Look:
    """One scan or look; collects entries, then hashes what needs it on a few threads."""

    def __init__(
        self,
        dest: Path,
        base: Mapping[str, JournalEntry],
        excluded: Excluded,
        rules: NameRules,
        fold_case: bool,
        hash_all: bool,
        settle_s: float,
        now_ns: int | None,
        stop: threading.Event | None,
        on_hashed: Hashed | None = None,
    ) -> None:
        self.on_hashed = on_hashed
        self.sent_unhashed: Unhashed | None = None
        self._missing_sizes: set[int | None] | None = None
        self.hashed_count = (0, 0)  # files, bytes read so far
        self.dest, self.base, self.excluded = dest, base, excluded
        # A base read as stat columns (journal.Rows): an unchanged file is told without its whole row,
        # and where a file's lstat is its identity, without an entry (`take_recorded`).
        self.same = base.same if isinstance(base, Rows) and not hash_all else None
        self.rows = base if isinstance(base, Rows) and not hash_all else None
        self.device = fileid.lstat_identity_device(dest) if self.rows is not None else None
        self.recorded = 0  # files told unchanged by their stat rows alone (no entry built)
        self.rules, self.fold_case, self.hash_all = rules, fold_case, hash_all
        self.settle_ns = int(settle_s * 1e9)
        self.now_ns = time.time_ns() if now_ns is None else now_ns
        self.stop = stop
        self.entries: dict[str, LocalEntry | None] = {}
        self.failed: set[str] = set()
        self.result = LocalScan(LocalView({}))
        self.to_hash: list[tuple[str, str, bool]] = []  # (path, file on disk, an edit of a synced file)
        self.link_at: dict[str, str | None] = {"": None}  # folder -> the link at or above it
        self.refused: dict[str, str | None] = {}  # folder -> why the name rules refuse it

    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    def skip(self, path: str, reason: str) -> None:
        self.result.skipped.append(Skipped(path, reason))

    # -- a whole tree ------------------------------------------------------------

    def walk(self, top: str, top_path: str) -> None:
        """Enter everything at and below the folder `top` (NFC, relative; '' is DEST)."""
        nfc_of: dict[str, str] = {"": top}  # the walk's own (on-disk) folder path -> its NFC path
        walk_into: set[str] = set()  # on-disk names of the folder just entered to walk into
        current = top  # the NFC path of that folder

        def descend(rel: str, entry: os.DirEntry[str]) -> bool:
            if entry.name not in walk_into:
                return False
            name = _nfc(entry.name)
            nfc_of[rel] = f"{current}/{name}" if current else name
            return True

        def failed(rel: str, e: OSError) -> None:
            path = nfc_of.pop(rel, rel)
            if path and isinstance(e, FileNotFoundError | NotADirectoryError):
                self.entries[path] = None  # gone while we walked
            else:
                self.failed.add(path)

        for rel, listing in iter_folders(top_path, descend=descend, on_error=failed, stop=self.stop):
            current = nfc_of.pop(rel)
            walk_into = set(self.folder(current, listing))

    def folder(self, folder: str, listing: list[os.DirEntry[str]]) -> Iterator[str]:
        """Enter one folder's entries; yield the on-disk names of sub-folders to walk into."""
        if self.device is not None and folder and folder not in self.result.on_disk:
            listing = self.take_recorded(folder, listing)
        names: dict[str, os.DirEntry[str]] = {}
        clashes: list[Skipped] = []
        for entry in listing:
            name = entry.name
            if osfs.is_own_temp(name) or (not folder and _is_state_dir(name, self.fold_case)):
                continue
            key = _nfc(name)
            if key in names:
                path = f"{folder}/{key}" if folder else key
                reason = f"two names here differ only in Unicode form ({shown(name)}, {shown(names[key].name)})"
                clashes.append(Skipped(path, reason))
                continue
            names[key] = entry
        paths = {(f"{folder}/{k}" if folder else k): e for k, e in names.items()}
        _kept, refused = filter_names(paths, self.rules, fold_case=self.fold_case) if paths else (set(), [])
        refusals = {s.path: s.reason for s in refused + clashes}
        disk_folder = self.result.on_disk.get(folder, folder)
        for path, entry in paths.items():
            disk = f"{disk_folder}/{entry.name}" if disk_folder else entry.name
            if disk != path:
                self.result.on_disk[path] = disk
            if self.enter_entry(path, entry, refusals.get(path)):
                yield entry.name

    def take_recorded(self, folder: str, listing: list[os.DirEntry[str]]) -> list[os.DirEntry[str]]:
        """Tell the files of a folder (below the root, spelled NFC on disk) whose lstat gives
        exactly their settled journal row unchanged, building nothing; return the rest of the
        listing, in its order, for the full look. A name the full look would skip goes back to
        it: davsync's temp names, a name the rules refuse, one with a Unicode or case twin here."""
        assert self.rows is not None
        rows, device, prefix = self.rows.stat_rows(), self.device, f"{folder}/"
        same: dict[str, str] = {}  # name -> path
        for entry in listing:
            path = prefix + entry.name
            row = rows.get(path)
            if row is None or row[1]:
                continue  # not a file the journal knows
            try:
                st = entry.stat(follow_symlinks=False)  # (cached in the entry for the full look)
            except OSError:
                continue
            if (
                row == settled_file(path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
                and st.st_dev == device
                and stat.S_ISREG(st.st_mode)
            ):
                same[entry.name] = path
        if not same:
            return listing
        for name in [n for n in same if osfs.CASE_TEMP_MARK in n or name_problem(n, self.rules) is not None
                     or not (n.isascii() or unicodedata.is_normalized("NFC", n))]:  # fmt: skip
            del same[name]
        rest = [e for e in listing if e.name not in same]
        for e in rest:  # a Unicode twin: the full look skips both spellings
            if not e.name.isascii():
                same.pop(_nfc(e.name), None)
        if self.fold_case:  # a case twin: the full look skips all of them
            folded: dict[str, list[str]] = {}
            for key in [*same, *(_nfc(e.name) for e in rest)]:
                folded.setdefault(key.casefold(), []).append(key)
            for group in folded.values():
                for key in group if len(group) > 1 else ():
                    same.pop(key, None)
        self.result.unchanged.update(same.values())
        self.recorded += len(same)
        return [e for e in listing if e.name not in same]  # (the twins taken out of `same` above included)

    def enter_entry(self, path: str, entry: os.DirEntry[str], refusal: str | None) -> bool:
        """Record one listed entry; True for a folder to walk into."""
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
            if not is_dir and not entry.is_file(follow_symlinks=False) and not entry.is_symlink():
                return False  # a socket, a FIFO, a device: not a file anyone syncs
            if self.excluded(path, is_dir):
                self.entries[path] = LocalEntry(True) if is_dir else _entry_of(entry)
                return False  # listed (its folder is not empty), never read or walked
            if osfs.entry_is_link(entry):
                self.entries[path] = _entry_of(entry)
                self.skip(path, LINK_REASON)
                return False
            if refusal is not None:
                self.entries[path] = LocalEntry(True) if is_dir else _entry_of(entry)
                self.skip(path, refusal)
                return False
            if is_dir:
                self.entries[path] = LocalEntry(True)
                return True
            st = osfs.entry_stat(entry)
        except OSError as e:
            self.entries[path] = _UNREAD
            self.skip(path, unread_reason(e))
            return False
        self.file(path, entry.path, entry_of_stat(entry.path, st))
        return False

    # -- one named path -------------------------------------------------------------

    def one(self, path: str) -> None:
        if path in self.entries:
            return  # found by the walk of a new folder above it
        top, _, _ = path.partition("/")
        if _is_state_dir(top, self.fold_case) or osfs.is_own_temp(path.rpartition("/")[2]):
            return  # davsync's own: never looked at
        parent = path.rpartition("/")[0]
        if parent and parent in self.entries and self.entries[parent] is None:
            self.entries[path] = None  # its folder is not here (folders are looked at first): a first run's usual case
            return
        link = self.link_above(parent)
        if link is not None:
            self.skip(path, f"inside {link!r}, a link or junction in DEST, which davsync does not follow")
            return
        full = self.dest / path
        try:
            try:
                st = os.stat(full, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                disk = None if path.isascii() else self.spelled(path)
                if disk is None:
                    raise
                self.result.on_disk[path] = disk
                full = self.dest / disk
                st = os.stat(full, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            self.entries[path] = None
            return
        except OSError as e:
            self.entries[path] = _UNREAD
            self.skip(path, unread_reason(e))
            return
        is_dir = stat.S_ISDIR(st.st_mode)
        if self.excluded(path, is_dir):
            self.entries[path] = LocalEntry(True) if is_dir else entry_of_stat(full, st)
            return
        if osfs.is_link_stat(st):
            self.link_at[path] = path
            self.entries[path] = entry_of_stat(full, st)
            self.skip(path, LINK_REASON)
            return
        if not is_dir and not stat.S_ISREG(st.st_mode):
            return  # a socket, a FIFO, a device
        refusal = self.refusal(path)
        if refusal is not None:
            self.entries[path] = LocalEntry(True) if is_dir else entry_of_stat(full, st)
            self.skip(path, refusal)
            return
        if is_dir:
            self.link_at[path] = None
            self.entries[path] = LocalEntry(True)
            row = self.base.get(path)
            if row is None or not row.is_dir:
                self.walk(path, os.fspath(full))  # new here: what came with it is new too
            return
        self.file(path, os.fspath(full), entry_of_stat(full, st))

    def spelled(self, path: str) -> str | None:
        """The spelling on disk of an NFC path not found as named (written in NFD by a Mac or
        an old share): the entry of its folder whose NFC form is the name, None if there is none."""
        if path in self.result.on_disk:
            return self.result.on_disk[path]
        parent, _, name = path.rpartition("/")
        disk_parent = (self.spelled(parent) if not os.path.lexists(self.dest / parent) else parent) if parent else ""
        if disk_parent is None:
            return None
        try:
            names = os.listdir(self.dest / disk_parent)
        except OSError:
            return None
        found = next((n for n in names if _nfc(n) == name), None)
        if found is None:
            return None
        disk = f"{disk_parent}/{found}" if disk_parent else found
        if disk != path:
            self.result.on_disk[path] = disk
        return disk

    def refusal(self, path: str, *, folder: bool = False) -> str | None:
        """Why the name rules refuse this path or a folder above it (folders cached)."""
        if folder and path in self.refused:
            return self.refused[path]
        parent = path.rpartition("/")[0]
        if parent and self.refusal(parent, folder=True) is not None:
            reason: str | None = f"inside skipped folder {shown(parent)}"
        else:
            reason = next((s.reason for s in filter_names([path], self.rules, fold_case=False)[1]), None)
        if folder:
            self.refused[path] = reason
        return reason

    def link_above(self, folder: str) -> str | None:
        """The link at or above a folder (one lstat per folder not yet seen)."""
        if folder not in self.link_at:
            found = self.link_above(folder.rpartition("/")[0])
            self.link_at[folder] = found or (folder if osfs.is_link(self.dest / folder) else None)
        return self.link_at[folder]

    # -- a file ---------------------------------------------------------------------

    def file(self, path: str, disk: str, entry: LocalEntry) -> None:
        """Record a file; queue it for hashing when its stat says it may differ from the base."""
        if self.same is not None and self.same(path, entry):
            self.entries[path] = entry
            self.result.unchanged.add(path)
            return  # unchanged (the same test as below, on the row's stat columns)
        row = self.base.get(path)
        if row is not None and row.prev is not None:
            row = resolve_in_flight(row, entry)
            assert row is not None
            self.result.resolved[path] = row
        self.entries[path] = entry
        if row is not None and not row.is_dir and row.matches_local(entry) and not self.hash_all:
            return  # unchanged: the planner takes the MD5 from the base
        if 0 <= self.now_ns - entry.mtime_ns < self.settle_ns:
            self.result.deferred.add(path)  # still being written: judged next run
            return
        self.to_hash.append((path, disk, row is not None and not row.is_dir))

    def finish(self, *, complete: bool) -> LocalScan:
        self.hash_queued()
        entries: Mapping[str, LocalEntry | None] = self.entries
        if self.rows is not None and self.device is not None:
            entries = Seen(self.entries, self.result.unchanged, self.recorded, self.rows)
        self.result.view = LocalView(entries, complete=complete, failed=frozenset(self.failed))
        return self.result

    def hash_queued(self) -> None:
        """Small files are read right here (a thread hand-off costs more than reading them);
        larger ones on a few threads, so reading overlaps (hashlib releases the GIL)."""
        small: list[tuple[str, str, bool]] = []
        large: list[tuple[str, str, bool]] = []
        sizes = {path: entry.size for path, *_ in self.to_hash if (entry := self.entries[path]) is not None}
        self.to_hash = [item for item in self.to_hash if not self._sent_unhashed(item[0], sizes.get(item[0]))]
        for item in self.to_hash:
            (small if sizes.get(item[0], 0) <= SMALL_FILE else large).append(item)
        total = (len(self.to_hash), sum(sizes.values()))

        def read(path: str, found: tuple[str | None, os.stat_result | None, str | None]) -> None:
            self.hashed(path, *found)
            if self.on_hashed is not None:
                files, nbytes = self.hashed_count
                self.hashed_count = (files + 1, nbytes + sizes.get(path, 0))
                self.on_hashed(self.hashed_count[0], total[0], self.hashed_count[1], total[1])

        for item in small:
            read(item[0], _hash(item))
        if not large:
            return
        with ThreadPoolExecutor(max_workers=HASH_WORKERS, thread_name_prefix="davsync-hash") as pool:
            jobs = bounded(pool, _hash, large, window=4 * HASH_WORKERS)
            try:
                for (path, _disk, _edit), fut in jobs:
                    read(path, fut.result())
            finally:
                jobs.close()

    def _sent_unhashed(self, path: str, size: int | None) -> bool:
        """Left for the upload to hash as it sends it (see the module's docstring)."""
        if self.sent_unhashed is None or size is None or path in self.base:
            return False
        if self._missing_sizes is None:  # a base file not found here may have been renamed to this one
            self._missing_sizes = {
                row.size for p, row in self.base.items()
                if not row.is_dir and self.entries.get(p) is None and p not in self.result.unchanged
            }  # fmt: skip
        return size not in self._missing_sizes and self.sent_unhashed(path, size)

    def hashed(self, path: str, md5: str | None, after: os.stat_result | None, error: str | None) -> None:
        if error is not None:
            self.skip(path, error)
            return
        self.result.files_hashed += 1
        before = self.entries[path]
        assert before is not None
        if md5 is None or after is None or (after.st_size, after.st_mtime_ns) != (before.size, before.mtime_ns):
            self.result.deferred.add(path)  # changed (or went) while it was read: still being written
            return
        self.entries[path] = replace(before, md5=md5)


def _hash(item: tuple[str, str, bool]) -> tuple[str | None, os.stat_result | None, str | None]:
    """(md5, the stat after reading, why it was not read): a file changed while read shows in the stat.
    An edit of a synced big file gets its block hashes in the same read, for a delta push."""
    _path, disk, edit = item
    try:
        md5 = blockmemo.md5_of_file(disk, blocks=edit)
    except OSError as e:
        return None, None, unread_reason(e)
    try:
        return md5, os.stat(disk, follow_symlinks=False), None
    except OSError:
        return md5, None, None


IN_USE = "in use by another program; retried next run"


def unread_reason(e: OSError) -> str:
    """Why a local file was not read, as the report says it. A file another program holds open
    without sharing (Excel, WinError 32) is no permission problem: it is read again next run."""
    if osfs.in_use_elsewhere(e):
        return IN_USE
    return f"cannot be read ({e.strerror or e}); left alone"


def _entry_of(entry: os.DirEntry[str]) -> LocalEntry:
    return entry_of_stat(entry.path, osfs.entry_stat(entry))


def entry_of_stat(full: str | Path, st: os.stat_result) -> LocalEntry:
    """A file's entry as the change detector compares it: size, mtime, file ID, change time."""
    file_id, ctime_ns = fileid.identity(full, st)
    return LocalEntry(False, st.st_size, st.st_mtime_ns, file_id, ctime_ns=ctime_ns)


def _nfc(name: str) -> str:
    return name if name.isascii() else unicodedata.normalize("NFC", name)


def _is_state_dir(name: str, fold_case: bool) -> bool:
    return name == STATE_DIR_NAME or (fold_case and name.casefold() == STATE_DIR_NAME)


__all__ = ["LocalScan", "scan_local"]
