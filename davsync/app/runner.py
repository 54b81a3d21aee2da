"""One background loop per folder pair: run the pair's mode, publish what happened, wait, repeat.

A mode is anything with `run_once() -> RunOutcome`, `stop()` and `close()`. `pull` and two-way
`sync` both wrap the client library's engine (the same code as `davsync pull` and `davsync sync`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ..client.engine import Engine, RunOptions
from ..client.plan import TRANSFERS, UPLOADS, Action, Kind
from ..client.plan import Mode as ClientMode
from ..client.results import RunResult
from ..client.transport import ConnectionSettings
from ..units import human_size
from . import store
from .config import FolderPair
from .files import conflict_view, still_open
from .status import PairStatus, Progress, StatusHub

log = logging.getLogger("davsync.app")

MAX_BACKOFF = 300.0
# seconds before looking again at a file newly found still being written (one that stays open
# for long, like a mailbox file, is looked at on the pair's own interval) or at an unconfirmed choice
SETTLE_RETRY = 3.0
CHECKING_SHOWN = (50, 50_000_000)  # files, bytes: reading fewer than both is over too soon to show
PROGRESS_EVERY = 0.25  # seconds between progress notifications (bytes arrive far more often)


@dataclass
class RunOutcome:
    """What one run of any mode did, in the terms the dashboard shows."""

    fatal: str | None = None
    retryable: bool = False
    stopped: bool = False
    errors: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    full_listing: bool = False  # skipped names are complete (a walk), not just the changed ones
    deferred: list[str] = field(default_factory=list)  # still being written: taken at the next check
    counts: dict[str, int] = field(default_factory=dict)
    summary: str = ""


class Mode(Protocol):
    def run_once(self) -> RunOutcome: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


class ModeUnavailable(Exception):
    """This pair's mode cannot run in this version; the message says what to do instead."""


FIXES: list[tuple[str, str]] = [
    (r"in use by another program|being used by another process|sharing violation",
     "Close the program that has it open; davsync retries at the next check."),
    (r"refused the login|\(401\)|HTTP 401", "Edit this folder pair and enter the right user name and password."),
    (r"denies access|\(403\)", "Ask the server's owner for access to this share, or check the URL."),
    (r"no share at|\(404\)", "Check the server URL (Edit)."),
    (r"TLS certificate",
     "Give the server's CA certificate in the pair's settings (ca_cert), or fix the server's certificate."),
    (r"no space|disk (is )?full|ENOSPC|507", "Free some space on the disk; davsync retries at the next check."),
    (r"permission denied|read-only file system|access is denied",
     "Make the folder writable for your user (or choose another folder)."),
    (r"another davsync (pull|sync|watch|pull, sync or watch) is running",
     "Stop the other davsync using this folder; the app retries by itself."),
    (r"share while the mirror is not empty",
     "Check that the server's disk is mounted. If the share really is empty now, delete the files here yourself."),
    (r"more than --max-delete",
     "If so many deletions are meant, remove the files here yourself (or raise max_delete)."),
    (r"could not be listed", "Nothing to do: deletions wait until every folder lists again."),
    (r"changed locally during the (pull|run)",
     "Nothing to do: the file was left alone and is checked again next time."),
    (r"local folder where the server has a file|folder .* file",
     "Rename or move the local item so the server's can be placed."),
]  # fmt: skip


def fix_for(error: str) -> str:
    for pattern, fix in FIXES:
        if re.search(pattern, error, re.IGNORECASE):
            return fix
    return "davsync retries at the next check; if it keeps failing, check the server and this folder."


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


HELD_LIMIT = 500  # files listed under a held deletion (the page shows how many more)


def held_deletions(result: RunResult) -> list[dict[str, str]]:
    """The deletions a guard held this run: which file, and where it would have gone."""
    held = []
    for a in result.plan.of(Kind.KEPT_HERE, Kind.KEPT_ON_SERVER):
        if a.reason.startswith(("deletion refused", "deletion skipped")) or "kept: " in a.reason \
                or "kept on the server: " in a.reason:  # fmt: skip
            held.append({"path": a.path, "where": "here" if a.kind == Kind.KEPT_HERE else "server"})
    return held[:HELD_LIMIT]


