"""Big-file benchmarks: delta pull, resumed upload, fresh upload vs curl, ratios from one run.

    python -m tests.bench.bigfiles [--size-mib 1024] [--rate-mbs 11] [--repeat 3] [--only delta_pull,...]

With --rate-mbs the relay shapes the link both ways to that many MB/s (1e6 bytes: 11 is about a
100 Mbit/s LAN or good Wi-Fi, 40 a slow gigabit path to a Pi's USB disk), so delta and whole-file
transfers are compared over a wire that costs what a Pi's does; without it, loopback. The table shows the
rate the whole-file transfer reached. --repeat
runs everything N times and reports each ratio's median and range (ratios from the same run).

- 1 MiB edited in place in the middle of the file (uploaded to the server with curl, as from
  another PC), then `davsync pull`: bytes on the wire and time, against the first (whole-file)
  pull of the same file in the same run.
- The same edit made on this PC, then `davsync push`: bytes and time against the first push.
- 1 MiB inserted at the middle, and 1 MiB + 1,000 bytes just past it, each way: every block
  after it shifts; measured as it is (no rolling hash).
- An upload cut (the client SIGKILLed) at 90% of the file, then `davsync push` again: bytes
  sent beyond the file's size over both runs.
- A fresh upload (`davsync push` of a folder holding the file to an empty share) against
  `curl -T` of the same file to the same server.
- Beside each delta, `rclone copy --checksum` carrying a like edit through the same relay (it
  has no delta: the whole file goes), and for every bench the peak RSS of the davsync client
  (GNU time) and server (VmHWM): issue 27 wants both under 200 MB at 4 GiB (`--size-mib 4096`).

The server runs as `davsync serve`; the client goes through tests/proxy.py (a plain TCP
relay) so the bytes on the wire are counted. Data lives in a temp dir, never in the repo.
"""

from __future__ import annotations

import argparse
import compileall
import filecmp
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
from typing import BinaryIO

from ..proxy import Faults, Proxy
from . import datasets
from .harness import (
    PASSWORD,
    Server,
    davsync_cmd,
    env_with_password,
    free_port,
    need,
    rclone_cmd,
    rmtree,
    run,
    run_measured,
    vm_hwm_mb,
    wait_port,
)

MiB = 1024 * 1024
RATE: float | None = None  # bytes/s both ways through the relay (--rate-mbs); None: loopback


def _relay(port: int) -> Proxy:
    return Proxy(port, Faults(rate=RATE, rate_up=RATE, paced=True))


def _serve(work: Path, root: Path, users: Path) -> Server:
    port = free_port()
    cmd = davsync_cmd("serve", str(root), "--host", "127.0.0.1", "--port", str(port), "--state-dir",
                      str(work / f"state-{root.name}"), "--users", str(users))  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc, timeout=600)
    return Server("davsync", f"http://127.0.0.1:{port}/", proc, port)


def _client(verb: str, url: str, folder: Path) -> list[str]:
    return davsync_cmd(verb, url, str(folder), "--user", "bench")


CPU: dict[str, float] = {}  # the client's CPU seconds (user + system) of the last _timed run
PEAK: dict[str, float] = {}  # the highest client RSS (MB) since the bench began (issue 27: < 200 MB)


def _note_client_rss(mb: float) -> None:
    PEAK["client"] = max(PEAK.get("client", 0.0), mb)


def _timed(cmd: list[str]) -> float:
    """Wall seconds of one client run; its CPU seconds go to CPU["last"], its peak RSS to PEAK."""
    return _timed_out(cmd)[1]


def _timed_out(cmd: list[str]) -> tuple[str, float]:
    """(stdout, wall seconds) of one run that must succeed; a davsync client's peak RSS is noted."""
    m = run_measured(cmd, env=env_with_password())
    CPU["last"] = m.cpu_s
    if cmd[0] != "curl":
        _note_client_rss(m.rss_mb)
    return m.stdout, m.seconds


def _server_peak(server: Server) -> None:
    """Note the server's peak RSS (VmHWM) before it stops."""
    PEAK["server"] = max(PEAK.get("server", 0.0), server.peak_rss_mb() or 0.0)


