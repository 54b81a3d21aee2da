"""Small files in batches: many per request (davsync's bundle REPORT), placed many at a time.

Without this, every small file costs a request, an fsync and a journal commit. Here a pull
(through the executor's prefetch hook, `bundled_downloads`) asks a davsync server for up to a
few hundred small files in one REPORT (server/bundle.py) and receives a tar stream. Each
member is checked like a single download (its length and MD5 against the listing and against
the member's own MD5) and written to a temp file in DEST/.davsync/partial/; then the batch is
placed together:

1. one flush pass makes all its temp files durable (one syncfs, or concurrent fsyncs);
2. the batch's intents (the row each file will get) are committed in one transaction before
   any rename: after a kill, the next run settles each from what is on disk (the engine's
   `_resolve_placements`), so no row ever names a file that is not there;
3. the renames, each refused if the local file changed since planning (as `place` does);
4. one fsync per folder touched (or one syncfs);
5. the intents become rows (or go, for a file not placed) in one transaction.

A kill at any moment therefore leaves every path with the old or the complete new version,
and a journal that describes the disk. A member the server reports missing or changed fails
alone; a cut stream, a refused or unknown request, or a member too large for a bundle go
back to the per-file path (GET with retries and resume). Servers without the extension
(rclone serve, Apache, Nextcloud) never see a bundle request: it is used only when the
server's OPTIONS answer advertises it.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from xml.sax.saxutils import escape, quoteattr

import urllib3

from .. import fileid, osfs
from ..concurrency import batches, wait_first
from ..paxstream import BLOCK, MAX_PAX, Member, PaxReader, TarFormatError
from .journal import Intent, Journal
from .plan import Action, JournalEntry, Kind, LocalEntry, complete
from .remote import Remote
from .transfer import (
    ChangedOnServer,
    Downloaded,
    DownloadError,
    Raced,
    judged_with_md5,
    local_error,
    path_error,
    place,
    stat_entry,
    still_as_judged,
)
from .transport import NETWORK_ERRORS, RemoteError

if TYPE_CHECKING:
    from .results import RunResult
    from .steps import Context

MAX_FILE = 1024 * 1024  # files up to this size travel in bundles; larger ones by GET with resume
BATCH_FILES = 400
BATCH_BYTES = 8 * 1024 * 1024
MIN_FILES = 8  # fewer small files than this: not worth asking the server what it supports
WORKERS = 4  # bundles in flight at once
FEATURES_HEADER = "X-Davsync-Bundle"
_STREAM_ERRORS: tuple[type[BaseException], ...] = (TarFormatError, *NETWORK_ERRORS)  # a cut or garbled bundle
BULK_HEADER = "X-Davsync-Bulk-Upload"
RESUMABLE_HEADER = "X-Davsync-Resumable"
BLOCKS_HEADER = "X-Davsync-Blocks"
DELTA_PUSH_HEADER = "X-Davsync-Delta-Push"


@dataclass(frozen=True)
class Limits:
    max_files: int
    max_file_size: int
    max_bytes: int


@dataclass(frozen=True)
class Features:
    """What a server offers beyond WebDAV (from its OPTIONS answer); None where it offers nothing."""

    bundle: Limits | None = None
    bulk_upload: Limits | None = None
    resumable: bool = False  # resumable uploads of big files (client/resume.py)
    blocks: bool = False  # big files' block hashes, for delta pulls (client/delta.py)
    delta_push: bool = False  # edits of big files sent as changed blocks (client/delta.py)


def parse_limits(header: str | None) -> Limits | None:
    """`max-files=1000; max-file-size=16777216; max-bytes=67108864` -> Limits (None if absent or malformed)."""
    if not header:
        return None
    values: dict[str, int] = {}
    for part in header.split(";"):
        key, eq, value = part.strip().partition("=")
        if eq and value.strip().isdigit():
            values[key.strip().lower()] = int(value.strip())
    try:
        limits = Limits(values["max-files"], values["max-file-size"], values["max-bytes"])
    except KeyError:
        return None
    return limits if min(limits.max_files, limits.max_file_size, limits.max_bytes) > 0 else None


_features_lock = threading.Lock()
_features: weakref.WeakKeyDictionary[Remote, Features] = weakref.WeakKeyDictionary()


def features(remote: Remote) -> Features:
    """Ask the share once (OPTIONS on its URL) what it offers; remembered for this Remote."""
    with _features_lock:
        known = _features.get(remote)
    if known is not None:
        return known
    headers = remote.options_headers  # sync and push asked already (Remote.can_write): no second OPTIONS
    if headers is None:
        try:
            resp = remote.request("OPTIONS", remote.base_url)
        except RemoteError as e:
            if e.fatal:
                raise
            return Features()  # not remembered: asked again next time
        with resp:
            headers = resp.headers if resp.status_code == 200 else {}
    found = Features(parse_limits(headers.get(FEATURES_HEADER)), parse_limits(headers.get(BULK_HEADER)),
                     RESUMABLE_HEADER in headers, BLOCKS_HEADER in headers, DELTA_PUSH_HEADER in headers)  # fmt: skip
    with _features_lock:
        _features[remote] = found
    return found


# --- pulling many small files ----------------------------------------------------------------


class Reporter(Protocol):
    def file_started(self, path: str, size: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self, action: Action, note: str = "") -> None: ...
    def warn(self, message: str) -> None: ...


Outcome = int | Exception  # bytes fetched, or why this file was not placed


@dataclass
class Batcher:
    """What the batched path works with: the run's connection, folders, journal and reporting."""

    remote: Remote
    dest: Path  # the long-path form on Windows
    state_dir: Path
    journal: Journal
    stop: threading.Event
    reporter: Reporter
    done: Callable[[Action, Outcome], None]  # called once per action handled here, from the caller's thread
    jobs: int = 4
    on_disk: dict[str, str] = field(default_factory=dict)  # NFC path -> its spelling on disk, where they differ


