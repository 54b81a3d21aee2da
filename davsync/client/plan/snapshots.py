"""The state of one two-way planning run: the two snapshots resolved per path, each side's change
against the base, and the actions decided so far. The rules are table.py's; twoway.py, renames.py and
guards.py work out the situations and apply them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime

from .compare import gone_above, local_unchanged, remote_changed, under
from .kinds import Kind, Mode
from .model import _JOURNAL_OPS, Action, JournalEntry, JournalOp, LocalEntry, RemoteEntry, file_record
from .run import LocalView, Options, Plan, RemoteView
from .table import Change

# Where each kind leaves its path: (exists locally, exists on the server) afterwards.
# Kinds not listed leave both sides as they are.
_PRESENCE: dict[Kind, tuple[bool, bool]] = {
    **{k: (True, True) for k in _JOURNAL_OPS if _JOURNAL_OPS[k] == JournalOp.PUT},
    **{k: (False, False) for k in _JOURNAL_OPS if _JOURNAL_OPS[k] == JournalOp.DROP},
}
_MISSING = object()


class Snapshots:
    """One sync or push plan's state; lives for one call of reconcile()."""

    def __init__(
        self,
        base: Mapping[str, JournalEntry],
        lv: LocalView,
        rv: RemoteView,
        options: Options,
        now: datetime,
        excluded: Callable[[str, bool], bool] | None,
        tracked_files: int | None,
    ) -> None:
        self.raw_base = base
        self.base: Mapping[str, JournalEntry] = {} if options.union else base
        self.lv, self.rv, self.options, self.now = lv, rv, options, now
        self.excluded = excluded
        self.push = options.mode == Mode.PUSH
        self.ro = options.read_only and not self.push
        self.tracked = tracked_files if tracked_files is not None else sum(1 for j in base.values() if not j.is_dir)
        self.result = Plan(reset_journal=options.union)
        self.actions: dict[str, Action] = {}
        self.set_aside: dict[str, str] = {}  # local folder -> its conflict name
        self._local_cache: dict[str, LocalEntry | None] = {}
        self.blocked: set[str] = set()  # push: a file against a folder; nothing below is judged
        self.taken: set[str] = set(base) | set(lv.entries) | set(rv.entries)
        self.children: dict[str, set[str]] = {}  # built when a folder decision first needs it
        self.everything: set[str] = set()
        self.sources: set[str] = set()  # paths that moved away (renames)
        # Files renamed here (with their folder) while edited on the server: new path -> (the two
        # actions they replace, the server's edited version); see _moved_while_edited.
        self.edited_moves: dict[str, tuple[Action, Action, RemoteEntry]] = {}
        self.followups: list[Action] = []  # downloads after a folder MOVE (a path's second action)
        # Per-folder answers that every path below a folder would otherwise recompute.
        self._gone_memo: tuple[dict[str, bool], dict[str, bool]] = ({}, {})  # (local, remote)
        self._excluded_dirs: dict[str, bool] = {}

    # -- the two snapshots, resolved per path --

    def local(self, path: str) -> LocalEntry | None:
        hit = self._local_cache.get(path, _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
        found = self._local_view(path)
        for folder, copy in self.set_aside.items():
            if under(path, folder):
                found = None  # set aside under its conflict name
            elif under(path, copy):
                found = self._local_view(folder + path[len(copy) :])
        self._local_cache[path] = found
        return found

    def _local_view(self, path: str) -> LocalEntry | None:
        j = self.raw_base.get(path)
        if path in self.lv.entries:
            e = self.lv.entries[path]
            if e is not None and e.md5 is None and j is not None and j.md5 and j.matches_local(e):
                return replace(e, md5=j.md5)  # an unchanged stat: the journal knows
            return e
        if self.lv.complete or j is None or self._gone_above(path, here=True):
            return None
        return LocalEntry(True) if j.is_dir else LocalEntry(False, j.size, j.mtime_ns, j.ino, j.md5, j.ctime_ns)

    def remote(self, path: str) -> RemoteEntry | None:
        if path in self.rv.entries:
            return self.rv.entries[path]
        if self.rv.complete:
            return None
        j = self.raw_base.get(path)
        if path in self.rv.removed or j is None:
            return None
        if self._gone_above(path, here=False):
            return None
        if j.is_dir:
            return RemoteEntry(path, True)
        return RemoteEntry(path, False, j.remote_size, j.remote_mtime, j.remote_etag, j.remote_md5)

    def _gone_above(self, path: str, *, here: bool) -> bool:
        """In a changes-only view: is a folder above this path removed, or now a file? (per folder)"""
        folder = path.rpartition("/")[0]
        if not folder:
            return False
        memo = self._gone_memo[0 if here else 1]
        hit = memo.get(folder)
        if hit is None:
            if here:
                hit = gone_above(path, self.lv.entries, frozenset())
            else:
                hit = gone_above(path, self.rv.entries, self.rv.removed)
            memo[folder] = hit
        return hit

    def _frozen(self, path: str) -> bool:
        if not (self.rv.failed or self.lv.failed or self.blocked):
            return False
        return any(under(path, f) for f in self.rv.failed | self.lv.failed | self.blocked)

    def _is_excluded(self, path: str) -> bool:
        if self.excluded is None:
            return False
        entries = (self.lv.entries.get(path), self.rv.entries.get(path), self.raw_base.get(path))
        is_dir = any(e is not None and e.is_dir for e in entries)
        if self.excluded(path, is_dir):
            return True
        folder = path.rpartition("/")[0]
        return bool(folder) and self._folder_excluded(folder)

    def _folder_excluded(self, folder: str) -> bool:
        """Is this folder, or one above it, excluded? (asked once per folder)"""
        hit = self._excluded_dirs.get(folder)
        if hit is None:
            assert self.excluded is not None
            parent = folder.rpartition("/")[0]
            hit = self.excluded(folder, True) or (bool(parent) and self._folder_excluded(parent))
            self._excluded_dirs[folder] = hit
        return hit

    def _add(self, action: Action | None) -> None:
        if action is not None:
            self.actions[action.path] = action

    def _act(self, kind: Kind, path: str, reason: str, **kw: object) -> Action:
        fields: dict[str, object] = {
            "remote": self.remote(path),
            "local": self.local(path),
            "base": self.base.get(path),
        }
        fields.update(kw)
        return Action(kind, path, reason=reason, **fields)  # type: ignore[arg-type]

    # -- statuses --

    def _status(self, path: str, want_dir: bool, here: bool) -> Change:
        entry: LocalEntry | RemoteEntry | None = self.local(path) if here else self.remote(path)
        j = self.base.get(path)
        if j is not None and j.is_dir != want_dir:
            j = None  # the base was the other type: this one is new
        if entry is None:
            return Change.ABSENT if j is None else Change.DELETED
        if j is None:
            return Change.NEW
        if want_dir:
            return Change.SAME
        if isinstance(entry, LocalEntry):
            return Change.SAME if local_unchanged(j, entry) else Change.MODIFIED
        return Change.MODIFIED if remote_changed(j, entry) else Change.SAME

    # -- records --

    def _local_md5(self, path: str) -> str | None:
        loc = self.local(path)
        return loc.md5 if loc is not None else None

    def _upload_record(self, path: str) -> JournalEntry:
        """The base after an upload; complete() adds the etag the server gives the new version."""
        loc = self.local(path)
        assert loc is not None
        md5 = self._local_md5(path)
        return JournalEntry(False, loc.size, loc.mtime_ns, loc.ino, md5, None, loc.size, loc.mtime_ns / 1e9, md5,
                            ctime_ns=loc.ctime_ns)  # fmt: skip

    def _both_record(self, path: str) -> JournalEntry:
        loc, r, j = self.local(path), self.remote(path), self.base.get(path)
        assert loc is not None and r is not None
        return file_record(r, loc, loc.md5 or r.md5 or (j.md5 if j is not None else None))

    # -- folders --

    def _presence(self, path: str) -> tuple[bool, bool]:
        """Will this path exist afterwards, locally and on the server?"""
        a = self.actions.get(path)
        if a is not None:
            return _PRESENCE.get(a.kind, (a.local is not None, a.remote is not None))
        if path in self.sources:
            return False, False
        if self._frozen(path) or self._is_excluded(path):
            return self._local_view(path) is not None, self.remote(path) is not None
        return self.local(path) is not None, self.remote(path) is not None

    def _stays(self, folder: str) -> tuple[bool, bool]:
        """Will anything inside this folder exist afterwards, locally and on the server?"""
        if not self.children:
            for p in self.everything:
                self.children.setdefault(p.rpartition("/")[0], set()).add(p)
        here = there = False
        for child in self.children.get(folder, ()):
            h, t = self._presence(child)
            here, there = here or h, there or t
        return here, there
