"""Reconcile the hash index with what is on disk: the safety net behind live tracking."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from .index import HashIndex, Identity, iter_tree
from .names import is_internal_path

log = logging.getLogger(__name__)


@dataclass
class ScanReport:
    files: int = 0
    folders: int = 0
    hashed: int = 0
    removed: int = 0


def rescan(root: str, index: HashIndex, stop: threading.Event | None = None) -> ScanReport:
    """Hash every file whose identity changed, record new folders, tombstone vanished paths.

    A file is read only when its stat differs from the index, so a restart over an
    unchanged tree reads nothing.
    """
    report = ScanReport()
    known = index.live_paths()
    seen: set[str] = set()
    for rel, entry in iter_tree(root):
        if stop is not None and stop.is_set():
            return report
        if is_internal_path(rel):
            continue
        seen.add(rel)
        try:
            if entry.is_dir(follow_symlinks=False):
                report.folders += 1
                if known.get(rel) is not True:
                    index.record_dir(rel)
                continue
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        report.files += 1
        if index.fresh_md5(rel, st) is None:
            before = index.files_hashed
            index.md5_for(rel, entry.path, st)
            report.hashed += index.files_hashed - before
    gone = [p for p in known if p not in seen]
    # Forget parents before children so a removed folder tombstones its subtree once.
    for path in sorted(gone, key=lambda p: p.count("/")):
        index.forget(path)
        report.removed += 1
    return report


__all__ = ["rescan", "ScanReport", "Identity"]