def bundled_downloads(ctx: Context, result: RunResult) -> Callable[[list[Action]], list[Action]]:
    """The executor's prefetch hook (execute.Context.prefetch): small downloads in bundles,
    reported into this run's result as the executor reports a single download."""

    def done(a: Action, outcome: Outcome) -> None:
        if isinstance(outcome, ChangedOnServer) and ctx.changed_on_server is not None:
            ctx.changed_on_server(a.path, str(outcome))  # listed and planned again within the run
            return
        if isinstance(outcome, Exception):
            result.error(a.path, str(outcome))  # said once, with the run's problems (not also as a warning)
            return
        result.bytes_downloaded += outcome
        result.record(a.kind, a.path)
        ctx.reporter.file_done(a)

    def prefetch(transfers: list[Action]) -> list[Action]:
        b = Batcher(ctx.remote, ctx.dest, ctx.state_dir, ctx.journal, ctx.stop, ctx.reporter, done, ctx.jobs,
                    ctx.on_disk)  # fmt: skip
        return transfer_small(b, transfers)

    return prefetch


def takes(a: Action, limit: int) -> bool:
    """Is this transfer one the batched path handles? A plain download or update of a small
    file; conflicts (a local copy to set aside first) keep the per-file path."""
    r = a.remote
    return (
        a.kind in (Kind.DOWNLOAD, Kind.UPDATE)
        and r is not None
        and not r.is_dir
        and r.size is not None
        and r.size <= limit
        and (a.local is None or not a.local.is_dir)
        and a.to_record is not None
    )


def transfer_small(b: Batcher, transfers: list[Action]) -> list[Action]:
    """Fetch and place the small files among `transfers` in bundles, when the server offers them.

    Returns the transfers left for the per-file path: large files, conflicts, and whatever a
    bundle could not deliver (a cut stream, a refused request). Every other action is reported
    through `b.done` exactly once, from the calling thread.
    """
    candidates = [a for a in transfers if takes(a, MAX_FILE)]
    if len(candidates) < MIN_FILES or b.stop.is_set():
        return transfers
    offered = features(b.remote).bundle
    if offered is None:
        return transfers
    limit = min(MAX_FILE, offered.max_file_size)
    mine = [a for a in candidates if takes(a, limit)]
    try:
        (b.state_dir / "partial").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise local_error(e, "creating the partial folder") from None
    back: set[int] = set()
    with ThreadPoolExecutor(max_workers=max(1, min(WORKERS, b.jobs)), thread_name_prefix="davsync-bundle") as pool:
        # Each batch in flight writes into its own folder: file creations in one folder are
        # serialised by the filesystem, and would be the bottleneck with several batches.
        folders: queue.SimpleQueue[Path] = queue.SimpleQueue()
        for n in range(max(1, min(WORKERS, b.jobs))):
            folders.put(b.state_dir / "partial" / f"bundle-{n}")
        pending = {pool.submit(_Batch(b, batch, folders).run) for batch in _batches(mine, offered)}
        try:
            while pending:
                for fut in wait_first(pending):
                    pending.discard(fut)
                    leftover, outcomes = fut.result()
                    back.update(id(a) for a in leftover)
                    for a, outcome in outcomes:
                        b.done(a, outcome)
        except BaseException:
            b.stop.set()  # the other batches end at their next member; their temp files go
            raise
    chosen = {id(a) for a in mine} - back
    return [a for a in transfers if id(a) not in chosen]


