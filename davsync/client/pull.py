"""One pull: list -> look at the local side -> plan -> act. Effects live here and in transfer.py."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol

from .. import osfs
from ..concurrency import bounded
from ..exitcodes import Exit
from .filters import Filter
from .journal import Journal, JournalError
from .local import look_at
from .paths import NameRules, Skipped, case_insensitive, effective_rules, filter_names, nfc
from .plan import (
    TRANSFERS,
    Action,
    JournalEntry,
    Kind,
    LocalEntry,
    Options,
    Plan,
    RemoteEntry,
    exit_code,
    plan,
)
from .remote import Changes, ConnectionSettings, NotAShare, Remote, RemoteError, SyncTokenInvalid, SyncUnsupported
from .transfer import (
    DownloadError,
    LocalWriteError,
    Raced,
    download,
    keep_as_conflict,
    move_to_trash,
    path_error,
    place,
    stat_entry,
)
from .walk import walk

STATE_DIR = ".davsync"
_UNASKED = object()  # the share's root has not been asked for yet in this run


@dataclass(frozen=True)
class PullOptions:
    delete: bool = False
    max_delete: int | None = None
    dry_run: bool = False
    jobs: int = 4
    excludes: tuple[str, ...] = ()
    verify: bool = False
    full: bool = False
    name_rules: NameRules | None = None


class Reporter(Protocol):
    def begin(self, files: int, total_bytes: int) -> None: ...
    def file_started(self, path: str, size: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self, action: Action, note: str = "") -> None: ...
    def warn(self, message: str) -> None: ...
    def end(self) -> None: ...


class SilentReporter:
    def begin(self, files: int, total_bytes: int) -> None: ...
    def file_started(self, path: str, size: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self, action: Action, note: str = "") -> None: ...
    def warn(self, message: str) -> None: ...
    def end(self) -> None: ...


@dataclass
class PullResult:
    plan: Plan = field(default_factory=Plan)
    done: dict[str, list[str]] = field(default_factory=dict)  # kind -> paths
    conflicts: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0
    requests_sent: int = 0
    local_files_read: int = 0
    fatal: str | None = None
    interrupted: bool = False  # stopped early on request (SIGTERM, Ctrl-Break, console closed)
    retryable: bool = False  # the fatal error may go away by itself (server down, network)
    exit_code: Exit = Exit.OK
    mode: str = "walk"

    def record(self, kind: str, path: str) -> None:
        self.done.setdefault(kind, []).append(path)

    def has_problems(self, *, planned: bool = False) -> bool:
        """Files this run leaves out of sync: errors, conflicts, skipped names, refused deletions.
        `planned`: judge the plan of a dry run, whose conflicts and blocks are not yet errors."""
        code = exit_code(self.plan, errors=len(self.errors), conflicts=len(self.conflicts),
                         skipped=len(self.skipped), ran=not planned)  # fmt: skip
        return code == Exit.PARTIAL

    def as_json(self) -> dict:
        return {
            "exit_code": int(self.exit_code),
            "mode": self.mode,
            "plan": {k.value: [a.path for a in self.plan.of(k)] for k in Kind if self.plan.of(k)},
            "done": self.done,
            "conflicts": self.conflicts,
            "errors": self.errors,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "refused_deletions": self.plan.refused_deletions,
            "warnings": self.warnings,
            "bytes_downloaded": self.bytes_downloaded,
            "requests": self.requests_sent,
            "fatal": self.fatal,
        }


class DestLockedError(Exception):
    pass


@contextmanager
def dest_lock(state_dir: Path) -> Iterator[None]:
    """One pull at a time per DEST (a watch and a scheduled pull must not interleave)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    osfs.hide(state_dir)
    try:
        with osfs.exclusive_lock(state_dir / "lock"):
            yield
    except osfs.DestLocked:
        raise DestLockedError(
            f"another davsync pull or watch is running on {osfs.display_path(state_dir.parent)}; "
            "wait for it or stop it."
        ) from None


