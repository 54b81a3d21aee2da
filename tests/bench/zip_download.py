"""A folder downloaded as a zip (`GET folder/?zip`): the server's memory and the first byte.

    python -m tests.bench.zip_download [--gib 2] [--work DIR] [--check]

The tree is sparse (files of zeros that take no disk) plus a thousand small files, so a
large folder costs no disk space; the server still reads, checksums and sends every byte.
Measured: time to the first byte of the answer, the whole download, the server's resident
memory before and its peak (VmHWM) after, next to `tar -cf - | cat` of the same tree
into /dev/null (the local floor: no network, no checksums). `--check` writes the zip to a sparse
file (zero blocks are skipped) and lets `unzip -t` verify it.
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import tempfile
import time
from pathlib import Path

from .harness import davsync_cmd, env_with_password, free_port, rmtree, run, wait_port

BLOCK = 1024 * 1024


def make_tree(root: Path, gib: float) -> int:
    """Sparse big files making up `gib`, plus 1,000 small ones in 10 folders; returns the byte count."""
    big = root / "videos"
    big.mkdir(parents=True)
    size = 256 * BLOCK
    total = 0
    for i in range(max(1, int(gib * 1024 * BLOCK // size))):
        with open(big / f"clip{i:03d}.mp4", "wb") as f:
            f.truncate(size)
        total += size
    for i in range(1000):
        folder = root / "photos" / f"album{i // 100}"
        folder.mkdir(parents=True, exist_ok=True)
        data = b"%d\n" % i * 100
        (folder / f"img{i:04d}.jpg").write_bytes(data)
        total += len(data)
    return total


def vm(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def download(port: int, sink: Path | None) -> tuple[float, float, int]:
    """(seconds to the first body byte, seconds in all, bytes) of GET /?zip."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    conn.request("GET", "/?zip")
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"GET /?zip answered {resp.status}")
    first = resp.read(1)
    ttfb = time.perf_counter() - t0
    n = len(first)
    out = open(sink, "wb") if sink else None  # noqa: SIM115
    try:
        if out:
            out.write(first)
        while block := resp.read(BLOCK):
            n += len(block)
            if out:
                if block.count(0) == len(block):
                    out.seek(len(block), os.SEEK_CUR)  # keep the copy sparse
                else:
                    out.write(block)
        if out:
            out.truncate()
    finally:
        if out:
            out.close()
        conn.close()
    return ttfb, time.perf_counter() - t0, n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--work", type=Path)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="davsync-zipbench-"))
    tree = work / "tree"
    total = make_tree(tree, args.gib)
    users = work / "users.json"
    run(davsync_cmd("user", "add", "bench", "--users", str(users)), env=env_with_password())
    port = free_port()
    cmd = davsync_cmd("serve", str(tree), "--host", "127.0.0.1", "--port", str(port), "--state-dir",
                      str(work / "state"), "--users", str(users), "--anonymous", "read", "--no-qr")  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, server)
        # the first scan hashes the tree: let it finish, so the figures are the zip's alone
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            probe.request("PROPFIND", "/", headers={"Depth": "0"})
            status = probe.getresponse().status
            probe.close()
            if status != 503:
                break
            time.sleep(0.5)
        rss_before = vm(server.pid, "VmRSS")
        ttfb, seconds, nbytes = download(port, work / "out.zip" if args.check else None)
        peak = vm(server.pid, "VmHWM")
        rss_after = vm(server.pid, "VmRSS")
    finally:
        server.terminate()
        server.wait(15)
    t0 = time.perf_counter()
    subprocess.run(
        f"tar -cf - -C '{tree}' . | cat > /dev/null", shell=True, check=True
    )  # tar skips reads into /dev/null
    tar_s = time.perf_counter() - t0
    print(f"| folder | {total / 2**30:.2f} GiB, {sum(1 for _ in tree.rglob('*'))} entries |")
    print(f"| first byte | {ttfb * 1000:.0f} ms |")
    print(f"| whole zip | {seconds:.1f} s, {nbytes / 2**30:.2f} GiB, {nbytes / seconds / 1e6:.0f} MB/s |")
    print(f"| server RSS | {rss_before:.0f} MB before, {rss_after:.0f} MB after, peak (VmHWM) {peak:.0f} MB |")
    print(f"| tar -cf - | cat (local floor) | {tar_s:.1f} s |")
    if args.check:
        result = subprocess.run(["unzip", "-tq", str(work / "out.zip")], capture_output=True, text=True)
        print(f"| unzip -t | {result.stdout.strip() or result.stderr.strip()} |")
    if not args.work:
        rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