def _batches(actions: list[Action], limits: Limits) -> Iterator[list[Action]]:
    """Requests within our batch size and the server's limits, whichever is smaller."""
    return batches(
        actions,
        lambda a: (a.remote.size or 0) if a.remote is not None else 0,
        max_items=min(BATCH_FILES, limits.max_files),
        max_bytes=min(BATCH_BYTES, limits.max_bytes),
    )


@dataclass
class _Staged:
    action: Action
    got: Downloaded
    placed: LocalEntry | None = None
    error: Exception | None = None
    row: JournalEntry | None = None  # the row it gets once placed (its intent until then)
    back: bool = False  # handed back to the per-file path (which keeps a local edit as a conflict copy)


class _Batch:
    """One bundle: its request, its members staged in DEST/.davsync/partial/, then placed together."""

    def __init__(self, b: Batcher, actions: list[Action], folders: queue.SimpleQueue[Path]) -> None:
        self.b = b
        self.actions = actions
        self.folders = folders  # temp folders free for a batch to write into
        self.names: dict[int, str | None] = {}  # id(action) -> the server's spelling, when not the local one
        self.staged: list[_Staged] = []
        self.outcomes: list[tuple[Action, Outcome]] = []
        self.partial = b.state_dir / "partial"  # (set to a folder of its own while the batch runs)

    def run(self) -> tuple[list[Action], list[tuple[Action, Outcome]]]:
        """Returns the actions left for the per-file path, and the outcome of every other one."""
        self.partial = self.folders.get()
        try:
            try:
                self.partial.mkdir(exist_ok=True)
            except OSError as e:
                raise local_error(e, "creating the partial folder") from None
            leftover = self._receive()
            self._place_all()
            # Every action is reported or handed back, whatever happened above.
            accounted = {id(a) for a in leftover} | {id(a) for a, _ in self.outcomes}
            leftover += [a for a in self.actions if id(a) not in accounted]
            return leftover, self.outcomes
        finally:
            for s in self.staged:  # what was not placed (a failure, a stop): its temp file goes
                if s.placed is None:
                    _unlink(s.got.partial)
            self.folders.put(self.partial)

    def _failed(self, a: Action, error: Exception) -> None:
        self.outcomes.append((a, error))

    # --- receiving ---------------------------------------------------------------------------

    def _server_name(self, a: Action) -> str | None:
        key = id(a)
        if key not in self.names:
            assert a.remote is not None
            self.names[key] = self.b.remote.server_name(a.remote)
        return self.names[key]

    def _asked_name(self, a: Action) -> str:
        assert a.remote is not None
        return self._server_name(a) or a.remote.path

    def _request_body(self) -> bytes:
        parts = ['<?xml version="1.0" encoding="utf-8"?>\n<ds:bundle xmlns:ds="urn:davsync:">']
        for a in self.actions:
            assert a.remote is not None
            etag = f" etag={quoteattr(a.remote.etag)}" if a.remote.etag else ""
            parts.append(f"<ds:file{etag}>{escape(self._asked_name(a))}</ds:file>")
        parts.append("</ds:bundle>")
        return "".join(parts).encode("utf-8", "surrogateescape")

    def _receive(self) -> list[Action]:
        """Stage every member that arrives intact; returns the actions to try one by one."""
        b = self.b
        waiting = deque(self.actions)
        if b.stop.is_set():
            self._stop(waiting)
            return []
        headers = {"Content-Type": "application/xml; charset=utf-8", "Depth": "0", "Accept-Encoding": "identity"}
        try:
            resp = b.remote.request("REPORT", b.remote.base_url, data=self._request_body(), headers=headers,
                                    stream=True)  # fmt: skip
        except RemoteError as e:
            if e.fatal:
                raise
            return list(waiting)  # the per-file path retries with backoff
        back: list[Action] = []
        with resp:
            if resp.status_code != 200 or not resp.headers.get("Content-Type", "").startswith("application/x-tar"):
                return list(waiting)
            reader = PaxReader(io.BufferedReader(_Raw(resp.raw), 256 * 1024).read)
            try:
                while waiting:
                    if b.stop.is_set():
                        self._stop(waiting)
                        return back
                    member = reader.next()
                    if member is None or member.path != self._asked_name(waiting[0]):
                        break  # not what was asked: the rest goes one by one
                    if _oversized(member, waiting[0]):
                        # Not read through (a hostile member may claim terabytes, and never end):
                        # it fails, and the rest goes one by one.
                        a = waiting.popleft()
                        assert a.remote is not None
                        self._failed(a, DownloadError(f"the server sent {member.size} bytes but listed "
                                                      f"{a.remote.size}; nothing was placed"))  # fmt: skip
                        break
                    if self._take(waiting[0], member, reader):
                        back.append(waiting[0])
                    waiting.popleft()  # (only now: a member cut off in the middle stays waiting)
                if not waiting:
                    reader.next()  # the end-of-archive blocks: read to the end, the connection is reused
            except _STREAM_ERRORS:
                pass  # cut off (CutStream is a TarFormatError) or garbled: what arrived whole is kept
        return back + list(waiting)

    def _stop(self, actions: Iterable[Action]) -> None:
        for a in actions:
            self._failed(a, DownloadError("stopped"))

    def _take(self, a: Action, member: Member, reader: PaxReader) -> bool:
        """Verify one member and stage it in a temp file; True hands it to the per-file path."""
        r = a.remote
        assert r is not None and r.size is not None
        status = member.status
        if status != 200:
            reason = member.attrs.get("error", "")
            if status in (404, 409, 412):
                what = {404: "it is gone from the server", 409: "it keeps changing on the server",
                        412: "it changed on the server since it was listed"}[status]  # fmt: skip
                self._failed(a, ChangedOnServer(f"{what}; nothing was placed"))
                return False
            if status == 403:
                self._failed(a, DownloadError(f"the server refused it (403{': ' + reason if reason else ''})"))
                return False
            return True  # too large for a bundle, a server error: GET it
        data = reader.data(member, r.size)
        if data is None or len(data) != r.size:
            self._failed(a, ChangedOnServer(f"the server sent {member.size} bytes but listed {r.size}; "
                                            "nothing was placed (the file may be changing)"))  # fmt: skip
            return False
        md5 = hashlib.md5(data).hexdigest()
        claimed = (member.attrs.get("md5") or "").lower()
        if r.md5 and md5 != r.md5:
            self._failed(a, ChangedOnServer(f"MD5 mismatch (got {md5}, the server lists {r.md5}); nothing was placed"))
            return False
        if claimed and md5 != claimed:
            self._failed(a, DownloadError(f"MD5 mismatch (got {md5}, the bundle says {claimed}); nothing was placed"))
            return False
        self.b.reporter.file_started(a.path, r.size)
        tmp = self.partial / _small_name(r.path)
        try:
            st = osfs.write_new_file(tmp, data, r.mtime, durable=False)
        except OSError as e:
            _unlink(tmp)
            raise local_error(e, f"downloading {a.path}") from None
        self.b.reporter.advance(len(data))
        ready = LocalEntry(False, st.st_size, st.st_mtime_ns, fileid.file_id(tmp, st)) if r.mtime is not None else None
        self.staged.append(_Staged(a, Downloaded(tmp, md5, len(data), len(data), 0, ready)))
        return False

    # --- placing -------------------------------------------------------------------------------

    def _target(self, a: Action) -> str:
        """Where the file goes: a file being replaced is renamed over its spelling on disk."""
        return self.b.on_disk.get(a.path, a.path) if a.local is not None else a.path

    def _row(self, s: _Staged, placed: LocalEntry) -> JournalEntry:
        """The row a placed file gets: what the plan would record, completed with the file's stat."""
        assert s.action.to_record is not None
        return replace(complete(s.action.to_record, placed), md5=s.got.md5, remote_name=self._server_name(s.action))

    def _place_all(self) -> None:
        b = self.b
        if not self.staged:
            return
        if b.stop.is_set():
            self._stop(s.action for s in self.staged)
            return
        try:
            osfs.flush_files([s.got.partial for s in self.staged])
        except OSError as e:
            raise local_error(e, "writing downloaded files to disk") from None
        # Intents for the whole batch, committed together before any rename: after a kill the
        # next run settles each from what is on disk (engine._resolve_placements).
        planned: list[_Staged] = []
        intents: list[Intent] = []
        for s in self.staged:
            a = s.action
            if not still_as_judged(b.dest / self._target(a), judged_with_md5(a, a.local))[0]:
                s.back = True  # changed here since planned: the per-file path sets it aside or leaves it
                continue
            new = s.got.ready or stat_entry(s.got.partial)  # the rename keeps inode, size and mtime
            assert new is not None
            s.row = self._row(s, new)
            intents.append(Intent(a.path, "place", s.row))
            planned.append(s)
        if planned:
            b.journal.intend_many(intents)
            self._rename_all(planned)
        for s in self.staged:
            if s.placed is not None:
                self.outcomes.append((s.action, s.got.bytes_fetched))
            elif s.back:
                self.b.reporter.advance(-s.got.bytes_fetched)  # fetched again by the per-file path
            else:
                self.b.reporter.advance(-s.got.bytes_fetched)  # the progress shows only what was placed
                self._failed(s.action, s.error or DownloadError("not placed"))

    def _rename_all(self, planned: list[_Staged]) -> None:
        b = self.b
        folders: set[Path] = set()
        try:
            for s in planned:
                a = s.action
                assert a.remote is not None
                try:
                    s.placed = place(s.got, b.dest, self._target(a), a.remote, judged_with_md5(a, a.local), folders.add)
                except (Raced, DownloadError) as e:
                    s.error = e
        finally:
            # Once the renames are durable, the intents become rows (or go: nothing was placed),
            # in one transaction.
            try:
                osfs.flush_files(sorted(folders), folders=True)
            except OSError as e:
                raise path_error(e, "placing downloaded files", b.dest) from None
            b.journal.settle_many([(s.action.path, _settled(s)) for s in planned])
            for s in planned:
                if s.placed is not None:
                    for path, row in s.action.extra:
                        if row is None:
                            b.journal.forget(path)
            b.journal.commit()


