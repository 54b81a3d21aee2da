"""The executor: carries out a plan's actions on both sides and records the journal.

It needs nothing but the plan and a `Context`: each Action says what changes locally
(`local_ops`), what changes on the server (`remote_ops`) and which journal rows it leaves
(`to_record`, `extra`). The rules that make it safe:

- Every change is checked against the version the plan judged: a local file must still have
  the stat it had (else it is left for the next run); a server write carries `If-Match` with
  the judged etag or `If-None-Match: *`. A 412 means someone else wrote meanwhile: the path is
  read again and planned again (`Context.replan`), at most `REPLAN_ROUNDS` times.
- Intents are committed before a download is renamed into place and before an upload is sent
  (`Journal.intend`); the next run resolves them (`resolve_intents`), so a kill at any moment
  neither loses a file nor invents a deletion or a conflict.
- A base is recorded only for a version present on both sides. An upload whose file changed
  while it streamed records the version sent, so the next run sees a local edit.
- Server deletions go to DEST/.davsync/trash/; a folder is removed on the server only when it
  lists empty (a WebDAV DELETE is recursive).
- Small uploads go many per request when the server offers it (`Context.upload_many`, a davsync
  server's bulk POST): one intent transaction per batch before its request, and every member's
  answer handled exactly as a single PUT's (412 re-planned, refusals reported alone, the base
  recorded the same way). What a batch cannot settle (not sent, too large, a server error, a
  failed request) goes on by PUT.

Order: letter-case renames, then structure (folders, moves, a file against a folder; shallow
first, a level's new server folders side by side), transfers both ways (in parallel),
deletions, folder removals (deepest first), reports.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import Protocol

from ..concurrency import batches as batches_of
from ..concurrency import bounded
from ..scan import md5_of_file as md5_of
from .bulk import BATCH_BYTES, BATCH_FILES, BulkItem, BulkResult, BulkUnsupported
from .bundle import MAX_FILE, MIN_FILES
from .journal import Intent, Journal
from .plan import Action, JournalEntry, JournalOp, Kind, LocalEntry, Plan, RemoteEntry, complete
from .refusals import NotFound, NotHeld, PreconditionFailed, SourceChanged, not_held, one_line, write_refusal
from .remote import Remote
from .results import Conflict, RunResult, planned_transfers
from .sides import DavServer, Disk, LocalSide, ServerSide
from .transfer import (
    ChangedOnServer,
    DownloadError,
    LocalWriteError,
    PathWriteError,
    Raced,
    judged_with_md5,
    path_error,
    same_stat,
)
from .transport import RemoteError, Stopped

REPLAN_ROUNDS = 2  # a path refused with 412 is planned again this many times, then reported


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


# A download hook: fetch many small files at once and hand back the actions still to do
# one by one (client/bundle.py plugs in here).
Prefetch = Callable[[list[Action]], list[Action]]
# An upload hook: send many small files in one request, one result per item, in order
# (client/bulk.py's bulk POST); raises BulkUnsupported when the server offers none.
UploadMany = Callable[[list[BulkItem]], list[BulkResult]]
BULK_WORKERS = 2  # bulk requests in flight at once: the client reads the next batch while the server places one


@dataclass
class Context:
    """What one run's executor works with; built per run (nothing here outlives it)."""

    dest: Path  # the long-path form on Windows
    state_dir: Path
    remote: Remote
    journal: Journal
    reporter: Reporter
    stop: threading.Event
    jobs: int = 4
    stamp: str = ""  # this run's trash folder name
    # 412: plan these paths again from fresh facts on both sides (None: report instead).
    replan: Callable[[set[str]], Plan] | None = None
    case_renames: dict[str, str] = field(default_factory=dict)  # pull: new path -> old (letter case)
    on_disk: dict[str, str] = field(default_factory=dict)  # NFC path -> its spelling on disk, where they differ
    prefetch: Prefetch | None = None
    upload_many: UploadMany | None = None
    # A download found the file changed since it was listed: list and plan it again (set by the Executor).
    changed_on_server: Callable[[str, str], None] | None = None
    # The two sides as the executor sees them (client/sides.py); None: the WebDAV share
    # `remote`, and the disk.
    server_side: ServerSide | None = None
    local_side: LocalSide | None = None
    server: ServerSide = field(init=False)
    disk: LocalSide = field(init=False)
    _dirty: set[Path] = field(default_factory=set)
    _dirty_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.server = self.server_side if self.server_side is not None else DavServer(self.remote)
        self.disk = self.local_side if self.local_side is not None else Disk()

    def dir_changed(self, folder: Path) -> None:
        with self._dirty_lock:
            self._dirty.add(folder)

    def sync_dirs(self) -> None:
        """Make renames durable before the journal records them (one fsync per folder)."""
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
        for folder in dirty:
            self.disk.sync_dir(folder)


