"""The order a plan runs in."""

from __future__ import annotations

from .kinds import Kind
from .model import Action

_PHASE = {
    Kind.CONFLICT: 1,
    Kind.DOWNLOAD: 1,
    Kind.UPDATE: 1,
    Kind.UPLOAD: 1,
    Kind.UPLOAD_EDIT: 1,
    Kind.ADOPT: 1,
    Kind.REFRESH: 1,
    Kind.DELETE: 2,
    Kind.REMOTE_DELETE: 2,
    Kind.RMDIR: 3,
    Kind.REMOTE_RMDIR: 3,
}
_STRUCTURE = {Kind.MKDIR, Kind.REMOTE_MKDIR, Kind.LOCAL_MOVE, Kind.REMOTE_MOVE}


def order(a: Action) -> tuple[int, int, int, str]:
    """Execution order: a file against a folder, folders and moves (shallow first), transfers,
    deletions, folder removals (deepest first), then reports."""
    depth = a.path.count("/")
    if a.kind == Kind.CONFLICT and any(e is not None and e.is_dir for e in (a.local, a.remote)):
        return (0, depth, 0, a.path)
    if a.kind in _STRUCTURE:
        return (0, depth, 1, a.path)
    phase = _PHASE.get(a.kind, 4)
    return (phase, -depth if phase == 3 else depth, 0, a.path)

