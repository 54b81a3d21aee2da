"""One thread-safe status object: the sync loops write into it, the dashboard and tray only read it.

Every change bumps a version number and wakes the waiters (server-sent events, the tray), so a
reader never polls. `overall()` is a pure function of the per-pair states and the clock: it is
where "never green when it should not be" is decided, and it is unit-tested on its own.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..units import human_size
from .words import count_words, plain

RECENT_LIMIT = 200
SPEED_WINDOW = 5.0  # seconds of transfer history behind the speed and the ETA


@dataclass
class Progress:
    """A run's transfers: n of m files, bytes, speed over the last few seconds."""

    files_total: int = 0
    files_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    current: list[str] = field(default_factory=list)
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    phase: str = "transfer"  # or "checking": reading the files already here (adopting a folder)

    def add_bytes(self, n: int, at: float | None = None) -> None:
        """Count bytes; `at` is a time.monotonic() reading (the speed never uses the wall clock)."""
        at = time.monotonic() if at is None else at
        self.bytes_done += n
        self.samples.append((at, self.bytes_done))
        while len(self.samples) > 2 and at - self.samples[0][0] > SPEED_WINDOW:
            self.samples.popleft()

    def speed(self, at: float | None = None) -> float:
        """Bytes per second over the last few seconds; 0 until there is a quarter second of history."""
        if len(self.samples) < 2:
            return 0.0
        at = time.monotonic() if at is None else at
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        span = max(at, t1) - t0
        return (b1 - b0) / span if span >= 0.25 else 0.0

    def view(self, at: float | None = None) -> dict[str, Any]:
        speed = self.speed(at)
        left = max(0, self.bytes_total - self.bytes_done)
        return {
            "files_total": self.files_total,
            "files_done": self.files_done,
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
            "speed": speed,
            "eta": left / speed if speed > 0 and left else None,
            "current": self.current[:5],
            "phase": self.phase,
        }


@dataclass
class PairStatus:
    """What one folder pair's loop last published. Times are wall-clock (time.time())."""

    id: str
    url: str = ""
    local: str = ""
    mode: str = "pull"
    interval: float = 30.0
    paused: bool = False  # paused, by its own switch or by Pause all
    pair_paused: bool = False  # its own switch
    running: bool = False
    progress: Progress | None = None
    last_check: float | None = None  # end of the last run that completed without a fatal error
    last_result: str = "Not checked yet."
    last_run_failed: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    offline_since: float | None = None
    next_retry: float | None = None
    fatal: dict[str, str] | None = None  # {"error", "fix"}: the loop cannot go on until a person acts
    errors: list[dict[str, Any]] = field(default_factory=list)  # {"path", "error", "fix"[, "files"]}
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    deferred: list[str] = field(default_factory=list)  # still being written when the last run looked
    uploading: list[dict[str, Any]] = field(default_factory=list)  # {"path", "since"}: not confirmed yet
    pending: int = 0  # changes a stopped (paused) run found and did not do yet
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_LIMIT))

    @property
    def attention(self) -> int:
        return len(self.conflicts) + len(self.errors) + len(self.skipped) + (1 if self.fatal else 0)


# One precedence order, highest first: the overall state is the highest of the pairs' states.
# "checking" and "stale" (no recent contact) sit between syncing and paused: never green.
ORDER = ("error", "offline", "attention", "syncing", "checking", "stale", "paused", "ok")
COLOURS = {
    "error": "red", "offline": "orange", "attention": "red", "syncing": "blue", "checking": "grey",
    "stale": "orange", "paused": "grey", "ok": "green", "empty": "grey",
}  # fmt: skip


