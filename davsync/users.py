"""The users file: who may connect, with hashed passwords only.

Each user has a scrypt hash (checked for Basic auth) and the Digest HA1,
MD5(user:realm:password), which HTTP Digest needs and which Windows Explorer
uses over plain http. Neither is the password; the HA1 is as sensitive as one
for Digest logins on this realm, so the file is written with mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REALM = "davsync"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


class UsersFileError(Exception):
    pass


@dataclass(frozen=True)
class User:
    name: str
    scrypt: str
    ha1: str
    read_only: bool = False
    admin: bool = False  # may use the admin page of `serve --admin`


def digest_ha1(name: str, password: str, realm: str = REALM) -> str:
    return hashlib.md5(f"{name}:{realm}:{password}".encode()).hexdigest()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


def check_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(expected, got)


# scrypt takes 16 MiB and a noticeable moment per check. KDF_SLOTS checks run at once, server-wide
# (the share, links, the admin page): memory stays bounded, and no check waits for one slow one.
KDF_SLOTS = threading.BoundedSemaphore(2)
_DUMMY_HASH: list[str] = []


class VerifiedPasswords:
    """Credentials scrypt already accepted, kept only as keyed hashes, so a check on every request
    costs one HMAC after the first (the users file and share links alike); bounded in size."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(32)
        self._keys: set[bytes] = set()
        self._lock = threading.Lock()  # the cache only; never held during a KDF

    def check(self, material: str, verify: Callable[[], bool]) -> bool:
        """Is `material` (the name, password and stored hash together) known good, else does
        `verify` (the KDF, in one of KDF_SLOTS) accept it?"""
        key = hmac.new(self._secret, material.encode(), "sha256").digest()
        with self._lock:
            if key in self._keys:
                return True
        with KDF_SLOTS:
            with self._lock:
                if key in self._keys:  # verified while we waited
                    return True
            if not verify():
                return False
        with self._lock:
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys.add(key)
        return True


def dummy_check(password: str) -> None:
    """The same work as checking a real hash, for a name that has none: answering an unknown
    user at once would tell an attacker which names exist."""
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_password(secrets.token_hex(16)))
    check_password(_DUMMY_HASH[0], password)


def validate_name(name: str) -> str:
    if not name or len(name) > 64 or any(c in name for c in ':"\\\x00\r\n') or name != name.strip():
        raise UsersFileError(
            f"Invalid user name {name!r}: use 1-64 characters, no colon, quote, backslash or surrounding spaces."
        )
    return name


class Users:
    """A loaded users file; verifications are cached so Basic auth on every request stays cheap."""

    def __init__(self, users: dict[str, User]) -> None:
        self.users = users
        self._verified = VerifiedPasswords()

    @classmethod
    def load(cls, path: Path) -> Users:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            users = {
                name: User(name, u["scrypt"], u["ha1"], bool(u.get("read_only", False)), bool(u.get("admin", False)))
                for name, u in data.get("users", {}).items()
            }
        except FileNotFoundError:
            return cls({})
        except OSError as e:
            raise UsersFileError(f"The users file {path} cannot be read ({e.strerror or e}).") from None
        except UnicodeDecodeError:
            raise UsersFileError(
                f"The users file {path} is damaged (not UTF-8 text); "
                f"repair it, or move it away and add the users again with: davsync user add NAME"
            ) from None
        except json.JSONDecodeError as e:
            raise UsersFileError(
                f"The users file {path} is damaged (not valid JSON at line {e.lineno}, column {e.colno}); "
                f"repair it, or move it away and add the users again with: davsync user add NAME"
            ) from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise UsersFileError(
                f"The users file {path} is not a davsync users file (an entry lacks its password hashes); "
                f"repair it, or move it away and add the users again with: davsync user add NAME"
            ) from None
        return cls(users)

    def save(self, path: Path) -> None:
        data = {
            "realm": REALM,
            "users": {
                u.name: {"scrypt": u.scrypt, "ha1": u.ha1, "read_only": u.read_only}
                | ({"admin": True} if u.admin else {})
                for u in self.users.values()
            },
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def add(self, name: str, password: str, *, read_only: bool, admin: bool = False) -> None:
        validate_name(name)
        self.users[name] = User(name, hash_password(password), digest_ha1(name, password), read_only, admin)

    def remove(self, name: str) -> bool:
        return self.users.pop(name, None) is not None

    def check_basic(self, name: str, password: str) -> User | None:
        user = self.users.get(name)
        if user is None:
            with KDF_SLOTS:
                dummy_check(password)
            return None
        material = f"{name}\0{password}\0{user.scrypt}"
        return user if self._verified.check(material, lambda: check_password(user.scrypt, password)) else None


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(name, password) from an `Authorization: Basic ...` header; None when it is not Basic or is malformed.

    The one place Basic credentials are decoded (the share, the fast GET path, links, the admin page)."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None
