"""Running many small jobs on a thread pool without holding them all in memory at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Before Python 3.14, Ctrl-C cannot interrupt a wait without a timeout on Windows; every
# wait here is cut into slices this long so KeyboardInterrupt arrives promptly.
SLICE = 0.25


def sliced_wait(event: threading.Event, timeout: float | None = None) -> bool:
    """Event.wait that Ctrl-C can interrupt on every platform."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SLICE if deadline is None else min(SLICE, deadline - time.monotonic())
        if left <= 0:
            return event.is_set()
        if event.wait(left):
            return True


def wait_first(pending: Iterable[Future[R]]) -> set[Future[R]]:
    """The futures that are done, waiting (interruptibly) until at least one is."""
    while True:
        done, _ = wait(pending, timeout=SLICE, return_when=FIRST_COMPLETED)
        if done:
            return done


def bounded(pool: Executor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Generator[tuple[T, Future[R]]]:
    """Yield (item, finished future) as jobs complete, with at most `window` submitted at a time.

    Submitting 100,000 jobs at once would keep 100,000 futures alive; this keeps `window`.
    Closing the generator early cancels what is still queued.
    """
    it = iter(items)
    pending: dict[Future[R], T] = {}
    try:
        for item in it:
            pending[pool.submit(fn, item)] = item
            if len(pending) >= window:
                break
        while pending:
            for fut in wait_first(pending):
                item = pending.pop(fut)
                yield item, fut
                for nxt in it:
                    pending[pool.submit(fn, nxt)] = nxt
                    break
    finally:
        for fut in pending:
            fut.cancel()


def batches(items: Iterable[T], size_of: Callable[[T], int], *, max_items: int, max_bytes: int) -> Iterator[list[T]]:
    """Consecutive runs of `items`, each at most `max_items` long and `max_bytes` in total by
    `size_of` (an item larger than that goes alone): the requests of a bundle or bulk upload."""
    batch: list[T] = []
    size = 0
    for item in items:
        n = size_of(item)
        if batch and (len(batch) >= max_items or size + n > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += n
    if batch:
        yield batch
