"""What both directions of davsync's many-files extension share: its names, its limits (one
request never holds more), how a member path is checked, and the feature properties.

bundle.py answers the bundle REPORT (many files down in one answer) and bulkupload.py the bulk
POST (many files up in one request); see bundle.py for the wire format of both.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree
from wsgidav.dav_error import DAVError

from .names import is_internal_name

NS = "urn:davsync:"
BUNDLE = f"{{{NS}}}bundle"
BULK = f"{{{NS}}}bulk-upload"
MAX_FILES = 1000  # members per request, either way
MAX_FILE_SIZE = 16 * 1024 * 1024  # per member: larger files go by GET (with resume) or PUT
MAX_BYTES = 64 * 1024 * 1024  # a bundle answer's content; a bulk body's content
MAX_BODY = 1024 * 1024  # the bundle request's XML
SEND_AFTER = 256 * 1024  # bytes gathered before handing them to the server
STREAM_FROM = 1024 * 1024  # members larger than this are streamed block by block
STREAM_BLOCK = 256 * 1024
MD5_HEX = frozenset("0123456789abcdef")
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def limits_header(max_bytes: int = MAX_BYTES) -> str:
    return f"max-files={MAX_FILES}; max-file-size={MAX_FILE_SIZE}; max-bytes={max_bytes}"


def may_write(environ: dict, provider: Any) -> bool:
    return not (provider.is_readonly() or environ.get("davsync.readonly"))


def feature_property(name: str, environ: dict, provider: Any) -> Any:
    """The value of `{urn:davsync:}bundle` / `bulk-upload` on a collection (404 when not offered)."""
    if name == BULK and not may_write(environ, provider) or getattr(provider, "only", None) is not None:
        raise DAVError(404)  # (a link to one file offers neither: link_fs.py)
    el = etree.Element(name, nsmap={"ds": NS})
    el.set("max-files", str(MAX_FILES))
    el.set("max-file-size", str(MAX_FILE_SIZE))
    el.set("max-bytes", str(MAX_BYTES))
    return el


def member_problem(rel: str) -> str | None:
    """Why a member path from a client is refused before it reaches the provider, or None."""
    if not rel:
        return "an empty path"
    if rel.startswith("/") or "\\" in rel:
        return "an absolute path or a backslash"
    if _CONTROL.search(rel):
        return "control characters in the path"
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "an empty, '.' or '..' segment"
    if any(is_internal_name(p) for p in parts):
        return "a name reserved for davsync"
    return None


def collection(environ: dict, provider: Any) -> Any:
    path = environ["PATH_INFO"]
    res = provider.get_resource_inst(path, environ)
    if res is None:
        raise DAVError(404, "No such collection.")
    if not res.is_collection:
        raise DAVError(409, "Bundles are asked of a collection; its members are named relative to it.")
    return res


def join(base: str, rel: str) -> str:
    return base.rstrip("/") + "/" + rel