def server_of(url: str) -> str:
    """The server a pair talks to (scheme, host, port): pairs of one server share its reachability."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{(parts.netloc.rpartition('@')[2]).lower()}"


def servers_down(pairs: list[PairStatus]) -> dict[str, float]:
    """Server -> the earliest time a pair of it found it unreachable (and has not reached it since)."""
    down: dict[str, float] = {}
    for p in pairs:
        if p.offline_since is not None:
            key = server_of(p.url)
            down[key] = min(down.get(key, p.offline_since), p.offline_since)
    return down


def _pending(p: PairStatus) -> int:
    return len(p.deferred) + len(p.uploading) + p.pending


def pair_state(p: PairStatus, now: float, down: dict[str, float] | None = None) -> str:
    """The pair's state from its facts and their age, in ORDER's precedence. `down` (from
    servers_down) makes a server another pair found down count for this pair too, unless this
    pair reached it after that."""
    if p.fatal is not None:
        return "error"
    found_down = (down or {}).get(server_of(p.url))
    if p.offline_since is not None or (found_down is not None and found_down >= (p.last_check or 0)):
        return "offline"
    if p.errors or p.conflicts or p.skipped or p.last_run_failed:
        return "attention"
    if p.progress is not None and p.progress.files_total or (_pending(p) and not p.paused):
        return "syncing"
    if p.paused:
        return "paused"
    if p.last_check is None:
        return "checking"
    if now - p.last_check > 2 * p.interval:
        # overdue; while a (long) listing is under way that is "checking", never "ok"
        return "checking" if p.running else "stale"
    return "ok"


def _clock(t: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) if t else "never"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _n(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def _names(paths: list[str], limit: int = 3) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def pair_words(p: PairStatus, state: str, now: float, down: dict[str, float] | None = None) -> str:
    """One plain sentence for a pair's card: what its state means and the one thing that helps."""
    if state == "error":
        fatal = p.fatal or {}
        return _sentence(plain(f"Syncing stopped: {fatal.get('error', '')} {fatal.get('fix', '')}"))
    if state == "offline":
        since = p.offline_since or (down or {}).get(server_of(p.url))
        retry = f" davsync tries again at {_clock(p.next_retry)}." if p.next_retry else " davsync keeps trying."
        return f"Offline since {_clock(since)}: the server cannot be reached.{retry} Check that it is switched on."
    if state == "attention":
        return f"Needs attention: {_n(p.attention, 'item needs', 'items need')} your choice (see below)."
    if state == "syncing":
        if p.progress is not None and p.progress.files_total and p.progress.phase == "checking":
            return (f"Checking the files already here against the server: {p.progress.files_done} of "
                    f"{_n(p.progress.files_total, 'file')}; equal ones are kept, none is overwritten.")  # fmt: skip
        if p.progress is not None and p.progress.files_total:
            return f"Syncing {p.progress.files_done} of {_n(p.progress.files_total, 'file')}."
        if p.uploading:
            return f"Uploading your choice for {_names([u['path'] for u in p.uploading])}."
        if p.deferred:
            return (f"Waiting for {_names(p.deferred)} to be finished (still being written); "
                    "it is sent at the next check.")  # fmt: skip
        return f"Waiting: {_n(p.pending, 'change')} to sync at the next check."
    if state == "paused":
        waiting = f" {_n(_pending(p), 'change waits', 'changes wait')}." if _pending(p) else ""
        who = "Paused" if p.pair_paused else "Paused with everything else (Resume at the top)"
        return f"{who}: nothing is synced until you resume.{waiting}"
    if state == "checking":
        return "Checking the server for changes." if p.last_check is None else (
            f"Checking; the last good check was at {_clock(p.last_check)}.")  # fmt: skip
    if state == "stale":
        return f"Not checked since {_clock(p.last_check)}; davsync keeps trying. Use Sync now to check at once."
    return f"Up to date: last checked at {_clock(p.last_check)}, every {p.interval:g} s."


