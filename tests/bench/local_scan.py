"""The local look of `sync`, side by side with find and md5sum on the same tree in the same run.

    python -m tests.bench.local_scan [--files 20000] [--work DIR]

- no-op scan: scan_local over N files whose stat equals the journal (the steady state of
  `sync`), next to `find DEST -type f | wc -l` (a walk that stats nothing it need not);
- first scan: every file unknown, so every file is read and hashed, next to
  `find DEST -type f -print0 | xargs -0 md5sum`.
Each is the best of three; the tree is made once (small files, 100 per folder).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from davsync import osfs
from davsync.client.local import scan_local
from davsync.client.plan import JournalEntry


def make_tree(root: Path, files: int) -> None:
    for i in range(files):
        folder = root / f"d{i // 1000:03d}" / f"s{(i // 100) % 10}"
        if i % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:06d}.txt").write_bytes(b"%d\n" % i * 20)


def best(fn, rounds: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def shell(cmd: str) -> str:
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True).stdout


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="davsync-bench-scan-", dir=args.work))
    try:
        dest = work / "dest"
        make_tree(dest, args.files)

        def scan(base: dict[str, JournalEntry]):  # type: ignore[no-untyped-def]
            return scan_local(dest, base, excluded=lambda p, d: False, rules="posix", fold_case=False, settle_s=0)

        first = scan({})
        base = {
            p: JournalEntry(True) if e.is_dir else JournalEntry(False, e.size, e.mtime_ns, e.ino, e.md5)
            for p, e in first.view.entries.items()
            if e is not None
        }
        noop = scan(base)
        assert noop.files_hashed == 0 and first.files_hashed == args.files, (noop.files_hashed, first.files_hashed)
        found = int(shell(f"find {dest} -type f | wc -l"))
        assert found == args.files
        t_noop = best(lambda: scan(base))
        t_find = best(lambda: shell(f"find {dest} -type f | wc -l"))
        t_first = best(lambda: scan({}))
        t_md5sum = best(lambda: shell(f"find {dest} -type f -print0 | xargs -0 md5sum > /dev/null"))
        fs = osfs.filesystem_type(dest) or "?"
        print(f"local scan of {args.files:,} small files on {fs} ({os.cpu_count()} CPUs), best of 3:")
        print(f"  no-op scan (stat only):  davsync {t_noop:.3f} s   find|wc -l {t_find:.3f} s   "
              f"ratio {t_noop / t_find:.1f}x find; {t_noop / args.files * 1e6:.1f} us per file")  # fmt: skip
        print(f"  first scan (hash all):   davsync {t_first:.3f} s   find|md5sum {t_md5sum:.3f} s   "
              f"ratio {t_first / t_md5sum:.1f}x md5sum")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