ONCE: dict[str, dict[str, Any]] = {
    # the person checked the held deletions: the CLI's `--max-delete 100%` for one run
    "accept": {"max_delete": None, "max_delete_percent": 100.0},
    # put them back: one sync that deletes nothing and fills each side from the other
    "restore": {"restore": True, "full": True},
}


def choices(result: RunResult) -> dict[str, bool]:
    """Which of ONCE can help with what this run's guards held. An empty share or folder, or a
    listing that failed, is never accepted from here: those are checked where they happened."""
    guards = set(result.plan.guards)
    sure = not guards & {"remote-empty", "local-empty", "failed-listing"}
    return {"can_accept": sure and any(g.startswith("max-delete") for g in guards),
            "can_restore": result.command == ClientMode.SYNC and "failed-listing" not in guards}  # fmt: skip


def outcome_from_pull(result: RunResult, stopped: bool) -> RunOutcome:
    """What a run of pull or sync did, in the dashboard's words."""
    n = result.count
    counts = {
        k.value: len(result.plan.of(k)) for k in Kind if result.plan.of(k) and k not in (Kind.REFRESH, Kind.FORGET)
    }
    parts = []
    fetched = n(Kind.DOWNLOAD, Kind.UPDATE)
    if fetched:
        parts.append(f"{fetched} downloaded ({human_size(result.bytes_downloaded)})")
    sent = n(Kind.UPLOAD, Kind.UPLOAD_EDIT)
    if sent:
        parts.append(f"{sent} uploaded ({human_size(result.bytes_uploaded)})")
    if n(Kind.CONFLICT):
        parts.append(_plural(n(Kind.CONFLICT), "conflict"))
    if n(Kind.LOCAL_MOVE, Kind.REMOTE_MOVE):
        parts.append(f"{n(Kind.LOCAL_MOVE, Kind.REMOTE_MOVE)} moved")
    if n(Kind.DELETE):
        parts.append(f"{n(Kind.DELETE)} moved to the trash")
    if n(Kind.REMOTE_DELETE):
        parts.append(f"{n(Kind.REMOTE_DELETE)} deleted on the server")
    if n(Kind.KEPT_HERE):
        parts.append(f"{n(Kind.KEPT_HERE)} deleted on the server but kept here")
    if n(Kind.LOCAL_MODIFIED):
        parts.append(f"{n(Kind.LOCAL_MODIFIED)} changed here, left alone")
    if result.errors:
        parts.append(_plural(len(result.errors), "error"))
    summary = ", ".join(parts) if parts else "nothing changed"
    return RunOutcome(
        fatal=result.fatal,
        retryable=result.retryable,
        stopped=stopped,
        errors=[{"path": e.path, "error": e.error, "fix": fix_for(e.error)}
                for e in result.errors if not (stopped and e.error == "stopped")]
        + [{"path": "(deletions)", "error": w, "fix": fix_for(w), "files": held_deletions(result)} | choices(result)
           for w in result.plan.warnings],
        conflicts=[{"path": c.path, "local_copy": c.local_copy, "reason": c.reason} for c in result.conflicts],
        skipped=[{"path": s.path, "reason": s.reason} for s in result.skipped],
        full_listing=result.mode in ("walk", "initial-report"),
        deferred=sorted(set(result.deferred)),
        counts=counts,
        summary=summary[0].upper() + summary[1:] + ".",
    )  # fmt: skip


