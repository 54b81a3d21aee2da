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

from ..units import human_size

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
    errors: list[dict[str, str]] = field(default_factory=list)  # {"path", "error", "fix"}
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_LIMIT))

    @property
    def attention(self) -> int:
        return len(self.conflicts) + len(self.errors) + len(self.skipped) + (1 if self.fatal else 0)


def pair_state(p: PairStatus, now: float) -> str:
    """syncing | paused | offline | attention | checking | stale | ok (in that order of precedence)."""
    if p.progress is not None and p.progress.files_total:
        return "syncing"
    if p.paused:
        return "paused"
    if p.fatal is not None or p.errors or p.conflicts or p.skipped or p.last_run_failed and p.offline_since is None:
        return "attention"
    if p.offline_since is not None:
        return "offline"
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


def overall(pairs: list[PairStatus], now: float, all_paused: bool) -> dict[str, Any]:
    """The one state shown in the header and the tray. Green ("ok") only when every pair is."""
    attention = sum(p.attention for p in pairs)
    states = {p.id: pair_state(p, now) for p in pairs}
    out: dict[str, Any] = {"attention": attention, "pairs": len(pairs)}
    if not pairs:
        return out | {"state": "empty", "label": "No folder pairs yet", "detail": "Add a folder pair to start."}
    syncing = [p for p in pairs if states[p.id] == "syncing"]
    if syncing:
        files_total = sum(p.progress.files_total for p in syncing if p.progress)
        files_done = sum(p.progress.files_done for p in syncing if p.progress)
        views = [p.progress.view() for p in syncing if p.progress]
        bytes_total = sum(v["bytes_total"] for v in views)
        bytes_done = sum(v["bytes_done"] for v in views)
        speed = sum(v["speed"] for v in views)
        eta = (bytes_total - bytes_done) / speed if speed > 0 else None
        detail = f"{human_size(bytes_done)} of {human_size(bytes_total)}"
        if speed > 0:
            detail += f" at {human_size(speed)}/s"
        if eta is not None and bytes_total > bytes_done:
            detail += f", about {_duration(eta)} left"
        if attention:
            detail += f" · {attention} need{'s' if attention == 1 else ''} attention"
        return out | {
            "state": "syncing",
            "label": f"Syncing {files_done} of {files_total} files",
            "detail": detail,
            "files_done": files_done, "files_total": files_total, "bytes_done": bytes_done,
            "bytes_total": bytes_total, "speed": speed, "eta": eta,
        }  # fmt: skip
    if attention or "attention" in states.values():
        n = max(attention, 1)
        return out | {"state": "attention", "label": f"Needs attention ({n})",
                      "detail": "See the items marked below."}  # fmt: skip
    offline = [p for p in pairs if states[p.id] == "offline"]
    if offline:
        since = min(p.offline_since or now for p in offline)
        retry = min((p.next_retry for p in offline if p.next_retry), default=None)
        detail = f"Server unreachable since {_clock(since)}"
        if retry:
            detail += f"; next try at {_clock(retry)}"
        return out | {"state": "offline", "label": f"Offline since {_clock(since)}", "detail": detail,
                      "since": since, "next_retry": retry}  # fmt: skip
    if all_paused or any(s == "paused" for s in states.values()):
        n = sum(1 for s in states.values() if s == "paused")
        detail = (
            "Nothing is synced until you resume." if n == len(pairs) else f"{n} of {len(pairs)} folder pairs paused."
        )
        return out | {"state": "paused", "label": "Paused", "detail": detail}
    stale = [p for p in pairs if states[p.id] == "stale"]
    if stale:
        oldest = min(p.last_check or 0 for p in stale)
        return out | {"state": "stale", "label": f"Not checked since {_clock(oldest)}",
                      "detail": "The last check is overdue; davsync keeps trying."}  # fmt: skip
    if any(s == "checking" for s in states.values()):
        return out | {"state": "checking", "label": "Checking…", "detail": "Looking for changes on the server."}
    last = min(p.last_check or 0 for p in pairs)
    return out | {"state": "ok", "label": "Up to date", "detail": f"Last checked at {_clock(last)}", "last_check": last}


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
            return {
                "version": self.version,
                "now": now,
                "all_paused": self.all_paused,
                "notice": self.notice,
                "overall": overall(pairs, now, self.all_paused),
                "pairs": [_pair_view(p, now) for p in pairs],
            }


def _pair_view(p: PairStatus, now: float) -> dict[str, Any]:
    return {
        "id": p.id,
        "url": p.url,
        "local": p.local,
        "mode": p.mode,
        "interval": p.interval,
        "paused": p.paused,
        "running": p.running,
        "state": pair_state(p, now),
        "progress": p.progress.view() if p.progress is not None and p.progress.files_total else None,
        "pair_paused": p.pair_paused,
        "last_check": p.last_check,
        "last_result": p.last_result,
        "counts": dict(p.counts),
        "offline_since": p.offline_since,
        "next_retry": p.next_retry,
        "fatal": p.fatal,
        "errors": list(p.errors),
        "conflicts": list(p.conflicts),
        "skipped": list(p.skipped),
        "attention": p.attention,
        "recent": list(reversed(p.recent))[:50],
    }
