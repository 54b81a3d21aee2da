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
            found = [str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
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


def bind_problem(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on, in words, or None if a trial bind works.

    cheroot folds the reason into one long string; binding once ourselves keeps the errno.
    """
    import errno

    try:
        infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror:
        return (f"--host {host} is neither an IP address nor a known host name; "
                "use --host 0.0.0.0 to listen on every network interface.")  # fmt: skip
    last: OSError | None = None
    for family, socktype, proto, _, addr in infos:
        try:
            with socket.socket(family, socktype, proto) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(addr)
            return None
        except OSError as e:
            last = e
    if last is None:
        return None
    if last.errno == errno.EADDRINUSE:
        return f"port {port} is already in use by another program; stop it, or choose another port with --port."
    if last.errno == errno.EADDRNOTAVAIL:
        return (f"{host} is not an address of this machine; use --host 0.0.0.0 to listen on every "
                "network interface, or one of the addresses `ip addr` shows.")  # fmt: skip
    if last.errno in (errno.EACCES, errno.EPERM):
        return f"port {port} is below 1024 and needs root; use --port 8080 (or any port above 1023)."
    return f"cannot listen on {host}:{port} ({last.strerror})."


def explorer_folder(host: str, port: int | str, scheme: str, path: str = "/", *, in_link: bool = False) -> str:
    """What Windows Explorer's "Map network drive" takes as Folder for this share (or a folder in
    it): `\\\\host@port\\DavWWWRoot\\path`, with `@SSL` for https. A share link's (`in_link`, `path`
    from `/s/<token>`) has no DavWWWRoot: `\\\\host@port\\s\\<token>` makes Explorer probe only `/`
    and `/s`, which the link gate answers without the share's login; DavWWWRoot would list `/`."""
    ssl = "@SSL" if scheme == "https" else ""
    at_port = f"@{port}" if port else ""
    root = "" if in_link else "\\DavWWWRoot"
    return f"\\\\{host}{ssl}{at_port}{root}" + path.rstrip("/").replace("/", "\\")