class _Deferred(Exception):
    """The file changed while it was sent: nothing (or the version sent) was recorded; next run."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class _Refused(Exception):
    """The server answered 412: someone wrote this path since it was listed."""

    def __init__(self, paths: set[str]) -> None:
        super().__init__(", ".join(sorted(paths)))
        self.paths = paths


_STRUCTURE = {Kind.MKDIR, Kind.REMOTE_MKDIR, Kind.LOCAL_MOVE, Kind.REMOTE_MOVE}
_TRANSFERS = {Kind.DOWNLOAD, Kind.UPDATE, Kind.CONFLICT, Kind.UPLOAD, Kind.UPLOAD_EDIT}
_DELETIONS = {Kind.DELETE, Kind.REMOTE_DELETE}
_REMOVALS = {Kind.RMDIR, Kind.REMOTE_RMDIR}


def _depth(a: Action) -> int:
    return a.path.count("/")


def _is_folder_clash(a: Action) -> bool:
    return a.kind == Kind.CONFLICT and any(e is not None and e.is_dir for e in (a.local, a.remote))


class Executor:
    """Runs one plan (and the re-plans its 412s lead to) into one RunResult."""

    def __init__(self, ctx: Context, result: RunResult) -> None:
        self.ctx = ctx
        self.result = result
        self._lock = threading.Lock()
        self._refused: set[str] = set()
        self._bulk_off = False  # the server offers no bulk upload: PUT for the rest of the run
        self._changed: dict[str, str] = {}  # path -> why a download was not the version listed
        ctx.changed_on_server = self._changed_on_server

    def _changed_on_server(self, path: str, why: str = "") -> None:
        with self._lock:  # listed again and planned again, like a 412
            self._refused.add(path)
            self._changed[path] = why

    # --- the run -------------------------------------------------------------------

    def run(self, plan: Plan) -> None:
        ctx = self.ctx
        if plan.reset_journal:
            ctx.journal.clear()  # union: the old bases are not trusted; this run records new ones
        ctx.reporter.begin(*planned_transfers(plan.actions))  # counted as the Done: line counts
        try:
            self._run_actions(plan.actions)
            for _round in range(REPLAN_ROUNDS):
                if not self._refused or ctx.replan is None or ctx.stop.is_set():
                    break
                paths, self._refused = self._refused, set()
                again = ctx.replan(paths)
                # The plan reported is the one carried out: the new actions replace the refused ones.
                kept = [a for a in self.result.plan.actions if a.path not in paths]
                self.result.plan.actions[:] = kept + again.actions
                self.result.plan.warnings.extend(again.warnings)
                self._run_actions(again.actions)
            for path in sorted(self._refused):
                why = self._changed.get(path)
                if why:
                    self._error(path, f"{why}, again after listing it anew: it keeps changing on the server; "
                                      "run again to sync it")  # fmt: skip
                else:
                    self._error(path, "changed on the server again while this run was writing it; run again to sync it")
        finally:
            ctx.reporter.end()

    def _run_actions(self, actions: list[Action]) -> None:
        stop = self.ctx.stop
        renames = sorted((a for a in actions if a.kind == Kind.RENAME), key=_depth)
        structure = sorted(
            (a for a in actions if a.kind in _STRUCTURE or _is_folder_clash(a)), key=lambda a: (_depth(a), a.path)
        )
        transfers = [a for a in actions if a.kind in _TRANSFERS and not _is_folder_clash(a)]
        deletions = [a for a in actions if a.kind in _DELETIONS]
        removals = sorted((a for a in actions if a.kind in _REMOVALS), key=lambda a: (-_depth(a), a.path))
        handled = {Kind.RENAME} | _STRUCTURE | _TRANSFERS | _DELETIONS | _REMOVALS
        rest = [a for a in actions if a.kind not in handled]
        for a in renames:
            if stop.is_set():
                return
            self._guarded(a, self._structure)
        for _level, same_depth in groupby(structure, key=_depth):
            # A level's new server folders are independent round trips (their parents were
            # made a level earlier): send them side by side, the rest one by one, in order.
            level = list(same_depth)
            for a in level:
                if stop.is_set():
                    return
                if a.kind != Kind.REMOTE_MKDIR:
                    self._guarded(a, self._structure)
            self._parallel([a for a in level if a.kind == Kind.REMOTE_MKDIR], self._structure)
        if self.ctx.prefetch is not None and transfers:
            transfers = self.ctx.prefetch(transfers)
        if self.ctx.upload_many is not None and transfers:
            transfers = self._upload_in_batches(transfers)
        self._parallel(transfers, self._transfer)
        for a in rest:  # journal-only and reports: quick, and before deletions (a FORGET frees a name)
            if stop.is_set():
                return
            self._guarded(a, self._record_only)
        self._parallel(deletions, self._delete)
        for a in removals:
            if stop.is_set():
                return
            self._guarded(a, self._remove_folder)

    def _parallel(self, actions: list[Action], fn: Callable[[Action], None]) -> None:
        if not actions or self.ctx.stop.is_set():
            return
        jobs = max(1, self.ctx.jobs)
        if jobs == 1 or len(actions) == 1:
            for a in actions:
                if self.ctx.stop.is_set():
                    return
                self._guarded(a, fn)
            return
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="davsync-run") as pool:
            work = bounded(pool, lambda a: self._guarded(a, fn), actions, 4 * jobs)
            try:
                for _a, fut in work:
                    fut.result()  # re-raises what stops the whole run
            except BaseException:
                self.ctx.stop.set()  # Ctrl-C too: in-flight transfers end at their next block
                raise
            finally:
                work.close()

    def _guarded(self, a: Action, fn: Callable[[Action], None]) -> None:
        """Run one action; a failure that concerns only this path is reported and the run goes on."""
        if self.ctx.stop.is_set():
            return
        try:
            fn(a)
        except _Refused as e:
            with self._lock:
                self._refused |= e.paths
        except _Deferred as e:
            with self._lock:
                self.result.deferred.append(e.path)
        except Stopped:
            self._error(a.path, "stopped")
        except ChangedOnServer as e:
            self._changed_on_server(a.path, str(e))
        except (Raced, DownloadError) as e:
            self._error(a.path, str(e))
        except PathWriteError as e:
            self._error(a.path, str(e))
        except RemoteError as e:
            if e.fatal:
                raise
            self._error(a.path, str(e))
        except LocalWriteError:
            raise
        except (FileNotFoundError, NotADirectoryError, FileExistsError, IsADirectoryError):
            self._error(a.path, "changed locally during the run; it is looked at again next time")
        except OSError as e:
            err = path_error(e, f"syncing {a.path}", self.ctx.dest / a.path)
            if isinstance(err, LocalWriteError):
                raise err from None
            self._error(a.path, str(err))

    def _error(self, path: str, message: str) -> None:
        """A path this run could not handle: reported once, with the run's problems at its end."""
        with self._lock:
            self.result.error(path, message)

    def _done(self, a: Action, note: str = "", *, kind: Kind | None = None) -> None:
        with self._lock:
            self.result.record(kind or a.kind, a.path)
        self.ctx.reporter.file_done(a, note)

    # --- journal ---------------------------------------------------------------------

    def _record(self, a: Action, entry: JournalEntry | None) -> None:
        """Write the action's own row (or drop it) and its extra rows."""
        journal = self.ctx.journal
        if entry is not None:
            journal.put(a.path, entry)
        elif a.journal == JournalOp.DROP:
            journal.forget(a.path)
        for path, row in a.extra:
            if row is None:
                journal.forget(path)
            elif a.kind != Kind.CONFLICT:
                journal.put(path, row)

    def _rel(self, path: str) -> str:
        """Where an (NFC) path of the plan is spelled on disk (a name a Mac wrote in NFD)."""
        return self.ctx.on_disk.get(path, path)

    def _disk(self, path: str) -> Path:
        return self.ctx.dest / self._rel(path)

    def _server_name(self, r: RemoteEntry | None) -> str | None:
        return self.ctx.server.server_name(r) if r is not None and not r.is_dir else None

    # --- structure ---------------------------------------------------------------------

    def _structure(self, a: Action) -> None:
        if a.kind == Kind.RENAME:
            self._case_rename(a)
        elif a.kind == Kind.MKDIR:
            self._mkdir(a)
        elif a.kind == Kind.REMOTE_MKDIR:
            self.ctx.server.mkcol(a.path)
            self._record(a, JournalEntry(True))
            self._done(a)
        elif a.kind == Kind.LOCAL_MOVE:
            self._local_move(a)
        elif a.kind == Kind.REMOTE_MOVE:
            self._remote_move(a)
        elif a.kind == Kind.CONFLICT:
            self._folder_clash(a)

    def _mkdir(self, a: Action) -> None:
        target = self.ctx.dest / a.path
        if not target.is_dir():
            self.ctx.disk.mkdir(target)
        self._record(a, JournalEntry(True))
        self._done(a)

    def _case_rename(self, a: Action) -> None:
        """Pull on a case-insensitive DEST: `Report.txt` renamed `report.txt` on the server."""
        old = self.ctx.case_renames[a.path]
        entry = a.record
        assert entry is not None
        if old.rsplit("/", 1)[-1] != a.path.rsplit("/", 1)[-1] and self.ctx.disk.stat(self.ctx.dest / old) is not None:
            try:
                self.ctx.disk.rename(self.ctx.dest / old, self.ctx.dest / a.path, case_only=True)
            except OSError as e:
                raise Raced(f"could not rename {old} here: {e.strerror}") from None
            self.ctx.dir_changed((self.ctx.dest / a.path).parent)
        self.ctx.journal.forget(old)
        self.ctx.journal.put(a.path, replace(entry, prev=None))
        self._done(a, old)

    def _local_move(self, a: Action) -> None:
        """A rename on the server, done here as a rename (never as delete + download)."""
        assert a.src is not None and a.record is not None
        src, dst = self._disk(a.src), self.ctx.dest / a.path
        disk = self.ctx.disk
        if not same_stat(disk.stat(src), a.local):
            raise Raced(f"{a.src} changed locally during the run; left alone")
        same_file = a.src.casefold() == a.path.casefold()
        if not same_file and disk.stat(dst) is not None:
            raise Raced(f"something appeared at {a.path} during the run; {a.src} was not renamed")
        disk.mkdir(dst.parent)
        disk.rename(src, dst, case_only=same_file)
        self.ctx.dir_changed(dst.parent)
        self.ctx.dir_changed(src.parent)
        placed = disk.stat(dst)
        self._record(a, complete(a.record, placed if placed is not None and not placed.is_dir else None))
        self._done(a, a.src)

    def _remote_move(self, a: Action) -> None:
        """A rename here, done on the server as one MOVE (a folder with everything inside)."""
        assert a.src is not None and a.record is not None and a.remote is not None
        if a.src.casefold() != a.path.casefold() and self.ctx.disk.stat(self._disk(a.src)) is not None:
            raise Raced(f"{a.src} is back here; the rename is left for the next run")
        etag = None if a.remote.is_dir else a.remote.etag
        try:
            moved = self.ctx.server.move(a.src, a.path, if_match=etag, overwrite=False, src_href=a.remote.href)
        except (PreconditionFailed, NotFound):  # changed, taken or gone on the server meanwhile
            raise _Refused({a.src, a.path}) from None
        here = self.ctx.disk.stat(self.ctx.dest / a.path)
        entry = complete(
            a.record,
            here if here is not None and not here.is_dir else None,
            moved if moved is not None and not moved.is_dir else None,
        )
        self._record(a, entry)
        self._done(a, a.src)

    def _folder_clash(self, a: Action) -> None:
        """A file against a folder: keep both; the local one takes the conflict name."""
        r = a.remote
        assert r is not None and a.local is not None
        copy = self.ctx.disk.set_aside(self.ctx.dest, self._rel(a.path), a.local, a.conflict_copy)
        self.ctx.dir_changed((self.ctx.dest / copy).parent)
        uploaded = False
        if r.is_dir:  # the server has a folder: make it here
            self.ctx.disk.mkdir(self.ctx.dest / a.path)
            self.ctx.journal.put(a.path, JournalEntry(True))
            uploaded = self._upload_copy(a, copy)
        else:  # the server has a file where a folder stood here: fetch it
            got = self.ctx.server.fetch(r, self.ctx.state_dir, progress=self.ctx.reporter.advance, stop=self.ctx.stop)
            self._place(a, got, None)
        with self._lock:
            self.result.conflicts.append(Conflict(a.path, copy, a.reason, uploaded))
        self._done(a, copy)

    # --- transfers ---------------------------------------------------------------------

    def _transfer(self, a: Action) -> None:
        if self.ctx.stop.is_set():
            raise DownloadError("stopped")
        if a.kind in (Kind.UPLOAD, Kind.UPLOAD_EDIT):
            self._upload(a)
        else:
            self._download(a)

    def _download(self, a: Action) -> None:
        r = a.remote
        assert r is not None
        self.ctx.reporter.file_started(a.path, r.size or 0)
        base = self._disk(a.path) if a.kind == Kind.UPDATE and a.local is not None else None  # (for a delta)
        got = self.ctx.server.fetch(r, self.ctx.state_dir, base=base, progress=self.ctx.reporter.advance,
                                    stop=self.ctx.stop)  # fmt: skip
        expected = a.local
        note = ""
        uploaded = False
        if a.kind == Kind.CONFLICT and a.local is not None:
            note = self.ctx.disk.set_aside(self.ctx.dest, self._rel(a.path), a.local, a.conflict_copy)
            expected = None
        try:
            placed = self._place(a, got, expected)
        except BaseException:
            self.ctx.reporter.advance(-got.bytes_fetched)  # the progress shows only what was placed
            raise
        with self._lock:  # counted once placed: a download left unplaced (raced, refused) is no download
            self.result.bytes_downloaded += got.bytes_fetched
        if a.kind in (Kind.DOWNLOAD, Kind.UPDATE):  # big files: keep the block list for the next delta
            self.ctx.server.placed(self.ctx.state_dir, r, placed, got)
        if a.kind == Kind.CONFLICT:
            if note and a.upload_copy:
                uploaded = self._upload_copy(a, note)
            with self._lock:
                self.result.conflicts.append(Conflict(a.path, note, a.reason, uploaded))
        self._done(a, note)

    def _place(self, a: Action, got: object, expected: LocalEntry | None) -> JournalEntry:
        """Rename a verified download into place; its row is an intent until the rename is done.
        Returns the row (the placed file's stat)."""
        from .transfer import Downloaded

        assert isinstance(got, Downloaded) and a.remote is not None
        r = a.remote
        planned = a.to_record
        assert planned is not None
        journal = self.ctx.journal
        rows: list[JournalEntry] = []

        def intend(placed: LocalEntry) -> None:
            entry = replace(complete(planned, placed), md5=got.md5, remote_name=self._server_name(r))
            rows.append(entry)
            journal.intend(Intent(a.path, "place", entry))

        def set_aside(copy: str) -> None:  # edited here since the plan judged it: kept, never replaced
            with self._lock:
                why = "changed here while the server's version came"
                self.result.conflicts.append(Conflict(a.path, copy, why, False))

        target = self._rel(a.path) if expected is not None else a.path
        final = self.ctx.disk.place(got, self.ctx.dest, target, r, judged_with_md5(a, expected), self.ctx.dir_changed,
                                    intend, set_aside)  # fmt: skip
        journal.settle(a.path, replace(rows[0], ctime_ns=final.ctime_ns))
        for path, row in a.extra:
            if row is None:
                journal.forget(path)
        return rows[0]

    def _upload_copy(self, a: Action, copy: str) -> bool:
        """Upload a conflict's local version under its conflict name (If-None-Match: *)."""
        if not a.upload_copy or a.local is None or a.local.is_dir:
            return False
        planned = dict(a.extra).get(a.conflict_copy or "")
        local = self.ctx.disk.stat(self.ctx.dest / copy)
        # (its ctime moved with the rename, checked just before it; the upload's MD5 sees a later edit)
        if local is None or not same_stat(local, replace(a.local, ctime_ns=0)):
            return False  # changed since: the next run sees a new local file and uploads it
        md5 = a.local.md5 or md5_of(self.ctx.dest / copy)
        entry = replace(planned, ctime_ns=local.ctime_ns) if planned else JournalEntry(
            False, local.size, local.mtime_ns, local.ino, md5, None, local.size, local.mtime_ns / 1e9, md5,
            ctime_ns=local.ctime_ns,
        )
        try:
            self._send(copy, entry, None, md5, local)
        except _Refused:
            self._error(copy, "a file of that name appeared on the server; the conflict copy stays here only")
            return False
        except NotHeld as e:
            self._error(copy, str(e))
            return False
        return True

    def _upload(self, a: Action) -> None:
        up = self._prepare_upload(a)
        self.ctx.reporter.file_started(a.path, up.loc.size)
        changed = self._send(a.path, up.planned, up.base_etag, up.md5, up.loc, href=up.href)
        self._uploaded(a, changed)

    def _prepare_upload(self, a: Action) -> _Upload:
        """What an upload sends, checked against the plan: the local file must be as judged."""
        loc = a.local
        assert loc is not None and not loc.is_dir
        planned = a.to_record
        assert planned is not None
        now = self.ctx.disk.stat(self._disk(a.path))
        if not same_stat(now, loc):
            raise Raced(f"{a.path} changed locally during the run; it is synced next time")
        md5 = loc.md5 or planned.md5 or md5_of(self._disk(a.path))
        base_etag = a.remote.etag if a.kind == Kind.UPLOAD_EDIT and a.remote is not None else None
        href = a.remote.href if base_etag and a.remote is not None else ""
        name = (self._server_name(a.remote) if base_etag else None) or a.path
        return _Upload(a, planned, loc, md5, base_etag, href, name)

    def _uploaded(self, a: Action, changed: bool) -> None:
        for path, row in a.extra:
            if row is None:
                self.ctx.journal.forget(path)
        self._done(a, "changed while uploading; the new version goes next time" if changed else "")

    def _intent_entry(self, planned: JournalEntry, md5: str, loc: LocalEntry) -> JournalEntry:
        """The base an upload gives once the server has it (its remote half without the new etag)."""
        return replace(planned, size=loc.size, mtime_ns=loc.mtime_ns, ino=loc.ino, md5=md5, remote_md5=md5,
                       ctime_ns=loc.ctime_ns)  # fmt: skip

    def _send(
        self, path: str, planned: JournalEntry, base_etag: str | None, md5: str, loc: LocalEntry, href: str = ""
    ) -> bool:
        """PUT one file with its preconditions; record the base. Returns whether the file
        changed while it streamed (then the base is the version sent, and the next run
        uploads the new one)."""
        journal = self.ctx.journal
        entry = self._intent_entry(planned, md5, loc)
        journal.intend(Intent(path, "put", entry, base_etag))
        source = self._disk(path)
        try:
            up = self.ctx.server.send(
                journal, path, source, md5=md5, mtime_ns=loc.mtime_ns, if_match=base_etag,
                if_none_match=base_etag is None, href=href, progress=self.ctx.reporter.advance, stop=self.ctx.stop,
                note=getattr(self.ctx.reporter, "note", None),
            )  # fmt: skip
        except PreconditionFailed:
            journal.settle(path, None)  # nothing was written: the intent is moot
            raise _Refused({path}) from None
        except SourceChanged:
            journal.settle(path, None)  # the server refused the torn body: nothing was replaced
            raise _Deferred(path) from None
        except FileNotFoundError:
            journal.settle(path, None)
            raise Raced(f"{path} disappeared here during the upload; it is looked at again next time") from None
        except NotHeld:
            journal.settle(path, None)  # by the server's word it holds something else: no base
            raise
        return self._record_upload(path, entry, md5, loc, up.sent_md5, up.entry)

    def _record_upload(
        self, path: str, entry: JournalEntry, md5: str, loc: LocalEntry, sent_md5: str, placed: RemoteEntry | None
    ) -> bool:
        """The server holds what was sent: settle the intent into the base (single PUT and bulk
        member alike). Returns whether the local file changed meanwhile."""
        with self._lock:
            self.result.bytes_uploaded += loc.size
        if sent_md5 != md5:
            # A server that ignores OC-Checksum took bytes that changed while they streamed: the
            # base is what it holds, so the next run sees the local file as changed and sends it.
            entry = replace(entry, md5=sent_md5, remote_md5=sent_md5)
        self.ctx.journal.settle(path, complete(entry, None, placed))
        changed = sent_md5 != md5 or not same_stat(self.ctx.disk.stat(self._disk(path)), loc)
        if changed:
            with self._lock:
                self.result.deferred.append(path)
        return changed

    # --- small uploads in batches (a davsync server's bulk POST) ---------------------------

    def _upload_in_batches(self, transfers: list[Action]) -> list[Action]:
        """Send the small uploads among `transfers` in bulk requests; returns the transfers
        left for the per-file path (everything else, and what a batch could not settle)."""
        small = [a for a in transfers if _bulk_candidate(a)]
        if len(small) < MIN_FILES or self._bulk_off or self.ctx.stop.is_set():
            return transfers
        back: set[int] = set()
        batches = list(batches_of(small, _size, max_items=BATCH_FILES, max_bytes=BATCH_BYTES))
        workers = max(1, min(BULK_WORKERS, self.ctx.jobs, len(batches)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="davsync-bulk") as pool:
            work = bounded(pool, self._upload_batch, batches, workers)
            try:
                for _batch, fut in work:
                    back.update(id(a) for a in fut.result())
            except BaseException:
                self.ctx.stop.set()  # the other batches are not sent
                raise
            finally:
                work.close()
        handled = {id(a) for a in small} - back
        return [a for a in transfers if id(a) not in handled]

    def _upload_batch(self, batch: list[Action]) -> list[Action]:
        """One bulk request: intents committed together, then each member's answer handled as
        a PUT's. Returns the actions handed back to the per-file path."""
        ctx = self.ctx
        if self._bulk_off or ctx.stop.is_set():
            return batch
        ups: list[_Upload] = []
        for a in batch:
            self._guarded(a, lambda a: ups.append(self._prepare_upload(a)))
        if not ups:
            return []
        entries = [self._intent_entry(u.planned, u.md5, u.loc) for u in ups]
        ctx.journal.intend_many([Intent(u.a.path, "put", e, u.base_etag) for u, e in zip(ups, entries, strict=True)])
        for u in ups:
            ctx.reporter.file_started(u.a.path, u.loc.size)
        items = [
            BulkItem(
                u.name,
                self._disk(u.a.path),
                md5=u.md5,
                mtime=float(u.loc.mtime_ns // 1_000_000_000),  # whole seconds, as a PUT's X-OC-Mtime
                if_match=u.base_etag,
                if_none_match=u.base_etag is None,
            )
            for u in ups
        ]
        try:
            results = ctx.upload_many(items) if ctx.upload_many is not None else []
        except BulkUnsupported:
            self._bulk_off = True
            self._give_up(ups)
            return [u.a for u in ups]
        except RemoteError as e:
            if e.fatal:
                raise
            if e.status is not None and e.status < 500:  # refused as a whole: nothing was placed
                self._give_up(ups)
            if e.status in (403, 405, 501):
                self._bulk_off = True  # refused outright: the PUTs say why, file by file
            # Otherwise (a server error, a cut connection) some members may have landed: their
            # intents stay until the PUT path settles them (a PUT's 412 re-reads the path; a
            # crash before that is settled by the server's MD5 at the next start).
            return [u.a for u in ups]
        back: list[Action] = []
        for u, entry, res in zip(ups, entries, results, strict=True):
            if _put_instead(res):
                if res.status < 500:
                    ctx.journal.settle(u.a.path, None)  # not placed: the PUT path sends it
                # (after a server error it may be in place: the intent stays for the PUT path to settle)
                back.append(u.a)
            else:
                self._guarded(u.a, partial(self._member_done, u, entry, res))
        ctx.journal.commit()
        return back

    def _member_done(self, u: _Upload, entry: JournalEntry, res: BulkResult, _a: Action) -> None:
        """A bulk member's answer, handled as the answer to its own PUT."""
        path = u.a.path
        if res.ok and res.md5 is not None and res.md5 != u.md5:
            self.ctx.journal.settle(path, None)  # by the server's word it holds something else: no base
            raise not_held(path, res.md5, u.md5)
        if res.ok:
            placed = RemoteEntry(path, False, res.sent_size, float(u.loc.mtime_ns // 1_000_000_000), res.etag,
                                 res.md5)  # fmt: skip
            self.ctx.reporter.advance(u.loc.size)
            self._uploaded(u.a, self._record_upload(path, entry, u.md5, u.loc, u.md5, placed))
            return
        self.ctx.journal.settle(path, None)  # refused: nothing was written
        if res.status == 412:
            raise _Refused({path})
        raise write_refusal("PUT", path, res.status, one_line(res.error))

    def _give_up(self, ups: list[_Upload]) -> None:
        self.ctx.journal.settle_many([(u.a.path, None) for u in ups])
        self.ctx.journal.commit()

    # --- deletions ---------------------------------------------------------------------

    def _delete(self, a: Action) -> None:
        if a.kind == Kind.DELETE:
            trashed = self.ctx.disk.trash(self.ctx.dest, self._rel(a.path), judged_with_md5(a, a.local), self.ctx.stamp)
            self.ctx.journal.forget(a.path)
            self._done(a, trashed)
            return
        r = a.remote
        assert r is not None
        if self.ctx.disk.stat(self._disk(a.path)) is not None:
            raise Raced(f"{a.path} is back here; it is not deleted on the server")
        try:
            self.ctx.server.delete(a.path, if_match=r.etag, href=r.href)
        except PreconditionFailed:
            raise _Refused({a.path}) from None
        self.ctx.journal.forget(a.path)
        self._done(a)

    def _remove_folder(self, a: Action) -> None:
        if a.kind == Kind.RMDIR:
            try:
                self.ctx.disk.rmdir(self._disk(a.path))
            except FileNotFoundError:
                pass
            except OSError:
                with self._lock:
                    self.result.kept_folders.append(a.path)
                return
            self.ctx.journal.forget(a.path)
            self._done(a)
            return
        # A WebDAV DELETE takes everything inside: send it only for a folder the server lists empty.
        if self.ctx.disk.stat(self.ctx.dest / a.path) is not None:
            with self._lock:
                self.result.kept_folders.append(a.path)
            return
        href = a.remote.href if a.remote is not None else ""
        try:
            listing = self.ctx.server.list_folder(a.path, href)
        except RemoteError as e:
            if e.status == 404:
                self.ctx.journal.forget(a.path)
                self._done(a)
                return
            raise
        if listing.entries or listing.skipped:
            with self._lock:
                self.result.kept_folders.append(a.path)
            return
        try:  # only if still empty: a phone may have put a file there since the listing
            self.ctx.server.delete(a.path, href=href, if_empty=True)
        except PreconditionFailed:
            with self._lock:
                self.result.kept_folders.append(a.path)
            return
        self.ctx.journal.forget(a.path)
        self._done(a)

    # --- journal only, and reports ----------------------------------------------------

    def _record_only(self, a: Action) -> None:
        k = a.kind
        journal = self.ctx.journal
        if k in (Kind.ADOPT, Kind.REFRESH):
            entry = a.to_record
            assert entry is not None
            if a.remote is not None and not a.remote.is_dir:
                entry = replace(entry, remote_name=self._server_name(a.remote))
            journal.put(a.path, replace(entry, prev=None))
            if k == Kind.ADOPT:
                self._done(a)
        elif k == Kind.FORGET:
            journal.forget(a.path)
        elif k == Kind.KEPT_HERE:
            journal.mark_gone(a.path, True, refused=a.guarded)
            self._done(a)
        elif k == Kind.BLOCKED:
            self._error(a.path, a.reason)
        elif k in (Kind.LOCAL_MODIFIED, Kind.KEPT_ON_SERVER, Kind.LOCAL_ONLY, Kind.SERVER_CHANGED):
            self._done(a)


@dataclass(frozen=True)
class _Upload:
    """One upload, checked and hashed, ready to send."""

    a: Action
    planned: JournalEntry
    loc: LocalEntry
    md5: str
    base_etag: str | None  # the version it replaces (If-Match); None: a new file (If-None-Match: *)
    href: str  # the server's href for an edit ('' for a new file)
    name: str  # its path as the server spells it


def _bulk_candidate(a: Action) -> bool:
    """A small new file or edit: it may go in a bulk request (conflict copies go by PUT)."""
    loc = a.local
    return (
        a.kind in (Kind.UPLOAD, Kind.UPLOAD_EDIT)
        and loc is not None
        and not loc.is_dir
        and loc.size <= MAX_FILE
        and a.to_record is not None
    )


def _put_instead(res: BulkResult) -> bool:
    """A member the bulk request did not settle: not sent (it could not be read as hashed), too
    large for bulk, or a server error other than a full disk; a PUT sends it (or says why not)."""
    return res.status == 0 or res.status == 413 or (res.status >= 500 and res.status != 507)


def _size(a: Action) -> int:
    if a.kind in (Kind.UPLOAD, Kind.UPLOAD_EDIT):
        return a.local.size if a.local is not None else 0
    return (a.remote.size or 0) if a.remote is not None else 0


def paths_of(actions: Iterable[Action]) -> set[str]:
    return {a.path for a in actions}
