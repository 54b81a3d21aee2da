"""Share links: the store of links to one folder or one file each, kept in the server's state dir.

A link is `/s/<token>/` with a token of 160 random bits. Only its SHA-256 is stored
(a token that long needs no salt or slow hash), so the token is shown once, when it is
made or reissued. The file is rewritten atomically by `davsync share`; a running
server notices the change on the next link request (one stat) and reloads it.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..users import check_password, digest_ha1, hash_password

MODES = ("read-only", "read-write", "drop")
KINDS = ("folder", "file")  # a file link opens as a folder holding just that file (link_file.py)
DROP_FILE = (
    "a drop link collects uploads into a folder, so a single file cannot have one; "
    "share the file read-only or read-write, or its folder as a drop link."
)
TOKEN_BYTES = 20  # 160 bits; the issue asks for at least 128
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
DIGEST_USER = "share"  # Digest cannot accept "any user name": its hash includes the name
SHARES_FILE = "shares.json"
LINK_PASSWORD = "davsync.link_password"  # environ key: the link being served has a password (its page says "log in")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class LinkError(Exception):
    """A refused link operation; the message says what to do."""


def parse_duration(text: str) -> float | None:
    """'7d', '12h', '30m', '2w' -> seconds; 'never' (only that word: a link that never expires is
    asked for by name, never by a 0 or a typo) -> None."""
    if text.strip().lower() == "never":
        return None
    m = _DURATION.match(text.lower())
    if not m or float(m.group(1)) <= 0:
        raise LinkError(
            f"cannot read the duration {text!r}: use a number and a unit, e.g. 7d, 12h, 30m, 2w, or 'never'."
        )
    return float(m.group(1)) * _UNITS[m.group(2)]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def shorten(token: str) -> str:
    """What logs and listings show of a token: enough to tell links apart, useless to an attacker."""
    return token[:4] + "…"


@dataclass(frozen=True)
class ShareLink:
    id: str
    token_sha256: str
    token_hint: str
    path: str  # relative to the served root, '/'-separated; '' is the root itself
    mode: str
    created: float
    expires: float | None = None
    label: str = ""
    password: str | None = None  # scrypt hash
    digest_ha1: str | None = None  # MD5(share:realm:password) for Windows Explorer over http
    revoked: float | None = None
    reissued: int = 0
    owner: str = ""  # the user who made it over HTTP (the folder page, the PC app); "" from `davsync share`
    kind: str = "folder"  # or "file": `path` names one file (links made before files could be shared are folders)

    @property
    def realm(self) -> str:
        return f"davsync share {self.id}"

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (now or time.time()) >= self.expires

    def state(self, now: float | None = None) -> str:
        if self.revoked is not None:
            return "revoked"
        return "expired" if self.expired(now) else "active"

    def check_password(self, password: str) -> bool:
        return self.password is not None and check_password(self.password, password)

    def cookie_key(self) -> bytes:
        """Signs login cookies; changes with the password and the token, so both invalidate old cookies."""
        return hashlib.sha256(f"{self.password}\0{self.token_sha256}".encode()).digest()

    def as_json(self) -> dict:
        data = asdict(self)
        for secret in ("token_sha256", "password", "digest_ha1"):
            data.pop(secret)
        data["has_password"] = self.password is not None
        data["state"] = self.state()
        return data


@dataclass
class Issued:
    """A link together with its token, as returned once by create and reissue."""

    link: ShareLink
    token: str


@dataclass
class _Snapshot:
    stamp: tuple[int, int, int] | None = None
    by_hash: dict[str, ShareLink] = field(default_factory=dict)


class LinkStore:
    """The shares file of one state dir. Reads are cheap and reload when the file changed."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / SHARES_FILE
        self._snap = _Snapshot()
        self._lock = threading.Lock()

    # --- reading (server) ------------------------------------------------------

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def links(self) -> list[ShareLink]:
        return sorted(self._current().by_hash.values(), key=lambda link: link.created)

    def find(self, token: str) -> ShareLink | None:
        """The link this token opens (revoked and expired ones too; the caller tells them apart)."""
        if not TOKEN_RE.match(token):
            return None
        found = self._current().by_hash.get(token_hash(token))
        if found is None or not hmac.compare_digest(found.token_sha256, token_hash(token)):
            return None
        return found

    def _current(self) -> _Snapshot:
        stamp = self._stamp()
        snap = self._snap
        if stamp == snap.stamp:
            return snap
        with self._lock:
            if self._snap.stamp != stamp:
                self._snap = _Snapshot(stamp, {link.token_sha256: link for link in self._read()})
            return self._snap

    def _read(self) -> list[ShareLink]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [ShareLink(**item) for item in data.get("links", [])]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise LinkError(f"the shares file {self.path} is unreadable or damaged ({e}).") from None

    # --- changing (davsync share) ----------------------------------------------

    @contextmanager
    def _editing(self) -> Iterator[list[ShareLink]]:
        """Lock the file against a concurrent `davsync share`, yield the links, write them back."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(SHARES_FILE + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            links = self._read()
            yield links
            self._write(links)

    def _write(self, links: list[ShareLink]) -> None:
        data = {"version": 1, "links": [asdict(link) for link in links]}
        tmp = self.path.with_name(SHARES_FILE + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def create(
        self, path: str, mode: str, *, expires_in: float | None, password: str | None, label: str = "",
        owner: str = "", kind: str = "folder",
    ) -> Issued:
        if mode not in MODES:
            raise LinkError(f"the mode must be one of {', '.join(MODES)}, not {mode!r}.")
        if kind not in KINDS:
            raise LinkError(f"a link opens a folder or a file, not a {kind!r}.")
        if kind == "file" and mode == "drop":
            raise LinkError(DROP_FILE)
        if password is not None and not password:
            raise LinkError("an empty password is not allowed; leave out --password for a link without one.")
        with self._editing() as links:
            taken = {link.id for link in links}
            link_id = _new_id(taken)
            token = secrets.token_urlsafe(TOKEN_BYTES)
            now = time.time()
            link = ShareLink(
                id=link_id, token_sha256=token_hash(token), token_hint=shorten(token), path=path, mode=mode,
                created=now, expires=None if expires_in is None else now + expires_in, label=label, owner=owner,
                kind=kind,
            )  # fmt: skip
            if password is not None:
                link = replace(
                    link, password=hash_password(password), digest_ha1=digest_ha1(DIGEST_USER, password, link.realm)
                )
            links.append(link)
        return Issued(link, token)

    def revoke(self, link_id: str) -> ShareLink:
        with self._editing() as links:
            i = _index_of(links, link_id)
            if links[i].revoked is None:
                links[i] = replace(links[i], revoked=time.time())
            return links[i]

    def reissue(self, link_id: str, *, expires_in: float | None | bool = False) -> Issued:
        """A new token for the same link (the old one stops working at once).

        `expires_in=False` keeps the current expiry; a number or None sets a new one.
        """
        with self._editing() as links:
            i = _index_of(links, link_id)
            link = links[i]
            if link.revoked is not None:
                raise LinkError(f"link {link_id} is revoked; create a new one with `davsync share create`.")
            expires = (
                link.expires
                if expires_in is False
                else (None if expires_in is None else time.time() + float(expires_in))
            )
            if expires is not None and expires <= time.time():
                raise LinkError(
                    f"link {link_id} has expired; give it a new lifetime with --expires, e.g. --expires 7d."
                )
            token = secrets.token_urlsafe(TOKEN_BYTES)
            links[i] = replace(
                link, token_sha256=token_hash(token), token_hint=shorten(token), expires=expires,
                reissued=link.reissued + 1,
            )  # fmt: skip
            return Issued(links[i], token)


def _new_id(taken: set[str]) -> str:
    while True:
        candidate = secrets.token_hex(3)
        if candidate not in taken:
            return candidate


def _index_of(links: list[ShareLink], link_id: str) -> int:
    for i, link in enumerate(links):
        if link.id == link_id:
            return i
    known = ", ".join(link.id for link in links if link.revoked is None) or "none"
    raise LinkError(f"there is no share link with ID {link_id!r} (known: {known}); see `davsync share list`.")


__all__ = [
    "LinkStore", "ShareLink", "Issued", "LinkError", "MODES", "KINDS", "DROP_FILE", "parse_duration", "shorten",
    "DIGEST_USER", "LINK_PASSWORD",
]  # fmt: skip
