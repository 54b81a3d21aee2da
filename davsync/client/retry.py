"""One retry policy for listing and transfers: exponential backoff with an injectable sleep.

Both retry transient failures (resets, timeouts, 5xx) the same way; the sleep is a field so a
caller (or a test) can replace real waiting, e.g. with an event's wait to stop early.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


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
