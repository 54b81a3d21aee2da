"""What a share link's gate (link_gate.py) asks beyond the link itself: whether its maker still
has the rights it gives, and how a drop link's resumable uploads are told apart and answered."""

from __future__ import annotations

from typing import Any

from ..users import Users
from .links import ShareLink
from .resumable import PREFIX as RESUMABLE_PREFIX
from .wsgitypes import StartResponse


def owner_allows(link: ShareLink, users: Users | None) -> bool:
    """A link made on the folder page (pages/sharing.py) gives no more than its maker has now: it
    stops when the maker is removed, and a writing one while the maker is read-only. A link from
    `davsync share` (no owner) is the operator's own."""
    if not link.owner or users is None:
        return True
    user = users.users.get(link.owner)
    return user is not None and (link.mode == "read-only" or not user.read_only)


class DropResumable:
    """A drop's resumable upload answers with offsets and its upload resource, never with what
    names the file got (no ETag, no Location but the upload's own, no dates)."""

    def __init__(self, start: StartResponse) -> None:
        self.start = start

    def __call__(self, status: str, headers: list, exc_info: Any = None) -> Any:
        kept = [(k, v) for k, v in headers if k.lower() not in DROP_HIDDEN
                and not (k.lower() == "location" and RESUMABLE_PREFIX not in v)]  # fmt: skip
        return self.start(status, kept, exc_info)


DROP_HIDDEN = frozenset({"etag", "oc-etag", "oc-fileid", "last-modified", "oc-checksum", "x-oc-mtime"})


def is_resumable(environ: dict, rest: str) -> bool:
    """A request of the resumable-upload protocol (resumable.py): a create, or its upload resource."""
    method = environ["REQUEST_METHOD"]
    if rest.startswith(RESUMABLE_PREFIX):
        return method in ("HEAD", "PATCH", "DELETE")
    return method in ("POST", "PUT") and "HTTP_UPLOAD_COMPLETE" in environ
