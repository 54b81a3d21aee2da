"""Narrowing a full local scan to what changed since the journal's rows.

With a changes-only server listing, the planner need judge only the paths that differ on either
side; everything else is as the journal's rows say on both. This is the step between the
scanner (local.py, which sees the disk) and the planner.
"""

from __future__ import annotations

from itertools import chain

from .journal import Rows
from .local import LocalScan
from .plan import JournalEntry, LocalEntry, LocalView, learns_ctime


def changes_only(scan: LocalScan, base: Rows, touched: set[str]) -> tuple[LocalView, dict[str, JournalEntry]] | None:
    """A full local scan narrowed to what differs from the base (plus what the server's changes
    touch), with only those rows: with a changes-only server listing, the planner then judges
    the changed paths, not every file (everything else is as the base says on both sides).
    Only the entries the scan built are gone through: the files it told unchanged from their
    rows alone are left out unless touched.

    None when the whole picture is needed: a folder failed to read (its subtree is frozen), or
    DEST holds no file at all (the empty-DEST guard must see a complete view)."""
    lv, built, unchanged = scan.view, scan.built, scan.unchanged
    if lv.failed or not any(e is not None and not e.is_dir for e in lv.entries.values()):
        return None
    entries: dict[str, LocalEntry | None] = {}
    same = base.same
    told = ((p, lv.entries[p]) for p in sorted(touched) if p in unchanged and p not in built)
    for path, e in chain(built.items(), told):
        if (path in unchanged or (e is not None and e.is_dir and same(path, e))) and path not in touched:
            continue  # unchanged, told from the row's stat columns (the test below, without the whole row)
        j = base.get(path)
        if (
            j is None
            or e is None
            or j.is_dir != e.is_dir
            or (not e.is_dir and (not j.matches_local(e) or (e.md5 is not None and e.md5 != j.md5)))
            or learns_ctime(j, e)
            or j.prev is not None
            or path in touched
        ):
            entries[path] = e
    for path in base:
        if path not in built and path not in unchanged:
            entries[path] = None
    return LocalView(entries, complete=False), base.pick(set(entries) | touched)
