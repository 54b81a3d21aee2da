"""Renames (sync, push): a delete plus a new path with the same content is a MOVE or a local rename,
found before any guard counts deletions; a folder whose whole content moved is one MOVE."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import replace

from . import table
from .compare import under
from .kinds import Kind
from .model import Action, JournalEntry, file_record
from .snapshots import Snapshots


class Renames(Snapshots):
    def _find_renames(self) -> None:
        """A delete plus a new path with the same content is a rename (found before any guard counts)."""
        if self._renames("renamed-here") == Kind.REMOTE_MOVE:
            self._pair(Kind.REMOTE_DELETE, Kind.UPLOAD, self._local_rename, on_server=True)
        if self._renames("renamed-there") == Kind.LOCAL_MOVE:
            self._pair(Kind.DELETE, Kind.DOWNLOAD, self._remote_rename, on_server=False)

    def _renames(self, row_id: str) -> Kind | None:
        """What the table makes of a rename in this mode (a move, or the delete + new it stays)."""
        r = table.ROW_BY_ID[row_id]
        return table.cell(r, self.options.mode, read_only=self.ro, delete=self.options.delete).kind

    def _pair(self, gone_kind: Kind, new_kind: Kind, rank: Callable[[str, str], int], on_server: bool) -> None:
        by_md5: dict[str, list[str]] = {}
        for p, a in self.actions.items():
            if a.kind == gone_kind and a.base is not None and a.base.md5:
                by_md5.setdefault(a.base.md5, []).append(p)
        if not by_md5:
            return
        new = sorted(p for p, a in self.actions.items() if a.kind == new_kind and a.base is None)
        for q in new:
            entry = self.local(q) if on_server else self.remote(q)
            md5 = entry.md5 if entry is not None else None
            ranked = sorted((r, p) for p in by_md5.get(md5 or "", ()) for r in [rank(p, q)] if r)
            if not ranked:
                continue
            p = ranked[0][1]
            by_md5[md5 or ""].remove(p)
            del self.actions[p]
            self.sources.add(p)
            self.actions[q] = self._move(p, q, on_server)

    def _moved_while_edited(self) -> None:
        """A file renamed here (its folder renamed, most often) while the phone edited it on the
        server: the edit would be restored at the old path and the old content uploaded at the new
        one, splitting the file in two. Pair them as a rename instead: the server's version moves
        (with its folder), then comes down at the new path. The local file must be the base's
        content, else it is a true conflict and stays one."""
        restored = {
            p: a for p, a in self.actions.items()
            if a.kind == Kind.DOWNLOAD and a.base is not None and not a.base.is_dir and a.base.md5
            and self.local(p) is None and a.remote is not None and not a.remote.is_dir
        }  # fmt: skip
        if not restored:
            return
        for q in sorted(p for p, a in self.actions.items() if a.kind == Kind.UPLOAD and a.base is None):
            loc = self.local(q)
            if loc is None or loc.is_dir or not loc.md5:
                continue
            ranked = sorted(
                (r, p) for p, a in restored.items() if a.base is not None and a.base.md5 == loc.md5
                for r in [self._local_rename(p, q)] if r
            )  # fmt: skip
            if not ranked:
                continue
            p = ranked[0][1]
            down, up = restored.pop(p), self.actions[q]
            j, r = self.base[p], self.remote(p)
            assert r is not None
            del self.actions[p]
            self.sources.add(p)
            # The base moves along, its server half unchanged: if the download after the MOVE
            # does not happen, the next run still sees the server's edit and brings it down.
            record = replace(j, size=loc.size, mtime_ns=loc.mtime_ns, ino=loc.ino, prev=None)
            self.actions[q] = Action(Kind.REMOTE_MOVE, q, r, loc, "renamed here (edited on the server)", base=j,
                                     src=p, record=record, extra=((p, None),))  # fmt: skip
            self.edited_moves[q] = (down, up, r)

    def _settle_edited_moves(self) -> None:
        """A pair of _moved_while_edited that became part of a folder MOVE: its edit comes down at
        the new path after it. One that did not (a single file) goes back to what it was."""
        for q, (down, up, r) in sorted(self.edited_moves.items()):
            move = self.actions.get(q)
            if move is not None and move.kind == Kind.REMOTE_MOVE and move.src == down.path:
                del self.actions[q]
                self.sources.discard(down.path)
                self.actions[down.path], self.actions[q] = down, up
                continue
            moved = replace(r, path=q, href="")  # (its href is the old path's; the new one is asked by path)
            j = self.base[down.path]
            base = replace(j, size=up.local.size, mtime_ns=up.local.mtime_ns, ino=up.local.ino) if up.local else j
            self.followups.append(Action(Kind.UPDATE, q, moved, up.local, "changed on the server (moved here with "
                                         "its folder)", base=base, record=file_record(moved)))  # fmt: skip

    def _local_rename(self, p: str, q: str) -> int:
        """A rank (1 best, 0 no match): the same file id, else the same size and mtime (MD5 already equal)."""
        j, new = self.base[p], self.local(q)
        assert new is not None
        if new.ino and new.ino == j.ino:
            return 1
        return 2 if (new.size, new.mtime_ns) == (j.size, j.mtime_ns) else 0

    def _remote_rename(self, p: str, q: str) -> int:
        """Equal MD5 is the evidence; the same name in another folder ranks first."""
        return 1 if p.rsplit("/", 1)[-1] == q.rsplit("/", 1)[-1] else 2

    def _move(self, p: str, q: str, on_server: bool) -> Action:
        j = self.base[p]
        if on_server:  # renamed here: MOVE on the server
            loc, r = self.local(q), self.remote(p)
            assert loc is not None and r is not None
            record = file_record(r, loc, j.md5)  # complete() adds the etag the server gives after the MOVE
            return Action(Kind.REMOTE_MOVE, q, r, loc, "renamed here", base=j, src=p, record=record,
                          extra=((p, None),))  # fmt: skip
        r, loc = self.remote(q), self.local(p)
        assert r is not None and loc is not None
        record = file_record(r, loc, j.md5)  # a rename keeps the file's stat
        return Action(Kind.LOCAL_MOVE, q, r, loc, "renamed on the server", base=j, src=p, record=record,
                      extra=((p, None),))  # fmt: skip

    def _collapse_folder_moves(self) -> None:
        """A folder whose whole content moved to one new folder is one MOVE, not one per file."""
        for gone_kind, new_kind, move_kind in (
            (Kind.REMOTE_RMDIR, Kind.REMOTE_MKDIR, Kind.REMOTE_MOVE),
            (Kind.RMDIR, Kind.MKDIR, Kind.LOCAL_MOVE),
        ):
            folders = sorted(
                (p for p, a in self.actions.items() if a.kind == gone_kind), key=lambda p: (p.count("/"), p)
            )
            if not folders:
                continue
            moves = {a.src: a for a in self.actions.values() if a.kind == move_kind and a.src is not None}
            rows = sorted(self.base.items())
            keys = [p for p, _ in rows]
            for p in folders:
                gone = self.actions.get(p)
                if gone is not None and gone.kind == gone_kind:
                    lo = bisect_left(keys, p + "/")
                    hi = bisect_left(keys, p + "0")  # '0' sorts right after '/'
                    self._collapse(p, rows[lo:hi], moves, new_kind, move_kind)

    def _collapse(
        self,
        p: str,
        rows: list[tuple[str, JournalEntry]],
        moves: dict[str, Action],
        new_kind: Kind,
        move_kind: Kind,
    ) -> None:
        gone_kind = self.actions[p].kind
        q: str | None = None
        for c, j in rows:
            if j.is_dir:
                continue
            a, suffix = moves.get(c), c[len(p) :]
            if a is None or not a.path.endswith(suffix):
                return
            target = a.path[: -len(suffix)]
            if q is not None and target != q:
                return
            q = target
        if q is None or under(q, p) or under(p, q):
            return
        made = self.actions.get(q)
        if made is None or made.kind != new_kind:
            return
        for c, j in rows:
            if j.is_dir:
                a, b = self.actions.get(c), self.actions.get(q + c[len(p) :])
                if a is None or a.kind != gone_kind or b is None or b.kind != new_kind:
                    return
        moved_side = self.lv.entries if move_kind == Kind.REMOTE_MOVE else self.rv.entries
        inside = {c for c, _ in rows}
        if any(c.startswith(p + "/") and c not in inside for c in moved_side):
            return  # something new inside the old folder would be carried along: move file by file
        extra: list[tuple[str, JournalEntry | None]] = [(p, None)]
        for c, j in rows:
            new = q + c[len(p) :]
            extra.append((c, None))
            if j.is_dir:
                extra.append((new, JournalEntry(True)))
                del self.actions[c]
            else:
                extra.append((new, self.actions[new].record))
            del self.actions[new]
        del self.actions[p]
        self.sources.add(p)
        on_server = move_kind == Kind.REMOTE_MOVE
        self.actions[q] = Action(
            move_kind, q, self.remote(p if on_server else q), self.local(q if on_server else p),
            "folder renamed here" if on_server else "folder renamed on the server",
            base=self.base.get(p), src=p, record=JournalEntry(True), extra=tuple(extra),
        )  # fmt: skip
