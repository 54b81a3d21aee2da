"""Delta transfers of big files: fetch only the blocks a local copy lacks; send only new bytes.

For a file the server changed while the local copy is still the last synced version, from a
server that publishes block hashes (server/blocks.py, `GET <file>?blocks`): the local file is
hashed block by block (SHA-256, the server's block size), every server block found anywhere
in it is reused, and the rest is fetched with multi-range GETs (multipart/byteranges). The
new file is assembled in DEST/.davsync/partial/, its whole-file MD5 checked against the
server's, and handed to the ordinary placement (transfer.place). Whenever delta would not
pay (more than half the file changed, a small file) or cannot be trusted (the server lacks
the extension, answers one range for several, the file changes meanwhile, the MD5
differs), it returns None and the caller downloads the whole file as before.

Delta push (`push`) is the other way: for an edit of a big file based on the server's current
version (If-Match), the server's block list of that version is fetched, and the new file is
sent as references to its blocks plus the bytes it lacks (server/deltapush.py); the server
assembles, checks the MD5 and commits as a PUT. Anything else: the caller sends the file whole.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import osfs
from ..checksums import md5_checksum
from . import blockmemo
from .bundle import features
from .plan import RemoteEntry
from .refusals import not_held, write_error
from .remote import Remote, Uploaded, quoted_etag
from .transfer import Downloaded, _discard, _partial_paths, _Pipeline
from .transport import RemoteError

MIN_SIZE = blockmemo.MIN_SIZE  # smaller files are fetched whole: the block list would not pay
MAX_SHARE = 0.5  # more than this part of the file to fetch: fetch it whole
RANGES_PER_REQUEST = 200  # keeps the Range header a few kB
READ = 1024 * 1024


class _NoDelta(Exception):
    """Delta does not apply here after all; the whole file is fetched instead."""


def download(
    remote: Remote,
    entry: RemoteEntry,
    base: Path,
    state_dir: Path,
    *,
    progress: Callable[[int], None] = lambda n: None,
    stop: threading.Event | None = None,
) -> Downloaded | None:
    """The new version of `entry` built from the local `base` plus the blocks it lacks, verified;
    None when the whole file should be fetched instead."""
    if entry.size is None or entry.size < MIN_SIZE or not entry.md5 or not features(remote).blocks:
        return None
    out_path = _partial_paths(state_dir, entry.path)[0].with_suffix(".delta")
    try:
        got = _delta(remote, entry, osfs.extended_path(base), out_path, _cache_path(state_dir, entry.path), progress,
                     stop)  # fmt: skip
    except (_NoDelta, RemoteError, OSError):
        _discard(out_path)
        return None
    return got


def _delta(
    remote: Remote, entry: RemoteEntry, base: Path, out_path: Path, cache: Path, progress: Callable[[int], None],
    stop: threading.Event | None,
) -> Downloaded:
    size = entry.size
    assert size is not None
    url = remote.url_for(entry.path, href=entry.href)
    info = _block_list(remote, url, entry)
    block = int(info["block_size"])
    wanted: list[str] = info["blocks"]
    if block <= 0 or len(wanted) != -(-size // block):
        raise _NoDelta("a block list that does not fit the file")
    known = _cached(cache, base, block)  # the local file's blocks, kept from when it was placed
    have, in_place = _where(known, block, wanted) if known is not None else _local_blocks(base, block, wanted)
    missing = [i for i, h in enumerate(wanted) if h not in have]
    missing_bytes = sum(min(block, size - i * block) for i in missing)
    if missing_bytes > size * MAX_SHARE:
        raise _NoDelta("most of the file changed")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fetched = 0
    runs = _runs(missing, block, size)
    packed = _packed_offsets(runs)
    got_path = out_path.with_suffix(".ranges")
    try:
        # The fetched blocks go packed into a side file (no holes: NTFS would fill them with
        # zeros), then the new version is written once, in order, through the download's
        # pipeline: this thread reads base and fetched pieces into its buffers while its threads
        # write them (around the page cache) and MD5 them. One read of the base, one write.
        with open(got_path, "w+b", buffering=0) as got:
            for i in range(0, len(runs), RANGES_PER_REQUEST):
                if stop is not None and stop.is_set():
                    raise _NoDelta("stopped")
                fetched += _fetch(remote, url, info["etag"], runs[i : i + RANGES_PER_REQUEST], got, packed,
                                  progress)  # fmt: skip
            digest = hashlib.md5()
            open(out_path, "wb").close()  # emptied, then appended to (the pipeline's writer appends)
            with open(base, "rb", buffering=0) as src, open(out_path, "ab", buffering=0) as out:
                with _Pipeline(digest, out.fileno(), out_path, 0) as pipe:
                    _assemble(pipe, _pieces(wanted, have, in_place, block, size, packed, src, got), progress, stop)
    finally:
        _discard(got_path)
    if digest.hexdigest() != entry.md5:  # (also a local file that changed since its blocks were hashed)
        raise _NoDelta("the assembled file's MD5 is not the server's")
    return Downloaded(out_path, entry.md5, size, fetched, 0, blocks=(block, wanted))


def _packed_offsets(runs: list[tuple[int, int]]) -> dict[int, int]:
    """Each fetched run's start in the file -> its offset in the packed side file."""
    offsets: dict[int, int] = {}
    at = 0
    for start, end in runs:
        offsets[start] = at
        at += end - start + 1
    return offsets


