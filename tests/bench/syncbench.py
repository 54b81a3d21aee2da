"""Two-way sync benchmarks (issue 12), side by side with rclone in the same run:

- a one-shot no-op `davsync sync` of the scale tree (100,000 files; 5,000 with --quick) vs a
  no-op `rclone bisync` of the same trees (goal: >= 20x faster);
- uploading the small tree (20,000 files; 1,000 with --quick) by a first `sync` of a full DEST to
  an empty share vs `rclone copy` in that direction (goal: >= 10x), next to the local floor
  (`tar | tar` of the same tree);
- `sync --watch`: a local write appears on the share (p95 <= 3 s), and the watching process's
  CPU while the folder is quiet (from /proc; goal < 1%).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from . import datasets
from .harness import davsync_cmd, env_with_password, interleaved, need, rclone_cmd, rmtree, run, timed


def _copy_tree(src: Path, dst: Path) -> None:
    """A copy of a tree as a PC would hold it: without the served root's share marker, a name the
    server keeps to itself (a copied one is refused on upload, and the first sync exits 3)."""
    from davsync.server.names import SHARE_MARKER

    rmtree(dst)
    run(["cp", "-a", str(src), str(dst)])
    (dst / SHARE_MARKER).unlink(missing_ok=True)


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process (and its waited-for children), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15])


def sync_measures(bench: Any, row: Any) -> None:
    """`bench` is tests.bench's Bench (log, add, davsync_server, stop_all, work, sizes, pin); `row` its Row."""
    noop_measure(bench, row)
    upload_and_watch_measures(bench, row)


