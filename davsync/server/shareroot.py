"""The server knows its root: an identity marker in the share, as Syncthing's `.stfolder`.

A Pi's USB disk can be away when the server starts (mounted late after a reboot, unplugged):
its mount point is an empty folder that lists fine. Scanned, it would turn every index row into
a deletion, which clients then apply to their copies. So the first serve writes a marker naming
the share into its root, and the index remembers that name:

- a root without the marker, once the index knows a share, is refused: the disk looks unmounted;
- a root with another share's marker is another share: the index starts over under a new
  instance, so every client's sync token is refused and the client does a union (deletes nothing);
- while serving, the marker vanishing (the disk pulled) stops every request with 503 and stops
  the rescans from recording deletions, until it is back.

Until the first scan after start-up is complete, listings answer 503 with Retry-After too: the
index is half built, and a partial tree must never look like files deleted.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from ..osfs import fsync_dir
from .index import HashIndex
from .names import SHARE_MARKER, TEMP_PREFIX
from .wsgitypes import StartResponse, WsgiApp

log = logging.getLogger("davsync.server")

HEADER = "davsync-share "
RETRY_AFTER_SCAN = 5  # seconds a client is asked to wait while the first scan runs
RETRY_AFTER_GONE = 30  # ... and while the share's disk is away


class RootRefused(Exception):
    """The root is not the share the state dir knows; the message says what to do."""


def read_marker(root: Path) -> str | None:
    """The share identity written in the root, or None when there is no marker."""
    try:
        text = (root / SHARE_MARKER).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    first = text.splitlines()[0] if text else ""
    return first[len(HEADER) :].strip() if first.startswith(HEADER) else first.strip() or "damaged"


def write_marker(root: Path, share_id: str) -> None:
    """Durably: the marker is what tells this disk from an empty mount point after a power cut."""
    text = (
        f"{HEADER}{share_id}\n"
        "davsync serves this folder. This file tells the server that its disk is mounted; keep it.\n"
    )
    tmp = root / f"{TEMP_PREFIX}share.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, root / SHARE_MARKER)
    fsync_dir(root)


def _mark(root: Path) -> str | None:
    share_id = uuid.uuid4().hex
    try:
        write_marker(root, share_id)
    except OSError as e:
        log.warning("Cannot write the share marker into %s (%s): served without it, so an unmounted disk "
                    "cannot be told from an empty share here.", root, e.strerror or e)  # fmt: skip
        return None
    return share_id


def _empty(root: Path) -> bool:
    try:
        with os.scandir(root) as it:
            return next(it, None) is None
    except OSError:
        return True


def claim_root(root: Path, index: HashIndex, *, new_share: bool = False) -> str | None:
    """Check (or on the first serve, mark) the root before anything reads it; the share's identity,
    or None for a root the server cannot write (a read-only disk: served without a marker).

    Raises RootRefused for a root without its marker once the index knows a share (or, for an
    index from before markers, a completely empty root under an index that lists files)."""
    found = read_marker(root)
    known = index.share_id
    if new_share and found in (None, known):
        found = _mark(root)
    if found is None:
        if known is not None or (index.has_files() and _empty(root)):
            raise RootRefused(
                f"{root} does not hold this share (its {SHARE_MARKER} marker is missing): the disk looks "
                "unmounted; mount it and start again (if this is really a new, empty share, add --new-share)."
            )
        found = _mark(root)
        if found is None:
            return None
        index.claim(found)
    elif known is None:
        index.claim(found)
    elif found != known:
        log.warning("%s holds another share than the state dir knew: clients will see a new server.", root)
        index.start_over(found)
    return found


class RootGuard:
    """Is the share's disk still there (one stat), and has the first scan after start-up ended?"""

    def __init__(self, root: Path, share_id: str | None) -> None:
        self.root = root
        self.share_id = share_id
        self.marker = str(root / SHARE_MARKER)
        self.scanned = threading.Event()  # set by the change tracker when its first scan is complete
        self.on_return: Callable[[], None] | None = None  # the tracker reads the root again
        self._warned = False

    def present(self) -> bool:
        if self.share_id is None:  # a root the server could not mark (read-only)
            return True
        here = os.path.isfile(self.marker)
        if not here and not self._warned:
            self._warned = True
            log.error("The share's marker %s is gone: the disk looks unmounted; nothing is served or "
                      "recorded as deleted until it is back.", self.marker)  # fmt: skip
        elif here and self._warned:
            # Back (remounted, maybe changed elsewhere meanwhile): read it all again before
            # anything is listed from the index, as after a start.
            self._warned = False
            self.scanned.clear()
            if self.on_return is not None:
                self.on_return()
        return here

    def intact(self) -> bool:
        """The marker is there and names this share (before a rescan may record deletions)."""
        return self.share_id is None or (read_marker(self.root) == self.share_id and self.present())


class RootGate:
    """503 + Retry-After while the disk is away (every request), and for listings and REPORTs
    until the first scan is complete, with a plain sentence a client can show. OPTIONS still
    answers: clients probe with it."""

    def __init__(self, app: WsgiApp, guard: RootGuard) -> None:
        self.app = app
        self.guard = guard

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if method != "OPTIONS" and not self.guard.present():
            return _unavailable(start_response, GONE, RETRY_AFTER_GONE)
        if not self.guard.scanned.is_set() and (
            method == "REPORT" or (method == "PROPFIND" and environ.get("HTTP_DEPTH", "infinity") != "0")
        ):  # listings and the change feed (changefeed.py checks too), and bundles: clients list first
            return _unavailable(start_response, SCANNING, RETRY_AFTER_SCAN)
        return self.app(environ, start_response)


def _unavailable(start_response: StartResponse, message: str, retry_after: int) -> list[bytes]:
    body = (message + "\n").encode()
    start_response("503 Service Unavailable", [
        ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
        ("Retry-After", str(retry_after)),
    ])  # fmt: skip
    return [body]


GONE = "The share's disk is not mounted on the server; try again when it is back."
SCANNING = "The server is still reading its share after starting; listings wait until it has seen all of it."