def _pieces(
    wanted: list[str], have: dict[str, int], in_place: list[bool], block: int, size: int, packed: dict[int, int],
    src: Any, got: Any,
) -> Iterator[tuple[Any, int, int, bool]]:
    """The new version in order as (file, offset, length, from the base), adjacent pieces of one
    file joined so that the reads are few and large."""
    run_start = 0
    current: tuple[Any, int, int, bool] | None = None
    for i, h in enumerate(wanted):
        n = min(block, size - i * block)
        if h in have:
            piece = (src, i * block if in_place[i] else have[h], n, True)
        else:
            if i * block in packed:
                run_start = i * block
            piece = (got, packed[run_start] + i * block - run_start, n, False)
        if current is not None and current[0] is piece[0] and current[1] + current[2] == piece[1]:
            current = (current[0], current[1], current[2] + n, current[3])
        else:
            if current is not None:
                yield current
            current = piece
    if current is not None:
        yield current


def _assemble(
    pipe: _Pipeline, pieces: Iterator[tuple[Any, int, int, bool]], progress: Callable[[int], None],
    stop: threading.Event | None,
) -> None:
    """Read `pieces` into the pipeline's buffers, each handed on full (the last one as it is)."""
    buffer, filled = pipe.buffer(), 0
    try:
        for f, at, n, local in pieces:
            f.seek(at)
            while n:
                took = f.readinto(buffer[filled : filled + min(n, len(buffer) - filled)])
                if not took:
                    raise _NoDelta("a file got shorter while the new version was assembled")
                filled, n = filled + took, n - took
                if local:
                    progress(took)
                if filled == len(buffer):
                    if stop is not None and stop.is_set():
                        raise _NoDelta("stopped")
                    pipe.submit(buffer, filled)
                    buffer, filled = pipe.buffer(), 0
    except BaseException:
        pipe.give_back(buffer)
        raise
    if filled:
        pipe.submit(buffer, filled)
    else:
        pipe.give_back(buffer)


def _block_list(remote: Remote, url: str, entry: RemoteEntry, query: str = "blocks") -> dict[str, Any]:
    resp = remote.request("GET", f"{url}?{query}", headers={"Accept": "application/json"})
    with resp:
        if resp.status_code != 200 or "json" not in resp.headers.get("Content-Type", ""):
            raise _NoDelta("no block list")
        try:
            info: dict[str, Any] = resp.json()
        except ValueError:
            raise _NoDelta("a malformed block list") from None
    if info.get("md5") != entry.md5 or info.get("size") != entry.size or info.get("algorithm") != "sha256":
        raise _NoDelta("the block list is of another version")
    return info


def _local_blocks(base: Path, block: int, wanted: list[str]) -> tuple[dict[str, int], list[bool]]:
    """Hash the local file block by block: see _where."""
    hashes: list[str] = []
    with open(base, "rb", buffering=0) as f:
        while data := f.read(block):
            hashes.append(hashlib.sha256(data).hexdigest())
    return _where(hashes, block, wanted)


def _where(local: list[str], block: int, wanted: list[str]) -> tuple[dict[str, int], list[bool]]:
    """hash -> offset of every block of the local file that the new version contains, and for
    each block of the new version whether the local file has it at the same place already."""
    wanted_set = set(wanted)
    found: dict[str, int] = {}
    for i, h in enumerate(local):
        if h in wanted_set:
            found.setdefault(h, i * block)
    in_place = [i < len(local) and local[i] == h for i, h in enumerate(wanted)]
    return found, in_place


# --- the local files' block lists (kept so that a delta need not read the file to hash it) ------


def _cache_path(state_dir: Path, rel: str) -> Path:
    return state_dir / "blocks" / (hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest() + ".json")


def _cached(cache: Path, base: Path, block: int) -> list[str] | None:
    """The local file's block hashes as kept when it was placed, if it is still that file."""
    try:
        kept = json.loads(cache.read_text())
        st = os.stat(base)
    except (OSError, ValueError):
        return None
    if [kept.get("size"), kept.get("mtime_ns"), kept.get("ino"), kept.get("block_size")] != [
        st.st_size, st.st_mtime_ns, st.st_ino, block,
    ]:  # fmt: skip
        return None
    blocks = kept.get("blocks")
    return blocks if isinstance(blocks, list) else None


def remember(remote: Remote, state_dir: Path, entry: RemoteEntry, placed: Any, got: Downloaded) -> None:
    """After a big file is placed: keep its block list (a delta's, or the server's for the MD5
    it was verified against) with its stat, for the next delta. Best effort."""
    size = got.size
    if size < MIN_SIZE or placed.ino is None:
        return
    blocks = got.blocks
    try:
        if blocks is None:
            if not features(remote).blocks or not got.md5:
                return
            # Only a list the server keeps already (it has one for every upload): asking must not
            # make it read the file again; without one, the first delta hashes the local file.
            info = _block_list(remote, remote.url_for(entry.path, href=entry.href), entry, "blocks=stored")
            if info.get("md5") != got.md5:
                return
            blocks = (int(info["block_size"]), list(info["blocks"]))
        cache = _cache_path(state_dir, entry.path)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps({"size": placed.size, "mtime_ns": placed.mtime_ns, "ino": placed.ino,
                                   "block_size": blocks[0], "blocks": blocks[1]}))  # fmt: skip
        osfs.replace(tmp, cache)
    except (_NoDelta, RemoteError, OSError, ValueError, KeyError):
        return


def _runs(missing: list[int], block: int, size: int) -> list[tuple[int, int]]:
    """Adjacent missing blocks as (start, end inclusive) byte ranges."""
    runs: list[tuple[int, int]] = []
    for i in missing:
        start, end = i * block, min(size, (i + 1) * block) - 1
        if runs and runs[-1][1] + 1 == start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


def _fetch(
    remote: Remote, url: str, etag: str, runs: list[tuple[int, int]], out: Any, packed: dict[int, int],
    progress: Callable[[int], None],
) -> int:
    """GET `runs` (one request) into `out` at their packed offsets; returns the body bytes received."""
    spec = ",".join(f"{s}-{e}" for s, e in runs)
    headers = {"Range": f"bytes={spec}", "If-Range": f'"{etag}"', "Accept-Encoding": "identity"}
    resp = remote.request("GET", url, headers=headers, stream=True)
    with resp:
        if resp.status_code != 206 or resp.headers.get("ETag", "").strip('"') != etag:
            raise _NoDelta(f"the ranges were answered with HTTP {resp.status_code}")
        ctype = resp.headers.get("Content-Type", "").lower()
        reader = io.BufferedReader(resp.raw, READ)
        if ctype.startswith("multipart/byteranges"):
            raw = resp.headers.get("Content-Type", "")  # (a boundary is case-sensitive)
            at = raw.lower().find("boundary=")
            boundary = raw[at + 9 :].partition(";")[0].strip().strip('"') if at >= 0 else ""
            if not boundary:
                raise _NoDelta("a multipart answer without a boundary")
            done = set(_multipart(reader, boundary.encode("latin-1"), out, packed, progress))
        elif len(runs) == 1:
            start, end = _single(resp.headers.get("Content-Range", ""))
            _copy(reader, out, packed, start, end, progress)
            done = {(start, end)}
        else:
            raise _NoDelta("several ranges answered with one (the server does not do multipart/byteranges)")
        if done != set(runs):
            raise _NoDelta("the answer's ranges are not the ones asked for")
    return sum(e - s + 1 for s, e in runs)


