"""Would a rolling weak hash pay? Fixed blocks (what davsync does) against rsync's rolling match.

    python -m tests.bench.rolling [--size-mib 128] [--out bench-results]

For real-ish edits of big files (a SQLite database updated and grown, a zip package, as Office
writes them, with a part changed and one inserted, a VM-like image written in place, a media file
whose tag header grew, 1 MiB inserted mid-file), it reports the bytes a delta must send:

- fixed: the new version's blocks (davsync's block size for the file) not found among the old
  version's block-aligned blocks, as davsync's delta pull and push compute it;
- rolling: rsync's "Literal data" with the same block size (`--no-whole-file --ignore-times -B`): its rolling
  weak hash finds old blocks at any byte offset of the new file.

rsync caps its block size at 128 KiB, so the files stay under 250 MiB (where davsync's block size
is 128 KiB too). Needs rsync; data lives in a temp dir.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from davsync.server.blocks import block_size_for

MiB = 1024 * 1024


def _sqlite(old: Path, new: Path, size: int, rng: random.Random, *, grow: bool) -> str:
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, payload BLOB)")
    rows = size // 1100
    db.executemany("INSERT INTO t VALUES (?, ?, ?)", ((2 * i, f"row {i}", rng.randbytes(1000)) for i in range(rows)))
    db.commit()
    db.close()
    shutil.copyfile(old, new)
    db = sqlite3.connect(new)
    if grow:  # 1 MiB of rows whose keys fall mid-table (page splits, new pages at the end)
        mid = rows  # the odd keys around the middle of the key range
        db.executemany("INSERT INTO t VALUES (?, ?, ?)",
                       ((mid + 2 * i + 1, f"new {i}", rng.randbytes(1000)) for i in range(MiB // 1000)))  # fmt: skip
        db.commit()
        db.close()
        return "SQLite: 1 MiB of rows inserted mid-key-range"
    for _ in range(500):  # 500 rows updated across the table
        db.execute("UPDATE t SET name = ?, payload = ? WHERE id = ?",
                   (f"edited {rng.random()}", rng.randbytes(1000), 2 * rng.randrange(rows)))  # fmt: skip
    db.commit()
    db.close()
    return "SQLite: 500 scattered rows updated"


def _zip_parts(size: int, rng: random.Random) -> list[tuple[str, bytes]]:
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randrange(2, 10))) for _ in range(5000)]
    parts: list[tuple[str, bytes]] = []
    total = 0
    i = 0
    while total < size:
        if i % 3 == 0:  # an embedded image: incompressible
            data = rng.randbytes(rng.randrange(100_000, 600_000))
        else:  # XML-ish text
            data = b" ".join(rng.choices(words, k=rng.randrange(20_000, 120_000)))
        parts.append((f"word/part{i:04d}.xml" if i % 3 else f"word/media/image{i:04d}.png", data))
        total += len(data) // (1 if i % 3 == 0 else 3)
        i += 1
    return parts


def _write_zip(path: Path, parts: list[tuple[str, bytes]]) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if name.endswith(".png") else zipfile.ZIP_DEFLATED
            z.writestr(info, data)


def _zip(old: Path, new: Path, size: int, rng: random.Random) -> str:
    parts = _zip_parts(size, rng)
    _write_zip(old, parts)
    mid = len(parts) // 2
    name, data = parts[mid + 1]
    edited = [*parts[:mid], ("word/media/inserted.png", rng.randbytes(MiB)), (name, data + b" one more paragraph"),
              *parts[mid + 2 :]]  # fmt: skip
    _write_zip(new, edited)  # the whole package written again, as Office saves
    return "zip package (Office-like): a part edited and a 1 MiB image inserted mid-package"


def _vm(old: Path, new: Path, size: int, rng: random.Random) -> str:
    old.write_bytes(rng.randbytes(size))
    shutil.copyfile(old, new)
    with open(new, "r+b") as f:
        for _ in range(300):  # a guest's 4 KiB page writes, in place
            f.seek(rng.randrange(size // 4096) * 4096)
            f.write(rng.randbytes(4096))
        f.seek(rng.randrange(size // MiB) * MiB)
        f.write(rng.randbytes(MiB))
    return "VM-like image: 300 scattered 4 KiB writes and 1 MiB written in place"


def _media(old: Path, new: Path, size: int, rng: random.Random) -> str:
    body = rng.randbytes(size)
    old.write_bytes(rng.randbytes(64 * 1024) + body)
    new.write_bytes(rng.randbytes(67 * 1024) + body)
    return "media file: its 64 KiB tag header rewritten 3 KiB longer (everything after shifts)"


def _insert(old: Path, new: Path, size: int, rng: random.Random) -> str:
    data = rng.randbytes(size)
    old.write_bytes(data)
    # 1 MiB and 1,000 bytes: an insertion of whole blocks would keep the blocks after it aligned
    new.write_bytes(data[: size // 2 + 12345] + rng.randbytes(MiB + 1000) + data[size // 2 + 12345 :])
    return "1 MiB (+1,000 bytes) inserted mid-file"


def _blocks(path: Path, block: int) -> list[bytes]:
    out: list[bytes] = []
    with open(path, "rb") as f:
        while data := f.read(block):
            out.append(hashlib.sha256(data).digest())
    return out


def fixed_bytes(old: Path, new: Path) -> tuple[int, int]:
    """(bytes of the new version a fixed-block delta sends, block size)."""
    size = new.stat().st_size
    block = block_size_for(size)
    have = set(_blocks(old, block))
    missing = [i for i, h in enumerate(_blocks(new, block)) if h not in have]
    return sum(min(block, size - i * block) for i in missing), block


def rolling_bytes(old: Path, new: Path, block: int, work: Path) -> int:
    """rsync's literal data sending `new` onto a copy of `old` with the same block size."""
    dest = work / "rsync-dest"
    shutil.copyfile(old, dest)
    out = subprocess.run(["rsync", "--no-whole-file", "--ignore-times", "-B", str(block), "--stats", str(new), str(dest)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    dest.unlink()
    m = re.search(r"Literal data: ([\d,]+) bytes", out)
    if m is None:
        raise RuntimeError("rsync --stats printed no literal data")
    return int(m.group(1).replace(",", ""))


CASES: list[Callable[..., str]] = [
    lambda o, n, s, r: _sqlite(o, n, s, r, grow=False),
    lambda o, n, s, r: _sqlite(o, n, s, r, grow=True),
    _zip,
    _vm,
    _media,
    _insert,
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    if shutil.which("rsync") is None:
        sys.exit("rolling: needs rsync (apt-get install rsync)")
    size = min(args.size_mib, 249) * MiB
    lines = [
        f"Rolling hash or fixed blocks, about {size // MiB} MiB files, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| edit | new size | block | fixed blocks send | rolling (rsync) sends | rolling saves |",
        "|---|---|---|---|---|---|",
    ]
    work = Path(tempfile.mkdtemp(prefix="davsync-bench-rolling-"))
    try:
        for i, case in enumerate(CASES):
            old, new = work / f"old{i}", work / f"new{i}"
            what = case(old, new, size, random.Random(i))
            fixed, block = fixed_bytes(old, new)
            rolling = rolling_bytes(old, new, block, work)
            n = new.stat().st_size
            lines.append(f"| {what} | {n / MiB:.1f} MiB | {block // 1024} KiB | {fixed / MiB:.2f} MiB "
                         f"({100 * fixed / n:.1f}%) | {rolling / MiB:.2f} MiB ({100 * rolling / n:.1f}%) | "
                         f"{100 * (fixed - rolling) / n:.1f}% of the file |")  # fmt: skip
            print(lines[-1], flush=True)
            old.unlink()
            new.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rolling.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
