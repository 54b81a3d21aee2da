"""A folder as a zip file, written while it is sent.

zipfile writes to any object with `write`; on a stream that cannot seek it puts each
entry's CRC and sizes in a data descriptor after the data, and switches to zip64 records
for an entry announced as large and for a central directory past 4 GiB. The sink below
hands each written piece to the response as soon as it exists: memory stays at one read
block, and nothing the size of the folder is ever written to disk.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any

from .listing import live_members

BLOCK = 1024 * 1024
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


class _Sink:
    """A write-only stream whose pieces are taken out by the generator that sends them."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def write(self, data: bytes) -> int:
        if data:
            self.pieces.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> list[bytes]:
        pieces, self.pieces = self.pieces, []
        return pieces


def members(folder: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(name inside the zip, resource) for every file and folder below `folder`, depth first,
    as the provider lists them (its hidden names and symlink rules apply)."""
    for name, res in sorted(live_members(folder), key=lambda m: m[0]):
        if res.is_collection:
            yield f"{prefix}{name}/", res
            yield from members(res, f"{prefix}{name}/")
        else:
            yield prefix + name, res


def _date_time(mtime: float | None) -> tuple[int, int, int, int, int, int]:
    if not mtime:
        return ZIP_EPOCH
    t = time.localtime(mtime)
    return max(ZIP_EPOCH, (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec))


def stream_zip(entries: Iterable[tuple[str, Any]]) -> Iterator[bytes]:
    """The zip of `entries`, piece by piece (stored, not deflated: a Pi's CPU is the bottleneck,
    and photos and videos do not shrink)."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, res in entries:
            info = zipfile.ZipInfo(name, date_time=_date_time(res.get_last_modified()))
            if res.is_collection:
                info.external_attr = 0o40755 << 16 | 0x10
                zf.writestr(info, b"")
            else:
                info.external_attr = 0o100644 << 16
                info.file_size = res.get_content_length() or 0  # announced: zip64 records when it is large
                try:
                    src = res.get_content()
                except OSError:
                    continue  # gone meanwhile
                with src, zf.open(info, "w") as dest:
                    while True:
                        block = src.read(BLOCK)
                        if not block:
                            break
                        dest.write(block)
                        yield from sink.take()
            yield from sink.take()
    yield from sink.take()
