"""A streaming tar (POSIX pax) writer and reader for davsync's bundle and bulk-upload bodies.

Every member is a pax extended header followed by one regular-file entry. The pax header
carries the real path (UTF-8, any length), the size and mtime, and davsync's own keys,
spelled `DAVSYNC.<key>` as POSIX reserves vendor names: `DAVSYNC.md5`, `DAVSYNC.etag`,
`DAVSYNC.status` (an HTTP status: 200, or why this member has no content),
`DAVSYNC.error`, `DAVSYNC.if-match`, `DAVSYNC.if-none-match`. GNU tar, bsdtar and Python's
tarfile read these streams; the reader here reads what they write.

The reader is strict and bounded (a peer may be hostile): header checksums must match, a pax
header is at most MAX_PAX bytes, only pax headers and regular files are accepted, and the
data of a member is handed over only up to the caller's limit. A stream that ends before its
end-of-archive blocks raises CutStream: whatever came before it was complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

BLOCK = 512
MAX_PAX = 64 * 1024
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)
_USTAR_SIZE_MAX = 8**11 - 1  # what 11 octal digits hold; larger sizes live in the pax header only


class TarFormatError(Exception):
    """The stream is not a well-formed pax archive (or not one davsync accepts)."""


class CutStream(TarFormatError):
    """The stream ended in the middle of a member or before the end-of-archive blocks."""


@dataclass
class Member:
    path: str
    size: int
    mtime: float | None
    attrs: dict[str, str] = field(default_factory=dict)  # the DAVSYNC.* keys, without the prefix

    @property
    def status(self) -> int:
        try:
            return int(self.attrs.get("status", "200"))
        except ValueError:
            return 0


# --- writing ---------------------------------------------------------------------------


def _record(key: str, value: str) -> bytes:
    payload = f" {key}={value}\n".encode("utf-8", "surrogateescape")
    n = len(payload) + len(str(len(payload)))
    if len(str(n)) + len(payload) != n:
        n += 1
    return str(n).encode() + payload


_MODE_IDS = b"0000644\0" + b"0000000\0" + b"0000000\0"  # mode, uid, gid
_TAIL = (b"\0" * 100 + b"ustar\x0000").ljust(BLOCK - 157, b"\0")  # linkname, magic, version, the rest
_TAIL_SUM = sum(_TAIL) + 8 * 32  # the checksum field counts as spaces


def _ustar(name: bytes, size: int, mtime: int, typeflag: bytes) -> bytes:
    head = name.ljust(100, b"\0") + _MODE_IDS
    numbers = b"%011o\0%011o\0" % (min(size, _USTAR_SIZE_MAX), max(0, min(mtime, 8**11 - 1)))
    checksum = sum(head) + sum(numbers) + typeflag[0] + _TAIL_SUM
    return head + numbers + b"%06o\0 " % checksum + typeflag + _TAIL


def _padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def member_header(path: str, size: int, mtime: float | None = None, **attrs: str) -> bytes:
    """The bytes that precede a member's data: a pax header (path, size, mtime, DAVSYNC.*) and
    the regular-file entry. Follow with exactly `size` bytes of data, then `padding(size)`."""
    records = [_record("path", path)]
    if size > _USTAR_SIZE_MAX:
        records.append(_record("size", str(size)))
    if mtime is not None:
        records.append(_record("mtime", str(int(mtime)) if mtime == int(mtime) else repr(mtime)))
    for key, value in attrs.items():
        records.append(_record("DAVSYNC." + key.replace("_", "-"), value))
    pax = b"".join(records)
    ascii_name = path.encode("ascii", "replace")[-99:]
    when = int(mtime or 0)
    pax_entry = _ustar(b"././@PaxHeader", len(pax), when, b"x")
    return pax_entry + pax + _padding(len(pax)) + _ustar(ascii_name, size, when, b"0")


def padding(size: int) -> bytes:
    return _padding(size)


def member_bytes(path: str, data: bytes, mtime: float | None = None, **attrs: str) -> bytes:
    """A whole member (header, data, padding): for small files."""
    return member_header(path, len(data), mtime, **attrs) + data + _padding(len(data))


# --- reading ---------------------------------------------------------------------------


def _parse_octal(field_bytes: bytes, what: str) -> int:
    if field_bytes[:1] and field_bytes[0] & 0x80:  # GNU base-256 for large numbers
        value = int.from_bytes(field_bytes[1:], "big")
        return value
    text = field_bytes.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise TarFormatError(f"the {what} field of a tar header is not a number") from None


def _checksum_ok(header: bytes) -> bool:
    stored = _parse_octal(header[148:156], "checksum")
    computed = sum(header[:148]) + 8 * 32 + sum(header[156:])
    return stored == computed


def _parse_pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise TarFormatError("a pax record has no length")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarFormatError("a pax record's length is not a number") from None
        end = pos + length
        if length < 5 or end > len(data) or data[end - 1 : end] != b"\n":
            raise TarFormatError("a pax record's length does not fit its header")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise TarFormatError("a pax record has no '='")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return out


class PaxReader:
    """Reads members one at a time from `read(n)` (which returns up to n bytes, b"" at the end)."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._pending = 0  # data (plus padding) of the current member not yet consumed
        self.ended = False

    def _exact(self, n: int) -> bytes:
        chunks: list[bytes] = []
        left = n
        while left:
            chunk = self._read(left)
            if not chunk:
                raise CutStream(f"the stream ended {left} bytes short of a complete member")
            chunks.append(chunk)
            left -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _skip(self, n: int) -> None:
        while n:
            step = min(n, 1024 * 1024)
            self._exact(step)
            n -= step

    def next(self) -> Member | None:
        """The next member's header, or None at the end of the archive. The previous member's
        data is skipped if the caller did not read it."""
        if self.ended:
            return None
        if self._pending:
            self._skip(self._pending)
            self._pending = 0
        pax: dict[str, str] = {}
        header = self._exact(BLOCK)
        if header == b"\0" * BLOCK:
            if self._exact(BLOCK) != b"\0" * BLOCK:
                raise TarFormatError("a zero block is not followed by the second end-of-archive block")
            self.ended = True
            return None
        if not _checksum_ok(header):
            raise TarFormatError("a tar header's checksum does not match")
        typeflag = header[156:157]
        if typeflag == b"x":
            size = _parse_octal(header[124:136], "size")
            if size > MAX_PAX:
                raise TarFormatError(f"a pax header of {size} bytes is larger than {MAX_PAX}")
            pax = _parse_pax(self._exact(size + len(_padding(size)))[:size])
            header = self._exact(BLOCK)
            if not _checksum_ok(header):
                raise TarFormatError("a tar header's checksum does not match")
            typeflag = header[156:157]
        if typeflag not in (b"0", b"\0"):
            raise TarFormatError(f"member type {typeflag!r} is not a regular file")
        size = _parse_octal(header[124:136], "size")
        if "size" in pax:
            try:
                size = int(pax["size"])
            except ValueError:
                raise TarFormatError("a pax size is not a number") from None
        if size < 0:
            raise TarFormatError("a member's size is negative")
        path = pax.get("path")
        if path is None:
            name, prefix = header[0:100].split(b"\0", 1)[0], header[345:500].split(b"\0", 1)[0]
            path = ((prefix + b"/" if prefix else b"") + name).decode("utf-8", "surrogateescape")
        mtime: float | None
        try:
            mtime = float(pax["mtime"]) if "mtime" in pax else float(_parse_octal(header[136:148], "mtime"))
        except ValueError:
            raise TarFormatError("a pax mtime is not a number") from None
        attrs = {k[8:]: v for k, v in pax.items() if k.startswith("DAVSYNC.")}
        self._pending = size + len(_padding(size))
        return Member(path, size, mtime, attrs)

    def data(self, member: Member, limit: int) -> bytes | None:
        """The current member's data, or None (and skipped) when it is larger than `limit`."""
        if member.size > limit:
            return None
        body = self._exact(self._pending)
        self._pending = 0
        return body[: member.size]

    def data_into(self, member: Member, write: Callable[[bytes], object], block: int = 256 * 1024) -> None:
        """Stream the current member's data into `write`, block by block (large members)."""
        left = member.size
        while left:
            chunk = self._exact(min(block, left))
            write(chunk)
            left -= len(chunk)
        self._exact(self._pending - member.size)
        self._pending = 0
