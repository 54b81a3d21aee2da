"""The base of davsync's steps in WsgiDAV's middleware stack."""

from __future__ import annotations

from typing import Any

from wsgidav.mw.base_mw import BaseMiddleware

from .wsgitypes import WsgiApp


class Middleware(BaseMiddleware):
    """A davsync step in WsgiDAV's stack: `app` is the next one, which gets whatever this step
    does not answer itself."""

    def __init__(self, wsgidav_app: Any, next_app: WsgiApp, config: dict) -> None:
        super().__init__(wsgidav_app, next_app, config)
        self.app = next_app
