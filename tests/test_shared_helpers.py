"""The small helpers the server and the client share: MD5s on the wire, path scopes in SQL, OS errors."""

from __future__ import annotations

import errno
import hashlib
import sqlite3

from davsync.checksums import is_md5, md5_checksum, md5_token
from davsync.oserrors import is_disk_full, is_not_permitted
from davsync.sqlpaths import at_or_below


def test_md5_on_the_wire() -> None:
    md5 = hashlib.md5(b"hello").hexdigest()
    assert md5_token("SHA1:abc " + md5_checksum(md5.upper()) + " ADLER32:1") == md5
    assert md5_token("SHA1:abc") is None and md5_token("") is None
    assert is_md5(md5) and not is_md5("xyz") and not is_md5(md5 + "0")


def test_a_scope_in_sql_takes_wildcards_in_names_literally() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (path TEXT)")
    paths = ["a_b", "a_b/x", "axb/y", "a_bc/q", "a%/z", "a%b/z", "a\\b/w", "a\\b"]
    db.executemany("INSERT INTO t VALUES (?)", [(p,) for p in paths])

    def scope(path: str) -> set[str]:
        where, args = at_or_below("path", path)
        return {r[0] for r in db.execute(f"SELECT path FROM t WHERE {where}", args)}

    assert scope("a_b") == {"a_b", "a_b/x"}
    assert scope("a%") == {"a%/z"}
    assert scope("a\\b") == {"a\\b", "a\\b/w"}
    assert scope("") == set(paths)


def test_os_errors_are_classified_once() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "full")) and not is_disk_full(OSError(errno.EACCES, "no"))
    assert is_not_permitted(OSError(errno.EROFS, "ro")) and not is_not_permitted(OSError(errno.EIO, "io"))
