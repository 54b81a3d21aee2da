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

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from itertools import groupby

from ..concurrency import bounded
from .journal import Intent
from .plan import Action, JournalEntry, Kind, LocalEntry, Plan, complete
from .refusals import NotFound, PreconditionFailed
from .results import Conflict, planned_transfers
from .steps import REPLAN_ROUNDS, Refused
from .transfer import (
    DownloadError,
    Raced,
    judged_with_md5,
    same_stat,
)
from .transport import RemoteError
from .uploads import Uploads

_STRUCTURE = {Kind.MKDIR, Kind.REMOTE_MKDIR, Kind.LOCAL_MOVE, Kind.REMOTE_MOVE}
_TRANSFERS = {Kind.DOWNLOAD, Kind.UPDATE, Kind.CONFLICT, Kind.UPLOAD, Kind.UPLOAD_EDIT}
_DELETIONS = {Kind.DELETE, Kind.REMOTE_DELETE}
_REMOVALS = {Kind.RMDIR, Kind.REMOTE_RMDIR}


def _depth(a: Action) -> int:
    return a.path.count("/")


def _is_folder_clash(a: Action) -> bool:
    return a.kind == Kind.CONFLICT and any(e is not None and e.is_dir for e in (a.local, a.remote))


class Executor(Uploads):
    """Runs one plan (and the re-plans its 412s lead to) into one RunResult."""

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
            raise Refused({a.src, a.path}) from None
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
            got = self.ctx.server.fetch(r, self.ctx.state_dir, self.ctx.hooks())
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
        got = self.ctx.server.fetch(r, self.ctx.state_dir, self.ctx.hooks(), base)
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

    # --- deletions ---------------------------------------------------------------------

    def _delete(self, a: Action) -> None:
        if a.kind == Kind.DELETE:
            trashed = self.ctx.disk.trash(self.ctx.dest, self._rel(a.path), judged_with_md5(a, a.local), self.ctx.stamp)
            self._forgotten(a, trashed)
            return
        r = a.remote
        assert r is not None
        if self.ctx.disk.stat(self._disk(a.path)) is not None:
            raise Raced(f"{a.path} is back here; it is not deleted on the server")
        try:
            self.ctx.server.delete(a.path, if_match=r.etag, href=r.href)
        except PreconditionFailed:
            raise Refused({a.path}) from None
        self._forgotten(a)

    def _remove_folder(self, a: Action) -> None:
        if a.kind == Kind.RMDIR:
            try:
                self.ctx.disk.rmdir(self._disk(a.path))
            except FileNotFoundError:
                pass
            except OSError:
                return self._keep_folder(a.path)
            return self._forgotten(a)
        # A WebDAV DELETE takes everything inside: send it only for a folder the server lists empty.
        if self.ctx.disk.stat(self.ctx.dest / a.path) is not None:
            return self._keep_folder(a.path)
        href = a.remote.href if a.remote is not None else ""
        try:
            listing = self.ctx.server.list_folder(a.path, href)
        except RemoteError as e:
            if e.status == 404:
                return self._forgotten(a)
            raise
        if listing.entries or listing.skipped:
            return self._keep_folder(a.path)
        try:  # only if still empty: a phone may have put a file there since the listing
            self.ctx.server.delete(a.path, href=href, if_empty=True)
        except PreconditionFailed:
            return self._keep_folder(a.path)
        self._forgotten(a)

    def _forgotten(self, a: Action, note: str = "") -> None:
        """The path is gone on the side the action removed it from: the journal forgets it."""
        self.ctx.journal.forget(a.path)
        self._done(a, note)

    def _keep_folder(self, path: str) -> None:
        """A folder with something in it (here or on the server) stays; the summary says so."""
        with self._lock:
            self.result.kept_folders.append(path)

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