# A member failed by the server (409 "changed while sent") fills the space announced for the file
# with zeros: up to its listed size plus a header's worth. Beyond that a member is not skipped through.
_FAILED_SLACK = MAX_PAX + 4 * BLOCK


def _oversized(member: Member, a: Action) -> bool:
    """Does `member` claim more data than the file it stands for can hold?"""
    assert a.remote is not None and a.remote.size is not None
    return member.size > a.remote.size + _FAILED_SLACK


class _Raw(io.RawIOBase):
    """urllib3's response as a raw stream for io.BufferedReader: each read returns what has
    arrived (read1), so the members before a cut are not lost in a half-filled buffer."""

    def __init__(self, raw: urllib3.response.BaseHTTPResponse) -> None:
        self._raw = raw
        self._read = getattr(raw, "read1", raw.read)  # urllib3 < 2.2 has no read1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._read(len(buffer), decode_content=False)
        n = len(data)
        buffer[:n] = data
        return n


def _small_name(rel: str) -> str:
    """The temp file's name in DEST/.davsync/partial/: the one a single small download uses
    (transfer._partial_paths), so leftovers of either are cleared the same way at the next start."""
    return hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest() + ".small"


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass  # cleared with the other leftovers at the next start


def _settled(s: _Staged) -> JournalEntry | None:
    """The row of a placed file, with its ctime after the rename (a rename moves it)."""
    if s.placed is None or s.row is None:
        return None
    return replace(s.row, ctime_ns=s.placed.ctime_ns)
