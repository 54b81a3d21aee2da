"""Servers on this network: the DNS-SD records `davsync serve --advertise` publishes (discovery.py),
and any other WebDAV server announcing `_webdav._tcp` / `_webdavs._tcp`, for the Add form.

Browsing starts when the form first asks and keeps a live list (a server that says goodbye
leaves it). A PC where multicast is impossible (no network, a firewall) gets a sentence
saying so, and the form's typed URL works as before.
"""

from __future__ import annotations

import threading
from typing import Any

from ..server.discovery import SECURE_SERVICE_TYPE, SERVICE_TYPE


def url_of(info: Any) -> str | None:
    """The share URL a record names: http(s)://address:port/path (the TXT `path`, RFC 6763)."""
    addresses = [a for a in info.parsed_addresses() if ":" not in a] or list(info.parsed_addresses())
    if not addresses or not info.port:
        return None
    props = {(k or b"").decode("utf-8", "replace"): (v or b"").decode("utf-8", "replace")
             for k, v in (info.properties or {}).items()}  # fmt: skip
    path = "/" + props.get("path", "/").strip("/")
    scheme = "https" if info.type == SECURE_SERVICE_TYPE else "http"
    host = addresses[0] if ":" not in addresses[0] else f"[{addresses[0]}]"
    return f"{scheme}://{host}:{info.port}{path.rstrip('/')}/"


class LanServers:
    def __init__(self, interfaces: list[str] | None = None) -> None:
        self.interfaces = interfaces  # None: every interface (tests keep to 127.0.0.1)
        self._lock = threading.Lock()
        self._found: dict[str, dict[str, str]] = {}
        self._zc: Any = None
        self._browser: Any = None
        self.problem = ""

    def note(self, info: Any) -> None:
        """A record seen (or updated): listed by its instance name."""
        url = url_of(info)
        if url is None:
            return
        name = info.name[: -len(info.type) - 1] if info.name.endswith("." + info.type) else info.name
        host = (info.server or "").rstrip(".")
        with self._lock:
            self._found[info.name] = {"name": name, "url": url, "host": host}

    def forget(self, full_name: str) -> None:
        with self._lock:
            self._found.pop(full_name, None)

    def found(self) -> dict[str, Any]:
        self.start()
        with self._lock:
            servers = sorted(self._found.values(), key=lambda s: s["name"].casefold())
        return {"servers": servers, "problem": self.problem}

    def start(self) -> None:
        with self._lock:
            if self._zc is not None or self.problem:
                return
            try:
                from zeroconf import ServiceBrowser, Zeroconf

                self._zc = Zeroconf() if self.interfaces is None else Zeroconf(interfaces=self.interfaces)
                self._browser = ServiceBrowser(self._zc, [SERVICE_TYPE, SECURE_SERVICE_TYPE], handlers=[self._changed])
            except (OSError, ImportError) as e:
                self.problem = f"Cannot look for servers on this network ({e}); type the server's address instead."

    def _changed(self, zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        from zeroconf import ServiceStateChange

        if state_change is ServiceStateChange.Removed:
            self.forget(name)
            return
        info = zeroconf.get_service_info(service_type, name, timeout=3000)
        if info is not None:
            self.note(info)

    def stop(self) -> None:
        """Closed on a thread of its own: Quit must not wait for the network."""
        with self._lock:
            zc, self._zc = self._zc, None
        if zc is not None:
            threading.Thread(target=zc.close, name="davsync-mdns-close", daemon=True).start()
