"""The executor's uploads: one file by PUT (resumable or as a delta where that pays), or many
small ones per bulk POST on a davsync server, each with its precondition and its intent
journaled before it is sent (the rules: execute.py's docstring)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING

from ..concurrency import batches as batches_of
from ..concurrency import bounded
from ..scan import md5_of_file as md5_of
from .journal import Intent
from .plan import Action, JournalEntry, Kind, LocalEntry, RemoteEntry, complete
from .refusals import NotHeld, PreconditionFailed, SourceChanged, not_held, one_line, write_refusal
from .remote import PutRequest
from .steps import BULK_WORKERS, Deferred, Refused, Steps
from .transfer import (
    Raced,
    same_stat,
)
from .transport import RemoteError

if TYPE_CHECKING:
    from .bulk import BulkResult

# bulk.py, bundle.py and resume.py are imported where an upload needs them, not above: a run
# with nothing to send (most runs) never loads them (tests/test_cli_startup.py).

class Uploads(Steps):
    """Uploading steps (a base of Executor)."""

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
        except Refused:
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
        from .resume import MIN_SIZE as RESUMABLE_SIZE

        # None: a big new file the scan left to hash as it is sent (client/resume.py)
        md5 = loc.md5 or planned.md5 or (None if loc.size >= RESUMABLE_SIZE else md5_of(self._disk(a.path)))
        base_etag = a.remote.etag if a.kind == Kind.UPLOAD_EDIT and a.remote is not None else None
        href = a.remote.href if base_etag and a.remote is not None else ""
        name = (self._server_name(a.remote) if base_etag else None) or a.path
        return _Upload(a, planned, loc, md5, base_etag, href, name)

    def _uploaded(self, a: Action, changed: bool) -> None:
        for path, row in a.extra:
            if row is None:
                self.ctx.journal.forget(path)
        self._done(a, "changed while uploading; the new version goes next time" if changed else "")

    def _intent_entry(self, planned: JournalEntry, md5: str | None, loc: LocalEntry) -> JournalEntry:
        """The base an upload gives once the server has it (its remote half without the new etag)."""
        return replace(planned, size=loc.size, mtime_ns=loc.mtime_ns, ino=loc.ino, md5=md5, remote_md5=md5,
                       ctime_ns=loc.ctime_ns)  # fmt: skip

    def _send(
        self, path: str, planned: JournalEntry, base_etag: str | None, md5: str | None, loc: LocalEntry,
        href: str = "",
    ) -> bool:
        """PUT one file with its preconditions; record the base. Returns whether the file
        changed while it streamed (then the base is the version sent, and the next run
        uploads the new one)."""
        journal = self.ctx.journal
        entry = self._intent_entry(planned, md5, loc)
        journal.intend(Intent(path, "put", entry, base_etag))
        source = self._disk(path)
        try:
            req = PutRequest(path, source, md5, loc.mtime_ns, base_etag, base_etag is None, href)
            up = self.ctx.server.send(journal, req, self.ctx.hooks())
        except PreconditionFailed:
            journal.settle(path, None)  # nothing was written: the intent is moot
            raise Refused({path}) from None
        except SourceChanged:
            journal.settle(path, None)  # the server refused the torn body: nothing was replaced
            raise Deferred(path) from None
        except FileNotFoundError:
            journal.settle(path, None)
            raise Raced(f"{path} disappeared here during the upload; it is looked at again next time") from None
        except NotHeld:
            journal.settle(path, None)  # by the server's word it holds something else: no base
            raise
        if md5 is None:  # hashed as it was sent: that is the version the server holds
            md5 = up.sent_md5
            entry = replace(entry, md5=md5, remote_md5=md5)
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
        from .bulk import BATCH_BYTES, BATCH_FILES
        from .bundle import MAX_FILE, MIN_FILES

        small = [a for a in transfers if _bulk_candidate(a, MAX_FILE)]
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
        from .bulk import BulkItem, BulkUnsupported

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
        assert u.md5 is not None  # a bulk member is small: _prepare_upload read it
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
            raise Refused({path})
        raise write_refusal("PUT", path, res.status, one_line(res.error))

    def _give_up(self, ups: list[_Upload]) -> None:
        self.ctx.journal.settle_many([(u.a.path, None) for u in ups])
        self.ctx.journal.commit()


@dataclass(frozen=True)
class _Upload:
    """One upload, checked and hashed, ready to send."""

    a: Action
    planned: JournalEntry
    loc: LocalEntry
    md5: str | None  # None: not read yet (a big new file: hashed as it is sent)
    base_etag: str | None  # the version it replaces (If-Match); None: a new file (If-None-Match: *)
    href: str  # the server's href for an edit ('' for a new file)
    name: str  # its path as the server spells it


def _bulk_candidate(a: Action, max_file: int) -> bool:
    """A small new file or edit: it may go in a bulk request (conflict copies go by PUT)."""
    loc = a.local
    return (
        a.kind in (Kind.UPLOAD, Kind.UPLOAD_EDIT)
        and loc is not None
        and not loc.is_dir
        and loc.size <= max_file
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
