"""Connection failures as one clean sentence: what happened, and what to do.

requests and urllib3 wrap the real cause (an ssl or socket error) several layers
deep, and their messages are reprs of reprs. A user needs the cause in words and
the fix that applies to it; the hint must not suggest a flag that was already given.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from urllib.parse import urlsplit


def causes(e: BaseException) -> Iterator[BaseException]:
    """The exception, the ones it wraps (args, reason, __cause__, __context__), depth first."""
    seen: set[int] = set()
    stack = [e]
    while stack:
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        inner = [getattr(cur, "reason", None), cur.__cause__, cur.__context__]
        inner += [a for a in getattr(cur, "args", ()) if isinstance(a, BaseException)]
        stack.extend(x for x in reversed(inner) if isinstance(x, BaseException))


def _find(e: BaseException, kind: type[BaseException]) -> BaseException | None:
    return next((c for c in causes(e) if isinstance(c, kind)), None)


def _text(e: BaseException) -> str:
    return " ".join(str(c) for c in causes(e)).lower()


def ca_cert_not_pem(ca_cert: object) -> str:
    """The --ca-cert file is not a certificate (said by the CLI's early check and after a handshake)."""
    return (
        f"{ca_cert} holds no PEM certificate: "
        "give --ca-cert the certificate of the server or of the CA that signed it."
    )


def tls_message(e: BaseException, base_url: str, ca_cert: str | None) -> str:
    """Why the TLS handshake with the server failed."""
    parts = urlsplit(base_url)
    text = _text(e)
    verify = _find(e, ssl.SSLCertVerificationError)
    if "wrong_version_number" in text or "record layer failure" in text or "http_request" in text:
        plain = base_url.replace("https://", "http://", 1)
        return f"the server at {parts.netloc} speaks plain http, not https: use {plain}."
    if "no_certificate_or_crl_found" in text or "pem lib" in text or "no certificate" in text:
        return ca_cert_not_pem(ca_cert)
    if verify is not None:
        reason = getattr(verify, "verify_message", "") or ""
        if "hostname" in reason.lower() or "ip address mismatch" in reason.lower():
            return (
                f"the server's certificate is not valid for {parts.hostname}: "
                "connect by a name the certificate lists, or pass --insecure to skip the check."
            )
        if "expired" in reason.lower():
            return "the server's certificate has expired: renew it on the server, or pass --insecure to skip the check."
        if ca_cert:
            return (
                f"the server's certificate is not signed by the CA in {ca_cert}: "
                "give --ca-cert the certificate that signed it, or pass --insecure to skip the check."
            )
        what = "is self-signed" if "self" in reason.lower() else "is not signed by a CA this computer trusts"
        return (
            f"the server's certificate {what}: pass --ca-cert FILE with the server's (or its CA's) "
            "certificate, or --insecure to skip the check."
        )
    return (
        f"the TLS handshake with {parts.netloc} failed: check that the server speaks https on that port, "
        "or pass --insecure to skip certificate checks."
    )


def connection_message(e: BaseException, base_url: str) -> str:
    """Why no HTTP exchange with the server was possible (name, refused, reset, timeout)."""
    parts = urlsplit(base_url)
    text = _text(e)
    host = parts.hostname or parts.netloc
    if _find(e, socket.gaierror) is not None or "name or service not known" in text or "failed to resolve" in text:
        return f"the host name {host} is unknown: check its spelling, or use the server's IP address."
    if _find(e, ConnectionRefusedError) is not None or "connection refused" in text:
        return (
            f"cannot reach {parts.netloc}: nothing is listening there; "
            "check that `davsync serve` is running and the port is right."
        )
    if parts.scheme == "http" and (
        _find(e, ConnectionResetError) is not None or "connection aborted" in text or "remotedisconnected" in text
    ):
        secure = base_url.replace("http://", "https://", 1)
        if speaks_tls(host, parts.port or 80):
            return f"the server at {parts.netloc} speaks https, not plain http: use {secure}."
        return f"the server at {parts.netloc} closed the connection; if it serves https, use {secure}."
    if "timed out" in text or "timeout" in text:
        return f"the server at {parts.netloc} did not answer in time: check the address and the network."
    if _find(e, OSError) is not None and "network is unreachable" in text:
        return f"the network to {host} is unreachable: check this computer's connection."
    return f"cannot reach {parts.netloc}: check that `davsync serve` is running there and the address is right."


def speaks_tls(host: str, port: int, timeout: float = 3.0) -> bool:
    """Does the port complete a TLS handshake? Asked only after plain http was cut off,
    to tell "this is an https port" from any other reset."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # a diagnosis only: nothing is sent or trusted
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host):
                return True
    except (OSError, ValueError):
        return False
