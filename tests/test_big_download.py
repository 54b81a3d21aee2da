"""Large downloads written around the page cache (osfs.Appender): whole aligned blocks go
direct where the platform allows, everything else through the page cache, and the file
always ends up exactly as sent. Real files in tmp_path."""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

import pytest

from davsync import osfs


def aligned(data: bytes) -> memoryview:
    """Page-aligned, like the download pipeline's buffers."""
    buffer = mmap.mmap(-1, max(len(data), 1))
    buffer[: len(data)] = data
    return memoryview(buffer)[: len(data)]


def append(path: Path, chunks: list[bytes], offset: int = 0) -> osfs.Appender:
    with open(path, "ab", buffering=0) as out:
        appender = osfs.Appender(path, out.fileno(), offset)
        for chunk in chunks:
            appender.write(aligned(chunk))
        appender.close()
        os.fsync(out.fileno())
    return appender


def test_whole_blocks_then_a_tail_arrive_exactly(tmp_path: Path) -> None:
    path = tmp_path / "f.part"
    path.write_bytes(b"")
    chunks = [os.urandom(1 << 20), os.urandom(1 << 20), os.urandom(12_345)]
    with open(path, "ab", buffering=0) as out:
        appender = osfs.Appender(path, out.fileno(), 0)
        went_direct = appender.direct
        for chunk in chunks:
            appender.write(aligned(chunk))
        assert not appender.direct  # after an unaligned tail, the rest goes through the page cache
        appender.close()
    assert path.read_bytes() == b"".join(chunks)
    if osfs._O_DIRECT is None:
        assert not went_direct  # Windows, macOS: the page cache, always


def test_a_resume_at_an_unaligned_offset_appends_through_the_page_cache(tmp_path: Path) -> None:
    path = tmp_path / "f.part"
    head = os.urandom(5000)
    path.write_bytes(head)
    rest = [os.urandom(1 << 20), os.urandom(777)]
    appender = append(path, rest, offset=len(head))
    assert not appender.direct
    assert path.read_bytes() == head + b"".join(rest)


def test_a_filesystem_refusing_direct_writes_gets_them_through_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if osfs._O_DIRECT is None:
        pytest.skip("no O_DIRECT on this platform: nothing to refuse")
    calls: list[int] = []

    def refuse(fd: int, data: memoryview, offset: int) -> int:
        calls.append(offset)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(osfs, "_PWRITE", refuse)
    path = tmp_path / "f.part"
    path.write_bytes(b"")
    chunks = [os.urandom(1 << 20), os.urandom(1 << 20)]
    append(path, chunks)
    assert path.read_bytes() == b"".join(chunks)
    assert calls == [0] or calls == []  # tried once (unless the filesystem refused O_DIRECT at open)


def test_a_full_disk_is_an_error_not_a_short_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if osfs._O_DIRECT is None:
        pytest.skip("no O_DIRECT on this platform")

    def full(fd: int, data: memoryview, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(osfs, "_PWRITE", full)
    path = tmp_path / "f.part"
    path.write_bytes(b"")
    with open(path, "ab", buffering=0) as out:
        appender = osfs.Appender(path, out.fileno(), 0)
        if not appender.direct:
            pytest.skip("this filesystem refuses O_DIRECT")
        with pytest.raises(OSError) as raised:
            appender.write(aligned(os.urandom(1 << 20)))
        appender.close()
    assert raised.value.errno == errno.ENOSPC


def test_only_local_disk_filesystems_are_written_around_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A DEST on NFS, SMB or a FUSE volume keeps the page cache: a direct write there is a
    synchronous round trip each (or refused)."""
    path = tmp_path / "f.part"
    path.write_bytes(b"")
    for fs in ("nfs4", "cifs", "fuseblk", "tmpfs"):
        monkeypatch.setattr(osfs, "filesystem_type", lambda p, fs=fs: fs)
        assert not append(path, [os.urandom(1 << 16)]).direct, fs
