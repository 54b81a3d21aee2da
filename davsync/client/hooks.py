"""What a transfer reports to and is stopped by: one object the executor hands whole to the
server side's downloads and uploads, so no signature along the way repeats the three of them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


def _ignore(n: int) -> None:
    return None


@dataclass(frozen=True)
class TransferHooks:
    progress: Callable[[int], None] = _ignore  # bytes moved since the last call
    stop: threading.Event | None = None  # set: the transfer gives up at its next block
    note: Callable[[str], None] | None = None  # a line for the user, such as a resumed upload
