"""The scan's MD5 read keeps a big file's block hashes for a delta push in the same run."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from davsync.checksums import block_size_for
from davsync.client import blockmemo
from davsync.scan import md5_of_file

MiB = 1024 * 1024


def _sha_blocks(data: bytes, block: int) -> list[str]:
    return [hashlib.sha256(data[i : i + block]).hexdigest() for i in range(0, len(data), block)]


def test_the_md5_read_keeps_the_block_hashes_of_a_big_file(tmp_path: Path) -> None:
    data = os.urandom(5 * MiB + 777)
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    block = block_size_for(len(data))
    assert blockmemo.md5_of_file(f) == md5_of_file(f) == hashlib.md5(data).hexdigest()
    assert blockmemo.blocks_of(f, block) == _sha_blocks(data, block)
    assert blockmemo.blocks_of(f, block * 2) is None  # another block size: not these hashes


def test_a_file_changed_after_its_read_finds_no_kept_hashes(tmp_path: Path) -> None:
    f = tmp_path / "big.bin"
    f.write_bytes(os.urandom(5 * MiB))
    blockmemo.md5_of_file(f)
    block = block_size_for(5 * MiB)
    assert blockmemo.blocks_of(f, block) is not None
    with open(f, "r+b") as out:
        out.seek(MiB)
        out.write(b"edited")
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # (a coarse clock may not move)
    assert blockmemo.blocks_of(f, block) is None


def test_a_small_file_keeps_nothing(tmp_path: Path) -> None:
    f = tmp_path / "small.bin"
    data = os.urandom(blockmemo.MIN_SIZE - 1)
    f.write_bytes(data)
    assert blockmemo.md5_of_file(f) == hashlib.md5(data).hexdigest()
    assert blockmemo.blocks_of(f, block_size_for(len(data))) is None


def test_a_new_file_is_read_for_its_md5_only(tmp_path: Path) -> None:
    """A file never synced has no base to diff against: its read takes no block hashes."""
    f = tmp_path / "new.bin"
    data = os.urandom(5 * MiB)
    f.write_bytes(data)
    assert blockmemo.md5_of_file(f, blocks=False) == hashlib.md5(data).hexdigest()
    assert blockmemo.blocks_of(f, block_size_for(len(data))) is None