class AppReporter:
    """The client library's Reporter, publishing progress and recent changes into the hub."""

    VERBS = {
        Kind.DOWNLOAD: "downloaded", Kind.UPDATE: "updated", Kind.CONFLICT: "conflict",
        Kind.DELETE: "moved to the trash", Kind.MKDIR: "created folder", Kind.RMDIR: "removed folder",
        Kind.UPLOAD: "uploaded", Kind.UPLOAD_EDIT: "uploaded", Kind.REMOTE_DELETE: "deleted on the server",
        Kind.REMOTE_MOVE: "moved on the server", Kind.LOCAL_MOVE: "moved",
        Kind.REMOTE_MKDIR: "created folder on the server",
    }  # fmt: skip

    def __init__(self, hub: StatusHub, pair_id: str) -> None:
        self.hub = hub
        self.pair_id = pair_id
        self._last_notify = 0.0

    def begin(self, files: int, total_bytes: int) -> None:
        if files:
            progress = Progress(files_total=files, bytes_total=total_bytes)
            progress.add_bytes(0)

            def set_progress(p: PairStatus) -> None:
                p.progress = progress

            self.hub.update(self.pair_id, set_progress)

    def hashing(self, files_done: int, files_total: int, bytes_done: int, bytes_total: int) -> None:
        """Reading the files already here (adopting a folder): shown only when it takes a while."""
        if files_total < CHECKING_SHOWN[0] and bytes_total < CHECKING_SHOWN[1]:
            return

        def checking(p: PairStatus) -> None:
            if p.progress is None or p.progress.phase != "checking":
                p.progress = Progress(files_total=files_total, bytes_total=bytes_total, phase="checking")
            p.progress.files_done = files_done
            p.progress.add_bytes(bytes_done - p.progress.bytes_done)

        self.hub.update(self.pair_id, checking, notify=self._due() or files_done == files_total)

    def file_started(self, path: str, size: int) -> None:
        self.hub.update(self.pair_id, lambda p: p.progress.current.append(path) if p.progress else None, notify=False)

    def _due(self) -> bool:
        """Notify readers at most every PROGRESS_EVERY seconds: a run of 100k small files must not
        send 100k snapshots to each open dashboard. end() always notifies."""
        now = time.monotonic()
        if now - self._last_notify >= PROGRESS_EVERY:
            self._last_notify = now
            return True
        return False

    def advance(self, nbytes: int) -> None:
        self.hub.update(
            self.pair_id, lambda p: p.progress.add_bytes(nbytes) if p.progress else None, notify=self._due()
        )

    def file_done(self, action: Action, note: str = "") -> None:
        verb = self.VERBS.get(action.kind)
        entry: dict[str, Any] = {"time": time.time(), "what": verb, "path": action.path}
        if note:
            entry["note"] = note

        def record(p: PairStatus) -> None:
            if p.progress is not None and action.kind in TRANSFERS | UPLOADS:
                p.progress.files_done += 1
                if action.path in p.progress.current:
                    p.progress.current.remove(action.path)
            if verb:
                p.recent.append(entry)

        self.hub.update(self.pair_id, record, notify=self._due())

    def warn(self, message: str) -> None: ...

    def end(self) -> None:
        def clear(p: PairStatus) -> None:
            p.progress = None

        self.hub.update(self.pair_id, clear)


class EngineMode:
    """One folder pair on the client library's engine (the same code as `davsync pull` / `sync`)."""

    MODE = ClientMode.PULL

    def __init__(self, pair: FolderPair, password: str | None, reporter: AppReporter) -> None:
        conn = ConnectionSettings(
            pair.url, pair.user or None, password, pair.ca_cert or None, pair.insecure, jobs=pair.jobs
        )
        # A pair's loop is the app's watch: a file still being written is taken at the next check.
        options = RunOptions(mode=self.MODE, delete=pair.delete, jobs=pair.jobs, excludes=pair.excludes,
                             wait_to_settle=False)  # fmt: skip
        self.engine = Engine(conn, pair.dest, options, reporter)
        self.once: dict[str, Any] = {}  # option changes for the next run only (ONCE)

    def run_once(self) -> RunOutcome:
        self.engine.stop.clear()
        options, self.engine.options = self.engine.options, replace(self.engine.options, **self.once)
        self.once = {}
        try:
            result = self.engine.run()
        finally:
            self.engine.options = options
        return outcome_from_pull(result, stopped=self.engine.stop.is_set())

    def stop(self) -> None:
        self.engine.stop.set()

    def close(self) -> None:
        self.engine.close()


class PullMode(EngineMode):
    """Mirror the share into the folder."""


class SyncMode(EngineMode):
    """Two-way sync of the share and the folder."""

    MODE = ClientMode.SYNC


