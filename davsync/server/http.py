"""cheroot tuning: keep serving a busy keep-alive connection on the same worker thread.

Stock cheroot hands every keep-alive connection back to its selector thread after each
request, and a worker picks it up again on the next one: two thread hand-offs per
request, which cost more than a small GET itself. A worker that just answered waits a
moment (2 ms) for the client's next request and serves it directly; a quiet
connection goes back to the selector as usual.
"""

from __future__ import annotations

import select

from cheroot.server import HTTPConnection

FOLLOW_UP_WAIT = 0.002
MAX_IN_A_ROW = 200  # then yield the thread, so one client cannot keep a worker forever


class StickyConnection(HTTPConnection):
    def communicate(self) -> bool:
        keep = super().communicate()
        served = 1
        while keep and served < MAX_IN_A_ROW and self._next_request_ready():
            keep = super().communicate()
            served += 1
        return keep

    def _next_request_ready(self) -> bool:
        rfile = self.rfile
        if getattr(rfile, "has_data", None) and rfile.has_data():
            return True
        try:
            pending = self.socket.pending() if hasattr(self.socket, "pending") else 0  # TLS-buffered bytes
            if pending:
                return True
            readable, _, _ = select.select([self.socket], [], [], FOLLOW_UP_WAIT)
        except (OSError, ValueError):
            return False
        return bool(readable)
