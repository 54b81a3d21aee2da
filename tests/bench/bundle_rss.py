"""Server memory while 20 slow clients read large bundles (issue 23 item 4).

    python -m tests.bench.bundle_rss [--readers 20] [--files 4] [--size-mb 15]

Starts `davsync serve` in its own process with N files of S MiB, then opens R connections
that each ask for a bundle of all of them and read the answer slowly (64 KiB every 50 ms,
about 1.3 MB/s each). Samples the server's RSS while they read and prints the peak and the
start. Goal: peak RSS under 300 MB. Exits 1 if missed.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from .harness import PASSWORD, Server, davsync_cmd, env_with_password, free_port, run, wait_port

GOAL_MB = 300.0


def start(work: Path, files: int, size: int) -> Server:
    import subprocess

    users = work / "users.json"
    run(davsync_cmd("user", "add", "bench", "--users", str(users)), env=env_with_password())
    root = work / "root"
    (root / "big").mkdir(parents=True)
    for i in range(files):
        (root / "big" / f"f{i}.bin").write_bytes(os.urandom(size))
    port = free_port()
    cmd = davsync_cmd("serve", str(root), "--host", "127.0.0.1", "--port", str(port),
                      "--state-dir", str(work / "state"), "--users", str(users))  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return Server("davsync", f"http://127.0.0.1:{port}/", proc, port)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def slow_reader(port: int, body: bytes, got: list[int]) -> None:
    auth = base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"REPORT /big/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + auth.encode()
                  + b"\r\nContent-Type: application/xml\r\nContent-Length: " + str(len(body)).encode()
                  + b"\r\nConnection: close\r\n\r\n" + body)  # fmt: skip
        total = 0
        while chunk := s.recv(64 * 1024):
            total += len(chunk)
            time.sleep(0.05)
        got.append(total)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readers", type=int, default=20)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--size-mb", type=int, default=15)
    args = ap.parse_args()
    size = args.size_mb * 1024 * 1024
    items = "".join(f"<ds:file>f{i}.bin</ds:file>" for i in range(args.files))
    body = f'<ds:bundle xmlns:ds="urn:davsync:">{items}</ds:bundle>'.encode()
    with tempfile.TemporaryDirectory(prefix="davsync-bundle-rss-") as tmp:
        server = start(Path(tmp), args.files, size)
        try:
            warm: list[int] = []
            slow_reader(server.port, body, warm)  # hashes the files once (the index then knows them)
            base = rss_mb(server.proc.pid)
            got: list[int] = []
            threads = [threading.Thread(target=slow_reader, args=(server.port, body, got)) for _ in range(args.readers)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            peak = base
            while any(t.is_alive() for t in threads):
                peak = max(peak, rss_mb(server.proc.pid))
                time.sleep(0.1)
            took = time.monotonic() - t0
            complete = sum(1 for n in got if n >= args.files * size)
        finally:
            server.stop()
    print(f"{args.readers} slow readers of a {args.files} x {args.size_mb} MiB bundle: server RSS {base:.0f} MB "
          f"before, peak {peak:.0f} MB (goal < {GOAL_MB:.0f} MB); {complete}/{args.readers} complete in {took:.0f} s")  # fmt: skip
    met = peak < GOAL_MB and complete == args.readers
    print("goal met" if met else "goal MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
