"""A tiny in-memory world for the planning core's tests: both sides, a trash, and an 'apply' that
does what a plan says while checking every precondition the real executor enforces (If-Match,
If-None-Match, "the local file is still what the base says", parents exist, folders empty)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import datetime

from davsync.client.plan import (
    Action,
    JournalEntry,
    JournalOp,
    Kind,
    LocalEntry,
    LocalOp,
    LocalView,
    Options,
    Plan,
    RemoteEntry,
    RemoteOp,
    RemoteView,
    complete,
    reconcile,
)

NOW = datetime(2026, 11, 22, 1, 30, 0)
_counter = itertools.count(1000)


def fresh() -> int:
    return next(_counter)


def size_of(md5: str) -> int:
    return 10 + ord(md5[0]) % 3  # several contents share a size, as in life


def lfile(md5: str, ino: int | None = None, mtime_ns: int | None = None) -> LocalEntry:
    return LocalEntry(False, size_of(md5), mtime_ns if mtime_ns is not None else fresh(), ino or fresh(), md5)


def rfile(path: str, md5: str, etag: str | None = None) -> RemoteEntry:
    return RemoteEntry(path, False, size_of(md5), 1000.0, etag or f"e{fresh()}", md5)


def base_of(loc: LocalEntry, r: RemoteEntry) -> JournalEntry:
    return JournalEntry(False, loc.size, loc.mtime_ns, loc.ino, loc.md5, r.etag, r.size, r.mtime, r.md5)


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder + "/")


class Broken(AssertionError):
    """The plan asked for something the real executor would refuse or that loses data."""


@dataclass
class World:
    base: dict[str, JournalEntry] = field(default_factory=dict)
    local: dict[str, LocalEntry] = field(default_factory=dict)  # the truth: files always carry their MD5
    remote: dict[str, RemoteEntry] = field(default_factory=dict)
    trash: list[str] = field(default_factory=list)
    written: set[str] = field(default_factory=set)  # journal rows written by the last apply

    def copy(self) -> World:
        return World(dict(self.base), dict(self.local), dict(self.remote), list(self.trash))

    # -- what the snapshot builders would hand the planner --

    def local_view(self, failed: frozenset[str] = frozenset()) -> LocalView:
        """A stat walk: a file whose stat equals its base is not read (no MD5)."""
        entries: dict[str, LocalEntry | None] = {}
        for p, e in self.local.items():
            if any(p != f and _under(p, f) for f in failed):
                continue
            j = self.base.get(p)
            if not e.is_dir and j is not None and not j.is_dir and j.matches_local(e):
                e = replace(e, md5=None)
            entries[p] = e
        return LocalView(entries, failed=failed)

    def remote_view(self, failed: frozenset[str] = frozenset()) -> RemoteView:
        entries = {p: e for p, e in self.remote.items() if not any(p != f and _under(p, f) for f in failed)}
        return RemoteView(entries, failed=failed)

    def local_changes_view(self) -> LocalView:
        """What a watcher would report since the base: changed, new and deleted paths only."""
        full = self.local_view().entries
        entries: dict[str, LocalEntry | None] = {p: None for p in self.base if p not in self.local}
        for p, e in full.items():
            j = self.base.get(p)
            if e is None or j is None or j.is_dir != e.is_dir or (not e.is_dir and not j.matches_local(e)):
                entries[p] = e
        return LocalView(entries, complete=False)

    def changes_view(self) -> RemoteView:
        """What a sync-collection REPORT would say since the base."""
        entries, removed = {}, set()
        for p, e in self.remote.items():
            j = self.base.get(p)
            if j is None or j.is_dir != e.is_dir or (not e.is_dir and (j.remote_etag, j.remote_md5) != (e.etag, e.md5)):
                entries[p] = e
        for p in self.base:
            if p not in self.remote:
                removed.add(p)
        return RemoteView(entries, complete=False, removed=frozenset(removed),
                          looks_empty=not self.remote)  # fmt: skip

    def plan(self, options: Options, failed_remote: frozenset[str] = frozenset(),
             failed_local: frozenset[str] = frozenset(), excluded=None) -> Plan:  # type: ignore[no-untyped-def]  # fmt: skip
        return reconcile(self.base, self.local_view(failed_local), self.remote_view(failed_remote), options,
                         now=NOW, excluded=excluded)  # fmt: skip

    # -- doing it --

    def content_here(self, path: str) -> str | None:
        e = self.local.get(path)
        return e.md5 if e is not None and not e.is_dir else None

    def apply(self, plan: Plan) -> None:
        self.written = set()
        if plan.reset_journal:
            self.base.clear()
        for a in plan.actions:
            self._apply(a)

    def _require(self, ok: bool, a: Action, what: str) -> None:
        if not ok:
            raise Broken(f"{a.explain()}: {what}")

    def _local_parent(self, a: Action, path: str) -> None:
        p = _parent(path)
        self._require(p == "" or (p in self.local and self.local[p].is_dir), a, f"no local folder for {path}")

    def _remote_parent(self, a: Action, path: str) -> None:
        p = _parent(path)
        self._require(p == "" or (p in self.remote and self.remote[p].is_dir), a, f"no server folder for {path}")

    def _unchanged_here(self, a: Action, path: str) -> None:
        j, e = a.base, self.local.get(path)
        self._require(j is not None and e is not None and e.md5 == j.md5, a, "the local version is not the base")

    def _if_match(self, a: Action, path: str) -> None:
        """The precondition is the etag of the listed version the plan judged (`a.remote`)."""
        seen, r = a.remote, self.remote.get(path)
        ok = seen is not None and r is not None and (r.is_dir if seen.is_dir else r.etag == seen.etag)
        self._require(ok, a, "If-Match fails on the server")

    def _move(self, side: dict, src: str, dst: str, remote: bool) -> None:  # type: ignore[type-arg]
        for p in sorted(p for p in side if _under(p, src)):
            e = side.pop(p)
            new = dst + p[len(src) :]
            side[new] = replace(e, path=new) if remote else e

    def _upload(self, a: Action, path: str) -> RemoteEntry:
        e = self.local[path]
        self._require(not e.is_dir and e.md5 is not None, a, "uploads a folder or unknown content")
        assert e.md5 is not None
        r = rfile(path, e.md5)
        self.remote[path] = r
        return r

    def _place(self, path: str, r: RemoteEntry) -> LocalEntry:
        assert r.md5 is not None
        e = lfile(r.md5)
        self.local[path] = e
        return e

    def _apply(self, a: Action) -> None:
        k, p = a.kind, a.path
        placed: LocalEntry | None = None
        uploaded: RemoteEntry | None = None
        if not a.local_ops and not a.remote_ops:
            pass
        elif k == Kind.MKDIR:
            self._require(p not in self.local, a, "something is in the way")
            self._local_parent(a, p)
            self.local[p] = LocalEntry(True)
        elif k == Kind.REMOTE_MKDIR:
            self._require(p not in self.remote, a, "MKCOL over something")
            self._remote_parent(a, p)
            self.remote[p] = RemoteEntry(p, True)
        elif k in (Kind.DOWNLOAD, Kind.UPDATE):
            if k == Kind.DOWNLOAD:
                self._require(p not in self.local, a, "a download over an existing file")
            else:
                self._unchanged_here(a, p)
            self._local_parent(a, p)
            placed = self._place(p, self.remote[p])
        elif k == Kind.CONFLICT:
            copy = a.conflict_copy
            assert copy is not None and a.local is not None
            self._require(copy not in self.local and copy not in self.remote, a, "the conflict name is taken")
            self._move(self.local, p, copy, remote=False)
            r = self.remote[p]
            if r.is_dir:
                self.local[p] = LocalEntry(True)
            else:
                placed = self._place(p, r)
            if a.upload_copy:
                self._remote_parent(a, copy)
                cr = self._upload(a, copy)
                for path, entry in a.extra:
                    if path == copy and entry is not None:
                        self._put(path, complete(entry, None, cr))
        elif k in (Kind.UPLOAD, Kind.UPLOAD_EDIT):
            if k == Kind.UPLOAD:
                self._require(p not in self.remote, a, "If-None-Match: * fails")
            else:
                self._if_match(a, p)
            self._remote_parent(a, p)
            uploaded = self._upload(a, p)
        elif k == Kind.DELETE:
            self._unchanged_here(a, p)
            self.trash.append(self.local.pop(p).md5 or "")
        elif k == Kind.REMOTE_DELETE:
            self._if_match(a, p)
            del self.remote[p]
        elif k == Kind.RMDIR:
            self._require(not any(q.startswith(p + "/") for q in self.local), a, "the local folder is not empty")
            del self.local[p]
        elif k == Kind.REMOTE_RMDIR:
            self._require(not any(q.startswith(p + "/") for q in self.remote), a, "the server folder is not empty")
            del self.remote[p]
        elif k == Kind.REMOTE_MOVE:
            assert a.src is not None
            self._require(p not in self.remote, a, "MOVE onto something")
            self._require(a.src in self.remote and p in self.local and a.src not in self.local, a, "not a rename here")
            if not self.remote[a.src].is_dir:
                self._if_match(a, a.src)
            self._remote_parent(a, p)
            self._move(self.remote, a.src, p, remote=True)
        elif k == Kind.LOCAL_MOVE:
            assert a.src is not None
            self._require(p not in self.local, a, "a rename onto something")
            self._require(a.src in self.local and p in self.remote and a.src not in self.remote, a, "not a rename there")
            if not self.local[a.src].is_dir:
                self._unchanged_here(a, a.src)
            self._local_parent(a, p)
            self._move(self.local, a.src, p, remote=False)
        else:
            raise Broken(f"the model does not know {k}")
        self._check_ops(a)
        if a.journal == JournalOp.PUT:
            assert a.to_record is not None, a
            self._put(p, a.entry_after(placed, uploaded))  # type: ignore[arg-type]
        elif a.journal == JournalOp.DROP:
            self.base.pop(p, None)
        for path, entry in a.extra:
            if entry is None:
                self.base.pop(path, None)
                self.written.discard(path)
            elif k != Kind.CONFLICT:
                self._put(path, entry)

    def _put(self, path: str, entry: JournalEntry) -> None:
        self.base[path] = entry
        self.written.add(path)

    def _check_ops(self, a: Action) -> None:
        """The declared per-side operations agree with what the kind did."""
        if a.kind in (Kind.UPLOAD, Kind.UPLOAD_EDIT, Kind.REMOTE_MKDIR, Kind.REMOTE_DELETE, Kind.REMOTE_RMDIR,
                      Kind.REMOTE_MOVE):  # fmt: skip
            assert a.remote_ops and not a.local_ops, a
        if a.kind in (Kind.DOWNLOAD, Kind.UPDATE, Kind.MKDIR, Kind.DELETE, Kind.RMDIR, Kind.LOCAL_MOVE):
            assert a.local_ops and not a.remote_ops, a
        if a.kind == Kind.CONFLICT:
            assert LocalOp.SET_ASIDE in a.local_ops and (RemoteOp.PUT_NEW in a.remote_ops) == a.upload_copy


def contents(world: World) -> set[str]:
    out = {e.md5 for e in world.local.values() if not e.is_dir and e.md5}
    out |= {e.md5 for e in world.remote.values() if not e.is_dir and e.md5}
    return out | set(world.trash)


def precious(world: World) -> set[str]:
    """Every version on either side that differs from its path's base: these must survive. A
    local file renamed here unchanged (its file id and content are a base's) is that base's
    version, which the server keeps when it is overwritten (its versions area): not precious."""
    out = set()
    agreed_here = {(j.ino, j.md5) for j in world.base.values() if not j.is_dir}
    for side in (world.local, world.remote):
        for p, e in side.items():
            j = world.base.get(p)
            if side is world.local and (getattr(e, "ino", None), e.md5) in agreed_here:
                continue
            if not e.is_dir and e.md5 and (j is None or j.is_dir or e.md5 != j.md5):
                out.add(e.md5)
    return out


# -- building worlds by hand --------------------------------------------------------------


def agreed(files: dict[str, str], dirs: tuple[str, ...] = ()) -> World:
    """Both sides and the base agree on these files (and their folders)."""
    w = World()
    for p, md5 in files.items():
        loc, r = lfile(md5), rfile(p, md5)
        w.local[p], w.remote[p], w.base[p] = loc, r, base_of(loc, r)
    for p in list(files) + list(dirs):
        folders = list(_ancestors(p)) + ([p] if p in dirs else [])
        for d in folders:
            w.local[d], w.remote[d], w.base[d] = LocalEntry(True), RemoteEntry(d, True), JournalEntry(True)
    return w


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def _mkdirs_local(w: World, path: str) -> None:
    for d in _ancestors(path):
        w.local.setdefault(d, LocalEntry(True))


def _mkdirs_remote(w: World, path: str) -> None:
    for d in _ancestors(path):
        w.remote.setdefault(d, RemoteEntry(d, True))


def edit_local(w: World, p: str, md5: str) -> None:
    w.local[p] = replace(w.local[p], md5=md5, size=size_of(md5), mtime_ns=fresh())


def touch_local(w: World, p: str) -> None:
    w.local[p] = replace(w.local[p], mtime_ns=fresh())


def edit_remote(w: World, p: str, md5: str) -> None:
    w.remote[p] = rfile(p, md5)


def add_local(w: World, p: str, md5: str | None = None) -> None:
    _mkdirs_local(w, p)
    w.local[p] = LocalEntry(True) if md5 is None else lfile(md5)


def add_remote(w: World, p: str, md5: str | None = None) -> None:
    _mkdirs_remote(w, p)
    w.remote[p] = RemoteEntry(p, True) if md5 is None else rfile(p, md5)


def rm_local(w: World, p: str) -> None:
    for q in [q for q in w.local if _under(q, p)]:
        del w.local[q]


def rm_remote(w: World, p: str) -> None:
    for q in [q for q in w.remote if _under(q, p)]:
        del w.remote[q]


def mv_local(w: World, p: str, q: str) -> None:
    _mkdirs_local(w, q)
    w._move(w.local, p, q, remote=False)


def mv_remote(w: World, p: str, q: str) -> None:
    _mkdirs_remote(w, q)
    w._move(w.remote, p, q, remote=True)


# -- one run, with every invariant checked ---------------------------------------------------


_CHANGES_LOCAL = {Kind.DELETE, Kind.RMDIR}
_CHANGES_REMOTE = {Kind.REMOTE_DELETE, Kind.REMOTE_RMDIR}


def check_run(
    world: World,
    options: Options,
    failed_remote: frozenset[str] = frozenset(),
    failed_local: frozenset[str] = frozenset(),
    excluded=None,  # type: ignore[no-untyped-def]
) -> tuple[Plan, World]:
    """Plan, apply in memory, and check: nothing lost, bases only for versions on both sides,
    guards hold, pull never touches the server, and a second plan changes nothing."""
    p = world.plan(options, failed_remote, failed_local, excluded)
    paths = [a.path for a in p.actions]
    assert len(paths) == len(set(paths)), f"a path got two actions: {p.explain()}"
    assert all(a.reason for a in p.actions), "an action without a reason"
    if options.mode.value == "pull":
        assert not any(a.remote_ops for a in p.actions), "pull planned a server change"
    check_guards(p, options)
    after = world.copy()
    after.apply(p)
    lost = precious(world) - contents(after)
    assert not lost, f"content lost: {lost}\n" + "\n".join(p.explain())
    for path in after.written:
        j = after.base[path]
        loc, r = after.local.get(path), after.remote.get(path)
        assert loc is not None and r is not None and loc.is_dir == r.is_dir == j.is_dir, (
            f"a base recorded for {path}, which is not on both sides"
        )
        if not j.is_dir:
            assert loc.md5 == r.md5 == j.md5, f"a base for {path} that is not the version on both sides"
            assert j.matches_local(loc) and j.remote_etag == r.etag, f"a stale base for {path}"
    if excluded is not None:
        for a in p.actions:
            assert not excluded(a.path, False) and not excluded(a.path.split("/")[0], True), "an excluded path judged"
    again = after.plan(replace(options, union=False), failed_remote, failed_local, excluded)
    # A tripped guard may clear once the run is done (an empty side filled): then the held
    # deletions are due, and nothing else.
    left = [a for a in again.changes if not (p.guards and a.kind in _CHANGES_LOCAL | _CHANGES_REMOTE)]
    assert not left, "a second run still changes something:\n" + "\n".join(again.explain())
    quiet = not (p.guards or failed_remote or failed_local or options.read_only) and options.mode.value == "sync"
    if quiet:
        assert not again.actions, "a second run still has something to say:\n" + "\n".join(again.explain())
    return p, after


def check_guards(p: Plan, options: Options) -> None:
    kinds = {a.kind for a in p.actions}
    if "failed-listing" in p.guards:
        assert not kinds & (_CHANGES_LOCAL | _CHANGES_REMOTE), "a deletion despite a failed listing"
    if {"remote-empty", "max-delete-local"} & set(p.guards):
        assert not kinds & _CHANGES_LOCAL, "a local deletion despite a guard"
    if {"local-empty", "max-delete-remote"} & set(p.guards):
        assert not kinds & _CHANGES_REMOTE, "a server deletion despite a guard"
