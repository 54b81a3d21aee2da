"""Several byte ranges in one GET answer: RFC 9110 14.6 `multipart/byteranges`.

WsgiDAV (4.4) answers only the first range of a multi-range request. Delta pulls
(client/delta.py) and zsync-style clients ask for the blocks they lack in one request, so
davsync's own GET path (fastget.py) answers them here: 206 with one part per range, an
exact Content-Length (the connection stays open), the parts read from the open file in
order. Ranges must be satisfiable, ascending and not overlapping (RFC 9110 lets a server
refuse or coalesce others; those go to WsgiDAV, which answers the first range), and at
most MAX_RANGES.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any

MAX_RANGES = 1000
READ = 1024 * 1024


def parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """[(start, end inclusive)] of a `bytes=a-b,c-d` header, or None when it is not a list of
    satisfiable, ascending, non-overlapping ranges."""
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or size == 0:
        return None
    out: list[tuple[int, int]] = []
    for item in spec.split(","):
        first, dash, last = item.strip().partition("-")
        if not dash or not first.isdigit() or not (last.isdigit() or last == ""):
            return None  # (suffix ranges `-n` are left to WsgiDAV)
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if start >= size or start > end or (out and start <= out[-1][1]):
            return None
        out.append((start, end))
        if len(out) > MAX_RANGES:
            return None
    return out if len(out) > 1 else None


def serve(
    start_response: Callable[..., Any], fd: int, size: int, ranges: list[tuple[int, int]], content_type: str,
    headers: list[tuple[str, str]],
) -> Iterator[bytes]:
    """Answer 206 multipart/byteranges for `ranges` of the open file `fd` (closed at the end)."""
    boundary = secrets.token_hex(16)
    heads = [(f"\r\n--{boundary}\r\nContent-Type: {content_type}\r\n"
              f"Content-Range: bytes {s}-{e}/{size}\r\n\r\n").encode("latin-1") for s, e in ranges]  # fmt: skip
    tail = f"\r\n--{boundary}--\r\n".encode("latin-1")
    length = sum(len(h) for h in heads) + sum(e - s + 1 for s, e in ranges) + len(tail)
    start_response("206 Partial Content", [
        ("Content-Type", f"multipart/byteranges; boundary={boundary}"), ("Content-Length", str(length)), *headers,
    ])  # fmt: skip
    return _parts(fd, ranges, heads, tail)


def _parts(fd: int, ranges: list[tuple[int, int]], heads: list[bytes], tail: bytes) -> Iterator[bytes]:
    try:
        for (start, end), head in zip(ranges, heads, strict=True):
            yield head
            pos = start
            while pos <= end:
                chunk = os.pread(fd, min(READ, end + 1 - pos), pos)
                if not chunk:
                    return  # the file shrank meanwhile: the answer ends short, and the client sees it cut
                yield chunk
                pos += len(chunk)
        yield tail
    finally:
        os.close(fd)
