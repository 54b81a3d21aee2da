"""The full listing: Depth-1 PROPFIND folder by folder, several in flight."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..concurrency import wait_first
from . import retry
from .paths import Skipped
from .plan import RemoteEntry
from .remote import FolderListing, Remote
from .transport import RemoteError


def list_with_retries(remote: Remote, folder: str, href: str = "") -> FolderListing:
    """A folder's listing, retrying transient failures (resets, timeouts, 50x) with the one policy.
    `href` is the server's own spelling of the folder (it may differ from the NFC path)."""
    return retry.call(lambda: remote.list_folder(folder, href), retry.LISTING, getattr(remote, "outage", None))


@dataclass
class Listing:
    entries: dict[str, RemoteEntry] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # folder -> error
    skipped: list[Skipped] = field(default_factory=list)
    folders_listed: int = 0


def walk(
    remote: Remote,
    *,
    jobs: int,
    excluded: Callable[[str, bool], bool] = lambda path, is_dir: False,
    start: str = "",
) -> Listing:
    """List everything below `start`. A folder that fails to list is recorded, not fatal,
    unless the failure is fatal (auth, TLS), which is raised."""
    result = Listing()
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="davsync-list") as pool:
        pending: dict[Future[FolderListing], str] = {pool.submit(list_with_retries, remote, start): start}
        while pending:
            try:
                done = wait_first(pending)
            except BaseException:  # Ctrl-C: drop what has not started
                for other in pending:
                    other.cancel()
                raise
            for fut in done:
                folder = pending.pop(fut)
                try:
                    listing = fut.result()
                except RemoteError as e:
                    if e.fatal:
                        for other in pending:
                            other.cancel()
                        raise
                    result.failed[folder] = str(e)
                    continue
                result.folders_listed += 1
                result.skipped += listing.skipped
                for entry in listing.entries:
                    if excluded(entry.path, entry.is_dir):
                        continue
                    result.entries[entry.path] = entry
                    if entry.is_dir:
                        pending[pool.submit(list_with_retries, remote, entry.path, entry.href)] = entry.path
    return result
