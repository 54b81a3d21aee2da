"""Names the server keeps to itself (upload temp files, the versions area, the admin page), paths, and ETags."""

import os
import unicodedata

TEMP_PREFIX = ".~davsync-"
TEMP_SUFFIX = ".part"
# The share's identity marker in its root (like Syncthing's .stfolder): an internal name, so no
# client lists, reads or writes it (shareroot.py).
SHARE_MARKER = f"{TEMP_PREFIX}share"


def is_internal_name(name: str) -> bool:
    """True for every name starting with TEMP_PREFIX, in any case and Unicode form: on exFAT or FAT
    (a Pi's USB disk) `.~DAVSYNC-versions` opens `.~davsync-versions`. casefold() also folds the
    look-alikes such a volume folds (the long s 'ſ', the Kelvin sign). The one check every path
    from a client goes through: listings, GET, PUT, COPY/MOVE, bundles, links and the change feed."""
    return name[:1] == "." and unicodedata.normalize("NFC", name[: len(TEMP_PREFIX) + 8]).casefold().startswith(
        TEMP_PREFIX
    )


def is_internal_path(path: str) -> bool:
    return any(is_internal_name(part) for part in path.split("/"))


def rel_of(path: str) -> str:
    """WsgiDAV resource path ('/a/b') to index path ('a/b'; '' is the root)."""
    return path.strip("/")


def etag_of(st: "os.stat_result") -> str:
    """Changes with any content change: a same-size edit that restores the mtime still moves ctime."""
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_ctime_ns:x}-{st.st_size:x}"
