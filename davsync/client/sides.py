"""The executor's seams: the few things it asks of the server (`ServerSide`) and of the local
folder (`LocalSide`), as Protocols.

`DavServer` is the real one (a WebDAV share through `Remote`, with resumable and delta transfers);
tests/fakeserver.py is an in-memory one that keeps the same promises (ETags, If-Match /
If-None-Match, MD5, 412 on a lost race), so a model of many sync runs needs no HTTP. The
end-to-end tests still run the real one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from .. import osfs
from . import transfer
from .hooks import TransferHooks
from .journal import Journal
from .plan import LocalEntry, RemoteEntry
from .remote import FolderListing, PutRequest, Remote, Uploaded
from .transfer import Downloaded, download, keep_as_conflict, move_to_trash, stat_entry


class ServerSide(Protocol):
    """What the executor asks of the server. Writes raise PreconditionFailed (412) when the
    version named by `if_match` is no longer there, or `if_none_match` finds a file."""

    def server_name(self, entry: RemoteEntry) -> str | None: ...

    def mkcol(self, path: str) -> None: ...

    def move(
        self, src: str, dst: str, *, if_match: str | None = None, overwrite: bool = False, src_href: str = ""
    ) -> RemoteEntry | None: ...

    def delete(self, path: str, *, if_match: str | None = None, href: str = "", if_empty: bool = False) -> None: ...

    def list_folder(self, folder: str, href: str = "") -> FolderListing: ...

    def fetch(self, entry: RemoteEntry, state_dir: Path, hooks: TransferHooks, base: Path | None = None) -> Downloaded:
        """The listed version of a file, in a partial file under state_dir, its MD5 checked
        (`base`: the local file it replaces, for a delta)."""

    def send(self, journal: Journal, req: PutRequest, hooks: TransferHooks) -> Uploaded:
        """PUT a local file with its preconditions and MD5 (None: not read yet; hashed as it is sent)."""

    def placed(self, state_dir: Path, entry: RemoteEntry, placed: Any, got: Downloaded) -> None:
        """A fetched file was placed (a delta keeps its block list)."""


class DavServer:
    """The real server side: a WebDAV share."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote

    def server_name(self, entry: RemoteEntry) -> str | None:
        return self.remote.server_name(entry)

    def mkcol(self, path: str) -> None:
        self.remote.mkcol(path)

    def move(
        self, src: str, dst: str, *, if_match: str | None = None, overwrite: bool = False, src_href: str = ""
    ) -> RemoteEntry | None:
        return self.remote.move(src, dst, if_match=if_match, overwrite=overwrite, src_href=src_href)

    def delete(self, path: str, *, if_match: str | None = None, href: str = "", if_empty: bool = False) -> None:
        self.remote.delete(path, if_match=if_match, href=href, if_empty=if_empty)

    def list_folder(self, folder: str, href: str = "") -> FolderListing:
        return self.remote.list_folder(folder, href)

    def fetch(self, entry: RemoteEntry, state_dir: Path, hooks: TransferHooks, base: Path | None = None) -> Downloaded:
        got = None
        if base is not None:  # the local file is the base: fetch only what changed
            from . import delta  # (here, not at the top: a run with nothing to transfer never loads it)

            got = delta.download(self.remote, entry, base, state_dir, progress=hooks.progress, stop=hooks.stop)
        if got is not None:
            return got
        return download(self.remote, entry, state_dir, progress=hooks.progress, stop=hooks.stop)

    def send(self, journal: Journal, req: PutRequest, hooks: TransferHooks) -> Uploaded:
        from . import resume  # (here, not at the top: a run with nothing to send never loads it)

        return resume.put_file(self.remote, journal, req, hooks)

    def placed(self, state_dir: Path, entry: RemoteEntry, placed: Any, got: Downloaded) -> None:
        from . import delta

        delta.remember(self.remote, state_dir, entry, placed, got)


class LocalSide(Protocol):
    """What the executor does to the local folder. Every change that replaces or removes a file
    first checks that it is still the version judged (`expected`), else raises Raced."""

    def stat(self, path: Path) -> LocalEntry | None: ...

    def set_aside(self, dest: Path, rel: str, expected: LocalEntry | None, name: str | None = None) -> str:
        """Rename a local version to its conflict name; returns the name used."""

    def trash(self, dest: Path, rel: str, expected: LocalEntry | None, run_stamp: str) -> str:
        """Move a local file to DEST/.davsync/trash/<run>/; returns where."""

    def place(
        self,
        got: Downloaded,
        dest: Path,
        rel: str,
        entry: RemoteEntry,
        expected: LocalEntry | None,
        dir_changed: Callable[[Path], None],
        before_rename: Callable[[LocalEntry], None],
        set_aside: Callable[[str], None] | None,
    ) -> LocalEntry:
        """Put a fetched version in place (temp + fsync + rename), the file there still as judged."""

    def rename(self, src: Path, dst: Path, *, case_only: bool = False) -> None: ...

    def mkdir(self, path: Path) -> None:
        """Make a folder and its parents (one there already is fine)."""

    def rmdir(self, path: Path) -> None:
        """Remove an empty folder (OSError when something is inside)."""

    def sync_dir(self, folder: Path) -> None:
        """Make renames in this folder durable."""


class Disk:
    """The real local side: the filesystem, through davsync's safe writes (client/transfer.py, osfs);
    where a call is one of transfer.py's functions, the method is that function itself."""

    stat = staticmethod(stat_entry)
    set_aside = staticmethod(keep_as_conflict)
    trash = staticmethod(move_to_trash)
    place = staticmethod(transfer.place)

    def rename(self, src: Path, dst: Path, *, case_only: bool = False) -> None:
        if case_only:
            osfs.rename_case(src, dst)
        else:
            osfs.rename(src, dst)

    def mkdir(self, path: Path) -> None:
        osfs.make_dirs(path)  # durable: the files placed inside count on their folder's entry

    def rmdir(self, path: Path) -> None:
        path.rmdir()

    def sync_dir(self, folder: Path) -> None:
        osfs.fsync_dir(folder)
