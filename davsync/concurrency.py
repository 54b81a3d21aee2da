"""Running many small jobs on a thread pool without holding them all in memory at once."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def bounded(pool: Executor, fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[tuple[T, Future[R]]]:
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
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                item = pending.pop(fut)
                yield item, fut
                nxt = next(it, _END)
                if nxt is not _END:
                    pending[pool.submit(fn, nxt)] = nxt  # type: ignore[arg-type]
    finally:
        for fut in pending:
            fut.cancel()


_END = object()
