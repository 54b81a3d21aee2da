"""sync and push: each path's situation (table.py's terms) worked out from the snapshots, and the
table's action made into an Action with the base it records. Renames and guards come after."""

from __future__ import annotations

from . import table
from .compare import free_conflict_name, learns_ctime, same_content, under
from .guards import Guards
from .kinds import Kind
from .model import Action, JournalEntry, file_record
from .order import order
from .renames import Renames
from .run import Plan, failed_where
from .table import Also, Change


class TwoWay(Renames, Guards):
    """One sync or push plan: each path's situation, looked up in the decision table."""

    # -- the run --

    def plan(self) -> Plan:
        candidates = set(self.raw_base) | set(self.lv.entries) | set(self.rv.entries)
        candidates.discard("")
        judged = {p for p in candidates if not self._frozen(p) and not self._is_excluded(p)}
        if self.rv.failed or self.lv.failed:
            self.result.warnings.append(
                f"Some folders could not be listed ({failed_where(self.lv.failed, self.rv.failed)}): they are "
                "left alone, and nothing is deleted this run."
            )
        self._type_clashes(sorted(judged))
        judged = {p for p in judged if not self._frozen(p)} | self._set_aside_paths()
        self.everything = candidates | judged
        folders = []
        for path in sorted(judged):
            if path in self.actions or self._untouched(path):
                continue
            loc, r = self.local(path), self.remote(path)
            if (loc is not None and loc.is_dir) or (r is not None and r.is_dir):
                folders.append(path)
            else:
                self._add(self._decide_file(path))
        if not self.options.union:  # (no base: nothing to rename from)
            if self._renames("folder-renamed-here-edited-there") == Kind.REMOTE_MOVE:
                self._moved_while_edited()
            self._find_renames()
        for path in sorted(folders, key=lambda p: (-p.count("/"), p)):
            self._add(self._decide_folder(path))
        if not self.ro and not self.options.union:
            self._collapse_folder_moves()
            self._settle_edited_moves()
        self._guard()
        self.result.actions = sorted([*self.actions.values(), *self.followups], key=order)
        return self.result

    def _untouched(self, path: str) -> bool:
        """The common case, answered from the views alone: a file unchanged on both sides."""
        j = self.base.get(path)
        if j is None or j.is_dir or j.prev is not None or self.set_aside:
            return False
        e, r = self.lv.entries.get(path), self.rv.entries.get(path)
        if e is None or not j.matches_local(e) or (e.md5 is not None and e.md5 != j.md5) or learns_ctime(j, e):
            return False
        if r is None:
            # A changes-only listing that does not name it: unchanged on the server since the
            # token, unless it or a folder above it was removed there.
            return not self.rv.complete and path not in self.rv.removed and not self._gone_above(path, here=False)
        return not r.is_dir and (j.remote_etag, j.remote_size, j.remote_mtime, j.remote_md5) == (
            r.etag, r.size, r.mtime, r.md5,
        )  # fmt: skip

    # -- files --

    def _decide_file(self, path: str) -> Action | None:
        """Work out the situation (table.py's terms) and let the table decide."""
        ls, rs = self._status(path, False, True), self._status(path, False, False)
        if ls == Change.ABSENT and rs == Change.ABSENT:
            j = self.raw_base.get(path)
            if j is None:
                return None
            if j.is_dir and j is self.base.get(path):  # a folder gone on both sides
                return self._do(path, self._decide("folder", Change.DELETED, Change.DELETED))
        return self._do(path, self._decide("file", ls, rs, self._equal(path, ls, rs)))

    def _decide(self, what: str, ls: Change, rs: Change, also: Also = Also.ANY) -> table.Do:
        return table.decide(what, ls, rs, also, self.options.mode, read_only=self.ro, delete=self.options.delete)

    def _equal(self, path: str, ls: Change, rs: Change) -> Also:
        """Do both sides hold the same content? The evidence each mode asks for (MD5s, or for new
        files in sync the size and mtime); only the rows that split on it read the answer."""
        loc, r = self.local(path), self.remote(path)
        if loc is None or r is None:
            return Also.ANY
        md5s = loc.md5 is not None and r.md5 is not None
        if self.push or ls == Change.SAME:
            equal = md5s and loc.md5 == r.md5
        else:
            equal = same_content(loc, r) and (md5s or ls == Change.NEW)
        return Also.EQUAL if equal else Also.DIFFERENT

    def _do(self, path: str, d: table.Do) -> Action | None:
        """The table's cell as an action at this path, with the base it records once done."""
        kind, why = d.kind, d.why
        if kind is None:
            return None
        if self.options.union and not self.push and kind in (Kind.CONFLICT, Kind.UPLOAD, Kind.DOWNLOAD):
            why += f" ({table.GUARD_BY_ID['union'].reason})"
        r = self.remote(path)
        if kind == Kind.REFRESH and r is not None and r.is_dir:
            return self._act(kind, path, why, record=JournalEntry(True))  # a folder the base did not know
        if kind == Kind.REFRESH:
            return self._refresh(path, why)
        if kind == Kind.CONFLICT:
            return self._conflict(path, why)
        if kind in (Kind.UPLOAD, Kind.UPLOAD_EDIT):
            return self._act(kind, path, why, record=self._upload_record(path))
        if kind in (Kind.DOWNLOAD, Kind.UPDATE) and r is not None:
            return self._act(kind, path, why, record=file_record(r))
        if kind == Kind.ADOPT:
            return self._act(kind, path, why, record=self._both_record(path))
        if kind in (Kind.MKDIR, Kind.REMOTE_MKDIR):
            return self._act(kind, path, why, record=JournalEntry(True))
        return self._act(kind, path, why)

    def _refresh(self, path: str, why: str) -> Action | None:
        j, loc, r = self.base[path], self.local(path), self.remote(path)
        assert loc is not None and r is not None
        if (
            j.prev is None
            and j.matches_local(loc)
            and not learns_ctime(j, loc)
            and (j.remote_etag, j.remote_size, j.remote_mtime, j.remote_md5) == (r.etag, r.size, r.mtime, r.md5)
            and (loc.md5 or r.md5 or j.md5) == j.md5
        ):
            return None  # the common case, checked without building a record
        return self._act(Kind.REFRESH, path, why, record=self._both_record(path))

    def _conflict(self, path: str, reason: str) -> Action:
        """The server's version keeps the name on both sides; the local one is set aside (and uploaded)."""
        loc, r = self.local(path), self.remote(path)
        assert loc is not None and r is not None
        copy = free_conflict_name(path, self.now, self.taken)
        upload = not self.ro and not loc.is_dir
        extra: tuple[tuple[str, JournalEntry | None], ...] = ()
        if upload:
            md5 = self._local_md5(path)
            extra = ((copy, JournalEntry(False, loc.size, loc.mtime_ns, loc.ino, md5, None, loc.size,
                                         loc.mtime_ns / 1e9, md5, ctime_ns=loc.ctime_ns)),)  # fmt: skip
        record = JournalEntry(True) if r.is_dir else file_record(r)
        return self._act(
            Kind.CONFLICT, path, reason, conflict_copy=copy, upload_copy=upload, record=record, extra=extra
        )

    # -- a file against a folder --

    def _type_clashes(self, paths: list[str]) -> None:
        """A file against a folder (table.py's "file vs folder" rows): keep both, the local one
        under a conflict name (a folder with all its content), or block the path and all below it."""
        for path in paths:
            e, r0 = self.lv.entries.get(path), self.rv.entries.get(path)
            if e is not None and not self.set_aside:
                if r0 is not None and e.is_dir == r0.is_dir:
                    continue  # the common case, without resolving the views
                if r0 is None and not self.rv.complete:
                    j = self.raw_base.get(path)
                    if j is None or j.is_dir == e.is_dir:
                        continue  # not in the changes: the server holds the base's type, or nothing
            loc, r = self.local(path), self.remote(path)
            if loc is None or r is None or loc.is_dir == r.is_dir:
                continue
            if any(under(path, f) for f in self.set_aside):
                continue
            if loc.is_dir:
                situation = ("folder vs file", Change.NEW, Change.NEW, Also.ANY)
            else:
                j = self.base.get(path)
                unchanged = j is not None and not j.is_dir and j.matches_local(loc)
                situation = ("file vs folder", Change.SAME, Change.NEW, Also.UNCHANGED) if unchanged else (
                    "file vs folder", Change.NEW, Change.NEW, Also.CHANGED)  # fmt: skip
            action = self._do(path, self._decide(*situation))
            self._add(action)
            if action is not None and action.kind == Kind.BLOCKED:
                self.blocked.add(path)  # nothing below it is judged
            elif action is not None and loc.is_dir:
                assert action.conflict_copy is not None
                self.set_aside[path] = action.conflict_copy
                self._local_cache.clear()

    def _set_aside_paths(self) -> set[str]:
        out = set()
        for folder, copy in self.set_aside.items():
            out.add(copy)
            out.update(copy + p[len(folder) :] for p in self.lv.entries if p.startswith(folder + "/"))
            if not self.lv.complete:
                out.update(copy + p[len(folder) :] for p in self.raw_base if p.startswith(folder + "/"))
        return {p for p in out if not self._is_excluded(p) and self.local(p) is not None}

    def _decide_folder(self, path: str) -> Action | None:
        """Work out the situation (after the folder's content is decided) and let the table decide."""
        if path in self.actions:
            return None
        loc, r, j = self.local(path), self.remote(path), self.base.get(path)
        A, S, N, D = Change.ABSENT, Change.SAME, Change.NEW, Change.DELETED
        if loc is not None and r is not None:
            ls = rs = S if j is not None and j.is_dir else N
            return self._do(path, self._decide("folder", ls, rs))
        if loc is None and r is None:
            return self._do(path, self._decide("folder", D, D)) if path in self.raw_base else None
        here, there = self._stays(path)
        if loc is not None:  # only here: new, or deleted on the server
            if self._status(path, True, True) == N:
                return self._do(path, self._decide("folder", N, A))
            return self._do(path, self._decide("folder", S, D, _inside(refilled=there, keeps=here)))
        if self._status(path, True, False) == N:  # only on the server
            return self._do(path, self._decide("folder", A, N))
        return self._do(path, self._decide("folder", D, S, _inside(refilled=here, keeps=there)))


def _inside(*, refilled: bool, keeps: bool) -> Also:
    """A deleted folder: will something inside exist on the side that deleted it (refilled), or
    stay on the side that kept it?"""
    return Also.REFILLED if refilled else Also.KEEPS if keeps else Also.EMPTY

