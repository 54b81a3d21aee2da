"""Reconcile the hash index with what is on disk: the safety net behind live tracking."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..concurrency import bounded
from ..scan import iter_folders, md5_of_file
from .index import HashIndex, Identity
from .names import TEMP_SUFFIX, is_internal_name, is_internal_path

log = logging.getLogger(__name__)
BATCH = 256


@dataclass
class ScanReport:
    files: int = 0
    folders: int = 0
    hashed: int = 0
    removed: int = 0
    complete: bool = True  # False: stopped, or refused because the share's disk went away


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


def _flush(index: HashIndex, done: list[tuple[str, os.stat_result, str]], report: ScanReport) -> None:
    index.record_many(done)
    index.count_hashed(len(done), sum(st.st_size for _, st, _ in done))
    report.hashed += len(done)
    done.clear()


def rescan(
    root: str,
    index: HashIndex,
    stop: threading.Event | None = None,
    workers: int = 3,
    remove_stale_uploads: bool = False,
    intact: Callable[[], bool] | None = None,
) -> ScanReport:
    """Hash every file whose identity changed, record new folders, tombstone vanished paths.

    A file is read only when its stat differs from the index, so a restart over an
    unchanged tree reads nothing. The walk goes folder by folder, comparing each with
    the index's rows for that folder, so memory stays small however large the tree.
    Hashing runs on a few threads (hashlib releases the GIL), overlapping the walk, and
    results are written in batches. At start-up (`remove_stale_uploads`), temp files of
    uploads cut off by a crash are deleted.

    `intact()` says whether the share's disk is still there (its marker, shareroot.py): an
    unmounted disk's empty mount point must never be read as every file deleted, so the scan
    records nothing without it and asks again before each removal.
    """
    report = ScanReport()
    if intact is not None and not intact():
        report.complete = False
        return report

    def may_remove() -> bool:
        if intact is None or intact():
            return True
        report.complete = False
        return False

    recorded: dict[str, tuple[dict[str, bool], dict[str, tuple[Identity, str | None]]]] = {}

    def read_record(folder: str) -> None:
        # Before the folder is listed: a file an upload places (and indexes) after the listing
        # must not look vanished, nor a folder a DELETE removes after it look new.
        recorded.clear()  # (a folder that could not be listed left its record behind)
        if not (folder and is_internal_path(folder)):
            recorded[folder] = (index.children(folder), index.identities_in(folder))

    def stale_files() -> Iterator[tuple[str, str, os.stat_result]]:
        for folder, entries in iter_folders(root, before_listing=read_record):
            if stop is not None and stop.is_set():
                report.complete = False
                return
            if folder and is_internal_path(folder):
                continue
            known, hashed = recorded.pop(folder)
            present: set[str] = set()
            for entry in entries:
                rel = f"{folder}/{entry.name}" if folder else entry.name
                if is_internal_name(entry.name):
                    if remove_stale_uploads and entry.name.endswith(TEMP_SUFFIX):  # not the versions area
                        _remove(entry.path)
                    continue
                try:
                    if entry.is_symlink():
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        present.add(rel)
                        report.folders += 1
                        if known.get(rel) is not True:
                            index.record_dir(rel)
                        continue
                    if not entry.is_file(follow_symlinks=False):
                        continue
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                present.add(rel)
                report.files += 1
                if known.get(rel) is True:
                    if not may_remove():
                        return
                    index.forget(rel)  # a folder became a file: its old subtree is gone
                stored = hashed.get(rel)
                if stored is None or stored[1] is None or stored[0] != Identity.of(st):
                    yield rel, entry.path, st
            for rel in known:
                if rel not in present:
                    if not may_remove():
                        return
                    index.forget(rel)  # a vanished folder takes its subtree with it
                    report.removed += 1

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="davsync-hash") as pool:
        done: list[tuple[str, os.stat_result, str]] = []
        for _item, fut in bounded(pool, _hash, stale_files(), window=4 * max(1, workers)):
            if stop is not None and stop.is_set():
                report.complete = False
                return report
            result = fut.result()
            if result is not None:
                done.append(result)
            if len(done) >= BATCH:
                _flush(index, done, report)
        _flush(index, done, report)
    return report


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
