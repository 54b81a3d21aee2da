"""davsync's own browser pages: a folder listing with actions, and folders as streamed zips.

`PageBrowser` sits in WsgiDAV's middleware stack after the authenticator and the write guard,
so it sees a request only once the same checks as any WebDAV request have passed; the
actions on the page are plain WebDAV requests (PUT, MKCOL, MOVE, DELETE) sent by its script.
"""

from .browser import ASSET_PREFIX, PageBrowser

__all__ = ["ASSET_PREFIX", "PageBrowser"]
