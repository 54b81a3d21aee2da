"""The guards of a two-way run (table.GUARDS): deletions become reports when a run looks unsafe."""

from __future__ import annotations

from dataclasses import replace

from . import table
from .kinds import Kind
from .snapshots import Snapshots


class Guards(Snapshots):
    def _guard(self) -> None:
        """Hold deletions (they become reports) when a guard of table.GUARDS trips; renames are already out."""
        local_del = [a for a in self.actions.values() if a.kind == Kind.DELETE]
        remote_del = [a for a in self.actions.values() if a.kind == Kind.REMOTE_DELETE]
        if not any(a.kind in table.LOCAL_DELETIONS | table.REMOTE_DELETIONS for a in self.actions.values()):
            return
        warn = self.result.warnings.append
        tripped = self.result.guards
        if self.rv.failed or self.lv.failed:
            tripped.append("failed-listing")
        remote_empty = self.rv.looks_empty
        if remote_empty is None:
            remote_empty = self.rv.complete and not any(p for p in self.rv.entries if p != "")
        # The journal's view: one tracked file gone is that file's deletion, not a share gone.
        if remote_empty and self.tracked > 1:
            tripped.append("remote-empty")
            warn("Deletions refused: the server lists an empty share while the journal is not empty "
                 "(an unmounted disk on the server?).")  # fmt: skip
        local_empty = self.lv.complete and not any(e is not None and not e.is_dir for e in self.lv.entries.values())
        if local_empty and self.tracked > 1:
            tripped.append("local-empty")
            warn("Deletions refused: the local folder is empty or missing while the journal is not "
                 "(an unplugged drive?).")  # fmt: skip
        limit = self.options.delete_limit(self.tracked)
        if limit is not None and len(local_del) > limit:
            tripped.append("max-delete-local")
            warn(f"Deletions refused: {len(local_del)} local files would go, more than --max-delete {limit}.")
        if limit is not None and len(remote_del) > limit:
            tripped.append("max-delete-remote")
            warn(f"Deletions refused: {len(remote_del)} files on the server would go, more than --max-delete {limit}.")
        guards = [table.GUARD_BY_ID[g] for g in tripped]
        hold_local = next((g.reason.format(limit=limit) for g in guards if g.holds in ("here", "both")), None)
        hold_remote = next((g.reason.format(limit=limit) for g in guards if g.holds in ("server", "both")), None)
        for path, a in list(self.actions.items()):
            if a.kind in table.LOCAL_DELETIONS and hold_local:
                reason = f"deleted on the server; kept: {hold_local}"
            elif a.kind in table.REMOTE_DELETIONS and hold_remote:
                reason = f"deleted here; kept on the server: {hold_remote}"
            else:
                continue
            held = table.HELD[a.kind]
            self.actions[path] = replace(a, kind=held, reason=reason, record=None, guarded=held == Kind.KEPT_HERE)
            self.result.refused_deletions += 1  # held by a guard: left out of sync, a problem to report

