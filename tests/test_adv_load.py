"""Load: many clients pulling while another uploads. 0 failed requests, 0 corrupt files, bounded server RSS."""

from __future__ import annotations

import hashlib
import random
import shutil
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import PASSWORDS

from davsync.client.engine import RunOptions, run_once
from davsync.client.transport import ConnectionSettings


def upload_content(n: int) -> bytes:
    return hashlib.sha256(b"upload %d" % n).digest() * (50 + n % 100)


def build_tree(root: Path, files: int) -> dict[str, str]:
    rng = random.Random(9)
    sums = {}
    for i in range(files):
        p = root / f"dir {i % 40:02}" / f"file {i:05}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randint(500, 6000))
        p.write_bytes(data)
        sums[p.relative_to(root).as_posix()] = hashlib.md5(data).hexdigest()
    (root / "uploads").mkdir()
    return sums


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """VmHWM: the peak resident size so far; VmRSS: the current one."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field}")


def run_load(serve_process, tmp_path: Path, *, clients: int, files: int, seconds: float) -> dict:  # type: ignore[no-untyped-def]
    root = tmp_path / "root"
    sums = build_tree(root, files)
    server = serve_process(root)
    idle_mb = rss_mb(server.proc.pid, "VmRSS")  # started and indexed, before any client
    conn = ConnectionSettings(server.url, "alice", PASSWORDS["alice"], timeout=60)
    deadline = time.monotonic() + seconds
    stop_upload = threading.Event()
    failures: list[str] = []
    stats = {"pulls": 0, "files_checked": 0, "uploads": 0}
    lock = threading.Lock()

    def uploader() -> None:
        n = 0
        with requests.Session() as s:
            s.auth = ("alice", PASSWORDS["alice"])
            while not stop_upload.is_set():
                r = s.put(f"{server.url}uploads/u{n:05}.bin", data=upload_content(n), timeout=60)
                if r.status_code not in (201, 204):
                    failures.append(f"upload {n}: HTTP {r.status_code}")
                n += 1
                with lock:
                    stats["uploads"] = n

    def client(k: int) -> None:
        rounds = 0
        while rounds == 0 or time.monotonic() < deadline:
            dest = tmp_path / f"client{k}"
            shutil.rmtree(dest, ignore_errors=True)
            result = run_once(conn, dest, RunOptions(jobs=1, full=True))
            rounds += 1
            if result.exit_code != 0 or result.errors:
                failures.append(f"client {k}: exit {result.exit_code} {result.fatal} {result.errors[:3]}")
                return
            checked = 0
            for rel, md5 in sums.items():
                if hashlib.md5((dest / rel).read_bytes()).hexdigest() != md5:
                    failures.append(f"client {k}: corrupt {rel}")
                checked += 1
            for p in (dest / "uploads").iterdir():
                n = int(p.stem[1:])
                if p.read_bytes() != upload_content(n):
                    failures.append(f"client {k}: corrupt upload {p.name}")
                checked += 1
            with lock:
                stats["pulls"] += 1
                stats["files_checked"] += checked

    up = threading.Thread(target=uploader, daemon=True)
    up.start()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 600)
    stop_upload.set()
    up.join(60)
    stats["server_peak_rss_mb"] = round(rss_mb(server.proc.pid), 1)
    # Relative to the same server at rest: independent of the Python build and its libraries.
    stats["server_rss_growth_mb"] = round(stats["server_peak_rss_mb"] - idle_mb, 1)
    assert not failures, failures[:10]
    assert server.proc.poll() is None, "the server died under load"
    return stats


def test_load_fast(serve_process, tmp_path: Path) -> None:
    stats = run_load(serve_process, tmp_path, clients=8, files=250, seconds=0)
    assert stats["pulls"] == 8 and stats["uploads"] > 0
    assert stats["server_rss_growth_mb"] < 100, stats
    print(f"\nload (fast): {stats}")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_load_32_clients(serve_process, tmp_path: Path) -> None:
    stats = run_load(serve_process, tmp_path, clients=32, files=2000, seconds=60)
    assert stats["server_rss_growth_mb"] < 100, stats
    print(f"\nload (32 clients, 60 s): {stats}")


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_soak_32_clients(serve_process, tmp_path: Path) -> None:
    stats = run_load(serve_process, tmp_path, clients=32, files=2000, seconds=300)
    assert stats["server_rss_growth_mb"] < 100, stats
    print(f"\nsoak (32 clients, 5 min): {stats}")