def _single(content_range: str) -> tuple[int, int]:
    unit, _, rest = content_range.partition(" ")
    span = rest.partition("/")[0]
    first, _, last = span.partition("-")
    if unit != "bytes" or not first.isdigit() or not last.isdigit():
        raise _NoDelta("a range answer without a usable Content-Range")
    return int(first), int(last)


def _multipart(
    reader: io.BufferedReader, boundary: bytes, out: Any, packed: dict[int, int], progress: Callable[[int], None]
) -> Iterator[tuple[int, int]]:
    """Each part of a multipart/byteranges body, written to `out` at its range; yields the ranges."""
    delimiter = b"--" + boundary
    line = reader.readline(READ)
    while line.rstrip(b"\r\n") != delimiter:  # the preamble (davsync and nginx send an empty line)
        if not line:
            raise _NoDelta("a multipart answer without its first part")
        line = reader.readline(READ)
    while True:
        content_range = ""
        while (line := reader.readline(READ)) not in (b"\r\n", b"\n"):
            if not line:
                raise _NoDelta("a multipart answer cut off in a part's headers")
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-range":
                content_range = value.strip()
        start, end = _single(content_range)
        _copy(reader, out, packed, start, end, progress)
        yield start, end
        line = reader.readline(READ)
        if line in (b"\r\n", b"\n"):
            line = reader.readline(READ)
        text = line.rstrip(b"\r\n")
        if text == delimiter + b"--":
            return
        if text != delimiter:
            raise _NoDelta("a multipart answer with a malformed delimiter")


def _copy(
    reader: io.BufferedReader, out: Any, packed: dict[int, int], start: int, end: int, progress: Callable[[int], None]
) -> int:
    """One range of the answer into the packed side file (a range not asked for: no delta)."""
    if start not in packed:
        raise _NoDelta("the answer holds a range not asked for")
    out.seek(packed[start])
    pos = start
    while pos <= end:
        chunk = reader.read(min(READ, end + 1 - pos))
        if not chunk:
            raise _NoDelta("the answer was cut off")
        _write_all(out, chunk)
        pos += len(chunk)
        progress(len(chunk))
    return end - start + 1


# --- delta push --------------------------------------------------------------------------------

_COPY = b"C"
_DATA = b"D"


