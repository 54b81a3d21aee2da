"""What must survive a restart of the app, per folder pair: the Needs-attention items, the recent
changes and the time of the last good check. One small JSON file per pair in the app's state dir.

A choice on a conflict stays "uploading" until a run after it succeeded.
Conflicts stay listed until a person resolves them (or the conflict copy is gone from disk);
skipped names stay until a full listing no longer reports them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .status import RECENT_LIMIT, PairStatus


def _path(state_dir: Path, pair_id: str) -> Path:
    return state_dir / f"{pair_id}.json"


def load_into(state_dir: Path, status: PairStatus) -> None:
    try:
        data = json.loads(_path(state_dir, status.id).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # nothing kept yet, or unreadable: start fresh rather than refuse to start
    if not isinstance(data, dict):
        return
    status.conflicts = [c for c in data.get("conflicts", []) if isinstance(c, dict)]
    status.skipped = [s for s in data.get("skipped", []) if isinstance(s, dict)]
    status.recent.clear()
    status.recent.extend(r for r in data.get("recent", [])[-RECENT_LIMIT:] if isinstance(r, dict))
    if isinstance(data.get("last_check"), (int, float)):
        status.last_check = float(data["last_check"])
    if isinstance(data.get("last_result"), str):
        status.last_result = data["last_result"]
    status.uploading = [u for u in data.get("uploading", [])
                        if isinstance(u, dict) and isinstance(u.get("path"), str) and isinstance(u.get("since"), float)]
    if isinstance(data.get("counts"), dict):
        status.counts = {str(k): int(v) for k, v in data["counts"].items() if isinstance(v, int)}


def save(state_dir: Path, status: PairStatus) -> None:
    data: dict[str, Any] = {
        "conflicts": status.conflicts,
        "skipped": status.skipped,
        "recent": list(status.recent),
        "last_check": status.last_check,
        "last_result": status.last_result,
        "counts": status.counts,
        "uploading": status.uploading,  # a choice on a conflict the server has not confirmed yet
    }
    target = _path(state_dir, status.id)
    tmp = target.with_name(target.name + ".tmp")
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, target)
    except OSError:
        # Keeping the list across restarts is a convenience; syncing goes on without it (the
        # next save tries again), and the dashboard still shows everything from memory.
        pass


def forget(state_dir: Path, pair_id: str) -> None:
    _path(state_dir, pair_id).unlink(missing_ok=True)
