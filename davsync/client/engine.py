"""One run of pull, sync or push: lock -> journal -> snapshot both sides -> plan -> execute -> result.

`Engine` holds only what outlives a run (the connection, the options, the reporter, the stop
event), so `watch` and the app keep one; everything a run learns lives in its `_Run`.

Before planning, a run resolves what a crash may have left in flight (`Journal.intents`): a
download whose rename may not have happened, an upload whose answer never came. Equal content
on the server means the upload happened; a placed file with the intended stat means the rename
did. Nothing is guessed from a row alone.

Sync and push also decide, before anything changes:
- read-only account (sync runs as a pull: local changes are kept and reported);
- union mode: the journal's history does not belong to this server (another URL, a server
  whose change log was recreated or restored from a backup): the base is ignored, nothing is
  deleted, and differences become conflict copies;
- files still being written (modified in the last `settle_s` seconds) wait for the next run.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from .. import osfs
from ..exitcodes import Exit
from .dest import DestLockedError, delete_key, dest_lock, dest_problem, sweep_side_files
from .execute import Executor
from .filelink import file_link, keep_to_the_file
from .filters import Filter
from .journal import Journal, JournalError, journal_failure
from .local import SETTLE_S, LocalScan, Unhashed, scan_local
from .narrow import changes_only
from .paths import STATE_DIR_NAME, NameRules, case_insensitive, effective_rules, nfc
from .plan import (
    Action,
    JournalEntry,
    Kind,
    LocalEntry,
    LocalView,
    Mode,
    Options,
    Plan,
    RemoteEntry,
    RemoteView,
    reconcile,
)
from .plan.compare import under
from .recovery import InFlight
from .refusals import NotAShare
from .remote import Remote
from .results import RunResult
from .retry import ServerGone
from .snapshot import ASK, Ask, RemoteSnapshot, remember_skipped, remote_snapshot
from .steps import Context, Reporter, SilentReporter, bulk_hook, hashed_as_sent_hook, prefetch_hook
from .transfer import LocalWriteError, drop_empty_trash
from .transport import ConnectionSettings, RemoteError, ServerBusy

DEFAULT_MAX_DELETE_PERCENT = 50.0  # sync and push: refuse a side's deletions beyond half the tracked files
BUSY_WAIT = 300.0  # seconds a run waits for a server that asks to (503 + Retry-After) before it gives up


@dataclass(frozen=True)
class RunOptions:
    mode: Mode = Mode.PULL
    delete: bool = False  # pull and push: deletions are opt-in (sync always propagates them)
    max_delete: int | None = None
    max_delete_percent: float | None = None
    dry_run: bool = False
    jobs: int = 4
    excludes: tuple[str, ...] = ()
    verify: bool = False  # re-hash every local file
    full: bool = False  # walk the whole share even if it can list changes
    name_rules: NameRules | None = None
    settle_s: float = SETTLE_S  # sync, push: a file modified this recently is still being written
    wait_to_settle: bool = True  # one-shot runs wait (up to settle_s) for such files; watch moves on
    # sync: put back what a deletion guard held, once: planned as after a lost journal (no shared
    # history, nothing deleted, each side filled from the other; differing files kept both ways)
    restore: bool = False


class Engine:
    """Runs pull, sync or push for one share and one folder; reusable across runs."""

    def __init__(
        self,
        conn: ConnectionSettings,
        dest: Path,
        options: RunOptions,
        reporter: Reporter | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.conn = conn
        # Files are placed through the long-path form on Windows (no 260-character limit);
        # the journal keeps the plain path, which SQLite opens everywhere.
        self.dest = osfs.extended_path(dest)
        self.state_dir = Path(os.path.abspath(dest)) / STATE_DIR_NAME
        self.options = options
        self.reporter: Reporter = reporter or SilentReporter()
        self.rules: NameRules = effective_rules(options.name_rules)
        self.remote = Remote(conn)
        self.stop = stop or threading.Event()

    def close(self) -> None:
        self.remote.close()

    def run(self, *, local_paths: set[str] | None = None) -> RunResult:
        """One run. `local_paths` (sync and push under watch): only these local paths changed
        since the last run (a watcher's events); None looks at the whole folder.

        A server that answers 503 with Retry-After (davsync's while its first scan after a start
        runs) is waited for, saying why, and the run starts again from the top, for up to
        BUSY_WAIT seconds: nothing is ever judged from a partial listing."""
        deadline = time.monotonic() + BUSY_WAIT
        while True:
            busy: list[ServerBusy] = []
            result = self._run_once(local_paths, busy)
            left = deadline - time.monotonic()
            if not busy or self.stop.is_set():
                return result
            if left <= 0:
                result.fatal = f"{busy[0]}; gave up waiting after {BUSY_WAIT / 60:.0f} minutes: run again later."
                result.retryable = True
                return result
            wait = min(busy[0].retry_after, left)
            self.reporter.warn(f"{busy[0]}; trying again in {wait:.0f} s.")
            if self.stop.wait(wait):
                return result

    def _run_once(self, local_paths: set[str] | None, busy: list[ServerBusy]) -> RunResult:
        opts = self.options
        result = RunResult(command=opts.mode, dry_run=opts.dry_run)
        self.remote.outage.reset()
        problem = dest_problem(Path(osfs.display_path(self.dest)), writing=not opts.dry_run, mode=opts.mode)
        if problem is not None:
            return _fatal(result, *problem)
        root_token: str | None | Ask = ASK
        fresh = not (self.state_dir / "state.db").exists()
        if fresh:
            # Nothing is created on this computer until the server has answered: a wrong
            # password or address must not leave an empty DEST/.davsync behind.
            try:
                root_token = self.remote.check_root()
            except RemoteError as e:
                if isinstance(e, ServerBusy):
                    busy.append(e)
                return _remote_failed(result, e)
        with ExitStack() as stack:
            if fresh and opts.dry_run:
                journal = Journal(None)  # a preview of a first run: nothing to read, nothing to write
            else:
                try:
                    osfs.make_dirs(self.dest)
                    stack.enter_context(dest_lock(self.state_dir))
                except DestLockedError as e:
                    result.busy = True
                    return _fatal(result, str(e), Exit.USAGE)
                except OSError as e:
                    return _fatal(result, f"cannot create {osfs.display_path(self.dest)}: {e.strerror}.", Exit.LOCAL)
                try:
                    journal = Journal(self.state_dir / "state.db")
                except JournalError as e:
                    return _fatal(result, str(e), Exit.LOCAL)
                sweep_side_files(self.state_dir / "partial")
            run = _Run(self, opts, journal, result, root_token, local_paths)
            journal.before_commit = run.ctx.sync_dirs
            try:
                run.go()
            except RemoteError as e:
                if isinstance(e, ServerBusy):
                    busy.append(e)
                _remote_failed(result, e)
            except LocalWriteError as e:
                _fatal(result, str(e), Exit.LOCAL)
            except sqlite3.OperationalError as e:
                _fatal(result, journal_failure(self.state_dir, e), Exit.LOCAL)
            except KeyboardInterrupt:
                self.stop.set()  # in-flight transfers stop at their next block; the journal is kept
                raise
            finally:
                drop_empty_trash(self.dest, run.ctx.stamp)
                try:
                    journal.close()
                except sqlite3.OperationalError as e:
                    if result.fatal is None:
                        _fatal(result, journal_failure(self.state_dir, e), Exit.LOCAL)
                result.requests_sent = self.remote.requests_sent
        # A fatal error also sets `stop` (to end the other workers); only a stop nobody failed for is an interruption.
        result.interrupted = self.stop.is_set() and result.fatal is None
        return result


def _remote_failed(result: RunResult, e: RemoteError) -> RunResult:
    _fatal(result, str(e), Exit.USAGE if isinstance(e, NotAShare) else Exit.CONNECTION)
    result.retryable = not e.fatal or isinstance(e, ServerGone)  # a server that went away may come back
    return result


def _fatal(result: RunResult, message: str, code: Exit) -> RunResult:
    result.fatal = message
    result.exit_code = code
    return result


_TRAILING_NUMBER = re.compile(r"(\d+)$")


def _token_parts(token: str | None) -> tuple[str, int] | None:
    """A sync token as (its server's part, its counter), when it ends in a counter."""
    if not token:
        return None
    m = _TRAILING_NUMBER.search(token)
    return (token[: m.start()], int(m.group(1))) if m else None


class _Run:
    """Everything one run learns; thrown away at its end."""

    def __init__(
        self,
        engine: Engine,
        opts: RunOptions,
        journal: Journal,
        result: RunResult,
        root_token: str | None | Ask,
        local_paths: set[str] | None = None,
    ) -> None:
        self.local_paths = local_paths
        self.engine = engine
        self.opts = opts
        self.journal = journal
        self.result = result
        self.root_token = root_token
        self.remote = engine.remote
        self.dest = engine.dest
        self.now = datetime.now()
        self.fold_case = case_insensitive(engine.rules) or bool(osfs.case_insensitive(engine.dest))
        self.filter = Filter.load(engine.dest, opts.excludes)
        self.not_judged: set[str] = set()
        self.read_only = False
        self.sent_unhashed: Unhashed | None = None  # two-way runs: big new files hashed as they are sent
        self.ctx = Context(
            dest=engine.dest,
            state_dir=engine.state_dir,
            remote=engine.remote,
            journal=journal,
            reporter=engine.reporter,
            stop=engine.stop,
            jobs=opts.jobs,
            stamp=self.now.strftime("%Y%m%d-%H%M%S"),
            replan=self.replan,
        )
        # Small files many per request, from and to servers that offer it (bundle.py, bulk.py).
        self.ctx.prefetch = prefetch_hook(self.ctx, result)
        if opts.mode != Mode.PULL:
            self.ctx.upload_many = bulk_hook(engine.remote)

    # --- the run -----------------------------------------------------------------

    def go(self) -> None:
        opts, result = self.opts, self.result
        write = not opts.dry_run
        two_way = opts.mode != Mode.PULL
        if opts.mode == Mode.SYNC and not self.remote.can_write():
            self.read_only = result.read_only = True
            result.warnings.append(
                "This account cannot write to the share: syncing as a pull (local changes are kept here and reported)."
            )
        elif opts.mode == Mode.PUSH and not self.remote.can_write():
            raise RemoteError("this account cannot write to the share, so there is nothing push can do.", fatal=True)
        InFlight(self.journal, self.dest, self.remote).settle_placements(write)
        stored_token = self.journal.get_meta("sync_token")
        # push given --delete or not since the last push: the changes since then do not show what
        # it now covers (a server-only file push --delete reports: it has no journal row, unlike
        # a deletion pull kept, which pull remembers), so look at everything once.
        stored_delete = self.journal.get_meta(delete_key(opts.mode))
        flag_changed = opts.mode == Mode.PUSH and stored_delete not in (None, "1" if opts.delete else "0")
        snap = remote_snapshot(
            self.remote, self.journal, jobs=opts.jobs, excluded=self.filter.excluded, rules=self.engine.rules,
            fold_case=self.fold_case, incremental=not (opts.full or opts.verify or opts.dry_run or flag_changed),
            root_token=self.root_token, warnings=result.warnings,
        )  # fmt: skip
        result.mode = snap.mode
        result.skipped += snap.skipped
        self.not_judged |= snap.not_judged
        if two_way:
            plan = self._plan_two_way(snap, stored_token, write)
            if not self.read_only and file_link(self.remote.options_headers) is not None:
                plan = keep_to_the_file(plan)
        else:
            plan = self._plan_pull(snap)
        for folder, err in snap.failed.items():
            result.error(folder or "/", err)
        result.plan = plan
        result.warnings += plan.warnings
        if opts.dry_run:
            result.exit_code = result.decide_exit(ran=False)
            return
        listed = {a.path for a in plan.actions if a.remote is not None} | set(snap.view.entries)
        for path in set(self.journal.gone() if listed else ()) & listed:
            self.journal.mark_gone(path, False)  # it is back on the server
        Executor(self.ctx, result).run(plan)
        result.exit_code = result.decide_exit()
        # Advance the token only when everything it covers was handled; otherwise the next
        # run asks again from the old one (acting twice is harmless, skipping is not).
        # A server change push did not take (server-changed) is not handled either: the next push
        # must see it again, not plan an edit over it from a base that is no longer the server's.
        handled = not result.errors and not plan.of(Kind.SERVER_CHANGED)
        if handled and not self.engine.stop.is_set():
            self.journal.set_meta("sync_url", self.remote.base_url if snap.token else None)
            self.journal.set_meta("sync_token", snap.token)
            if two_way:
                self.journal.set_meta("server_url", self.remote.base_url)
        if not self.engine.stop.is_set():
            remember_skipped(self.journal, snap, self.engine.rules, self.fold_case)
        if two_way:
            self.journal.set_meta("last_mode", opts.mode.value)
        self.journal.set_meta(delete_key(opts.mode), "1" if opts.delete else "0")

    def _plan_two_way(self, snap: RemoteSnapshot, stored_token: str | None, write: bool) -> Plan:
        """Sync and push: the whole journal is the base and the whole local folder is scanned;
        under watch, when both sides report changes only, just the rows and paths in question."""
        partial = self.local_paths is not None and not snap.view.complete
        tracked: int | None = None
        self.sent_unhashed = hashed_as_sent_hook(self.remote, snap.view.entries, self.fold_case)
        if partial:
            assert self.local_paths is not None
            if not self.local_paths and not snap.view.entries and not snap.view.removed:
                return Plan()  # nothing changed on either side: the idle round of a watch
            base = self._rows_for(self.local_paths | snap.touched)
            paths = self.local_paths | {p for p in base if any(under(p, q) for q in self.local_paths)}
            scan = self._local(base, paths)
            tracked = self.journal.count_files()
            lv = scan.view
        else:
            rows = self.journal.rows()  # stat columns; whole rows only for what changed
            scan = self._local(rows, None)
            lv = scan.view
        has_base = any(scan.resolved.get(p, True) is not None for p in (base if partial else rows))
        union = (self.opts.restore and self.opts.mode == Mode.SYNC) or self._union(stored_token, snap, has_base)
        if not partial:
            # An upload in flight (settled below) has its row judged with what changed.
            touched = snap.touched | {i.path for i in self.journal.intents()}
            narrowed = None if union or snap.view.complete else changes_only(scan, rows, touched)
            base, lv = (rows.whole(), lv) if narrowed is None else (narrowed[1], narrowed[0])
        _apply_resolved(base, scan.resolved)
        base = InFlight(self.journal, self.dest, self.remote).settle_uploads(base, snap.view, write)
        if not partial and narrowed is not None:  # the files of the whole base, as resolved and settled
            tracked = rows.files(besides=base.keys() | scan.resolved.keys()) + sum(not j.is_dir for j in base.values())
        return reconcile(
            base, lv, snap.view, self._options(union), now=self.now, excluded=self._excluded(scan),
            tracked_files=tracked,
        )  # fmt: skip

    def _options(self, union: bool) -> Options:
        opts = self.opts
        max_delete, percent = opts.max_delete, opts.max_delete_percent
        if max_delete is None and percent is None:  # pull --delete too: the same default as sync
            percent = DEFAULT_MAX_DELETE_PERCENT
        return Options(
            delete=opts.delete, max_delete=max_delete, max_delete_percent=percent, mode=opts.mode,
            read_only=self.read_only, union=union,
        )  # fmt: skip

    def _rows_for(self, paths: set[str]) -> dict[str, JournalEntry]:
        """The journal rows at these paths, and below any of them that was a folder."""
        rows = self.journal.get(sorted(paths))
        for path, row in list(rows.items()):
            if row.is_dir:
                rows.update(self.journal.under(path))
        return rows

    def _local(self, base: Mapping[str, JournalEntry], paths: set[str] | None) -> LocalScan:
        """The whole local folder (`paths` None) or only these paths: new files found, only
        changed stats hashed, files still being written deferred. A one-shot run waits for
        those rather than leaving them behind."""
        opts = self.opts
        common = dict(
            excluded=self.filter.excluded, rules=self.engine.rules, fold_case=self.fold_case,
            hash_all=opts.verify, settle_s=opts.settle_s, stop=self.engine.stop,
            on_hashed=getattr(self.engine.reporter, "hashing", None),  # the app's "checking the files here"
            sent_unhashed=self.sent_unhashed,
        )  # fmt: skip
        scan = scan_local(self.dest, base, paths=paths, **common)  # type: ignore[arg-type]
        if paths is not None:
            scan.view = replace(scan.view, complete=False)
        self.result.local_files_read += scan.files_hashed
        if scan.deferred and opts.wait_to_settle and opts.settle_s > 0 and not self.engine.stop.is_set():
            self.engine.stop.wait(opts.settle_s)
            again = scan_local(self.dest, base, paths=sorted(scan.deferred), **common)  # type: ignore[arg-type]
            self.result.local_files_read += again.files_hashed
            entries = dict(scan.view.entries)
            entries.update({p: e for p, e in again.view.entries.items() if p not in again.deferred})
            scan.view = replace(scan.view, entries=entries)
            scan.deferred = set(again.deferred)
            scan.skipped += [s for s in again.skipped if s.path not in {k.path for k in scan.skipped}]
        self.result.skipped += scan.skipped
        self.result.deferred = sorted(scan.deferred)
        self.ctx.on_disk = scan.on_disk
        return scan

    def _excluded(self, scan: LocalScan | None) -> Callable[[str, bool], bool]:
        """Paths not judged this run: excluded, skipped names on either side, links in DEST,
        files still being written."""
        held = self.not_judged
        excluded = self.filter.excluded

        def not_judged(path: str, is_dir: bool) -> bool:
            if path in held or excluded(path, is_dir):
                return True
            return scan is not None and scan.not_judged(path)

        return not_judged

    def _plan_pull(self, snap: RemoteSnapshot) -> Plan:
        """Pull: the base is the journal rows in question; only those paths are looked at here."""
        excluded = self.filter.excluded
        remote = dict(snap.view.entries)
        if snap.view.complete:  # a walk, or a first run's whole listing in one REPORT
            rows = self.journal.load()
        else:
            # kept earlier without --delete: judge them again (as the snapshot read them)
            rows = dict(snap.gone) if snap.gone is not None else self.journal.gone()
            rows.update(self.journal.get(sorted(snap.touched)))
        not_judged = self.not_judged
        base = {
            p: j for p, j in rows.items() if not excluded(p, j.is_dir) and not _at_or_under(p, not_judged)
        }  # fmt: skip
        renames = self._case_renames(remote, base)
        local = self._look(remote, base)
        view = replace(snap.view, entries=remote)
        tracked = snap.files if snap.files is not None else self.journal.count_files()
        plan = reconcile(base, LocalView(local), view, self._options(False), tracked_files=tracked)
        plan.actions[:0] = [
            Action(Kind.RENAME, new, reason=f"from {old}", record=base[new]) for new, old in sorted(renames.items())
        ]
        return plan

    def _case_renames(self, remote: dict[str, RemoteEntry], base: dict[str, JournalEntry]) -> dict[str, str]:
        """A server rename that changes only letter case (`Report.txt` -> `report.txt`) is the
        same file on a case-insensitive DEST: move its journal row to the new name (and
        rename it here) instead of trashing the old name and downloading the new one."""
        if not self.fold_case:
            return {}
        gone = {nfc(p).casefold(): p for p in base if p not in remote}
        renames: dict[str, str] = {}
        if gone:
            for new in remote:
                old = gone.get(nfc(new).casefold())
                if old is not None and new not in base:
                    base[new] = base.pop(old)
                    renames[new] = old
        self.ctx.case_renames = renames
        return renames

    def _look(self, remote: dict[str, RemoteEntry], base: dict[str, JournalEntry]) -> dict[str, LocalEntry | None]:
        """Pull: stat every path in question; read a file only when its stat says it may differ.
        What the look leaves alone (a link, an unreadable file) is reported and not judged."""
        scan = scan_local(
            self.dest, base, paths=set(remote) | set(base), excluded=_nothing_excluded, rules=self.engine.rules,
            fold_case=self.fold_case, hash_all=self.opts.verify, settle_s=0,
            on_hashed=getattr(self.engine.reporter, "hashing", None),
        )  # fmt: skip
        _apply_resolved(base, scan.resolved)
        self.result.local_files_read += scan.files_hashed
        reported = {s.path for s in self.result.skipped}
        for s in scan.skipped:
            remote.pop(s.path, None)
            base.pop(s.path, None)
            if s.path not in reported:
                self.result.skipped.append(s)
        self.ctx.on_disk = scan.on_disk
        return dict(scan.view.entries)

    # --- union ------------------------------------------------------------------------

    def _union(self, stored_token: str | None, snap: RemoteSnapshot, has_base: bool) -> bool:
        """Does the journal's history belong to another server (or an earlier state of this one)?"""
        if self.opts.mode == Mode.PULL or not has_base:
            return False
        why = None
        known = self.journal.get_meta("server_url") or self.journal.get_meta("sync_url")
        if known and known != self.remote.base_url:
            why = f"it was last synced with {known}"
        then, now = _token_parts(stored_token), _token_parts(snap.token if snap.view.complete else None)
        if why is None and then and now:
            if then[0] != now[0]:
                why = "the server's change log is not the one it was synced with (a new or replaced server)"
            elif now[1] < then[1]:
                why = "the server went back in time (restored from a backup?)"
        if why is None:
            return False
        self.result.warnings.append(
            f"This folder's history does not match the share ({why}): nothing is deleted this run, "
            "and files that differ are kept both ways as conflict copies."
        )
        return True

    # --- 412: plan a path again -------------------------------------------------------------

    def replan(self, paths: set[str]) -> Plan:
        """Someone wrote these paths on the server since they were listed: read both sides again
        and plan just them."""
        base = self.journal.get(sorted(paths))
        entries: dict[str, RemoteEntry] = {}
        removed: set[str] = set()
        for path in sorted(paths):
            fresh = self.remote.stat(path)
            if fresh is None:
                removed.add(path)
            else:
                entries[path] = fresh
        here = scan_local(
            self.dest, base, paths=sorted(paths), excluded=self.filter.excluded, rules=self.engine.rules,
            fold_case=self.fold_case, settle_s=0.0, stop=self.engine.stop,
        )  # fmt: skip
        _apply_resolved(base, here.resolved)
        self.ctx.on_disk.update(here.on_disk)
        rv = RemoteView(entries, complete=False, removed=frozenset(removed))
        return reconcile(
            base, replace(here.view, complete=False), rv, self._options(False), now=datetime.now(),
            excluded=self._excluded(here),
            tracked_files=self.journal.count_files(),
        )  # fmt: skip


def _at_or_under(path: str, folders: set[str]) -> bool:
    if not folders:
        return False
    parts = path.split("/")
    return any("/".join(parts[:i]) in folders for i in range(1, len(parts) + 1))


def _apply_resolved(base: dict[str, JournalEntry], resolved: Mapping[str, JournalEntry | None]) -> None:
    """Rows a crash left in flight, as the local look resolved them (None: no base at all)."""
    for path, row in resolved.items():
        if row is None:
            base.pop(path, None)
        else:
            base[path] = row


def _nothing_excluded(path: str, is_dir: bool) -> bool:
    return False  # the paths a pull looks at are already filtered


def run_once(
    conn: ConnectionSettings,
    dest: Path,
    options: RunOptions,
    reporter: Reporter | None = None,
    stop: threading.Event | None = None,
) -> RunResult:
    """One run of a fresh engine: what the CLI's one-shot commands call."""
    engine = Engine(conn, dest, options, reporter, stop)
    try:
        return engine.run()
    finally:
        engine.close()


__all__ = ["Engine", "RunOptions", "RunResult", "run_once", "dest_problem", "dest_lock", "DestLockedError"]