def push(
    remote: Remote,
    path: str,
    source: Path,
    *,
    md5: str,
    if_match: str,
    mtime_ns: int | None = None,
    href: str = "",
    progress: Callable[[int], None] = lambda n: None,
) -> Uploaded | None:
    """Send a new version of a big file as the server's blocks it already has plus the new bytes
    (server/deltapush.py); None when delta would not pay or cannot be used (then the caller sends
    the whole file, which also finds out about a refused precondition)."""
    disk = osfs.extended_path(source)
    size = os.stat(disk).st_size
    if size < MIN_SIZE or not features(remote).delta_push or not features(remote).blocks:
        return None
    url = remote.url_for(path, href=href)
    try:
        info = _base_blocks(remote, url, if_match)
        if info is None:
            return None
        block = int(info["block_size"])
        base = {h: i * block for i, h in reversed(list(enumerate(info["blocks"])))}
        base_size = int(info["size"])
        body = _DeltaBody(disk, size, block, base, base_size)
        if body.new_bytes > size * MAX_SHARE:
            return None
        headers = {"Content-Type": "application/x-davsync-delta", "If-Match": quoted_etag(if_match),
                   "OC-Checksum": md5_checksum(md5), "Upload-Length": str(size)}  # fmt: skip
        if mtime_ns is not None:
            headers["X-OC-Mtime"] = str(mtime_ns // 1_000_000_000)
        resp = remote.request("POST", url, data=body, headers=headers)
        resp.close()
    except (_NoDelta, OSError, ValueError, KeyError):
        return None
    except RemoteError as e:
        if e.fatal:
            raise
        return None
    if resp.status_code in (200, 201, 204):
        progress(size)
        up = remote._uploaded(path, url, resp, size, md5, mtime_ns)
        if up.entry.md5 and up.entry.md5 != md5:
            raise not_held(path, up.entry.md5, md5)
        return up
    if resp.status_code == 412:
        raise write_error("PUT", path, resp)
    return None


def _base_blocks(remote: Remote, url: str, if_match: str) -> dict[str, Any] | None:
    """The block list of the server's file if it is still the version `if_match` names."""
    resp = remote.request("GET", url + "?blocks", headers={"Accept": "application/json"})
    with resp:
        if resp.status_code != 200 or "json" not in resp.headers.get("Content-Type", ""):
            return None
        info: dict[str, Any] = resp.json()
    if info.get("etag") != if_match.strip('"') or info.get("algorithm") != "sha256":
        return None
    return info


class _DeltaBody:
    """The delta records for a local file against the server's block list: planned from the
    block hashes the scan took with the file's MD5 (client/blockmemo.py), else in one read
    (SHA-256 per block); then streamed with an exact length (requests sends Content-Length)."""

    def __init__(self, disk: Path, size: int, block: int, base: dict[str, int], base_size: int) -> None:
        self.disk, self.size, self.block = disk, size, block
        self.plan: list[tuple[bytes, int, int]] = []  # (kind, start in base or local, length)
        known = blockmemo.blocks_of(disk, block)
        if known is not None and len(known) == -(-size // block):
            for i, h in enumerate(known):
                self._plan_block(base.get(h), i * block, min(block, size - i * block), base_size)
        else:
            with open(disk, "rb", buffering=0) as f:
                offset = 0
                while data := f.read(block):
                    self._plan_block(base.get(hashlib.sha256(data).hexdigest()), offset, len(data), base_size)
                    offset += len(data)
            if offset != size:
                raise _NoDelta("the local file changed while it was read")
        self.new_bytes = sum(n for kind, _, n in self.plan if kind == _DATA)

    def _plan_block(self, at: int | None, offset: int, n: int, base_size: int) -> None:
        if at is not None and at + n <= base_size:
            self._add(_COPY, at, n)
        else:
            self._add(_DATA, offset, n)

    def _add(self, kind: bytes, start: int, n: int) -> None:
        if self.plan and self.plan[-1][0] == kind and self.plan[-1][1] + self.plan[-1][2] == start:
            self.plan[-1] = (kind, self.plan[-1][1], self.plan[-1][2] + n)
        else:
            self.plan.append((kind, start, n))

    def __len__(self) -> int:
        return sum(17 if kind == _COPY else 9 + n for kind, _, n in self.plan)

    def __iter__(self) -> Iterator[bytes]:
        with open(self.disk, "rb") as f:
            for kind, start, n in self.plan:
                if kind == _COPY:
                    yield _COPY + start.to_bytes(8, "big") + n.to_bytes(8, "big")
                    continue
                yield _DATA + n.to_bytes(8, "big")
                f.seek(start)
                while n > 0:
                    chunk = f.read(min(READ, n))
                    if not chunk:
                        raise _NoDelta("the local file got shorter while it was sent")
                    yield chunk
                    n -= len(chunk)


def _write_all(out: Any, data: bytes) -> None:
    """An unbuffered file's write may take less than it is given."""
    view = memoryview(data)
    while view:
        view = view[out.write(view) :]
