"""Loaded (via PYTHONPATH) into a client process that must meet an unknown host name.

Looking up a real unknown name would send a DNS query off this machine, and tests send traffic
to 127.0.0.1 only. So names under the reserved `.invalid` domain (RFC 6761) get the answer a
resolver gives for them, NXDOMAIN, without asking one. Everything else resolves as usual.
"""

import socket

_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.rstrip(".").lower().endswith(".invalid"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo
