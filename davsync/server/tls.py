"""Check `--tls-cert`/`--tls-key` before binding, so a bad pair is named as such.

Loading them only inside cheroot turns every problem into an `ssl.SSLError` (an
OSError) at listen time, which looked like a busy port; an encrypted key would even
stop the server at a passphrase prompt.
"""

from __future__ import annotations

import ssl
from pathlib import Path


class TLSFilesError(ValueError):
    """The certificate or key cannot be used; the message says which and what to do."""


class _Encrypted(Exception):
    pass


def _refuse_passphrase() -> str:
    raise _Encrypted()


def check_tls_files(cert: Path, key: Path) -> None:
    """Raise TLSFilesError unless `key` is an unencrypted private key matching `cert`."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=str(cert))
    except (ssl.SSLError, ValueError):
        raise TLSFilesError(
            f"The TLS certificate {cert} is not a PEM certificate "
            "(the file should contain -----BEGIN CERTIFICATE-----)."
        ) from None
    except OSError as e:
        raise TLSFilesError(f"The TLS certificate {cert} cannot be read ({e.strerror}).") from None
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        server.load_cert_chain(str(cert), str(key), password=_refuse_passphrase)
    except _Encrypted:
        raise TLSFilesError(
            f"The TLS key {key} is protected by a passphrase; davsync needs it unencrypted: "
            f"openssl pkey -in {key} -out {key}.plain, then --tls-key {key}.plain (keep it private)."
        ) from None
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise TLSFilesError(
                f"The TLS key {key} does not belong to the certificate {cert}; "
                "give the key that was created together with this certificate."
            ) from None
        raise TLSFilesError(
            f"The TLS key {key} is not a PEM private key (the file should contain -----BEGIN ... PRIVATE KEY-----)."
        ) from None
    except OSError as e:
        raise TLSFilesError(f"The TLS key {key} cannot be read ({e.strerror}).") from None
