"""The persistent lock table: WsgiDAV's shelve, cleaned of locks that no answer could show.

A lock whose owner is not well-formed XML on its own (an unexpanded `&entity;`, stored
before request bodies with a DTD were refused) makes every LOCK answer and lockdiscovery
fail with a 500: no client can see it, refresh it or remove it. Such locks are dropped
when the table is opened.
"""

from __future__ import annotations

import logging

from lxml import etree
from wsgidav.lock_man.lock_storage import LockStorageShelve

log = logging.getLogger("davsync.server")


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
