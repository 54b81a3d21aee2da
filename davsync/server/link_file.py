"""A share link to one file: which requests the gate (link_gate.py) lets through to it.

The link opens as a folder holding just that file, so every WebDAV client (a phone app, rclone,
`davsync pull`, Explorer) can use it: `/s/<token>/` lists the file, `/s/<token>/<name>` is the
file. A browser asking for the link gets the file's page (name, size, time, download, preview);
a plain GET of the link (curl -L, wget) is sent on to the file. Every other path is 404, read
from the request alone (never from the disk, so it tells nothing about the file's folder).
Read-write lets the friend replace that one file (PUT, with the LOCK an editor takes on it);
the server keeps what it replaced as a version. Nothing can be created, deleted or moved.
"""

from __future__ import annotations

import os
import stat

from .links import ShareLink
from .names import is_internal_path
from .pages.browser import ASSET_PREFIX

ROOT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PROPFIND", "REPORT"})
FILE_READ = frozenset({"GET", "HEAD", "OPTIONS", "PROPFIND"})
FILE_WRITE = FILE_READ | {"PUT", "LOCK", "UNLOCK"}
NOTHING_ELSE = "This link shares one file; there is nothing else here."
ONLY_REPLACE = "Through this link the shared file can only be read or replaced (PUT to its name)."


def file_target(root: str, link: ShareLink) -> tuple[str, str] | None:
    """(the file's folder, its name) while the link's path is a regular file (not a symlink) in a
    real folder of the share; None when it was deleted, renamed, or swapped for something else."""
    folder_rel, _, name = link.path.strip("/").rpartition("/")
    if not name or is_internal_path(link.path):
        return None
    folder = os.path.join(root, *[p for p in folder_rel.split("/") if p])
    try:
        st = os.lstat(os.path.join(folder, name))
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or os.path.realpath(folder) != folder:
        return None
    return folder, name


def refusal(method: str, rel: str, name: str, mode: str) -> tuple[str, str] | None:
    """(status, sentence) for a request a file link does not allow; None when it may go on.
    `rel` is the decoded path after the token ('' or '/' for the link itself)."""
    if rel.startswith(ASSET_PREFIX):
        return None if method in ("GET", "HEAD") else ("403 Forbidden", NOTHING_ELSE)  # the page's style, script
    if rel in ("", "/"):
        if method in ROOT_METHODS:
            return None
        return "403 Forbidden", "This link is read-only." if mode == "read-only" else ONLY_REPLACE
    if rel != "/" + name:
        return "404 Not Found", NOTHING_ELSE
    if method in (FILE_WRITE if mode == "read-write" else FILE_READ):
        return None
    return "403 Forbidden", "This link is read-only." if mode == "read-only" else ONLY_REPLACE


def to_the_file(environ: dict, name: str, page: bool) -> None:
    """A GET of the link itself: the file's page for a browser, else the file (the request is
    rewritten in place, so the answer is the file's own: ranges, ETags, conditions)."""
    environ["PATH_INFO"] = ("/" + name).encode("utf-8").decode("latin-1")
    environ["QUERY_STRING"] = "view" if page else ""
