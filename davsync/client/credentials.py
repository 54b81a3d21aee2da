"""Passwords in the OS credential store (Windows Credential Manager, macOS Keychain, Secret
Service on Linux) through `keyring`: never in a plain file or an environment block.

One entry per (share URL, user). The URL is canonicalised so that `http://Pi:8080` and
`http://pi:8080/` find the same entry.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

SERVICE_PREFIX = "davsync:"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class CredentialStoreError(Exception):
    """The credential store is missing or refused; the message says what to do instead."""


def service_name(url: str) -> str:
    """The keyring service for a share: `davsync:` + scheme://host:port/path/."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return SERVICE_PREFIX + urlunsplit((scheme, f"{host}:{port}", path, "", ""))


NO_STORE = (
    "this system has no credential store (keyring) to keep the password in: set DAVSYNC_PASSWORD "
    "for each run instead, or run davsync in a terminal to be asked for it."
)


class NoCredentialStore(CredentialStoreError):
    """No keyring backend at all (a server or container without a desktop session): a setup
    fact, not a failure, so `login` says what works instead."""


def store_available() -> bool:
    """Is there a credential store to keep a password in? (keyring falls back to a backend
    that refuses everything when none is installed or reachable.)"""
    import keyring
    from keyring.backends import fail

    return not isinstance(keyring.get_keyring(), fail.Keyring)


def _store_error(e: Exception) -> CredentialStoreError:
    from keyring.errors import NoKeyringError

    if isinstance(e, NoKeyringError):
        return NoCredentialStore(NO_STORE)
    return CredentialStoreError(
        f"the system's credential store refused the request ({e}): unlock it and try again, "
        "or set DAVSYNC_PASSWORD for each run instead."
    )


def save_password(url: str, user: str, password: str) -> None:
    """Store (or replace) the password for `user` on the share at `url`."""
    import keyring
    from keyring.errors import KeyringError

    try:
        keyring.set_password(service_name(url), user, password)
    except KeyringError as e:
        raise _store_error(e) from None


def load_password(url: str, user: str) -> str | None:
    """The stored password, or None when there is none or no credential store at all."""
    import keyring
    from keyring.errors import KeyringError

    try:
        return keyring.get_password(service_name(url), user)
    except KeyringError:
        return None


def delete_password(url: str, user: str) -> bool:
    """Forget the stored password; False when there was none."""
    import keyring
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        keyring.delete_password(service_name(url), user)
    except PasswordDeleteError:
        return False
    except KeyringError as e:
        raise _store_error(e) from None
    return True
