"""Sharing and versions from the app: the server's own HTTP calls, made with the pair's login.

The links are the server's (`?links`, `?share`, `?unshare`: the folder page's own calls,
davsync/server/pages/sharing.py, the same LinkStore as `davsync share`); a
file's versions and their restore are the folder page's (`?versions`, `?restore`: the same
restore as `davsync versions restore`). Nothing here keeps a copy of either; the app only
adds the QR code (segno, as `davsync share` prints it) and the link's full address.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ..client.refusals import one_line
from ..client.remote import Remote
from ..client.transport import ConnectionSettings, RemoteError
from .config import FolderPair

PAGE = {"X-Davsync-Page": "1"}  # the header the server asks of a POST (a cross-site form cannot send it)
EXPIRIES = ("1d", "7d", "30d", "never")


class SharingError(Exception):
    """The server refused or could not be asked; the message says why and what to do."""


@dataclass
class Server:
    """One pair's server, reached with its login, for the few calls sharing needs."""

    pair: FolderPair
    password: str | None

    def __post_init__(self) -> None:
        conn = ConnectionSettings(self.pair.url, self.pair.user or None, self.password, self.pair.ca_cert or None,
                                  self.pair.insecure, timeout=20, jobs=1)  # fmt: skip
        try:
            self.remote = Remote(conn)
        except RemoteError as e:
            raise SharingError(str(e)) from None

    def url(self, rel: str, folder: bool) -> str:
        rel = rel.strip("/")
        if not rel:
            return self.remote.base_url
        return self.remote.base_url + quote(rel) + ("/" if folder else "")

    def origin(self) -> str:
        parts = urlsplit(self.remote.base_url)
        return f"{parts.scheme}://{parts.netloc}"

    def call(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        """One JSON exchange. The server's own sentence on a refusal; a plain one on no answer."""
        try:
            resp = self.remote.request(method, url, json=body, headers=PAGE if method == "POST" else {})
        except RemoteError as e:  # no answer, or a refused login: the client's own sentence
            raise SharingError(_sentence(str(e))) from None
        with resp:
            ctype = resp.headers.get("Content-Type", "")
            try:
                data = json.loads(resp.content) if "json" in ctype else None
            except ValueError:
                data = None
            said = one_line(resp.content[:4096].decode("utf-8", "replace")) if ctype.startswith("text/plain") else ""
        if isinstance(data, dict) and "error" in data:
            raise SharingError(str(data["error"]))
        if resp.status_code == 403 and said:  # the server's own reason (a read-only login, say)
            raise SharingError(said + ".")
        if data is None or not resp.ok:
            raise SharingError(
                f"The server at {self.origin()} does not offer this (HTTP {resp.status_code}); "
                "update davsync on the server to share and restore from the app."
            )
        return data

    def close(self) -> None:
        self.remote.close()


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


# --- share links ------------------------------------------------------------------------


def links(server: Server, folder: str = "") -> list[dict[str, Any]]:
    """My links at or below this pair's folder, newest first (the server lists all of mine)."""
    data = server.call("GET", server.url(folder, True) + "?links")
    here = unquote(urlsplit(server.url(folder, True)).path).strip("/")
    mine = [x for x in data if isinstance(x, dict)] if isinstance(data, list) else []
    below = [x for x in mine if not here or x.get("path") == here or str(x.get("path", "")).startswith(here + "/")]
    return sorted(below, key=lambda x: -float(x.get("created") or 0))


def create_link(server: Server, folder: str, form: dict[str, Any]) -> dict[str, Any]:
    """A new link to `folder` (a path inside the pair; a file's when form["kind"] is "file"): the
    server's answer, with its address and QR. The server decides what a file link may do."""
    import segno

    mode, expires = str(form.get("mode", "")), str(form.get("expires") or "7d")
    body = {"mode": mode, "expires": expires, "label": str(form.get("label") or "")}
    if form.get("password"):
        body["password"] = str(form["password"])
    is_file = form.get("kind") == "file"
    if is_file and not folder.strip("/"):
        raise SharingError("Choose a file to share.")
    data = server.call("POST", server.url(folder, not is_file) + "?share", body)
    address = str(data["url"])
    return {
        "link": data["link"],
        "url": address,
        "qr": segno.make(address, error="m").svg_data_uri(scale=5, border=2, dark="#000", light="#fff"),
        "message": "Link made. It is shown only now: copy it or scan the code. Revoke it here any time.",
    }


def revoke_link(server: Server, link_id: str) -> str:
    return str(server.call("POST", server.url("", True) + "?unshare", {"id": link_id})["message"])


# --- versions -------------------------------------------------------------------------------


def versions(server: Server, path: str) -> list[dict[str, Any]]:
    """The server's kept versions of one file of the pair, newest first."""
    if not path.strip("/"):
        raise SharingError("Choose a file to see its earlier versions.")
    data = server.call("GET", server.url(path, False) + "?versions")
    return list(data) if isinstance(data, list) else []


def restore_version(server: Server, path: str, vid: str) -> str:
    """Put that version back on the server (what is there now is kept as a version first)."""
    folder, _, name = path.strip("/").rpartition("/")
    if not name or not vid:
        raise SharingError("Choose a file and one of its versions to restore.")
    data = server.call("POST", server.url(folder, True) + "?restore", {"id": vid, "name": name})
    return f"{data.get('message', 'Restored.')} It arrives in this folder with the next sync."


# --- browsing the server's folder (to pick what to share or restore) ---------------------------


def listing(server: Server, folder: str) -> dict[str, Any]:
    """One folder of the pair as the server lists it (PROPFIND, Depth 1): folders first, then files."""
    folder = folder.strip("/")
    try:
        found = server.remote.list_folder(folder)
    except RemoteError as e:
        raise SharingError(f"Could not list /{folder} on the server: {e}") from None
    entries = [
        {"path": e.path, "name": e.path.rpartition("/")[2], "is_dir": e.is_dir, "size": e.size, "mtime": e.mtime}
        for e in found.entries
        if e.path.rpartition("/")[2] != ".davsync"
    ]
    entries.sort(key=lambda e: (not e["is_dir"], str(e["name"]).casefold()))
    return {"folder": folder, "entries": entries}
