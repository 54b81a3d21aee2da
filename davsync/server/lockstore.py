"""The persistent lock table: WsgiDAV's shelve, cleaned of locks that no answer could show,
and what `davsync locks` reads and breaks (with no server running: the shelve is one writer's).

A lock whose owner is not well-formed XML on its own (an unexpanded `&entity;`, stored
before request bodies with a DTD were refused) makes every LOCK answer and lockdiscovery
fail with a 500: no client can see it, refresh it or remove it. Such locks are dropped
when the table is opened.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lxml import etree
from wsgidav.lock_man.lock_storage import LockStorageShelve

log = logging.getLogger("davsync.server")
LOCKS_FILE = "locks.shelve"


def owner_readable(owner: object) -> bool:
    """True when WsgiDAV can re-parse the stored owner (empty is fine)."""
    if not owner:
        return True
    try:
        etree.XML(owner if isinstance(owner, bytes) else str(owner).encode(),
                  parser=etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))  # fmt: skip
    except etree.XMLSyntaxError:
        return False
    return True


class LockStore(LockStorageShelve):
    def open(self) -> None:
        super().open()
        bad = [k for k, lock in self._dict.items()
               if k.startswith("opaquelocktoken:") and not owner_readable(lock.get("owner"))]  # fmt: skip
        for token in bad:
            self.delete(token)
        if bad:
            log.warning("removed %d lock(s) whose owner could not be read; no client could see or remove them",
                        len(bad))  # fmt: skip


@dataclass(frozen=True)
class LockInfo:
    token: str
    path: str
    user: str
    owner: str  # the client's own words (a name, a mail address, a URL), as text
    expires: float  # epoch seconds
    scope: str
    depth: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _info(lock: dict[str, Any]) -> LockInfo:
    owner = lock.get("owner") or b""
    try:
        text = " ".join("".join(etree.XML(owner, parser=etree.XMLParser(resolve_entities=False)).itertext()).split())
    except (etree.XMLSyntaxError, TypeError, ValueError):
        text = str(owner)
    return LockInfo(str(lock.get("token")), str(lock.get("root")), str(lock.get("principal") or ""), text,
                    float(lock.get("expire") or 0), str(lock.get("scope")), str(lock.get("depth")))  # fmt: skip


def open_locks(state_dir: Path) -> LockStore:
    store = LockStore(str(state_dir / LOCKS_FILE))
    store.open()
    return store


def list_locks(state_dir: Path) -> list[LockInfo]:
    """Every lock still in force (expired ones are dropped on the way, as WsgiDAV does)."""
    store = open_locks(state_dir)
    try:
        found = store.get_lock_list("/", include_root=True, include_children=True, token_only=False)
        return sorted((_info(lock) for lock in found), key=lambda i: (i.path, i.token))
    finally:
        store.close()


def break_locks(state_dir: Path, what: str) -> list[LockInfo]:
    """Remove the lock with this token, or every lock on this path; what was removed."""
    path = "/" + what.strip("/") if not what.startswith("opaquelocktoken:") else None
    store = open_locks(state_dir)
    try:
        found = store.get_lock_list("/", include_root=True, include_children=True, token_only=False)
        gone = [_info(lock) for lock in found
                if (lock.get("token") == what if path is None else lock.get("root") == path)]  # fmt: skip
        for info in gone:
            store.delete(info.token)
        return gone
    finally:
        store.close()
