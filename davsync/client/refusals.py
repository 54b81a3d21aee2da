"""What a server's refusal means: the RemoteError subclasses a caller acts on (412: read it
again; 403: read-only; 409: no parent; 507: disk full; ...), each in one sentence that names the
path and, where the server gave one, its own reason."""

from __future__ import annotations

import html
import re

import requests

from .paths import shown
from .transport import NETWORK_ERRORS, RemoteError


class NotAShare(RemoteError):
    """The server answers, but the URL names nothing that can be mirrored (a file, no folder at
    all, no WebDAV): a usage error (exit 2), since the fix is in the URL, not the network."""


class PreconditionFailed(RemoteError):
    """412: the server's version is not the one named (If-Match / If-None-Match / Overwrite: F).
    Re-read the path and plan it again."""


class WriteRefused(RemoteError):
    """403/405 on a write: a read-only account, or a name or place the server refuses."""


class NoSpace(RemoteError):
    """507: the server's disk is full; nothing was replaced."""


class ParentMissing(RemoteError):
    """409 (or a PUT's 404): the parent collection does not exist on the server."""


class NotFound(RemoteError):
    """404 on what a write names as its source (a MOVE of something already gone)."""


class NotHeld(RemoteError):
    """The server answered an upload with another MD5 than the bytes sent: by its own word it
    does not hold them, so no base may say both sides are equal. Nothing is retried or undone;
    the next run compares both sides again (a real difference becomes a conflict, both kept)."""


def not_held(path: str, reported: str, sent: str) -> NotHeld:
    return NotHeld(f"the server answered the upload of {shown(path)} with another MD5 ({reported}) than the one sent "
                   f"({sent}); it is not recorded as synced, and the next run compares both sides again.")  # fmt: skip


class SourceChanged(RemoteError):
    """The local file changed while it was being sent (it shrank, or the server found the body's
    MD5 differs from the one declared); nothing was replaced. `sent_md5` is what was streamed."""

    def __init__(self, message: str, *, sent_md5: str | None = None, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.sent_md5 = sent_md5


def server_says(resp: requests.Response) -> str:
    """The server's own one-line reason, from a plain-text or WsgiDAV HTML error page."""
    try:
        text = resp.content[:4096].decode("utf-8", "replace")
    except NETWORK_ERRORS:
        return ""
    if "html" in resp.headers.get("Content-Type", ""):
        found = re.search(r"<p>(.*?)</p>", text, re.S)
        text = html.unescape(found.group(1)) if found else ""
    return one_line(text)


def one_line(text: str) -> str:
    """A server's reason as one short printable line ('' when it is not printable text)."""
    line = " ".join(text.split())[:200].rstrip(". ")
    return line if line.isprintable() else ""


def write_error(method: str, path: str, resp: requests.Response) -> RemoteError:
    """A refused write as the RemoteError subclass the caller acts on, in one sentence."""
    return write_refusal(method, path, resp.status_code, server_says(resp))


def write_refusal(method: str, path: str, status: int, said: str) -> RemoteError:
    """A write refused with `status` (the server's reason `said`, one line) as the RemoteError
    subclass the caller acts on, in one sentence; one wording for a PUT and a bulk member."""
    why = f" (the server says: {said})" if said else ""
    what = shown(path) or "/"
    if status == 412:
        return PreconditionFailed(
            f"{method} {what} was refused: the server's version changed meanwhile (412); read it again.", status=status
        )
    if status in (403, 405):
        if "read-only" in said.lower():
            return WriteRefused(
                f"cannot change {what}: your access to this share is read-only; "
                "ask the operator for a read-write account.",
                status=status,
            )
        return WriteRefused(f"the server refused {method} of {what} (HTTP {status}){why}.", status=status)
    if status == 409:
        return ParentMissing(f"cannot {method} {what}: its parent folder does not exist on the server.", status=status)
    if status == 507:
        return NoSpace(f"the server's disk is full: {what} was not written; free space on the server.", status=status)
    if status == 423:
        return RemoteError(f"{what} is locked on the server by another client (423); try again later.", status=status)
    return RemoteError(f"{method} {what} failed: HTTP {status}{why}.", status=status)