class Puller:
    """Pulls one share into one folder. Reusable across runs (watch keeps one)."""

    def __init__(
        self,
        conn: ConnectionSettings,
        dest: Path,
        options: PullOptions,
        reporter: Reporter | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.conn = conn
        # Files are placed through the long-path form on Windows (no 260-character limit);
        # the journal keeps the plain path, which SQLite opens everywhere.
        self.dest = osfs.extended_path(dest)
        self.state_dir = Path(os.path.abspath(dest)) / STATE_DIR
        self.options = options
        self.reporter: Reporter = reporter or SilentReporter()
        self.rules: NameRules = effective_rules(options.name_rules)
        self.fold_case = case_insensitive(self.rules)
        self._renames: dict[str, str] = {}  # new path -> old path (letter case only)
        self.remote = Remote(conn)
        self.stop = stop or threading.Event()
        self._dirty_dirs: set[Path] = set()
        self._dirty_lock = threading.Lock()
        self._listed: set[str] = set()
        self._journal_view: dict[str, JournalEntry] = {}  # for letter-case renames
        self._root_token: object = _UNASKED

    def _dir_changed(self, folder: Path) -> None:
        with self._dirty_lock:
            self._dirty_dirs.add(folder)

    def _sync_dirs(self) -> None:
        """Make renames durable before the journal records them (one fsync per folder)."""
        with self._dirty_lock:
            dirty, self._dirty_dirs = self._dirty_dirs, set()
        for folder in dirty:
            osfs.fsync_dir(folder)

    def close(self) -> None:
        self.remote.close()

    # --- the run ---------------------------------------------------------------

    def run(self) -> PullResult:
        result = PullResult()
        self._root_token = _UNASKED
        problem = dest_problem(Path(osfs.display_path(self.dest)), writing=not self.options.dry_run)
        if problem is not None:
            return self._fatal(result, *problem)
        fresh = not (self.state_dir / "state.db").exists()
        if fresh:
            # Nothing is created on this computer until the server has answered: a wrong
            # password or address must not leave an empty DEST/.davsync behind.
            try:
                self._root_token = self.remote.check_root()
            except RemoteError as e:
                return self._remote_failed(result, e)
        with ExitStack() as stack:
            if fresh and self.options.dry_run:
                journal = Journal(None)  # a preview of a first pull: nothing to read, nothing to write
            else:
                try:
                    self.dest.mkdir(parents=True, exist_ok=True)
                    stack.enter_context(dest_lock(self.state_dir))
                except DestLockedError as e:
                    return self._fatal(result, str(e), Exit.USAGE)
                except OSError as e:
                    return self._fatal(
                        result, f"cannot create {osfs.display_path(self.dest)}: {e.strerror}.", Exit.LOCAL
                    )
                try:
                    journal = Journal(self.state_dir / "state.db", before_commit=self._sync_dirs)
                except JournalError as e:
                    return self._fatal(result, str(e), Exit.LOCAL)
                for leftover in (self.state_dir / "partial").glob("*.small"):
                    leftover.unlink(missing_ok=True)
            try:
                self._run(result, journal)
            except RemoteError as e:
                self._remote_failed(result, e)
            except LocalWriteError as e:
                self._fatal(result, str(e), Exit.LOCAL)
            except KeyboardInterrupt:
                self.stop.set()  # in-flight downloads stop at their next block; the journal is kept
                raise
            finally:
                journal.commit()
                journal.close()
                result.requests_sent = self.remote.requests_sent
        # A fatal error also sets `stop` (to end the other workers); only a stop nobody failed for is an interruption.
        result.interrupted = self.stop.is_set() and result.fatal is None
        return result

    def _remote_failed(self, result: PullResult, e: RemoteError) -> PullResult:
        self._fatal(result, str(e), Exit.USAGE if isinstance(e, NotAShare) else Exit.CONNECTION)
        result.retryable = not e.fatal
        return result

    def _fatal(self, result: PullResult, message: str, code: Exit) -> PullResult:
        result.fatal = message
        result.exit_code = code
        return result

    def _run(self, result: PullResult, journal: Journal) -> None:
        # NTFS and APFS ignore case whatever this OS is; so does an NTFS/exFAT stick on Linux.
        self.fold_case = case_insensitive(self.rules) or bool(osfs.case_insensitive(self.dest))
        self._renames = {}
        filt = Filter.load(self.dest, self.options.excludes)
        token = None
        if journal.get_meta("sync_url") == self.remote.base_url:
            token = journal.get_meta("sync_token")
        if token and not (self.options.full or self.options.verify or self.options.dry_run):
            try:
                changes = self.remote.sync_collection(token)
            except SyncTokenInvalid:
                result.warnings.append("The server no longer knows this mirror's sync token; listing in full.")
                journal.set_meta("sync_token", None)
            except SyncUnsupported:
                journal.set_meta("sync_token", None)
            else:
                if not self._spelling_changed(changes, journal):
                    result.mode = "sync-collection"
                    self._run_incremental(result, journal, filt, changes)
                    return
        self._run_walk(result, journal, filt)

    def _spelling_changed(self, changes: Changes, journal: Journal) -> bool:
        """Does a changed entry reach a known local path under another server spelling (NFD
        where NFC was synced)? Then another name may share that path, which only a full
        listing can tell: a change list names one side of such a pair at a time."""
        files = {p: e for p, e in changes.changed.items() if not e.is_dir}
        known = journal.get(sorted(files))
        return any(j.remote_name != self.remote.server_name(files[p]) for p, j in known.items() if not j.is_dir)

    def _run_walk(self, result: PullResult, journal: Journal, filt: Filter) -> None:
        """List everything (Depth-1 PROPFIND per folder) and plan over the whole tree."""
        token = self._root_token if self._root_token is not _UNASKED else self.remote.check_root()
        assert token is None or isinstance(token, str)
        listing = walk(self.remote, jobs=max(2, self.options.jobs), excluded=filt.excluded)
        if "" in listing.failed:
            raise RemoteError(listing.failed[""])
        kept, skipped = filter_names(listing.entries, self.rules, fold_case=self.fold_case)
        result.skipped = listing.skipped + skipped
        remote = {p: e for p, e in listing.entries.items() if p in kept}
        not_judged = {s.path for s in result.skipped}  # skipped names are neither synced nor deleted
        journal_entries = {
            p: j
            for p, j in journal.load().items()
            if not filt.excluded(p, j.is_dir) and not _at_or_under(p, not_judged)
        }
        self._drop_linked(remote, journal_entries, result)
        self._find_case_renames(remote, journal_entries)
        local = self._look_locally(remote, journal_entries, result)
        self._listed = set(remote)
        self._journal_view = journal_entries
        result.plan = plan(
            remote,
            local,
            journal_entries,
            failed_folders=set(listing.failed),
            options=Options(delete=self.options.delete, max_delete=self.options.max_delete),
        )
        result.warnings += result.plan.warnings
        for folder, err in listing.failed.items():
            result.errors.append({"path": folder or "/", "error": err})
        self._finish(result, journal, token)

    def _run_incremental(self, result: PullResult, journal: Journal, filt: Filter, changes: Changes) -> None:
        """Act only on the paths the server says changed; each still gets the local checks."""
        changed = {p: e for p, e in changes.changed.items() if not filt.excluded(p, e.is_dir)}
        kept, skipped = filter_names(changed, self.rules, fold_case=self.fold_case)
        result.skipped = changes.skipped + skipped
        remote = {p: e for p, e in changed.items() if p in kept}
        removed = {p for p in changes.removed if not filt.excluded(p, False)}
        journal_entries = journal.gone()  # kept earlier without --delete: judge them again
        journal_entries.update(journal.get(sorted(set(changed) | removed)))
        for path in removed:
            j = journal_entries.get(path)
            if j is not None and j.is_dir:
                journal_entries.update(journal.under(path))
        journal_entries = {p: j for p, j in journal_entries.items() if not filt.excluded(p, j.is_dir)}
        for p in list(journal_entries):
            if p in changed and p not in kept:
                del journal_entries[p]  # skipped names are not judged
        self._drop_linked(remote, journal_entries, result)
        self._find_case_renames(remote, journal_entries)
        local = self._look_locally(remote, journal_entries, result)
        self._listed = set(remote)
        self._journal_view = journal_entries
        going = sum(1 for p, j in journal_entries.items() if not j.is_dir and p not in remote)
        arriving = any(not e.is_dir for e in remote.values())
        total = journal.count_files()
        result.plan = plan(
            remote,
            local,
            journal_entries,
            options=Options(delete=self.options.delete, max_delete=self.options.max_delete),
            remote_looks_empty=total > 0 and going >= total and not arriving,
        )
        result.warnings += result.plan.warnings
        self._finish(result, journal, changes.token)

    def _drop_linked(
        self, remote: dict[str, RemoteEntry], journal: dict[str, JournalEntry], result: PullResult
    ) -> None:
        """Leave alone a symbolic link or junction inside DEST and whatever lies behind it:
        writing through it would put files outside DEST, replacing it would undo the user's."""
        link_at: dict[str, str | None] = {"": None}  # folder -> the link at or above it (one lstat each)

        def link_above(folder: str) -> str | None:
            if folder not in link_at:
                found = link_above(folder.rpartition("/")[0])
                link_at[folder] = found or (folder if osfs.is_link(self.dest / folder) else None)
            return link_at[folder]

        for paths in (remote, journal):
            for path in list(paths):
                entry = paths[path]
                # A folder here is checked itself; a file only through its folders (a link
                # standing where a file goes is set aside as a conflict copy, like any file).
                link = link_above(path) if entry.is_dir else link_above(path.rpartition("/")[0])
                if link is not None:
                    del paths[path]
                    if paths is remote:
                        reason = (
                            "a link or junction in DEST, left alone" if link == path
                            else f"inside {link!r}, a link or junction in DEST, which davsync does not follow"
                        )  # fmt: skip
                        result.skipped.append(Skipped(path, reason))

    def _find_case_renames(self, remote: dict[str, RemoteEntry], journal: dict[str, JournalEntry]) -> None:
        """A server rename that changes only letter case (`Report.txt` -> `report.txt`) is the
        same file on a case-insensitive DEST: move its journal row to the new name (and
        rename it here) instead of trashing the old name and downloading the new one."""
        if not self.fold_case:
            return
        gone = {nfc(p).casefold(): p for p in journal if p not in remote}
        if not gone:
            return
        for new in remote:
            old = gone.get(nfc(new).casefold())
            if old is not None and new not in journal:
                journal[new] = journal.pop(old)
                self._renames[new] = old

    def _rename_actions(self) -> list[Action]:
        return [Action(Kind.RENAME, new, None, None, f"from {old}") for new, old in sorted(self._renames.items())]

    def _finish(self, result: PullResult, journal: Journal, token: str | None) -> None:
        result.plan.actions[:0] = self._rename_actions()
        if self.options.dry_run:
            result.exit_code = Exit.PARTIAL if result.has_problems(planned=True) else Exit.OK
            return
        listed = {a.path for a in result.plan.actions if a.remote is not None} | self._listed
        for path in set(journal.gone()) & listed:
            journal.mark_gone(path, False)  # it is back on the server
        self._execute(result, journal)
        if result.has_problems():
            result.exit_code = Exit.PARTIAL
        # Advance the token only when everything it covers was handled; otherwise the
        # next pull asks again from the old one (acting twice is harmless, skipping is not).
        if not result.errors and not self.stop.is_set():
            journal.set_meta("sync_url", self.remote.base_url if token else None)
            journal.set_meta("sync_token", token)

    def _look_locally(
        self, remote: dict[str, RemoteEntry], journal: dict[str, JournalEntry], result: PullResult
    ) -> dict[str, LocalEntry | None]:
        """Stat every path in question; read a file only when its stat says it may differ.
        What the look leaves alone (a link, an unreadable file) is reported and not judged."""
        scan = look_at(
            self.dest, set(remote) | set(journal), journal, excluded=_nothing_excluded,
            rules=self.rules, fold_case=self.fold_case, hash_all=self.options.verify, settle_s=0,
        )  # fmt: skip
        journal.update(scan.resolved)
        result.local_files_read += scan.files_hashed
        reported = {s.path for s in result.skipped}
        for s in scan.skipped:
            remote.pop(s.path, None)
            journal.pop(s.path, None)
            if s.path not in reported:
                result.skipped.append(s)
        return dict(scan.view.entries)

    # --- acting ----------------------------------------------------------------

    def _rename_case(self, a: Action, result: PullResult, journal: Journal) -> None:
        """Do a letter-case rename here, parents first (children follow their folder)."""
        old = self._renames[a.path]
        entry = self._journal_view[a.path]
        if old.rsplit("/", 1)[-1] != a.path.rsplit("/", 1)[-1] and stat_entry(self.dest / old) is not None:
            try:
                osfs.rename_case(self.dest / old, self.dest / a.path)
            except OSError as e:
                result.errors.append({"path": a.path, "error": f"could not rename {old} here: {e.strerror}"})
                return
            self._dir_changed((self.dest / a.path).parent)
        journal.forget(old)
        journal.put(a.path, replace(entry, prev=None))
        result.record(a.kind.value, a.path)
        self.reporter.file_done(a, old)

    def _execute(self, result: PullResult, journal: Journal) -> None:
        actions = result.plan.actions
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for a in sorted((a for a in actions if a.kind == Kind.RENAME), key=lambda a: a.path.count("/")):
            self._rename_case(a, result, journal)
        for a in sorted((a for a in actions if a.kind == Kind.MKDIR), key=lambda a: a.path):
            try:
                (self.dest / a.path).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                err = path_error(e, f"creating folder {a.path}", self.dest / a.path)
                if isinstance(err, LocalWriteError):
                    raise err from None
                result.errors.append({"path": a.path, "error": str(err)})
                self.reporter.warn(f"{a.path}: {err}")
                continue
            journal.put(a.path, JournalEntry(True))
            result.record(a.kind.value, a.path)
            self.reporter.file_done(a)

        transfers = [a for a in actions if a.kind in TRANSFERS]
        self.reporter.begin(len(transfers), sum((a.remote.size or 0) for a in transfers if a.remote))
        self._transfer_all(transfers, result, journal)

        for a in actions:
            if self.stop.is_set():
                break
            self._act_locally(a, result, journal, stamp)
        self.reporter.end()

    def _transfer_all(self, transfers: list[Action], result: PullResult, journal: Journal) -> None:
        window = 4 * max(1, self.options.jobs)
        with ThreadPoolExecutor(max_workers=max(1, self.options.jobs), thread_name_prefix="davsync-get") as pool:
            jobs = bounded(pool, lambda a: self._transfer(a, journal), transfers, window)
            try:
                for a, fut in jobs:
                    self._collect(a, fut, result)
            except BaseException:
                self.stop.set()  # Ctrl-C too: in-flight downloads end at their next block
                raise
            finally:
                jobs.close()

    def _collect(self, a: Action, fut: Future[tuple[int, str]], result: PullResult) -> None:
        try:
            nbytes, note = fut.result()
        except (DownloadError, Raced) as e:
            result.errors.append({"path": a.path, "error": str(e)})
            self.reporter.warn(f"{a.path}: {e}")
            return
        result.bytes_downloaded += nbytes
        result.record(a.kind.value, a.path)
        if a.kind == Kind.CONFLICT:
            result.conflicts.append({"path": a.path, "local_copy": note, "reason": a.reason})
        self.reporter.file_done(a, note)

    def _transfer(self, a: Action, journal: Journal) -> tuple[int, str]:
        if self.stop.is_set():
            raise DownloadError("stopped")
        r = a.remote
        assert r is not None
        note = ""
        if r.is_dir:  # a local file stands where the remote now has a folder
            note = keep_as_conflict(self.dest, a.path, a.local)
            (self.dest / a.path).mkdir(parents=True, exist_ok=True)
            journal.put(a.path, JournalEntry(True))
            return 0, note
        self.reporter.file_started(a.path, r.size or 0)
        got = download(self.remote, r, self.state_dir, progress=self.reporter.advance, stop=self.stop)
        expected = a.local
        prev = a.base
        if a.kind == Kind.CONFLICT and a.local is not None:
            note = keep_as_conflict(self.dest, a.path, a.local)
            expected = prev = None
        if prev is not None:
            prev = replace(prev, prev=None)

        def record(placed: LocalEntry) -> None:
            entry = JournalEntry(False, placed.size, placed.mtime_ns, placed.ino, got.md5,
                                 r.etag, r.size, r.mtime, r.md5, self.remote.server_name(r), prev=prev)  # fmt: skip
            journal.put_before_rename(a.path, entry)

        place(got, self.dest, a.path, r, expected, self._dir_changed, before_rename=record)
        return got.bytes_fetched, note

    def _act_locally(self, a: Action, result: PullResult, journal: Journal, stamp: str) -> None:
        r, loc = a.remote, a.local
        try:
            if a.kind in (Kind.ADOPT, Kind.REFRESH):
                entry = a.to_record  # what the plan saw: no second journal query per file
                assert entry is not None and r is not None
                if r.is_dir:
                    journal.put(a.path, entry)
                    return
                journal.put(a.path, replace(entry, remote_name=self.remote.server_name(r)))
                if a.kind == Kind.ADOPT:
                    result.record(a.kind.value, a.path)
            elif a.kind == Kind.FORGET:
                journal.forget(a.path)
            elif a.kind == Kind.DELETE:
                trashed = move_to_trash(self.dest, a.path, loc, stamp)
                journal.forget(a.path)
                result.record(a.kind.value, a.path)
                self.reporter.file_done(a, trashed)
            elif a.kind == Kind.RMDIR:
                try:
                    os.rmdir(self.dest / a.path)
                    journal.forget(a.path)
                    result.record(a.kind.value, a.path)
                    self.reporter.file_done(a)
                except OSError:
                    result.record("kept-folder", a.path)
            elif a.kind == Kind.LOCAL_MODIFIED:
                result.record(a.kind.value, a.path)
            elif a.kind == Kind.REMOTE_DELETED:
                journal.mark_gone(a.path, True)
                result.record(a.kind.value, a.path)
            elif a.kind == Kind.BLOCKED:
                result.errors.append({"path": a.path, "error": a.reason})
        except (Raced, DownloadError) as e:
            result.errors.append({"path": a.path, "error": str(e)})


def _nothing_excluded(path: str, is_dir: bool) -> bool:
    return False  # the paths a pull looks at are already filtered


def _at_or_under(path: str, folders: set[str]) -> bool:
    if not folders:
        return False
    parts = path.split("/")
    return any("/".join(parts[:i]) in folders for i in range(1, len(parts) + 1))


def dest_problem(dest: Path, *, writing: bool) -> tuple[str, Exit] | None:
    """What stops DEST from being mirrored into, said plainly, before anything is asked or made."""
    if dest.exists() and not dest.is_dir():
        return f"{dest} is a file, not a folder: give a folder to mirror into (it is created if missing).", Exit.USAGE
    if not writing:
        return None
    existing = dest
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot create {dest}: {existing} is a file, not a folder.", Exit.USAGE
    if not os.access(existing, os.W_OK | os.X_OK):
        what = f"{dest} is not writable" if existing == dest else f"cannot create {dest}: {existing} is not writable"
        return f"{what} (permission denied): choose another folder or fix its permissions.", Exit.LOCAL
    return None


def run_pull(
    conn: ConnectionSettings,
    dest: Path,
    options: PullOptions,
    reporter: Reporter | None = None,
    stop: threading.Event | None = None,
) -> PullResult:
    puller = Puller(conn, dest, options, reporter, stop)
    try:
        return puller.run()
    finally:
        puller.close()


__all__ = ["Puller", "PullOptions", "PullResult", "run_pull"]
