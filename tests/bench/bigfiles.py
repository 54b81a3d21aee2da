"""Big-file benchmarks: delta pull, resumed upload, fresh upload vs curl, ratios from one run.

    python -m tests.bench.bigfiles [--size-mib 1024] [--rate-mbs 11] [--repeat 3] [--only delta_pull,...]

With --rate-mbs the relay shapes the link both ways to that many MB/s (1e6 bytes: 11 is about a
100 Mbit/s LAN or good Wi-Fi, 40 a slow gigabit path to a Pi's USB disk), so delta and whole-file
transfers are compared over a wire that costs what a Pi's does; without it, loopback. The relay
sleeps per 64 KiB it forwards, so the rate reached is below the one asked: the table shows the
whole-file transfer's own MB/s. --repeat
runs everything N times and reports each ratio's median and range (ratios from the same run).

- 1 MiB edited in place in the middle of the file (uploaded to the server with curl, as from
  another PC), then `davsync pull`: bytes on the wire and time, against the first (whole-file)
  pull of the same file in the same run.
- The same edit made on this PC, then `davsync push`: bytes and time against the first push.
- An upload cut (the client SIGKILLed) at 90% of the file, then `davsync push` again: bytes
  sent beyond the file's size over both runs.
- A fresh upload (`davsync push` of a folder holding the file to an empty share) against
  `curl -T` of the same file to the same server.

The server runs as `davsync serve`; the client goes through tests/proxy.py (a plain TCP
relay) so the bytes on the wire are counted. Data lives in a temp dir, never in the repo.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..proxy import Faults, Proxy
from . import datasets
from .harness import PASSWORD, Server, davsync_cmd, env_with_password, free_port, need, rmtree, run, wait_port

MiB = 1024 * 1024
RATE: float | None = None  # bytes/s both ways through the relay (--rate-mbs); None: loopback


def _relay(port: int) -> Proxy:
    return Proxy(port, Faults(rate=RATE, rate_up=RATE))


def _serve(work: Path, root: Path, users: Path) -> Server:
    port = free_port()
    cmd = davsync_cmd("serve", str(root), "--host", "127.0.0.1", "--port", str(port), "--state-dir",
                      str(work / f"state-{root.name}"), "--users", str(users))  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, timeout=600)
    return Server("davsync", f"http://127.0.0.1:{port}/", proc, port)


def _client(verb: str, url: str, folder: Path) -> list[str]:
    return davsync_cmd(verb, url, str(folder), "--user", "bench")


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    run(cmd, env=env_with_password())
    return time.perf_counter() - t0


def delta_pull(work: Path, users: Path, size: int) -> dict[str, float]:
    root, dest = work / "share-delta", work / "dest-delta"
    root.mkdir()
    datasets.big_file(root / "big.bin", size)
    server = _serve(work, root, users)
    proxy = _relay(server.port)
    try:
        whole_s = _timed(_client("pull", proxy.url, dest))
        whole_bytes = proxy.bytes_to_client
        runs: list[tuple[float, int]] = []
        for at in (size // 2 + 12345, size // 4):
            # 1 MiB edited in place by another PC: it uploads the new version (curl PUT here), so
            # the server has its block list from the upload's own read. The first delta hashes
            # the local file; the second finds its block list kept from the first.
            edited = work / "edited.bin"
            shutil.copyfile(root / "big.bin", edited)
            with open(edited, "r+b") as f:
                f.seek(at)
                f.write(os.urandom(MiB))
            run(["curl", "-sf", "-u", f"bench:{PASSWORD}", "-T", str(edited), server.url + "big.bin"])
            before = proxy.bytes_to_client
            took = _timed(_client("pull", proxy.url, dest))
            runs.append((took, proxy.bytes_to_client - before))
            assert (dest / "big.bin").read_bytes() == edited.read_bytes()
    finally:
        proxy.close()
        server.stop()
    return {"whole_s": whole_s, "whole_bytes": whole_bytes, "delta_s": runs[0][0], "delta_bytes": runs[0][1],
            "delta_kept_s": runs[1][0], "delta_kept_bytes": runs[1][1]}  # fmt: skip


def delta_push(work: Path, users: Path, size: int) -> dict[str, float]:
    root, src = work / "share-dpush", work / "src-dpush"
    root.mkdir()
    src.mkdir()
    datasets.big_file(src / "big.bin", size, seed=9)
    datasets.settle(src)
    server = _serve(work, root, users)
    proxy = _relay(server.port)
    try:
        whole_s = _timed(_client("push", proxy.url, src))
        whole_bytes = proxy.bytes_to_server
        with open(src / "big.bin", "r+b") as f:  # 1 MiB edited in place, mid-file, on this PC
            f.seek(size // 2 + 12345)
            f.write(os.urandom(MiB))
        datasets.settle(src)
        delta_s = _timed(_client("push", proxy.url, src))
        delta_bytes = proxy.bytes_to_server - whole_bytes
        assert (root / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    finally:
        proxy.close()
        server.stop()
    return {"whole_s": whole_s, "whole_bytes": whole_bytes, "delta_s": delta_s, "delta_bytes": delta_bytes}


def resumed_upload(work: Path, users: Path, size: int) -> dict[str, float]:
    root, src = work / "share-resume", work / "src-resume"
    root.mkdir()
    src.mkdir()
    datasets.big_file(src / "big.bin", size, seed=5)
    datasets.settle(src)  # written long ago: push does not wait for a file still being written
    server = _serve(work, root, users)
    proxy = _relay(server.port)
    uploads = work / f"state-{root.name}" / "uploads"
    try:
        proc = subprocess.Popen(_client("push", proxy.url, src), env=env_with_password(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        cut_at = 0
        while proc.poll() is None:
            parts = list(uploads.glob("*.data")) if uploads.is_dir() else []
            have = sum(p.stat().st_size for p in parts)
            if have >= size * 9 // 10:
                os.kill(proc.pid, signal.SIGKILL)
                cut_at = have
                break
            time.sleep(0.01)
        proc.wait(60)
        if not cut_at:
            raise RuntimeError("the upload ended before it could be cut at 90%")
        first = proxy.bytes_to_server
        t0 = time.perf_counter()
        out = run(_client("push", proxy.url, src), env=env_with_password()).stdout
        resume_s = time.perf_counter() - t0
        total = proxy.bytes_to_server
        assert (root / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    finally:
        proxy.close()
        server.stop()
    return {"cut_at": cut_at, "first_run_bytes": first, "total_bytes": total, "resent": total - size,
            "resume_s": resume_s, "said_resuming": float("resuming" in out)}  # fmt: skip


def fresh_upload(work: Path, users: Path, size: int) -> dict[str, float]:
    root, src = work / "share-fresh", work / "src-fresh"
    root.mkdir()
    src.mkdir()
    datasets.big_file(src / "big.bin", size, seed=7)
    datasets.settle(src)
    server = _serve(work, root, users)
    try:
        davsync_s = _timed(_client("push", server.url, src))
        curl_s = None
        if need("curl"):
            t0 = time.perf_counter()
            run(["curl", "-sf", "-u", f"bench:{PASSWORD}", "-T", str(src / "big.bin"), server.url + "curl.bin"])
            curl_s = time.perf_counter() - t0
    finally:
        server.stop()
    return {"davsync_s": davsync_s, "curl_s": curl_s or 0.0}


BENCHES: dict[str, Callable[[Path, Path, int], dict[str, float]]] = {
    "delta_pull": delta_pull, "delta_push": delta_push, "resumed_upload": resumed_upload,
    "fresh_upload": fresh_upload,
}  # fmt: skip


def _rows(r: dict[str, dict[str, float]], size: int) -> list[tuple[str, str, str, float]]:
    """(measure, davsync, reference, ratio) for the benches that ran."""
    rows: list[tuple[str, str, str, float]] = []
    if d := r.get("delta_pull"):
        rows += [
            ("1 MiB edited in place, pull: bytes on the wire", f"{d['delta_bytes'] / MiB:.2f} MiB",
             f"whole-file pull {d['whole_bytes'] / MiB:.1f} MiB", d["delta_bytes"] / d["whole_bytes"]),
            ("1 MiB edited in place, pull: time (local file hashed)", f"{d['delta_s']:.2f} s",
             f"whole-file pull {d['whole_s']:.2f} s ({d['whole_bytes'] / d['whole_s'] / 1e6:.0f} MB/s)",
             d["delta_s"] / d["whole_s"]),
            ("the next edit, pull: time (local block list kept)", f"{d['delta_kept_s']:.2f} s",
             f"whole-file pull {d['whole_s']:.2f} s", d["delta_kept_s"] / d["whole_s"]),
        ]  # fmt: skip
    if p := r.get("delta_push"):
        rows += [
            ("1 MiB edited in place, push: bytes on the wire", f"{p['delta_bytes'] / MiB:.2f} MiB",
             f"whole-file push {p['whole_bytes'] / MiB:.1f} MiB", p["delta_bytes"] / p["whole_bytes"]),
            ("1 MiB edited in place, push: time", f"{p['delta_s']:.2f} s",
             f"whole-file push {p['whole_s']:.2f} s ({p['whole_bytes'] / p['whole_s'] / 1e6:.0f} MB/s)",
             p["delta_s"] / p["whole_s"]),
        ]  # fmt: skip
    if u := r.get("resumed_upload"):
        rows.append((f"upload killed at {u['cut_at'] / MiB:.0f} MiB, then resumed: bytes sent beyond the file",
                     f"{u['resent'] / 1024:.1f} KiB", f"file {size // MiB} MiB", u["resent"] / size))  # fmt: skip
    if f := r.get("fresh_upload"):
        rows.append(("fresh upload (push, whole process); ratio: davsync's speed vs curl's", f"{f['davsync_s']:.2f} s",
                     f"curl -T {f['curl_s']:.2f} s", f["curl_s"] / f["davsync_s"] if f["davsync_s"] else 0.0))  # fmt: skip
    return rows


def main() -> None:
    global RATE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rate-mbs", type=float, default=0.0, help="shape the link to this many MB/s both ways")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated: " + ", ".join(BENCHES))
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    RATE = args.rate_mbs * 1e6 or None
    size = args.size_mib * MiB
    runs: list[dict[str, dict[str, float]]] = []
    for _ in range(args.repeat):
        work = Path(tempfile.mkdtemp(prefix="davsync-bench-big-"))
        try:
            users = work / "users.json"
            run(davsync_cmd("user", "add", "bench", "--users", str(users)), env=env_with_password())
            runs.append({name: BENCHES[name](work, users, size) for name in args.only.split(",")})
        finally:
            rmtree(work)
        print("\n".join(f"  {m}: {d} vs {ref}: {ratio:.4f}" for m, d, ref, ratio in _rows(runs[-1], size)), flush=True)
    link = f"a link shaped to {args.rate_mbs:g} MB/s both ways" if RATE else "loopback"
    lines = [
        f"Big files, {args.size_mib} MiB, {link}, {args.repeat} run(s), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}",
        "",
        "| measure | davsync (median run) | reference (same run) | ratio median | ratio range |",
        "|---|---|---|---|---|",
    ]
    table = [_rows(r, size) for r in runs]
    for i in range(len(table[0])):
        ratios = sorted(t[i][3] for t in table)
        median_run = min(table, key=lambda t: abs(t[i][3] - statistics.median(ratios)))[i]
        lines.append(f"| {median_run[0]} | {median_run[1]} | {median_run[2]} | {statistics.median(ratios):.4f} | "
                     f"{ratios[0]:.4f}-{ratios[-1]:.4f} |")  # fmt: skip
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bigfiles.md").write_text("\n".join(lines) + "\n")
    (args.out / "bigfiles.json").write_text(json.dumps({"size_mib": args.size_mib, "rate_mbs": args.rate_mbs,
                                                        "runs": runs}, indent=2))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
