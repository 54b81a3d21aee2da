"""Being found and reached: a QR code of the share URL, and opt-in mDNS/DNS-SD (_webdav._tcp)."""

from __future__ import annotations

import socket
from typing import Any

SERVICE_TYPE = "_webdav._tcp.local."
SECURE_SERVICE_TYPE = "_webdavs._tcp.local."


def qr_text(url: str) -> str:
    """The URL as a QR code drawn with terminal characters (scan it with a phone's WebDAV app)."""
    import io

    import segno

    out = io.StringIO()
    segno.make(url, error="m").terminal(out=out, compact=True, border=2)
    return out.getvalue()


def service_info(instance: str, port: int, addresses: list[str], *, path: str = "/", tls: bool = False) -> Any:
    """The DNS-SD record davsync publishes: `<instance>._webdav._tcp` with `path=` in TXT (RFC 6763)."""
    from zeroconf import ServiceInfo

    stype = SECURE_SERVICE_TYPE if tls else SERVICE_TYPE
    host = socket.gethostname().split(".")[0] or "davsync"
    return ServiceInfo(
        stype,
        f"{instance}.{stype}",
        port=port,
        addresses=[socket.inet_aton(a) for a in addresses],
        properties={"path": path, "u": "", "txtvers": "1"},
        server=f"{host}.local.",
    )


class Advertiser:
    """Publishes the record on the LAN interfaces while the server runs (only with --advertise)."""

    def __init__(self, info: Any, interfaces: list[str]) -> None:
        self.info = info
        self.interfaces = interfaces
        self._zc: Any = None

    def start(self) -> None:
        from zeroconf import Zeroconf

        self._zc = Zeroconf(interfaces=self.interfaces)
        self._zc.register_service(self.info)

    def stop(self) -> None:
        if self._zc is not None:
            self._zc.unregister_service(self.info)
            self._zc.close()
            self._zc = None
