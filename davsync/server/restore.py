"""Putting a kept version back into the live share: one function for every page that restores
(the admin page, and the folder page's "Recently deleted")."""

from __future__ import annotations

import os
from typing import Any

from .guard import PATH_LOCKS
from .version_keeper import Restored, Who


def restore_in_share(state: Any, path: str, vid: str, to: str | None, user: str) -> Restored:
    """VersionStore.restore (atomic placement, what is at the target kept as a version first),
    under the target's request lock, then recorded in this server's change journal.
    `state` is the server's ShareState; paths are share paths (a/b/name)."""
    store, index = state.versions, state.index
    target = (to if to is not None else path).strip("/")
    key = os.path.abspath(os.path.join(state.provider.root_folder_path, *target.split("/")))
    with PATH_LOCKS.hold(key):  # the same key WebDAV requests lock the target by
        # what a folder (or anything but a file) at the target is set aside, it leaves the journal
        # before the restored one arrives; a file replaced by a file is simply recorded anew
        result = store.restore(path, Who(user, "RESTORE"), vid=vid, to=to, between=index.forget)
        for folder in result.folders:
            index.record_dir(folder)
        with index.batch():
            for rel, size, mtime_ns, md5 in result.files:
                try:
                    st = os.stat(os.path.join(str(state.settings.root), *rel.split("/")))
                except OSError:
                    continue
                index.record_file(rel, st, md5 if (st.st_size, st.st_mtime_ns) == (size, mtime_ns) else None)
    return result
