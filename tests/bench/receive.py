"""Receiving a big body: the download's pipeline (client/transfer.py) against one loop.

    python -m tests.bench.receive [--size-mib 512] [--repeat 3] [--loaded]

A sender thread writes `size` bytes into a local socket as fast as it can; the receiver is
either davsync's _Pipeline (this thread receives into reused buffers, a writer thread appends to
the file around the page cache, a hasher thread takes the MD5) or the plain loop (receive 1 MiB,
MD5 it, write it, in one thread). Both end with the file fsynced and the MD5 checked. With
--loaded a second process hashes all along (the machine's other work). Wall seconds, median and
range. The data file lives in a temp dir.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from davsync.client.transfer import BLOCK, _Pipeline

MiB = 1024 * 1024


def _send(sock: socket.socket, size: int, chunk: bytes) -> None:
    left = size
    while left > 0:
        n = min(left, len(chunk))
        sock.sendall(chunk[:n])
        left -= n
    sock.shutdown(socket.SHUT_WR)


def pipeline(sock: socket.socket, path: Path) -> str:
    digest = hashlib.md5()
    open(path, "wb").close()
    with open(path, "ab", buffering=0) as out, _Pipeline(digest, out.fileno(), path, 0) as pipe:
        while True:
            buffer = pipe.buffer()
            n = 0
            while n < len(buffer) and (got := sock.recv_into(buffer[n:])):
                n += got
            if n:
                pipe.submit(buffer, n)
            else:
                pipe.give_back(buffer)
            if n < len(buffer):
                break
    return digest.hexdigest()


def one_loop(sock: socket.socket, path: Path) -> str:
    digest = hashlib.md5()
    buffer = memoryview(bytearray(BLOCK))
    with open(path, "wb", buffering=0) as out:
        while True:
            n = 0
            while n < len(buffer) and (got := sock.recv_into(buffer[n:])):
                n += got
            if not n:
                break
            digest.update(buffer[:n])
            view = buffer[:n]
            while view:
                view = view[out.write(view) :]
        os.fsync(out.fileno())
    return digest.hexdigest()


def _once(receiver: Callable[[socket.socket, Path], str], size: int, chunk: bytes, path: Path, md5: str) -> float:
    a, b = socket.socketpair()
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MiB)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MiB)
    sender = threading.Thread(target=_send, args=(a, size, chunk), daemon=True)
    t0 = time.perf_counter()
    sender.start()
    got = receiver(b, path)
    took = time.perf_counter() - t0
    sender.join()
    a.close()
    b.close()
    path.unlink()
    if got != md5:
        raise RuntimeError("the received MD5 differs")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--loaded", action="store_true")
    args = parser.parse_args()
    size = args.size_mib * MiB
    chunk = os.urandom(4 * MiB)
    md5 = hashlib.md5()
    for i in range(0, size, len(chunk)):
        md5.update(chunk[: min(len(chunk), size - i)])
    load = None
    if args.loaded:
        code = "import hashlib\nh = hashlib.sha256()\nb = bytes(1 << 20)\nwhile True:\n    h.update(b)\n"
        load = subprocess.Popen([sys.executable, "-c", code])
    results: dict[str, list[float]] = {"pipeline": [], "one loop": []}
    try:
        with tempfile.TemporaryDirectory(prefix="davsync-bench-receive-") as tmp:
            path = Path(tmp) / "data"
            for _ in range(args.repeat):  # interleaved, so both see the same moments of load
                results["pipeline"].append(_once(pipeline, size, chunk, path, md5.hexdigest()))
                results["one loop"].append(_once(one_loop, size, chunk, path, md5.hexdigest()))
    finally:
        if load is not None:
            load.kill()
            load.wait()
    print(f"receive {args.size_mib} MiB, {'loaded' if args.loaded else 'no extra load'}, load {os.getloadavg()[0]:.1f}")
    for name, times in results.items():
        print(f"  {name}: median {statistics.median(times):.2f} s ({min(times):.2f}-{max(times):.2f}), "
              f"{size / statistics.median(times) / 1e6:.0f} MB/s")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