def overall(pairs: list[PairStatus], now: float, all_paused: bool) -> dict[str, Any]:
    """The one state shown in the header and the tray: the highest of the pairs' states in ORDER.
    Green ("ok") only when every pair is."""
    attention = sum(p.attention for p in pairs)
    down = servers_down(pairs)
    states = {p.id: pair_state(p, now, down) for p in pairs}
    out: dict[str, Any] = {"attention": attention, "pairs": len(pairs)}
    if not pairs:
        return out | {"state": "empty", "colour": COLOURS["empty"], "label": "No folder pairs yet",
                      "detail": "Add a folder pair to start."}  # fmt: skip
    state = min(states.values(), key=ORDER.index)
    these = [p for p in pairs if states[p.id] == state]
    out |= {"state": state, "colour": COLOURS[state]}
    # the count of items that need a person, beside a state that outranks them (a stop is not one of them)
    others = 0 if state == "attention" else attention - sum(1 for p in pairs if p.fatal is not None)
    also = f" · {others} need{'s' if others == 1 else ''} attention" if others else ""
    if state == "error":
        fatal = these[0].fatal or {}
        detail = _sentence(plain(f"{fatal.get('error', '')} {fatal.get('fix', '')}"))
        return out | {"label": "Syncing stopped", "detail": detail + also}
    if state == "offline":
        since = min(p.offline_since or down.get(server_of(p.url), now) for p in these)
        retry = min((p.next_retry for p in these if p.next_retry), default=None)
        detail = "The server cannot be reached"
        detail += f"; davsync tries again at {_clock(retry)}." if retry else "; davsync keeps trying."
        return out | {"label": f"Offline since {_clock(since)}", "detail": detail + also, "since": since,
                      "next_retry": retry, "offline_pairs": len(these)}  # fmt: skip
    if state == "attention":
        return out | {"label": f"Needs attention ({max(attention, 1)})",
                      "detail": "See the items marked below and choose what to do."}  # fmt: skip
    if state == "syncing":
        return out | _syncing(these) | ({"detail": _syncing(these)["detail"] + also} if also else {})
    if state == "checking":
        return out | {"label": "Checking…", "detail": "Looking for changes on the server."}
    if state == "stale":
        oldest = min(p.last_check or 0 for p in these)
        return out | {"label": f"Not checked since {_clock(oldest)}",
                      "detail": "The last check is overdue; davsync keeps trying. Use Sync now to check at once."}
    if state == "paused":
        detail = ("Nothing is synced until you resume." if len(these) == len(pairs) or all_paused
                  else f"{len(these)} of {len(pairs)} folder pairs paused.")  # fmt: skip
        return out | {"label": "Paused", "detail": detail}
    last = min(p.last_check or 0 for p in pairs)
    return out | {"label": "Up to date", "detail": f"Last checked at {_clock(last)}", "last_check": last}


def _syncing(these: list[PairStatus]) -> dict[str, Any]:
    """The header while something moves, or waits to move: transfers first, then what waits."""
    moving = [p for p in these if p.progress is not None and p.progress.files_total]
    if moving:
        files_total = sum(p.progress.files_total for p in moving if p.progress)
        files_done = sum(p.progress.files_done for p in moving if p.progress)
        views = [p.progress.view() for p in moving if p.progress]
        bytes_total = sum(v["bytes_total"] for v in views)
        bytes_done = sum(v["bytes_done"] for v in views)
        speed = sum(v["speed"] for v in views)
        eta = (bytes_total - bytes_done) / speed if speed > 0 else None
        detail = f"{human_size(bytes_done)} of {human_size(bytes_total)}"
        if speed > 0:
            detail += f" at {human_size(speed)}/s"
        if eta is not None and bytes_total > bytes_done:
            detail += f", about {_duration(eta)} left"
        verb = "Checking" if all(v["phase"] == "checking" for v in views) else "Syncing"
        label = f"{verb} {files_done} of {files_total} files" + (" already here" if verb == "Checking" else "")
        return {"label": label, "detail": detail,
                "files_done": files_done, "files_total": files_total, "bytes_done": bytes_done,
                "bytes_total": bytes_total, "speed": speed, "eta": eta}  # fmt: skip
    uploading = [u["path"] for p in these for u in p.uploading]
    if uploading:
        return {"label": f"Uploading {_n(len(uploading), 'file')}",
                "detail": f"Your choice for {_names(uploading)} goes to the server at the next check."}
    deferred = [d for p in these for d in p.deferred]
    if deferred:
        return {"label": f"Waiting for {_n(len(deferred), 'file')} still being written",
                "detail": f"{_names(deferred)}: sent when the program writing it has finished."}
    n = sum(p.pending for p in these)
    return {"label": f"{_n(n, 'change')} waiting to sync", "detail": "They are synced at the next check."}


