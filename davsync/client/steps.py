"""The executor's shared ground: the run's Context (both sides, the journal, the reporter),
how it reports, and `Steps`, the base every group of steps builds on (uploads.py, execute.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeAlias

from .hooks import TransferHooks
from .journal import Journal
from .local import Unhashed
from .plan import Action, JournalEntry, JournalOp, Kind, Plan, RemoteEntry
from .remote import Remote
from .results import RunResult
from .sides import DavServer, Disk, LocalSide, ServerSide
from .transfer import ChangedOnServer, DownloadError, LocalWriteError, PathWriteError, Raced, path_error
from .transport import RemoteError, Stopped

if TYPE_CHECKING:  # (bulk.py loads only when a run uploads)
    from .bulk import BulkItem, BulkResult

REPLAN_ROUNDS = 2  # a path refused with 412 is planned again this many times, then reported


class Reporter(Protocol):
    """What a run tells about its progress; each call does nothing unless a reporter says more."""

    def begin(self, files: int, total_bytes: int) -> None:
        return None

    def file_started(self, path: str, size: int) -> None:
        return None

    def advance(self, nbytes: int) -> None:
        return None

    def file_done(self, action: Action, note: str = "") -> None:
        return None

    def warn(self, message: str) -> None:
        return None

    def end(self) -> None:
        return None


class SilentReporter(Reporter):
    """A run that says nothing (the protocol's own calls, which do nothing)."""


# A download hook: fetch many small files at once and hand back the actions still to do
# one by one (client/bundle.py plugs in here).
Prefetch = Callable[[list[Action]], list[Action]]
# An upload hook: send many small files in one request, one result per item, in order
# (client/bulk.py's bulk POST); raises BulkUnsupported when the server offers none.
UploadMany: TypeAlias = "Callable[[list[BulkItem]], list[BulkResult]]"
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

    def hooks(self) -> TransferHooks:
        """What this run's transfers report to (the reporter) and are stopped by."""
        return TransferHooks(self.reporter.advance, self.stop, getattr(self.reporter, "note", None))

    def dir_changed(self, folder: Path) -> None:
        with self._dirty_lock:
            self._dirty.add(folder)

    def sync_dirs(self) -> None:
        """Make renames durable before the journal records them (one fsync per folder)."""
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
        for folder in dirty:
            self.disk.sync_dir(folder)


class Deferred(Exception):
    """The file changed while it was sent: nothing (or the version sent) was recorded; next run."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


class Refused(Exception):
    """The server answered 412: someone wrote this path since it was listed."""

    def __init__(self, paths: set[str]) -> None:
        super().__init__(", ".join(sorted(paths)))
        self.paths = paths


class Steps:
    """What every step of the executor shares: its context, its result, its lock, and how a
    step reports, records the journal and names a path on disk (execute.py runs the steps)."""

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

    def _guarded(self, a: Action, fn: Callable[[Action], None]) -> None:
        """Run one action; a failure that concerns only this path is reported and the run goes on."""
        if self.ctx.stop.is_set():
            return
        try:
            fn(a)
        except Refused as e:
            with self._lock:
                self._refused |= e.paths
        except Deferred as e:
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

    # --- structure ---------------------------------------------------------------------

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


# --- the transfer extensions' hooks ------------------------------------------------------------
# The transfer machinery (bundle.py, bulk.py, resume.py, and delta.py under them) is imported
# when a run first transfers, not with the engine: a run that finds nothing to do, the most
# common run, never loads it (issue 27's no-op floor; tests/test_cli_startup.py).


def prefetch_hook(ctx: Context, result: RunResult) -> Prefetch:
    def prefetch(transfers: list[Action]) -> list[Action]:
        from .bundle import bundled_downloads

        return bundled_downloads(ctx, result)(transfers)

    return prefetch


def bulk_hook(remote: Remote) -> UploadMany:
    def upload_many(items: list[BulkItem]) -> list[BulkResult]:
        from .bulk import bulk_upload

        return bulk_upload(remote, items, jobs=1)

    return upload_many


def hashed_as_sent_hook(remote: Remote, on_server: Mapping[str, RemoteEntry], fold_case: bool) -> Unhashed:
    """resume.hashed_as_sent, built when the scan first asks about a big new file (client/local.py)."""
    chosen: list[Unhashed] = []

    def take(path: str, size: int) -> bool:
        if not chosen:
            from .resume import hashed_as_sent

            chosen.append(hashed_as_sent(remote, on_server, fold_case=fold_case))
        return chosen[0](path, size)

    return take
