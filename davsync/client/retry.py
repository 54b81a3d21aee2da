"""One retry policy for listing and transfers: exponential backoff with an injectable sleep.

Listings, downloads and uploads retry the same failures (a connection lost or refused, a
timeout, a gateway or overload answer) the same way. The policies are looked up when a retry
loop starts, so a caller (or a test) can replace them, e.g. with a sleep that does not wait.
"""

from __future__ import annotations

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
TRANSFER = Backoff(retries=5, base=0.5)

# Answers that go away by themselves: a server error, a gateway's, an overloaded server's.
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})


def transient_status(status: int) -> bool:
    return status in TRANSIENT_STATUSES


def transient(e: RemoteError) -> bool:
    """Worth another attempt: a network failure (no status) or a transient answer. Fatal errors
    (login, TLS) and the subclasses (412, 403, 507, ...) are answers, not accidents."""
    return type(e) is RemoteError and not e.fatal and (e.status is None or transient_status(e.status))


def call(once: Callable[[], _T], backoff: Backoff | None) -> _T:
    """`once()`, again after each transient failure as `backoff` allows (None: only once)."""
    retries = backoff.retries if backoff is not None else 0
    for attempt in range(retries + 1):
        if attempt and backoff is not None:
            backoff.wait(attempt)
        try:
            return once()
        except RemoteError as e:
            if not transient(e) or attempt == retries:
                raise
    raise AssertionError("unreachable")
