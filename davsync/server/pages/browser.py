"""The middleware that answers a browser's GET of a folder with davsync's own page.

The rule (README, "A browser"): a GET or HEAD of a folder whose `Accept` names `text/html`
and that has no query gets the page; `?zip` on a folder gets the folder as a zip, `?view` on
a file its page and `?inline` its bytes for that page (viewer.py), whatever the `Accept`.
Everything else (WebDAV clients, `?davmount`, files) goes on unchanged to WsgiDAV. The
page's script and style live under a reserved name (`ASSET_PREFIX`), which no file in the
share can have.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from wsgidav.dav_error import DAVError
from wsgidav.mw.base_mw import BaseMiddleware

from ..links import LINK_PASSWORD
from ..netinfo import explorer_folder
from ..wsgitypes import StartResponse
from . import deleted, sharing
from .headers import security_headers
from .listing import ASSET_DIR, FolderView, entries, render, thumbnail_kind
from .thumbs import for_folder
from .viewer import inline, render_viewer
from .zipstream import members, stream_zip

ASSET_PREFIX = f"/{ASSET_DIR}/"
ASSETS = {"pages.css": "text/css; charset=utf-8", "pages.js": "text/javascript; charset=utf-8",
          "upload.js": "text/javascript; charset=utf-8"}


def wants_html(environ: dict) -> bool:
    return "text/html" in environ.get("HTTP_ACCEPT", "")


def folder_label(provider: Any, path: str) -> str:
    """What a folder is called on its page and in its zip's name; a link's root is the shared
    folder's own name (never the token), the share's root is "Home"."""
    parts = [p for p in path.split("/") if p]
    if parts:
        return parts[-1]
    return os.path.basename(provider.root_folder_path.rstrip("/")) if hasattr(provider, "mode") else "Home"


class PageBrowser(BaseMiddleware):
    """In WsgiDAV's stack after HTTPAuthenticator and WriteGuard: only authorised requests get here."""

    def __init__(self, wsgidav_app: Any, next_app: Any, config: dict) -> None:
        super().__init__(wsgidav_app, next_app, config)
        self.app = next_app
        state_dir = config.get("davsync", {}).get("state_dir")
        self.thumbs = for_folder(Path(state_dir) / "thumbnails") if state_dir else None
        self.state = config.get("davsync", {}).get("share_state")  # None in a share link's app: no restore there
        self.links = config.get("davsync", {}).get("links")  # the LinkStore: links made on the page (sharing.py)

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        provider = environ.get("wsgidav.provider")
        if provider is None:
            return self.app(environ, start_response)
        if getattr(provider, "mode", "") == "drop":  # the gate's upload page needs only the assets
            if method == "GET" and path.startswith(ASSET_PREFIX):
                return self._asset(environ, start_response, path[len(ASSET_PREFIX) :])
            return self.app(environ, start_response)
        if method == "POST" and environ.get("QUERY_STRING") == "restore" and self._restorable(environ, provider):
            return deleted.restore(environ, start_response, self.state, self._share_folder(provider, path))
        if method == "POST" and self.links is not None and environ.get("QUERY_STRING") in ("share", "unshare"):
            return self._share(environ, start_response, provider, path)
        if method not in ("GET", "HEAD"):
            return self.app(environ, start_response)
        if path.startswith(ASSET_PREFIX):
            return self._asset(environ, start_response, path[len(ASSET_PREFIX) :])
        query = environ.get("QUERY_STRING", "")
        if not (
            query in ("zip", "view", "inline", "thumb", "deleted", "versions", "links")
            or (query == "" and wants_html(environ))
        ):
            return self.app(environ, start_response)
        try:
            res = provider.get_resource_inst(path, environ)
        except DAVError:
            return self.app(environ, start_response)  # WsgiDAV answers with the proper error
        if res is None or query in ("view", "inline", "thumb", "versions") and res.is_collection:
            return self.app(environ, start_response)
        base = environ.get("SCRIPT_NAME", "").rstrip("/")
        if not res.is_collection:
            if query == "inline":
                return inline(self.app, environ, start_response, res.name)
            if query == "thumb":
                return self._thumb(environ, start_response, res)
            if query == "versions":
                if not self._restorable(environ, provider):
                    return deleted.answer(
                        start_response, "403 Forbidden", {"error": "Only a user who may write restores."}
                    )
                return deleted.answer(start_response, "200 OK",
                                      deleted.versions_of(self.state, self._share_folder(provider, path)))  # fmt: skip
            if query != "view":
                return self.app(environ, start_response)
            view = self._view(environ, provider, base, path)
            page = render_viewer(view, res.name, res.get_content_length() or 0, res.get_last_modified() or 0.0)
            return self._html(environ, start_response, page)
        if not path.endswith("/"):  # relative links on the page need the slash
            location = quote(base + path + "/") + (f"?{query}" if query else "")
            start_response("301 Moved Permanently", [("Location", location), ("Content-Length", "0"),
                                                     *security_headers(None)])  # fmt: skip
            return [b""]
        if query == "zip":
            return self._zip(environ, start_response, res, path, provider)
        if query == "links":
            return sharing.mine(environ, start_response, self.links) if self.links is not None else self.app(
                environ, start_response
            )
        if query == "deleted":
            if not self._restorable(environ, provider):
                return deleted.answer(start_response, "403 Forbidden", {"error": "Only a user who may write restores."})
            rows = deleted.deleted_here(self.state, provider.file_path(path), self._share_folder(provider, path))
            return deleted.answer(start_response, "200 OK", rows)
        return self._html(environ, start_response, render(self._view(environ, provider, base, path), entries(res)))

    def _html(self, environ: dict, start_response: StartResponse, body: bytes) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "no-store"), ("Vary", "Accept"), *security_headers()])  # fmt: skip
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    def _share(self, environ: dict, start_response: StartResponse, provider: Any, path: str) -> list[bytes]:
        if environ["QUERY_STRING"] == "unshare":
            return sharing.revoke(environ, start_response, self.links)
        try:
            res = provider.get_resource_inst(path, environ)
        except DAVError:
            res = None
        if res is None or not res.is_collection and path.endswith("/"):
            return deleted.answer(start_response, "404 Not Found", {"error": "There is no such folder or file."})
        kind = "folder" if res.is_collection else "file"
        return sharing.create(environ, start_response, self.links, self._share_folder(provider, path), kind)

    def _restorable(self, environ: dict, provider: Any) -> bool:
        """A user of the share who may write, on a server that keeps versions (not through a link)."""
        return (self.state is not None and self.state.versions.enabled and not hasattr(provider, "mode")
                and not environ.get("davsync.readonly") and not provider.is_readonly())  # fmt: skip

    @staticmethod
    def _share_folder(provider: Any, path: str) -> str:
        return str(provider.share_rel(path.strip("/")))

    def _view(self, environ: dict, provider: Any, base: str, path: str) -> FolderView:
        scheme = environ.get("wsgi.url_scheme", "http")
        host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
        name, port = host, ""
        if not host.endswith("]") and ":" in host:
            name, _, port = host.rpartition(":")
        is_link = hasattr(provider, "mode")
        return FolderView(
            base=base,
            path=path,
            root_label=folder_label(provider, "/"),
            can_write=not environ.get("davsync.readonly") and not provider.is_readonly(),
            thumbs=self.thumbs is not None and self.thumbs.enabled,
            show_deleted=self._restorable(environ, provider),
            can_share=self.links is not None and sharing.sharer(environ) is not None,
            single_file=getattr(provider, "only", None) is not None,
            dav_url=f"{scheme}://{host}{quote(base + path)}",
            windows_path=explorer_folder(name, port, scheme, base + path, in_link=is_link),
            login_hint=(
                ("Log in with any user name and the link's password." if environ.get(LINK_PASSWORD) else
                 "This link needs no password.")
                if is_link
                else "Log in with your davsync user name and password."
            ),  # fmt: skip
            log_in=not is_link or bool(environ.get(LINK_PASSWORD)),
        )

    def _thumb(self, environ: dict, start_response: StartResponse, res: Any) -> list[bytes]:
        data = None
        if self.thumbs is not None and thumbnail_kind(res.name):
            data = self.thumbs.get(environ["wsgidav.provider"].file_path(res.path), res.file_stat)
        if data is None:
            body = b"No thumbnail for this file.\n"
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                             ("Content-Length", str(len(body))), *security_headers()])  # fmt: skip
            return [body]
        start_response("200 OK", [("Content-Type", "image/jpeg"), ("Content-Length", str(len(data))),
                                  ("Cache-Control", "private, max-age=86400"),
                                  *security_headers("sandbox")])  # fmt: skip
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [data]

    def _zip(self, environ: dict, start_response: StartResponse, res: Any, path: str, provider: Any) -> Iterable[bytes]:
        filename = folder_label(provider, path) + ".zip"
        ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
        disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
        start_response("200 OK", [("Content-Type", "application/zip"), ("Content-Disposition", disposition),
                                  ("Cache-Control", "no-store"), *security_headers("sandbox")])  # fmt: skip
        if environ["REQUEST_METHOD"] == "HEAD":
            return [b""]
        return stream_zip(members(res))

    def _asset(self, environ: dict, start_response: StartResponse, name: str) -> Iterable[bytes]:
        if name not in ASSETS:
            body = b"No such page asset.\n"
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8"),
                                             ("Content-Length", str(len(body))), *security_headers()])  # fmt: skip
            return [body]
        body = resources.files(__package__).joinpath("static").joinpath(name).read_bytes()
        start_response("200 OK", [("Content-Type", ASSETS[name]), ("Content-Length", str(len(body))),
                                  ("Cache-Control", "private, max-age=300"), *security_headers()])  # fmt: skip
        return [b""] if environ["REQUEST_METHOD"] == "HEAD" else [body]
