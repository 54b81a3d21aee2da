"""Another client's GET while 1,000 connections sit idle or trickle their headers (issue 23 item 3).

    python -m tests.bench.slowloris [--sockets 1000] [--addresses 8] [--rounds 20]

Starts `davsync serve` (its own process, as on a Pi), then measures a small GET from
127.0.0.1 (a fresh connection each time, Basic auth, one every 0.5 s under load) three ways: with nothing else going
on, with N sockets that connected and never sent a byte, and with N sockets that send a
request head one byte per second and never finish it. The attackers come from
127.0.0.2.. (N spread over --addresses, so the per-address cap does not simply close
them). Goal: the GET's worst time stays within 1 s of its unloaded median. Prints one line
per case; exits 1 if the goal is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from .harness import PASSWORD, Server, davsync_cmd, env_with_password, free_port, run, wait_port

GOAL_S = 1.0


def start(work: Path) -> Server:
    import subprocess

    users = work / "users.json"
    run(davsync_cmd("user", "add", "bench", "--users", str(users)), env=env_with_password())
    root = work / "root"
    root.mkdir()
    (root / "small.txt").write_bytes(b"x" * 1024)
    port = free_port()
    cmd = davsync_cmd("serve", str(root), "--host", "127.0.0.1", "--port", str(port),
                      "--state-dir", str(work / "state"), "--users", str(users))  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return Server("davsync", f"http://127.0.0.1:{port}/", proc, port)


def get_times(url: str, rounds: int, pace: float = 0.0) -> list[float]:
    """`pace` seconds between GETs, so the trickling goes on while they are measured."""
    times = []
    for _ in range(rounds):
        time.sleep(pace)
        t0 = time.monotonic()
        try:
            r = requests.get(url + "small.txt", auth=("bench", PASSWORD), timeout=30)
            ok = r.status_code == 200 and len(r.content) == 1024
        except requests.RequestException:
            ok = False
        times.append(time.monotonic() - t0 if ok else float("inf"))
    return times


def open_many(port: int, count: int, addresses: int) -> list[socket.socket]:
    out = []
    for i in range(count):
        source = f"127.0.0.{2 + i % addresses}"
        s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        out.append(s)
    return out


def trickle(socks: list[socket.socket], stop: threading.Event) -> None:
    """A request head, a byte per socket per second, never finished."""
    head = b"GET /small.txt HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    pos = 0
    while not stop.is_set() and pos < len(head):
        for s in socks:
            with contextlib.suppress(OSError):
                s.send(head[pos : pos + 1])
        pos += 1
        stop.wait(1.0)


def summary(times: list[float]) -> str:
    finite = [t for t in times if t != float("inf")]
    failed = len(times) - len(finite)
    if not finite:
        return f"all {failed} GETs failed"
    return f"median {statistics.median(finite) * 1000:.1f} ms, worst {max(finite) * 1000:.1f} ms" + (
        f", {failed} failed" if failed else "")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sockets", type=int, default=1000)
    ap.add_argument("--addresses", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.sockets + 256
    if hard != resource.RLIM_INFINITY and hard < want:
        print(f"the file-descriptor limit ({hard}) is below {want}; raise it (ulimit -Hn)")
        return 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    with tempfile.TemporaryDirectory(prefix="davsync-slowloris-") as tmp:
        server = start(Path(tmp))
        try:
            base = get_times(server.url, args.rounds)
            print(f"baseline GET: {summary(base)}")
            typical = statistics.median(t for t in base if t != float("inf"))
            results = {}
            for case in ("idle", "trickling"):
                socks = open_many(server.port, args.sockets, args.addresses)
                stop = threading.Event()
                feeder = threading.Thread(target=trickle, args=(socks, stop), daemon=True)
                if case == "trickling":
                    feeder.start()
                try:
                    times = get_times(server.url, args.rounds, pace=0.5)
                finally:
                    stop.set()
                    if feeder.is_alive():
                        feeder.join(5)
                    for s in socks:
                        s.close()
                results[case] = times
                delay = max(times) - typical
                print(f"{args.sockets} {case} sockets ({args.addresses} addresses): GET {summary(times)}; "
                      f"worst delay over the baseline's median {delay * 1000:.0f} ms (goal < {GOAL_S * 1000:.0f} ms)")  # fmt: skip
            rss = server.peak_rss_mb()
            print(f"server peak RSS: {rss:.0f} MB" if rss else "server peak RSS: unknown")
        finally:
            server.stop()
    met = all(max(t) - typical < GOAL_S for t in results.values())
    print("goal met" if met else "goal MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
