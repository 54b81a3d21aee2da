"""Which OS errors mean what to a user, so the server's and the client's messages agree.

Each side words its own message (an HTTP status and text on the server, a pull error on
the client); this is the one place that decides which errno is "disk full" and which is
"not allowed".
"""

from __future__ import annotations

import errno

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_NOT_PERMITTED = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def is_disk_full(e: OSError) -> bool:
    """No space left (or quota exceeded, or the file is too large for the filesystem)."""
    return e.errno in _DISK_FULL


def is_not_permitted(e: OSError) -> bool:
    """Permission denied, or a read-only filesystem."""
    return e.errno in _NOT_PERMITTED
