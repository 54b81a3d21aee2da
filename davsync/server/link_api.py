"""Share links over HTTP for a logged-in user of the share: `?links` on a folder.

The PC app (and any page) makes, lists and revokes links here with the same LinkStore calls
as `davsync share` on the server. A link records who made it; a user sees and revokes their
own links, an admin everyone's. It runs after the authenticator and the write guard, so a
read-only user cannot POST (make or revoke). A POST needs the `X-Davsync-Page` header, which a
form on another site cannot send. Inside a share link, `?links` is not answered.

  GET  folder/?links                  the links at or below this folder
  POST folder/?links {mode, expires, password?, label?}   a new link to this folder
  POST folder/?links {revoke: ID}     withdraw one
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from wsgidav.dav_error import DAVError
from wsgidav.mw.base_mw import BaseMiddleware

from .links import MODES, LinkError, LinkStore, ShareLink, parse_duration
from .names import is_internal_path
from .pages.deleted import PAGE_HEADER, answer

StartResponse = Callable[..., Any]
QUERY = "links"
MAX_BODY = 4096


class LinkApi(BaseMiddleware):
    """In WsgiDAV's stack after HTTPAuthenticator and WriteGuard."""

    def __init__(self, wsgidav_app: Any, next_app: Any, config: dict) -> None:
        super().__init__(wsgidav_app, next_app, config)
        self.app = next_app
        settings = config.get("davsync", {})
        state_dir = settings.get("state_dir")
        self.store = LinkStore(Path(state_dir)) if state_dir else None
        self.users = settings.get("users")

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        provider = environ.get("wsgidav.provider")
        if (
            environ.get("QUERY_STRING") != QUERY
            or environ["REQUEST_METHOD"] not in ("GET", "POST")
            or provider is None
            or hasattr(provider, "mode")  # a share link's own app: no links from inside a link
            or self.store is None
        ):
            return self.app(environ, start_response)
        user = environ.get("wsgidav.auth.user_name") or ""
        if not user:
            return answer(start_response, "403 Forbidden", {"error": "Log in with your own user to make share links."})
        folder = str(provider.share_rel(environ.get("PATH_INFO", "").strip("/")))
        try:
            if environ["REQUEST_METHOD"] == "GET":
                return answer(start_response, "200 OK", {"links": [x.as_json() for x in self._visible(user, folder)]})
            if environ.get(PAGE_HEADER) != "1":
                return answer(start_response, "403 Forbidden", {"error": "Send the X-Davsync-Page header."})
            body = _body(environ)
            if body is None:
                error = "The request body must be a small JSON object."
                return answer(start_response, "400 Bad Request", {"error": error})
            if "revoke" in body:
                return self._revoke(start_response, user, str(body["revoke"]))
            return self._create(environ, start_response, provider, user, folder, body)
        except LinkError as e:
            return answer(start_response, "409 Conflict", {"error": _sentence(str(e))})
        except OSError as e:
            error = f"The server could not save its share links: {e.strerror or e}. Nothing was changed."
            return answer(start_response, "500 Internal Server Error", {"error": error})

    def _admin(self, user: str) -> bool:
        account = getattr(self.users, "users", {}).get(user)
        return bool(account is not None and account.admin)

    def _visible(self, user: str, folder: str) -> list[ShareLink]:
        assert self.store is not None
        mine = self._admin(user)
        return [
            x for x in self.store.links()
            if (mine or x.owner == user) and (not folder or x.path == folder or x.path.startswith(folder + "/"))
        ]  # fmt: skip

    def _create(self, environ: dict, start_response: StartResponse, provider: Any, user: str, folder: str,
                body: dict[str, Any]) -> list[bytes]:  # fmt: skip
        assert self.store is not None
        mode, expires = body.get("mode"), body.get("expires", "7d")
        password, label = body.get("password") or None, body.get("label") or ""
        if mode not in MODES:
            return answer(start_response, "400 Bad Request",
                          {"error": f"Choose how the link opens the folder: {', '.join(MODES)}."})  # fmt: skip
        if not isinstance(expires, str) or not isinstance(label, str) or not isinstance(password, str | None):
            return answer(start_response, "400 Bad Request", {"error": "Give the expiry and label as text."})
        if is_internal_path(folder):
            return answer(start_response, "403 Forbidden", {"error": "davsync's own folders cannot be shared."})
        try:
            res = provider.get_resource_inst(environ.get("PATH_INFO", "/"), environ)
        except DAVError:
            res = None
        if res is None:
            return answer(start_response, "404 Not Found", {"error": f"There is no folder /{folder} on the server."})
        if not res.is_collection:
            error = "Share links open folders: share the folder that holds this file, or put it in a folder of its own."
            return answer(start_response, "409 Conflict", {"error": error})
        issued = self.store.create(folder, mode, expires_in=parse_duration(expires), password=password,
                                   label=label[:200], owner=user)  # fmt: skip
        return answer(start_response, "200 OK", {"link": issued.link.as_json(), "href": f"/s/{issued.token}/"})

    def _revoke(self, start_response: StartResponse, user: str, link_id: str) -> list[bytes]:
        assert self.store is not None
        found = next((x for x in self.store.links() if x.id == link_id), None)
        if found is None or not (found.owner == user or self._admin(user)):
            return answer(start_response, "404 Not Found", {"error": f"You have no share link {link_id}."})
        link = self.store.revoke(link_id)
        message = f"Revoked the link to /{link.path}; it stops working at once."
        return answer(start_response, "200 OK", {"message": message})


def _body(environ: dict) -> dict[str, Any] | None:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if not 0 < length <= MAX_BODY:
            return None
        body = json.loads(environ["wsgi.input"].read(length))
    except (ValueError, TypeError):
        return None
    return body if isinstance(body, dict) else None


def _sentence(message: str) -> str:
    """LinkStore speaks to the command line; here the advice has no option names."""
    message = message.replace("; see `davsync share list`", "").replace(" with `davsync share create`", "")
    message = message[:1].upper() + message[1:]
    return message if message.endswith(".") else message + "."