def _edited_copy(src: Path, dst: Path, at: int, inserted: int = 0) -> None:
    """`dst` = `src` with 1 MiB of new bytes written over offset `at` or, with `inserted`, that
    many new bytes inserted there (streamed)."""
    with open(src, "rb") as old, open(dst, "wb") as new:
        _copy_n(old, new, at)
        new.write(os.urandom(inserted or MiB))
        if not inserted:
            old.seek(MiB, os.SEEK_CUR)
        shutil.copyfileobj(old, new, 8 * MiB)


def _copy_n(src: BinaryIO, dst: BinaryIO, n: int) -> None:
    while n > 0:
        chunk = src.read(min(n, 8 * MiB))
        if not chunk:
            return
        dst.write(chunk)
        n -= len(chunk)


# The insertions measured: 1 MiB at the middle, as the issue words it (a shift by whole blocks
# where the block size divides 1 MiB, files up to 1 GiB: every block after it is found again),
# and 1 MiB + 1,000 bytes past it (off the block grid at any size: nothing after it is).
INSERTS = {"mid": (0, MiB), "offgrid": (12345, MiB + 1000)}


def delta_pull(work: Path, users: Path, size: int) -> dict[str, float]:
    root, dest = work / "share-delta", work / "dest-delta"
    root.mkdir()
    datasets.big_file(root / "big.bin", size)
    server = _serve(work, root, users)
    proxy = _relay(server.port)
    try:
        # The server hashes a file it did not receive on its first listing: a warm-up pull (not
        # timed, not through the relay) keeps that one-time cost out of the whole-file reference.
        run(_client("pull", server.url, work / "warm-up"), env=env_with_password())
        rmtree(work / "warm-up")
        whole_s = _timed(_client("pull", proxy.url, dest))
        whole_cpu = CPU["last"]
        whole_bytes = proxy.bytes_to_client
        rdest = work / "rclone-dest"  # rclone's own copy of the old version, to carry the same edit
        if need("rclone"):
            rdest.mkdir()
            shutil.copy2(dest / "big.bin", rdest / "big.bin")
        runs: list[tuple[float, int, float, int]] = []  # (s, bytes, CPU s, new size) per edit
        peer: dict[str, float] = {}
        edits = [(size // 2 + 12345, 0), (size // 4, 0)] + [(size // 2 + off, n) for off, n in INSERTS.values()]
        for at, inserted in edits:
            # 1 MiB edited in place by another PC: it uploads the new version (curl PUT here), so
            # the server has its block list from the upload's own read. The first delta hashes
            # the local file; the second finds its block list kept from the first. Then the
            # insertions (no rolling hash: see the docs).
            edited = work / "edited.bin"
            _edited_copy(root / "big.bin", edited, at, inserted)
            run(["curl", "-sf", "-u", f"bench:{PASSWORD}", "-T", str(edited), server.url + "big.bin"])
            before = proxy.bytes_to_client
            took = _timed(_client("pull", proxy.url, dest))
            runs.append((took, proxy.bytes_to_client - before, CPU["last"], edited.stat().st_size))
            assert filecmp.cmp(dest / "big.bin", edited, shallow=False)
            if rdest.is_dir() and not peer:
                peer = _rclone_copy(proxy, ":webdav:", str(rdest), way="pull")
    finally:
        proxy.close()
        _server_peak(server)
        server.stop()
    return {"whole_s": whole_s, "whole_bytes": whole_bytes, "delta_s": runs[0][0], "delta_bytes": runs[0][1],
            "delta_kept_s": runs[1][0], "delta_kept_bytes": runs[1][1], "whole_cpu": whole_cpu,
            "delta_cpu": runs[0][2], "delta_kept_cpu": runs[1][2], **_inserted(runs[2:]), **peer}  # fmt: skip


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
        whole_cpu = CPU["last"]
        whole_bytes = proxy.bytes_to_server
        with open(src / "big.bin", "r+b") as f:  # 1 MiB edited in place, mid-file, on this PC
            f.seek(size // 2 + 12345)
            f.write(os.urandom(MiB))
        datasets.settle(src)
        delta_s = _timed(_client("push", proxy.url, src))
        delta_cpu = CPU["last"]
        delta_bytes = proxy.bytes_to_server - whole_bytes
        assert filecmp.cmp(root / "big.bin", src / "big.bin", shallow=False)
        inserts: list[tuple[float, int, float, int]] = []
        for off, n in INSERTS.values():  # the insertions (no rolling hash: see the docs)
            _edited_copy(src / "big.bin", work / "inserted.bin", size // 2 + off, n)
            os.replace(work / "inserted.bin", src / "big.bin")
            datasets.settle(src)
            before = proxy.bytes_to_server
            took = _timed(_client("push", proxy.url, src))
            inserts.append((took, proxy.bytes_to_server - before, CPU["last"], (src / "big.bin").stat().st_size))
            assert filecmp.cmp(root / "big.bin", src / "big.bin", shallow=False)
        peer: dict[str, float] = {}
        if need("rclone"):  # rclone carries a like edit (1 MiB in place, a quarter in)
            with open(src / "big.bin", "r+b") as f:
                f.seek(size // 4)
                f.write(os.urandom(MiB))
            datasets.settle(src)
            peer = _rclone_copy(proxy, str(src), ":webdav:", "--exclude", "/.davsync/**", way="push")
            assert filecmp.cmp(root / "big.bin", src / "big.bin", shallow=False)
    finally:
        proxy.close()
        _server_peak(server)
        server.stop()
    return {"whole_s": whole_s, "whole_bytes": whole_bytes, "delta_s": delta_s, "delta_bytes": delta_bytes,
            "whole_cpu": whole_cpu, "delta_cpu": delta_cpu, **_inserted(inserts), **peer}  # fmt: skip


def _inserted(runs: list[tuple[float, int, float, int]]) -> dict[str, float]:
    """The insertions' (s, bytes, CPU s, new size) runs as result keys, in INSERTS' order."""
    out: dict[str, float] = {}
    for name, (took, sent, _cpu, new_size) in zip(INSERTS, runs, strict=True):
        out[f"inserted_{name}_s"], out[f"inserted_{name}_bytes"] = took, sent
        out[f"inserted_{name}_size"] = new_size
    return out


def _rclone_copy(proxy: Proxy, source: str, dest: str, *flags: str, way: str) -> dict[str, float]:
    """rclone's `copy` of the same kind of change through the relay: time and bytes on the wire.
    It compares by MD5 (`--checksum`, which davsync's share publishes) and, having no delta,
    sends a changed file whole."""
    counted = (lambda: proxy.bytes_to_client) if way == "pull" else (lambda: proxy.bytes_to_server)
    before = counted()
    t0 = time.perf_counter()
    run(rclone_cmd(proxy.url, "copy", "--checksum", *flags, source, dest))
    return {"rclone_s": time.perf_counter() - t0, "rclone_bytes": counted() - before}


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
            _note_client_rss(vm_hwm_mb(proc.pid) or 0.0)  # (killed: sampled while it runs)
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
        out, resume_s = _timed_out(_client("push", proxy.url, src))
        total = proxy.bytes_to_server
        assert filecmp.cmp(root / "big.bin", src / "big.bin", shallow=False)
    finally:
        proxy.close()
        _server_peak(server)
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
    proxy = _relay(server.port)  # both through the same relay (shaped or not)
    try:
        davsync_s = _timed(_client("push", proxy.url, src))
        curl_s = None
        if need("curl"):
            t0 = time.perf_counter()
            run(["curl", "-sf", "-u", f"bench:{PASSWORD}", "-T", str(src / "big.bin"), proxy.url + "curl.bin"])
            curl_s = time.perf_counter() - t0
    finally:
        proxy.close()
        _server_peak(server)
        server.stop()
    return {"davsync_s": davsync_s, "curl_s": curl_s or 0.0}


def pull_vs_curl(work: Path, users: Path, size: int) -> dict[str, float]:
    """A whole-file pull against curl -o and curl then md5sum (the same check), through the relay."""
    root = work / "share-pull"
    root.mkdir()
    datasets.big_file(root / "big.bin", size, seed=3)
    server = _serve(work, root, users)
    proxy = _relay(server.port)
    out, dest = work / "curl.out", work / "dest-pull"
    try:
        run(_client("pull", server.url, work / "warm-up"), env=env_with_password())  # (as in delta_pull)
        rmtree(work / "warm-up")
        fetch = ["curl", "-sf", "-u", f"bench:{PASSWORD}", "-o", str(out), proxy.url + "big.bin"]
        curl_s = _timed(fetch)
        out.unlink()
        t0 = time.perf_counter()
        run(fetch)
        run(["md5sum", str(out)])
        curl_md5_s = time.perf_counter() - t0
        out.unlink()
        davsync_s = _timed(_client("pull", proxy.url, dest))
    finally:
        proxy.close()
        _server_peak(server)
        server.stop()
    return {"davsync_s": davsync_s, "curl_s": curl_s, "curl_md5_s": curl_md5_s}


BENCHES: dict[str, Callable[[Path, Path, int], dict[str, float]]] = {
    "delta_pull": delta_pull, "delta_push": delta_push, "resumed_upload": resumed_upload,
    "fresh_upload": fresh_upload, "pull_vs_curl": pull_vs_curl,
}  # fmt: skip


def _bytes_row(way: str, d: dict[str, float]) -> tuple[str, str, str, float]:
    return (f"1 MiB edited in place, {way}: bytes on the wire", f"{d['delta_bytes'] / MiB:.2f} MiB",
            f"whole-file {way} {d['whole_bytes'] / MiB:.1f} MiB", d["delta_bytes"] / d["whole_bytes"])  # fmt: skip


def _time_row(measure: str, way: str, d: dict[str, float], key: str) -> tuple[str, str, str, float]:
    rate = d["whole_bytes"] / d["whole_s"] / 1e6
    return measure, f"{d[key]:.2f} s", f"whole-file {way} {d['whole_s']:.2f} s ({rate:.0f} MB/s)", d[key] / d["whole_s"]


def _cpu_row(measure: str, way: str, d: dict[str, float], key: str) -> tuple[str, str, str, float]:
    return measure, f"{d[key]:.2f} s", f"whole-file {way} {d['whole_cpu']:.2f} s", d[key] / d["whole_cpu"]


def _rows(r: dict[str, dict[str, float]], size: int) -> list[tuple[str, str, str, float]]:
    """(measure, davsync, reference, ratio) for the benches that ran."""
    rows: list[tuple[str, str, str, float]] = []
    if d := r.get("delta_pull"):
        rows += [
            _bytes_row("pull", d),
            _time_row("1 MiB edited in place, pull: time (local file hashed)", "pull", d, "delta_s"),
            _time_row("the next edit, pull: time (local block list kept)", "pull", d, "delta_kept_s"),
            *_insert_rows("pull", d),
            _cpu_row("the next edit, pull: client CPU s", "pull", d, "delta_kept_cpu"),
            *_rclone_rows("pull", d),
        ]
    if p := r.get("delta_push"):
        rows += [
            _bytes_row("push", p),
            _time_row("1 MiB edited in place, push: time", "push", p, "delta_s"),
            _cpu_row("1 MiB edited in place, push: client CPU s", "push", p, "delta_cpu"),
            *_insert_rows("push", p),
            *_rclone_rows("push", p),
        ]
    if u := r.get("resumed_upload"):
        rows.append((f"upload killed at {u['cut_at'] / MiB:.0f} MiB, then resumed: bytes sent beyond the file",
                     f"{u['resent'] / 1024:.1f} KiB", f"file {size // MiB} MiB", u["resent"] / size))  # fmt: skip
    if f := r.get("fresh_upload"):
        rows.append(("fresh upload (push, whole process); ratio: davsync's speed vs curl's", f"{f['davsync_s']:.2f} s",
                     f"curl -T {f['curl_s']:.2f} s", f["curl_s"] / f["davsync_s"] if f["davsync_s"] else 0.0))  # fmt: skip
    if c := r.get("pull_vs_curl"):
        rows += [
            ("pull of the file (whole process) vs curl -o", f"{c['davsync_s']:.2f} s", f"curl {c['curl_s']:.2f} s",
             c["davsync_s"] / c["curl_s"]),
            ("pull of the file vs curl then md5sum", f"{c['davsync_s']:.2f} s",
             f"curl + md5sum {c['curl_md5_s']:.2f} s", c["davsync_s"] / c["curl_md5_s"]),
        ]  # fmt: skip
    for name, d in r.items():  # issue 27: both stay under 200 MB, whatever the file's size
        rows.append((f"peak RSS, {name}: client / server", f"{d['client_rss_mb']:.0f} / {d['server_rss_mb']:.0f} MB",
                     "goal < 200 MB each", max(d["client_rss_mb"], d["server_rss_mb"]) / 200))  # fmt: skip
    return rows


def _insert_rows(way: str, d: dict[str, float]) -> list[tuple[str, str, str, float]]:
    rows = []
    for name, (_off, n) in INSERTS.items():
        what = "1 MiB inserted at the middle" if name == "mid" else f"1 MiB + {n - MiB:,} bytes inserted past the middle"
        rows += [
            _time_row(f"{what}, {way}: time", way, d, f"inserted_{name}_s"),
            (f"{what}, {way}: bytes on the wire",
             f"{d[f'inserted_{name}_bytes'] / MiB:.1f} MiB", f"the new file {d[f'inserted_{name}_size'] / MiB:.1f} MiB",
             d[f"inserted_{name}_bytes"] / d[f"inserted_{name}_size"]),
        ]  # fmt: skip
    return rows


def _rclone_rows(way: str, d: dict[str, float]) -> list[tuple[str, str, str, float]]:
    """The same kind of edit carried by `rclone copy` (no delta: the whole file), from the same run."""
    if "rclone_s" not in d:
        return []
    return [
        (f"1 MiB edited in place, {way}: bytes on the wire vs rclone copy", f"{d['delta_bytes'] / MiB:.2f} MiB",
         f"rclone {d['rclone_bytes'] / MiB:.1f} MiB", d["delta_bytes"] / d["rclone_bytes"]),
        (f"1 MiB edited in place, {way}: time vs rclone copy", f"{d['delta_s']:.2f} s",
         f"rclone {d['rclone_s']:.2f} s", d["delta_s"] / d["rclone_s"]),
    ]  # fmt: skip


def _load() -> subprocess.Popen[bytes]:
    """A second process hashing without pause (--loaded): the machine's other work."""
    code = "import hashlib\nh = hashlib.sha256()\nb = bytes(1 << 20)\nwhile True:\n    h.update(b)\n"
    return subprocess.Popen([sys.executable, "-c", code])


def _repeat(args: argparse.Namespace, size: int, runs: list[dict[str, dict[str, float]]]) -> None:
    for _ in range(args.repeat):
        work = Path(tempfile.mkdtemp(prefix="davsync-bench-big-"))
        try:
            users = work / "users.json"
            run(davsync_cmd("user", "add", "bench", "--users", str(users)), env=env_with_password())
            results: dict[str, dict[str, float]] = {}
            for name in args.only.split(","):
                PEAK.clear()
                (work / name).mkdir()
                results[name] = BENCHES[name](work / name, users, size)
                results[name].update(client_rss_mb=PEAK.get("client", 0.0), server_rss_mb=PEAK.get("server", 0.0))
                rmtree(work / name)  # (a 4 GiB run keeps one bench's files at a time)
            runs.append(results)
        finally:
            rmtree(work)
        print("\n".join(f"  {m}: {d} vs {ref}: {ratio:.4f}" for m, d, ref, ratio in _rows(runs[-1], size)), flush=True)


def main() -> None:
    global RATE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rate-mbs", type=float, default=0.0, help="shape the link to this many MB/s both ways")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--loaded", action="store_true", help="a second process hashes all along")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated: " + ", ".join(BENCHES))
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    RATE = args.rate_mbs * 1e6 or None
    # As tests.bench does: a checkout run with PYTHONDONTWRITEBYTECODE would compile davsync on
    # every client start (about 0.7 s of CPU here) and inflate every time measured.
    compileall.compile_dir(str(Path(__file__).resolve().parents[2] / "davsync"), quiet=1)
    size = args.size_mib * MiB
    runs: list[dict[str, dict[str, float]]] = []
    load = _load() if args.loaded else None
    try:
        _repeat(args, size, runs)
    finally:
        if load is not None:
            load.kill()
            load.wait()
    link = (f"a link shaped to {args.rate_mbs:g} MB/s both ways" if RATE else "loopback") + (
        ", loaded (a second process hashing)" if args.loaded else "")
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
