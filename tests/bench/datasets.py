"""Deterministic benchmark trees, generated into a temp dir and removed afterwards."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

NAMES = ["photo {i:05}.jpg", "note_{i:05}.txt", "Ünïcödé {i:05}.md", "data-{i:05}.bin", "scan #{i:05}.pdf"]


@dataclass(frozen=True)
class Sizes:
    small_files: int
    small_folders: int
    scale_files: int
    big_bytes: int
    repeat: int
    watch_trials: int
    mirror_files: int = 5_000  # a second initial-mirror tree (the client tree is the first)
    upload_files: int = 20_000


FULL = Sizes(20_000, 200, 100_000, 1024**3, 3, 20)
QUICK = Sizes(1_000, 20, 5_000, 128 * 1024**2, 3, 5, mirror_files=5_000, upload_files=5_000)


def small_tree(root: Path, files: int, folders: int, seed: int = 1) -> int:
    """`files` files of 1-8 KB spread over `folders` folders, with spaces and non-ASCII names."""
    rng = random.Random(seed)
    per = max(1, files // folders)
    made = 0
    for d in range(folders):
        folder = root / (f"album {d:03}" if d % 2 else f"dossier-é{d:03}")
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per):
            name = NAMES[i % len(NAMES)].format(i=i)
            (folder / name).write_bytes(rng.randbytes(rng.randint(1000, 8000)))
            made += 1
    return made


def settle(root: Path, age_s: float = 3600) -> None:
    """Date every file `age_s` seconds back: a sync or push takes files modified in the last
    seconds for files still being written and waits for them."""
    import time

    t = time.time() - age_s
    for folder, _dirs, names in os.walk(root):
        for name in names:
            os.utime(os.path.join(folder, name), (t, t))


def big_file(path: Path, size: int, seed: int = 2) -> None:
    rng = random.Random(seed)
    block = rng.randbytes(1024 * 1024)
    with open(path, "wb") as f:
        written = 0
        while written < size:
            chunk = block[: min(len(block), size - written)]
            f.write(chunk)
            written += len(chunk)
            block = block[1:] + block[:1]  # vary blocks cheaply, still deterministic


def flat_folder(root: Path, files: int, seed: int = 3) -> None:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"file {i:04}.dat").write_bytes(rng.randbytes(rng.randint(1000, 4000)))


def change_files(root: Path, count: int, seed: int = 4) -> list[Path]:
    """Modify `count` existing files in place (new content, new size)."""
    rng = random.Random(seed)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    chosen = rng.sample(files, count)
    for p in chosen:
        p.write_bytes(rng.randbytes(rng.randint(2000, 9000)))
    return chosen


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def count_files(root: Path) -> int:
    """The user's files in a share or DEST: not the server's own (its share marker, temp files)
    nor DEST's `.davsync` state folder."""
    from davsync.server.names import is_internal_name

    count = 0
    for folder, dirs, files in os.walk(root):
        if folder == str(root):
            dirs[:] = [d for d in dirs if d != ".davsync"]
        dirs[:] = [d for d in dirs if not is_internal_name(d)]
        count += sum(1 for name in files if not is_internal_name(name))
    return count
