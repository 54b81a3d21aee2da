"""What a crash may have left: the intents the last run journaled before a rename or an upload
and never settled. Each is settled from what is true now (a download placed or not; an upload
the server holds or not), so a kill at any moment neither loses a file nor invents a change."""

from __future__ import annotations

import hashlib
from pathlib import Path

import requests

from .journal import Journal
from .plan import JournalEntry, LocalEntry, RemoteEntry, RemoteView, complete
from .remote import Remote
from .transfer import same_stat, stat_entry
from .transport import RemoteError


class InFlight:
    """The unsettled intents of one DEST's journal, settled against the disk and the server."""

    def __init__(self, journal: Journal, dest: Path, remote: Remote) -> None:
        self.journal = journal
        self.dest = dest
        self.remote = remote

    def settle_placements(self, write: bool) -> None:
        """A download whose rename may not have happened: its row is written only if it did."""
        for intent in self.journal.intents():
            if intent.op != "place":
                continue
            here = stat_entry(self.dest / intent.path)
            placed = intent.entry
            done = here is not None and same_stat(here, _local_of(placed))
            if write:
                self.journal.settle(intent.path, placed if done else None)

    def settle_uploads(
        self, base: dict[str, JournalEntry], rv: RemoteView, write: bool
    ) -> dict[str, JournalEntry]:
        """An upload whose answer never came: done when the server holds that content."""
        out = dict(base)
        puts = [intent for intent in self.journal.intents() if intent.op == "put"]
        unlisted = self._unlisted(
            [i.path for i in puts if i.path not in rv.entries and i.path not in rv.removed] if not rv.complete else []
        )
        for intent in puts:
            path, sent = intent.path, intent.entry
            r = rv.entries.get(path) or unlisted.get(path)
            done = r is not None and not r.is_dir and self._holds(r, sent, intent.base_etag)
            entry = complete(sent, None, r) if done and r is not None else None
            if entry is not None:
                out[path] = entry
            if write:
                self.journal.settle(path, entry)
        return out

    def _unlisted(self, paths: list[str]) -> dict[str, RemoteEntry]:
        """The server's entries for in-flight uploads a change list does not name. A change list
        can lag the server's disk (its index missed the write: a failed index update, a server
        relying on rescans), so absence proves nothing: ask the server itself, one PROPFIND per
        path or, for several in one folder, one listing of the folder."""
        folders: dict[str, list[str]] = {}
        for path in paths:
            folders.setdefault(path.rpartition("/")[0], []).append(path)
        found: dict[str, RemoteEntry] = {}
        for folder, members in folders.items():
            if len(members) == 1:
                entry = self.remote.stat(members[0])
                if entry is not None:
                    found[members[0]] = entry
                continue
            try:
                listing = self.remote.list_folder(folder)
            except RemoteError as e:
                if e.status == 404:
                    continue  # the folder is not there: nor is any of the uploads into it
                raise
            wanted = set(members)
            found.update((e.path, e) for e in listing.entries if e.path in wanted)
        return found

    def _holds(self, r: RemoteEntry, sent: JournalEntry, base_etag: str | None) -> bool:
        """Does the server's version equal what was sent? The listed MD5 decides; a server
        without MD5s is asked for the file itself (only the few uploads a crash left in flight)."""
        if r.md5 and sent.md5:
            return r.md5 == sent.md5
        if r.size != sent.size or (base_etag is not None and r.etag == base_etag):
            return False
        return sent.md5 is not None and self._server_md5(r) == sent.md5

    def _server_md5(self, r: RemoteEntry) -> str | None:
        url = self.remote.url_for(r.path, href=r.href)
        resp = self.remote.request("GET", url, headers={"Accept-Encoding": "identity"}, stream=True)
        with resp:
            if resp.status_code != 200:
                return None
            digest = hashlib.md5()
            try:
                for chunk in resp.iter_content(1024 * 1024):
                    digest.update(chunk)
            except requests.exceptions.RequestException:
                return None
        return digest.hexdigest()


def _local_of(entry: JournalEntry) -> LocalEntry:
    return LocalEntry(entry.is_dir, entry.size, entry.mtime_ns, entry.ino)