def noop_measure(bench: Any, row: Any) -> None:
    sizes, work, pin = bench.sizes, bench.work, bench.pin
    n = sizes.scale_files
    bench.log(f"sync: one-shot no-op sync of {n:,} files vs rclone bisync")
    tree = work / "sync-scale"
    rmtree(tree)
    datasets.small_tree(tree, n, max(1, n // 100), seed=7)
    server = bench.davsync_server(tree, work / "state-sync-scale")
    env = env_with_password()
    dest = work / "sync-scale-dest"
    _copy_tree(tree, dest)  # the PC already holds the same files: the first sync adopts them
    sync = pin.client(davsync_cmd("sync", server.url, str(dest), "--user", "bench", "--quiet"))
    t0 = time.perf_counter()
    first = run(sync, env=env, check=False)
    adopt_s = time.perf_counter() - t0
    if first.returncode != 0:
        raise RuntimeError(f"the first sync exited {first.returncode}: {first.stderr[-2000:]}")
    measures: dict[str, Any] = {"davsync": lambda: run(sync, env=env)}
    detail: dict[str, Any] = {"first_sync_adopting_a_copy_s": adopt_s}
    if need("rclone"):
        rdest = work / "sync-scale-rclone"
        _copy_tree(tree, rdest)
        workdir = work / "bisync-work"
        rmtree(workdir)
        bisync = pin.client(rclone_cmd(server.url, "bisync", str(rdest), ":webdav:", "--workdir", str(workdir)))
        t0 = time.perf_counter()
        run([*bisync, "--resync"])
        detail["rclone_bisync_resync_s"] = time.perf_counter() - t0
        measures["bisync"] = lambda: run(bisync)
    got = interleaved(measures, sizes.repeat)  # davsync and bisync in turn: the load hits both alike
    noop, noop_cpu = got["davsync"]
    peers: dict[str, float | None] = {"CPU s davsync": noop_cpu.median}  # a loaded machine stretches the wall time
    detail |= {"runs": noop.as_dict(), "load_average": os.getloadavg()}
    if "bisync" in got:
        bis, bis_cpu = got["bisync"]
        peers["rclone bisync (no-op)"] = bis.median
        peers["CPU s rclone bisync"] = bis_cpu.median
        detail["rclone_runs"] = bis.as_dict()
    ratio = _div(peers.get("rclone bisync (no-op)"), noop.median)
    detail["cpu_ratio"] = _div(peers.get("CPU s rclone bisync"), noop_cpu.median)
    bench.add(row(f"no-op sync of {n:,} files (one shot)", "s", noop.median, peers, ratio, "rclone bisync/davsync",
                  ">= 20x faster than rclone bisync", None if ratio is None else ratio >= 20, detail))  # fmt: skip
    bench.stop_all()
    rmtree(dest)
    rmtree(work / "sync-scale-rclone")
    rmtree(tree)


def upload_and_watch_measures(bench: Any, row: Any) -> None:
    sizes, work, pin = bench.sizes, bench.work, bench.pin
    n = sizes.small_files
    bench.log(f"sync: first sync of a full DEST ({n:,} small files) to an empty share vs rclone copy; tar | tar")
    src = work / "sync-src"
    rmtree(src)
    made = datasets.small_tree(src, n, sizes.small_folders, seed=9)
    env = env_with_password()

    floor_dst = work / "sync-tar-floor"

    def fresh_floor() -> None:
        rmtree(floor_dst)
        floor_dst.mkdir()

    tar = pin.client(["sh", "-c", f"tar -C '{src}' -cf - . | tar -C '{floor_dst}' -xf -"])
    floor = timed(lambda: run(tar), sizes.repeat, before=fresh_floor)
    rmtree(floor_dst)

    # davsync: each repetition starts from an empty share and a DEST that was never synced.
    share = work / "sync-share"
    dest = work / "sync-dest"
    times = []
    server = None
    for i in range(sizes.repeat if made < 10_000 else 1):  # the full size takes minutes a run: n=1
        bench.stop_all()
        rmtree(share)
        share.mkdir()
        _copy_tree(src, dest)
        server = bench.davsync_server(share, work / f"state-sync-up-{i}")
        cmd = pin.client(davsync_cmd("sync", server.url, str(dest), "--user", "bench", "--quiet"))
        times.append(timed(lambda cmd=cmd: run(cmd, env=env), 1).median)
        got = datasets.count_files(share)
        if got != made:
            raise RuntimeError(f"the first sync uploaded {got} of {made} files")
    d = statistics.median(times)
    peers: dict[str, float | None] = {"tar piped to tar (local floor)": floor.median}
    if need("rclone"):
        bench.stop_all()
        rshare = work / "sync-rclone-share"
        rmtree(rshare)
        rshare.mkdir()
        rserver = bench.davsync_server(rshare, work / "state-sync-rclone")
        # rclone's upload of many small files takes minutes: one run (n=1).
        peers["rclone copy"] = timed(lambda: run(pin.client(rclone_cmd(rserver.url, "copy", str(src), ":webdav:"))), 1).median
        bench.stop_all()
        rmtree(rshare)
    ratio = _div(peers.get("rclone copy"), d)
    bench.add(row(f"upload of {made:,} small files (first sync of a full DEST to an empty share)", "s", d, peers,
                  ratio, "rclone copy/davsync", ">= 10x faster than rclone copy",
                  None if ratio is None else ratio >= 10,
                  {"files_per_s": made / d, "vs_tar_floor": d / floor.median, "runs": times,
                   "load_average": os.getloadavg()}))  # fmt: skip

    # --watch on the DEST just uploaded (the last repetition's share and DEST are in sync).
    bench.stop_all()
    server = bench.davsync_server(share, work / "state-sync-watch")
    watch_measure(bench, row, server.url, share, dest, env)
    bench.stop_all()
    for p in (src, share, dest):
        rmtree(p)


def watch_measure(bench: Any, row: Any, url: str, share: Path, dest: Path, env: dict) -> None:
    sizes, pin = bench.sizes, bench.pin
    trials = sizes.watch_trials
    bench.log(f"sync --watch: local write -> share latency ({trials} trials), idle CPU")
    log = open(bench.work / "sync-watch.log", "w")
    proc = subprocess.Popen(pin.client(davsync_cmd("sync", url, str(dest), "--user", "bench", "--quiet", "--watch")),
                            env=env, stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    latencies: list[float] = []
    idle_cpu = None
    try:
        # A warm-up write, not counted: the first round (a full look at DEST) must be over and
        # the watcher running, so the trials measure the steady state.
        _deliver(proc, dest / "watch-warm-up.txt", share / "watch-warm-up.txt", 300, bench.work)
        for i in range(trials):
            name = f"watch-trial-{i}.txt"
            latencies.append(_deliver(proc, dest / name, share / name, 60, bench.work))
            time.sleep(0.37 * (i % 3))  # vary the phase against any interval
        time.sleep(3.0)  # the last upload's bookkeeping
        hz = os.sysconf("SC_CLK_TCK")
        window = 30.0 if trials >= 20 else 10.0
        before, t0 = _cpu_ticks(proc.pid), time.perf_counter()
        time.sleep(window)
        idle_cpu = 100.0 * (_cpu_ticks(proc.pid) - before) / hz / (time.perf_counter() - t0)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
    in_order = list(latencies)
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))]
    files = datasets.count_files(dest)
    bench.add(row(f"sync --watch latency, local write -> share (p95 of {len(latencies)})", "s", p95, {"p50": p50}, None,
                  "", "p95 <= 3 s", p95 <= 3.0, {"latencies_in_order": in_order, "files_watched": files,
                   "load_average": os.getloadavg()}))  # fmt: skip
    bench.add(row(f"sync --watch idle CPU ({files:,} files watched)", "%", idle_cpu, {}, None, "", "< 1%",
                  None if idle_cpu is None else idle_cpu < 1.0, {"load_average": os.getloadavg()}))  # fmt: skip


def _deliver(proc: subprocess.Popen, local: Path, remote: Path, timeout: float, work: Path) -> float:
    """Write a new local file; seconds until the share holds all of it."""
    data = os.urandom(2000)
    t0 = time.perf_counter()
    local.write_bytes(data)
    while not (remote.exists() and remote.stat().st_size == len(data)):
        if proc.poll() is not None:
            raise RuntimeError(f"sync --watch exited {proc.returncode}; see {work / 'sync-watch.log'}")
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"sync --watch did not upload a local write within {timeout:g} s")
        time.sleep(0.01)
    return time.perf_counter() - t0


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b