ModeFactory = Callable[[FolderPair, "str | None", AppReporter], Mode]
MODES: dict[str, ModeFactory] = {"pull": PullMode, "sync": SyncMode}
NOT_YET: dict[str, str] = {}  # modes a pair may name that this version cannot run yet (none now)


def make_mode(pair: FolderPair, password: str | None, reporter: AppReporter) -> Mode:
    if pair.mode in NOT_YET:
        raise ModeUnavailable(NOT_YET[pair.mode])
    factory = MODES.get(pair.mode)
    if factory is None:
        raise ModeUnavailable(f"unknown mode {pair.mode!r}; use one of: {', '.join(MODES)}.")
    return factory(pair, password, reporter)


class PairRunner:
    """The loop for one folder pair, on its own thread."""

    def __init__(
        self,
        pair: FolderPair,
        hub: StatusHub,
        state_dir: Path,
        password: Callable[[FolderPair], str | None],
        all_paused: threading.Event,
    ) -> None:
        self.pair = pair
        self.hub = hub
        self.state_dir = state_dir
        self._password = password
        self._all_paused = all_paused
        self._wake = threading.Event()
        self._started = 0.0
        self._quit = threading.Event()
        self._paused = pair.paused
        self._mode: Mode | None = None
        self._lock = threading.Lock()  # held while a run touches the folder; actions wait on it
        self._thread = threading.Thread(target=self._loop, name=f"davsync-app-{pair.id}", daemon=True)

    # --- commands (from the dashboard, the tray) ----------------------------------

    def start(self) -> None:
        self._thread.start()

    def sync_now(self) -> None:
        self._wake.set()

    def set_paused(self, paused: bool) -> None:
        self._paused = paused
        if paused and self._mode is not None:
            self._mode.stop()
        self._wake.set()

    def pause_changed(self) -> None:
        """The global pause flipped: stop the run in flight if it is now paused."""
        if self._all_paused.is_set() and self._mode is not None:
            self._mode.stop()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._quit.set()
        if self._mode is not None:
            self._mode.stop()
        self._wake.set()
        self.join(timeout)

    def join(self, timeout: float) -> None:
        if self._thread.is_alive() and timeout > 0:
            self._thread.join(timeout)

    def run_once_with(self, choice: str) -> bool:
        """The next run with ONCE[choice]; False if this pair's mode cannot."""
        mode = self._mode
        if not isinstance(mode, EngineMode):
            return False
        mode.once = ONCE[choice]
        self._wake.set()
        return True

    def folder_lock(self) -> threading.Lock:
        return self._lock

    @property
    def paused(self) -> bool:
        return self._paused or self._all_paused.is_set()

    # --- the loop ---------------------------------------------------------------

    def _loop(self) -> None:
        delay = self.pair.interval
        try:
            while not self._quit.is_set():
                try:
                    delay = self._step(delay)
                except Exception as e:  # a bug must not silently end this pair's syncing
                    log.exception("folder pair %s: unexpected error", self.pair.id)
                    delay = min(MAX_BACKOFF, max(self.pair.interval, delay * 2))
                    self._publish_fatal(
                        f"internal error ({e.__class__.__name__}: {e}).",
                        f"davsync retries in {delay:.0f} s; if it keeps failing, please report it.",
                    )
                    self._wait(delay)
        finally:
            if self._mode is not None:
                self._mode.close()

    def _step(self, delay: float) -> float:
        """One turn of the loop; returns the delay before the next run."""
        own = self._paused
        self._publish(lambda p: setattr(p, "pair_paused", own))
        if self.paused:
            self._publish(lambda p: setattr(p, "paused", True))
            self._wake.wait()
            self._wake.clear()
            return delay
        self._publish(lambda p: setattr(p, "paused", False))
        if self._mode is None:
            password = self._password(self.pair)
            if self.pair.user and password is None:
                self._publish_fatal(
                    f"no password for user {self.pair.user!r} is in this computer's credential store "
                    "(or the store is locked or unavailable).",
                    "Open Settings and enter the password (or unlock the credential store, then Sync now).",
                )
                self._wait(max(self.pair.interval, 60.0))
                return delay
            try:
                self._mode = make_mode(self.pair, password, AppReporter(self.hub, self.pair.id))
            except ModeUnavailable as e:
                self._publish_fatal(str(e), "Edit the folder pair and choose mode 'pull'.")
                self._wait(None)
                return delay
        self._publish(lambda p: setattr(p, "running", True))
        self._started = time.time()  # choices made before this run are confirmed by its success
        with self._lock:
            outcome = self._mode.run_once()
        delay = self._after(outcome, delay)
        self._wait(delay)
        return delay

    def _wait(self, delay: float | None) -> None:
        self._wake.wait(delay)
        self._wake.clear()

    def _publish(self, change: Callable[[PairStatus], None]) -> None:
        self.hub.update(self.pair.id, change)

    def _publish_fatal(self, error: str, fix: str) -> None:
        def change(p: PairStatus) -> None:
            p.running = False
            p.fatal = {"error": error, "fix": fix}
            p.last_run_failed = True
            p.last_result = f"Stopped: {error}"

        self._publish(change)

    def _after(self, outcome: RunOutcome, delay: float) -> float:
        """Publish one run's outcome; return how long to wait before the next run."""
        now = time.time()
        interval = self.pair.interval
        if outcome.stopped and outcome.fatal is None:
            def stopped(p: PairStatus) -> None:
                p.running = False
                if p.progress is not None:
                    p.pending = max(0, p.progress.files_total - p.progress.files_done)
                p.progress = None
                p.last_result = "Paused in the middle of a run; it goes on from there when resumed."

            self._publish(stopped)
            return interval
        if outcome.fatal is not None and outcome.retryable:
            delay = min(MAX_BACKOFF, max(interval, delay * 2))

            def offline(p: PairStatus) -> None:
                p.running = False
                p.progress = None
                p.offline_since = p.offline_since or now
                p.next_retry = now + delay
                p.fatal = None
                p.last_run_failed = True
                p.last_result = f"Could not reach the server: {outcome.fatal}"

            self._publish(offline)
            return delay
        if outcome.fatal is not None:
            self._publish_fatal(outcome.fatal, fix_for(outcome.fatal))
            return min(MAX_BACKOFF, max(interval, delay * 2))
        dest, started = self.pair.dest, self._started
        unsure = {e["path"] for e in outcome.errors} | set(outcome.deferred)
        waiting: list[Any] = []  # what is worth a look sooner than the interval

        def done(p: PairStatus) -> None:
            p.running = False
            p.progress = None
            p.fatal = None
            p.offline_since = p.next_retry = None
            p.last_run_failed = bool(outcome.errors)
            p.errors = outcome.errors
            known = {c.get("local_copy") for c in p.conflicts}
            for c in outcome.conflicts:
                if c.get("local_copy") not in known:
                    p.conflicts.append(c | {"time": now})
            p.conflicts = [conflict_view(dest, c) for c in p.conflicts if still_open(dest, c)]
            if outcome.full_listing:
                p.skipped = outcome.skipped
            else:
                names = {s["path"] for s in p.skipped}
                p.skipped += [s for s in outcome.skipped if s["path"] not in names]
            p.counts = outcome.counts
            if outcome.deferred != p.deferred:
                waiting.extend(outcome.deferred)
            p.deferred, p.pending = outcome.deferred, 0
            # a choice is confirmed by a whole run that began after it and did not fail on the file
            p.uploading = [u for u in p.uploading if u["since"] >= started or u["path"] in unsure]
            waiting.extend(p.uploading)
            p.last_check = now
            p.last_result = outcome.summary
            store.save(self.state_dir, p)

        self._publish(done)
        return min(interval, SETTLE_RETRY) if waiting else interval

    def refresh_conflicts(self) -> None:
        """Re-read both versions of every listed conflict (after an action, or a change by hand)."""
        dest = self.pair.dest

        def change(p: PairStatus) -> None:
            p.conflicts = [conflict_view(dest, c) for c in p.conflicts if still_open(dest, c)]
            store.save(self.state_dir, p)

        self._publish(change)
