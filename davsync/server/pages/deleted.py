"""Recently deleted in a folder, and a file's earlier versions: what the server kept when a
file or folder here went away or was overwritten, listed for a user who may write, and put
back with one click.

The restore is the admin page's (restore.py): under the target's lock, what is at the
target now kept as a version first, recorded in the change journal. A version is only ever
restored at the path it was kept under (VersionStore.choose refuses an id of another path).
A POST needs the `X-Davsync-Page` header, which a form on another site cannot send.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ...units import human_size
from ..restore import restore_in_share
from ..version_keeper import VersionError
from ..wsgitypes import StartResponse
from .headers import security_headers

MAX_LISTED = 200
MAX_BODY = 4096
PAGE_HEADER = "HTTP_X_DAVSYNC_PAGE"


def deleted_here(state: Any, folder_fs: str, share_folder: str) -> list[dict[str, Any]]:
    """The newest kept version of each name directly in the folder that is not there now."""
    prefix = share_folder + "/" if share_folder else ""
    found: dict[str, dict[str, Any]] = {}

    def note(path: str, vid: str, is_dir: bool, size: int, time_ns: int, user: str) -> None:
        name = path[len(prefix) :]
        if not path.startswith(prefix) or not name or "/" in name or os.path.lexists(os.path.join(folder_fs, name)):
            return
        if name in found and found[name]["time_ns"] >= time_ns:
            return
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time_ns / 1e9))
        found[name] = {"id": vid, "name": name, "is_dir": is_dir, "size": human_size(size), "time_ns": time_ns,
                       "time": when, "user": user}  # fmt: skip

    for v in state.versions.files(share_folder):
        if v.folder is None:  # a file inside a deleted folder comes back with its folder
            note(v.path, v.id, False, v.size, v.time_ns, v.user)
    for f in state.versions.folders(share_folder):
        note(f.path, f.id, True, f.bytes, f.time_ns, f.user)
    rows = sorted(found.values(), key=lambda r: -r["time_ns"])[:MAX_LISTED]
    for r in rows:
        del r["time_ns"]
    return rows


def versions_of(state: Any, share_path: str) -> list[dict[str, Any]]:
    """The kept versions of one file, newest first (what it was before each overwrite or delete)."""
    rows = []
    for v in state.versions.files(share_path):
        if v.path == share_path and v.folder is None:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(v.time_ns / 1e9))
            rows.append({"id": v.id, "size": human_size(v.size), "time": when, "user": v.user, "how": v.method})
    return rows[:MAX_LISTED]


def answer(start_response: StartResponse, status: str, data: Any) -> list[bytes]:
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), *security_headers()])  # fmt: skip
    return [body]


def page_json(environ: dict) -> dict[str, Any] | None:
    """A page's POST body: None without the page's header (a cross-site form), {} if unreadable."""
    if environ.get(PAGE_HEADER) != "1":
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if not 0 < length <= MAX_BODY:
            return {}
        body = json.loads(environ["wsgi.input"].read(length))
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def restore(environ: dict, start_response: StartResponse, state: Any, share_folder: str) -> list[bytes]:
    """POST folder/?restore {"id": ..., "name": ...}: that version back at folder/name."""
    body = page_json(environ)
    if body is None:
        return answer(start_response, "403 Forbidden", {"error": "Restore from the folder page."})
    try:
        vid, name = body["id"], body["name"]
        if not isinstance(vid, str) or not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return answer(start_response, "400 Bad Request", {"error": "Name the version to restore: its id and name."})
    path = f"{share_folder}/{name}" if share_folder else name
    user = environ.get("wsgidav.auth.user_name") or "anonymous"
    try:
        restore_in_share(state, path, vid, None, user)
    except VersionError as e:
        return answer(start_response, "409 Conflict", {"error": str(e)[:1].upper() + str(e)[1:]})
    except OSError as e:
        return answer(start_response, "500 Internal Server Error",
                      {"error": f"Could not restore {name}: {e.strerror or e}; nothing was lost."})  # fmt: skip
    return answer(start_response, "200 OK", {"message": f"Restored “{name}”."})
