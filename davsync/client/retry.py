"""One retry policy for listing and transfers: exponential backoff with an injectable sleep.

Listings, downloads and uploads retry the same failures (a connection lost or refused, a
timeout, a gateway or overload answer) the same way. The policies are looked up when a retry
loop starts, so a caller (or a test) can replace them, e.g. with a sleep that does not wait.

A server that stops answering altogether is told apart from one request's accident by `Outage`,
one per connection: failures with no answer in between, on different requests, share one
backoff (the run's budget, not one per file), and when it is spent the run ends (`ServerGone`)
instead of trying each remaining file in turn.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .transport import RemoteError

_T = TypeVar("_T")


@dataclass(frozen=True)
class Backoff:
    retries: int  # attempts after the first one
    base: float = 0.25  # seconds before the first retry; doubles each time
    cap: float = 8.0
    sleep: Callable[[float], object] = field(default=time.sleep, compare=False)

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        return min(self.cap, self.base * 2 ** (retry - 1))

    def wait(self, retry: int) -> None:
        self.sleep(self.delay(retry))


LISTING = Backoff(retries=3)
TRANSFER = Backoff(retries=5, base=0.5)  # also the run's shared budget while the server is away (Outage)

# Answers that go away by themselves: a server error, a gateway's, an overloaded server's.
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})


def transient_status(status: int) -> bool:
    return status in TRANSIENT_STATUSES


def transient(e: RemoteError) -> bool:
    """Worth another attempt: a network failure (no status) or a transient answer. Fatal errors
    (login, TLS) and the subclasses (412, 403, 507, ...) are answers, not accidents."""
    return type(e) is RemoteError and not e.fatal and (e.status is None or transient_status(e.status))


class ServerGone(RemoteError):
    """The server stopped answering any request: the run ends here, keeping what it did."""

    def __init__(self, message: str) -> None:
        super().__init__(message, fatal=True)


class Outage:
    """Does the server still answer? One per connection, told about every request (Transport).

    A failure with no answer (refused, timed out, reset, cut off) followed by any answer was one
    request's accident: its retries wait by its own policy. While nothing answers, every retry
    of every file waits in one shared round of `TRANSFER`'s backoff; when its rounds are spent and
    the failures span more than one request, the server is gone: `ServerGone`, for every caller.
    When they all hit one request (one big download), `probe` asks the server something else
    once: no answer there either means the server is gone, not that one file fails."""

    def __init__(self, where: str = "the share", probe: Callable[[], object] | None = None) -> None:
        self.where = where  # host:port, for the message
        self.probe = probe  # one cheap request, no retry (its failure reaches no_answer as usual)
        self._cond = threading.Condition()
        self.reset()

    def reset(self) -> None:
        """A new run starts with a clean slate (watch keeps one connection across runs)."""
        with self._cond:
            self._failures = 0  # failures with no answer since
            self._keys: set[str] = set()  # the requests they hit
            self._last = ""
            self._rounds = 0  # shared backoff rounds waited since the last answer
            self._waiting = False  # a round is being waited out
            self._gone: str | None = None
            self._cond.notify_all()

    def answered(self) -> None:
        """The server answered a request (any status): it is there."""
        if self._failures:  # (unlocked read: the common case costs nothing)
            with self._cond:
                self._failures, self._rounds = 0, 0
                self._keys.clear()

    def no_answer(self, key: str, message: str) -> None:
        """A request to `key` got no answer at all; `message` says how (a few words)."""
        with self._cond:
            self._failures += 1
            self._keys.add(key)
            self._last = message

    def retry_after(self, attempt: int, backoff: Backoff) -> bool:
        """After attempt `attempt` (0: the first) failed transiently: wait and return True to try
        again, or False when this request has had its `backoff.retries`. Raises ServerGone when
        the server has not answered through the whole shared budget."""
        budget = TRANSFER
        with self._cond:
            self._check()
            if not self._failures:  # the server answers (a 5xx, or other requests got through)
                if attempt >= backoff.retries:
                    return False
                delay, sleep, shared = backoff.delay(attempt + 1), backoff.sleep, False
            elif self._waiting:  # join the round under way: one backoff for everyone
                while self._waiting:
                    self._cond.wait()
                self._check()
                return attempt < backoff.retries
            else:
                if attempt >= backoff.retries and len(self._keys) == 1 and self.probe is not None:
                    # This request's retries are spent: is it the request, or the server?
                    try:
                        self.probe()  # the condition's lock is reentrant: no_answer/answered may run here
                    except RemoteError:
                        pass
                    if self._failures and len(self._keys) > 1:
                        self._declare_gone()
                if self._rounds >= budget.retries and len(self._keys) > 1:
                    self._declare_gone()
                if attempt >= backoff.retries:
                    return False
                self._rounds += 1
                self._waiting = True
                delay, sleep, shared = budget.delay(self._rounds), budget.sleep, True
        try:
            sleep(delay)
        finally:
            if shared:
                with self._cond:
                    self._waiting = False
                    self._cond.notify_all()
        with self._cond:
            self._check()
        return True

    def _declare_gone(self) -> None:
        """(With the lock held.) Every caller gets ServerGone from now on, this one first."""
        why = f" ({self._last})" if self._last else ""
        self._gone = (
            f"the server at {self.where} stopped answering{why}; what was done so far is kept: "
            "run again when it is back."
        )
        self._cond.notify_all()
        self._check()

    def give_up(self, message: str) -> None:
        """End the run for every caller now (a server too slow to wait for): raises ServerGone."""
        with self._cond:
            if self._gone is None:
                self._gone = message
            self._cond.notify_all()
            self._check()

    @property
    def gone(self) -> str | None:
        return self._gone

    def check(self) -> None:
        """Raise ServerGone once the server is known to be gone (before any new attempt)."""
        with self._cond:
            self._check()

    def _check(self) -> None:
        if self._gone is not None:
            raise ServerGone(self._gone)


def retry_after(outage: Outage | None, attempt: int, backoff: Backoff | None) -> bool:
    """Wait before another attempt after a transient failure (see Outage.retry_after); without
    an Outage, by `backoff` alone. False: no attempts left."""
    if outage is not None:
        outage.check()
    if backoff is None:
        return False
    if outage is not None:
        return outage.retry_after(attempt, backoff)
    if attempt >= backoff.retries:
        return False
    backoff.wait(attempt + 1)
    return True


def call(once: Callable[[], _T], backoff: Backoff | None, outage: Outage | None = None) -> _T:
    """`once()`, again after each transient failure as `backoff` (and the connection's `outage`)
    allows (None: only once)."""
    attempt = 0
    while True:
        try:
            return once()
        except RemoteError as e:
            if not transient(e) or not retry_after(outage, attempt, backoff):
                raise
        attempt += 1
