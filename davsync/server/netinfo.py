"""Where the share can be reached: addresses read from the local interfaces, no traffic sent."""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct

SIOCGIFADDR = 0x8915


def interface_ipv4_addresses() -> list[str]:
    """IPv4 addresses of the up interfaces (Linux ioctl; falls back to the hostname's)."""
    found: list[str] = []
    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        names = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for name in names:
            try:
                packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue
            found.append(socket.inet_ntoa(packed[20:24]))
    if not found:
        try:
            found = [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
        except OSError:
            found = []
    return list(dict.fromkeys(found))


def lan_addresses() -> list[str]:
    """Private-range addresses first: those are what a phone or PC on the LAN can use."""
    addrs = [a for a in interface_ipv4_addresses() if not ipaddress.ip_address(a).is_loopback]
    return sorted(addrs, key=lambda a: (not ipaddress.ip_address(a).is_private, a))


def share_urls(host: str, port: int, scheme: str) -> list[str]:
    """URLs a user can type: the bound address, or every LAN address when bound to all."""
    if host in ("0.0.0.0", "::", ""):
        hosts = ["127.0.0.1", *lan_addresses()]
    else:
        hosts = [host]
    return [f"{scheme}://{h if ':' not in h else '[' + h + ']'}:{port}/" for h in hosts]
