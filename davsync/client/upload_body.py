"""A local file as an upload's body: read in blocks, hashed and counted as it is sent, never
longer than the file was when it was opened, and stoppable between blocks."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

from .deadline import WATCHDOG
from .paths import shown
from .refusals import SourceChanged
from .transport import Stopped

UPLOAD_BLOCK = 256 * 1024

class SourceFailed(Exception):
    """Raised inside the request body so that urllib3 does not take it for a network error
    (it treats any OSError that way); the real failure is in `UploadBody.failure`."""


class UploadBody:
    """A local file as a PUT body: read in blocks, hashed and counted as it is sent.

    Never longer than the file was at opening (a file growing meanwhile is cut there, and its
    MD5 tells); a file that shrinks fails the request rather than leave the server waiting.
    """

    def __init__(
        self,
        source: Path,
        path: str,
        progress: Callable[[int], None] | None,
        stop: threading.Event | None,
        start: int = 0,
        hashing: bool = True,
        before: hashlib._Hash | None = None,
    ) -> None:
        """`start`: the file from this offset on (a resumed upload's rest, client/resume.py);
        `hashing` False: no MD5 of what is sent (the server checks the whole file's itself);
        `before`: the MD5 of the bytes before `start`, continued (the whole file's MD5 in one pass)."""
        self._file = open(source, "rb")  # closed by __exit__
        self._size = os.fstat(self._file.fileno()).st_size
        self._start = start
        self._file.seek(start)
        self._path = path
        self._progress = progress
        self._stop = stop
        self.sent = start
        self._hashing = hashing
        self._before = before.copy() if before is not None else hashlib.md5()
        self.digest = self._before.copy()
        self.failure: BaseException | None = None

    def __len__(self) -> int:
        return self._size - self._start

    def __iter__(self) -> Iterator[bytes]:
        while self.sent < self._size:
            if self._stop is not None and self._stop.is_set():
                self._fail(Stopped(f"stopped while uploading {shown(self._path)}; nothing was replaced."))
            try:
                block = self._file.read(min(UPLOAD_BLOCK, self._size - self.sent))
            except OSError as e:
                self._fail(e)
            if not block:
                self._fail(SourceChanged(
                    f"{shown(self._path)} got shorter while it was being uploaded; nothing was replaced.",
                    sent_md5=self.digest.hexdigest(),
                ))  # fmt: skip
            if self._hashing:
                self.digest.update(block)
            self.sent += len(block)
            if self._progress is not None:
                self._progress(len(block))
            WATCHDOG.progress()  # the block before this one went out: the stall deadline starts again
            yield block

    def tell(self) -> int:
        return self.sent - self._start

    def seek(self, offset: int, whence: int = 0) -> int:
        """Start over: a login answered with a Digest challenge (or a stale nonce) is sent again,
        and requests rewinds the body through this; without it the retry would send no bytes."""
        if (offset, whence) != (0, 0):
            raise OSError("an upload body can only start over from the beginning")
        self._file.seek(self._start)
        self.sent = self._start
        self.digest = self._before.copy()
        return 0

    def _fail(self, failure: BaseException) -> NoReturn:
        self.failure = failure
        raise SourceFailed()

    def __enter__(self) -> UploadBody:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()
