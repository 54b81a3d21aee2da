"""Passwords in the OS credential store (Windows Credential Manager, macOS Keychain, Secret Service).

davsync never writes a password to a plain file or an environment block; keyring picks the
platform's store. One entry per (share URL, user), under the service name "davsync <url>".
"""

from __future__ import annotations

import keyring
import keyring.errors


def _service(url: str) -> str:
    return f"davsync {url.rstrip('/')}/"


def save_password(url: str, user: str, password: str) -> None:
    """Store (or replace) the password; raises keyring.errors.KeyringError when no store works."""
    keyring.set_password(_service(url), user, password)


def load_password(url: str, user: str) -> str | None:
    """The stored password, or None when there is none or no store is available."""
    try:
        return keyring.get_password(_service(url), user)
    except keyring.errors.KeyringError:
        return None


def delete_password(url: str, user: str) -> None:
    """Forget the password; forgetting one that is not stored is not an error."""
    try:
        keyring.delete_password(_service(url), user)
    except keyring.errors.PasswordDeleteError:
        pass
