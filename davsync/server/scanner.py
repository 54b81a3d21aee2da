"""Reconcile the hash index with what is on disk: the safety net behind live tracking."""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .index import HashIndex, Identity, iter_tree, md5_of_file
from .names import is_internal_path

log = logging.getLogger(__name__)
BATCH = 256


@dataclass
class ScanReport:
    files: int = 0
    folders: int = 0
    hashed: int = 0
    removed: int = 0


def _hash(item: tuple[str, str, os.stat_result]) -> tuple[str, os.stat_result, str] | None:
    """Hash one file; None if it changed while being read (the next scan or request catches it)."""
    rel, path, before = item
    try:
        md5 = md5_of_file(path)
        after = os.stat(path)
    except OSError:
        return None
    if Identity.of(before) != Identity.of(after):
        return None
    return rel, after, md5


def rescan(root: str, index: HashIndex, stop: threading.Event | None = None, workers: int = 3) -> ScanReport:
    """Hash every file whose identity changed, record new folders, tombstone vanished paths.

    A file is read only when its stat differs from the index, so a restart over an
    unchanged tree reads nothing. Hashing runs on a few threads (hashlib releases the
    GIL) and results are written in batches, one transaction each.
    """
    report = ScanReport()
    known = index.live_paths()
    fresh = index.all_identities()
    seen: set[str] = set()
    stale: list[tuple[str, str, os.stat_result]] = []
    new_dirs: list[str] = []
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
                    new_dirs.append(rel)
                continue
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        report.files += 1
        if fresh.get(rel) != Identity.of(st):
            stale.append((rel, entry.path, st))
    with index.batch() as batch:
        for rel in new_dirs:
            batch.record_dir(rel)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="davsync-hash") as pool:
        for start in range(0, len(stale), BATCH):
            if stop is not None and stop.is_set():
                return report
            results = [r for r in pool.map(_hash, stale[start : start + BATCH]) if r is not None]
            with index.batch() as batch:
                for rel, st, md5 in results:
                    batch.record_file(rel, st, md5)
            index.count_hashed(len(results), sum(st.st_size for _, st, _ in results))
            report.hashed += len(results)
    gone = [p for p in known if p not in seen]
    # Forget parents before children so a removed folder tombstones its subtree once.
    for path in sorted(gone, key=lambda p: p.count("/")):
        index.forget(path)
        report.removed += 1
    return report
