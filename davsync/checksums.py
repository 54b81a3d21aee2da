"""MD5s as davsync exchanges them, and the block size of a file's block hashes (delta transfers),
for the server and the client alike (davsync.scan hashes files).

On the wire an MD5 travels as `MD5:<32 hex>` (the ownCloud convention: the `OC-Checksum`
header and the `oc:checksum` property), possibly among other space-separated checksums.
"""

from __future__ import annotations

import re

_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


def md5_checksum(md5: str) -> str:
    """The wire form of an MD5."""
    return f"MD5:{md5}"


def md5_token(checksums: str) -> str | None:
    """The value of the first `MD5:` entry in a space-separated checksum list, lowercased
    (unchecked: see is_md5), or None when there is none."""
    for token in checksums.split():
        algo, _, value = token.partition(":")
        if algo.lower() == "md5":
            return value.lower()
    return None


def is_md5(value: str) -> bool:
    return bool(_HEX32.match(value))


MIN_BLOCK = 128 * 1024
MAX_BLOCK = 16 * 1024 * 1024
PER_FILE = 2000  # Syncthing: the smallest power of two from 128 KiB giving fewer blocks than this


def block_size_for(size: int) -> int:
    """The block size of a file's block hashes (server/blocks.py publishes them; the client
    takes its own in the same size when it reads a file for its MD5)."""
    block = MIN_BLOCK
    while block < MAX_BLOCK and size >= PER_FILE * block:
        block *= 2
    return block