class StatusHub:
    """The shared status. Writers call `update`; readers call `snapshot` or `wait`."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pairs: dict[str, PairStatus] = {}
        self._order: list[str] = []
        self.all_paused = False
        self.version = 0
        self.closed = False
        self.notice: str = ""  # an app-wide problem for the dashboard (e.g. a broken hand edit of the config)

    def _bump(self) -> None:
        self.version += 1
        self._cond.notify_all()

    def set_pairs(self, pairs: list[PairStatus]) -> None:
        with self._cond:
            self._pairs = {p.id: p for p in pairs}
            self._order = [p.id for p in pairs]
            self._bump()

    def add(self, pair: PairStatus) -> None:
        with self._cond:
            if pair.id not in self._pairs:
                self._order.append(pair.id)
            self._pairs[pair.id] = pair
            self._bump()

    def remove(self, pair_id: str) -> None:
        with self._cond:
            self._pairs.pop(pair_id, None)
            self._order = [i for i in self._order if i != pair_id]
            self._bump()

    def update(self, pair_id: str, change: Callable[[PairStatus], Any], *, notify: bool = True) -> None:
        """Apply `change` under the lock; `notify=False` for high-rate updates (bytes) that the
        next notified change carries along."""
        with self._cond:
            p = self._pairs.get(pair_id)
            if p is not None:
                change(p)
                if notify:
                    self._bump()

    def set_all_paused(self, paused: bool) -> None:
        with self._cond:
            self.all_paused = paused
            self._bump()

    def set_notice(self, notice: str) -> None:
        with self._cond:
            if notice != self.notice:
                self.notice = notice
                self._bump()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._bump()

    def pair(self, pair_id: str) -> PairStatus | None:
        """A deep copy, safe to read outside the lock."""
        with self._cond:
            p = self._pairs.get(pair_id)
            return copy.deepcopy(p) if p is not None else None

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the version moves past `seen` (or timeout); returns the current version."""
        with self._cond:
            self._cond.wait_for(lambda: self.version != seen or self.closed, timeout)
            return self.version

    def overall(self, now: float | None = None) -> dict[str, Any]:
        with self._cond:
            return overall([self._pairs[i] for i in self._order], now or time.time(), self.all_paused)

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = now or time.time()
        with self._cond:
            pairs = [self._pairs[i] for i in self._order]
            down = servers_down(pairs)
            return {
                "version": self.version,
                "now": now,
                "all_paused": self.all_paused,
                "notice": self.notice,
                "overall": overall(pairs, now, self.all_paused),
                "pairs": [_pair_view(p, now, down) for p in pairs],
            }


def _pair_view(p: PairStatus, now: float, down: dict[str, float]) -> dict[str, Any]:
    state = pair_state(p, now, down)
    return {
        "id": p.id,
        "url": p.url,
        "local": p.local,
        "mode": p.mode,
        "interval": p.interval,
        "paused": p.paused,
        "running": p.running,
        "state": state,
        "colour": COLOURS[state],
        "words": pair_words(p, state, now, down),
        "deferred": list(p.deferred),
        "uploading": list(p.uploading),
        "progress": p.progress.view() if p.progress is not None and p.progress.files_total else None,
        "pair_paused": p.pair_paused,
        "last_check": p.last_check,
        "last_result": plain(p.last_result),
        "counts": dict(p.counts),
        "count_words": count_words(p.counts),
        "offline_since": p.offline_since,
        "next_retry": p.next_retry,
        "fatal": _plain(p.fatal, "error", "fix") if p.fatal else None,
        "errors": [_plain(e, "error", "fix") for e in p.errors],
        "conflicts": [_plain(c, "reason") for c in p.conflicts],
        "skipped": [_plain(s, "reason") for s in p.skipped],
        "attention": p.attention,
        "recent": [_plain(r, "note") for r in reversed(p.recent)][:50],
    }


def _plain(item: dict[str, Any], *keys: str) -> dict[str, Any]:
    return item | {k: plain(str(item[k])) for k in keys if item.get(k)}
