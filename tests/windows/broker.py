"""Starts `davsync serve` processes on the Linux side for tests running on Windows CPython (wine).

A Windows process under wine cannot start or wait on a Linux program (the handle it gets back is
unusable), so the Windows-side fixtures (tests/brokered.py) ask this broker, over HTTP on
127.0.0.1, for a fresh server: POST /start {root, state_dir, users, opts, paths} -> {id, port};
POST /indexed {id} -> {caught_up}; POST /stop {id}; POST /tool {tool, args, data} runs a Linux client
(curl) for them; POST /relay {port, faults} -> {id, port} starts a fault relay (tests/proxy.py) in
front of a server, POST /relay_close {id} ends it. Windows paths (C:\\..., Z:\\...) are mapped to
the Linux paths of the wine prefix ($WINEPREFIX/dosdevices). Every server is stopped by its PID
when asked, and all of them when the broker ends (the lane kills the broker by PID).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import unicodedata
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest import PASSWORDS, free_port, stale_in_index  # noqa: E402
from proxy import Faults, Proxy  # noqa: E402

from davsync.server.index import HashIndex  # noqa: E402
from davsync.server.names import is_internal_name  # noqa: E402

WINDOWS_PATH = re.compile(r"^([A-Za-z]):[\\/](.*)$")


def linux_path(path: str) -> Path:
    """The Linux path of a Windows path inside the wine prefix (its drive letters are symlinks)."""
    m = WINDOWS_PATH.match(path)
    if not m:
        raise ValueError(f"not an absolute Windows path: {path!r}")
    drive = Path(os.environ["WINEPREFIX"]) / "dosdevices" / f"{m.group(1).lower()}:"
    return Path(os.path.realpath(drive / m.group(2).replace("\\", "/")))


def nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, root: Path, state_dir: Path, log: Path) -> None:
        self.proc, self.port, self.root, self.state_dir, self.log = proc, port, root, state_dir, log
        self.index: HashIndex | None = None

    def stop(self) -> None:
        if self.index is not None:
            self.index.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # as Ctrl-C: the server's own orderly shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


SERVERS: dict[int, Served] = {}
LOCK = threading.Lock()
COUNTER = iter(range(1, 1 << 30))
LOG_DIR = Path(".")  # set by main()


def start(req: dict[str, Any]) -> dict[str, Any]:
    root, state_dir, users = (linux_path(req[k]) for k in ("root", "state_dir", "users"))
    args: list[str] = []
    for name, value in req.get("opts", {}).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            if value or name != "verbose":
                args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, str(linux_path(value)) if name in req.get("paths", []) else str(value)]
    port = free_port()
    log = LOG_DIR / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "davsync", "serve", str(root), "--host", "127.0.0.1", "--port", str(port),
           "--state-dir", str(state_dir), "--users", str(users), "--no-qr", *args]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    served = Served(proc, port, root, state_dir, log)
    deadline = time.monotonic() + 60
    while True:  # listening, and past the initial scan (listings answer 503 until then)
        if proc.poll() is not None:
            raise RuntimeError(f"davsync serve exited: {log.read_text(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            served.stop()
            raise RuntimeError("davsync serve did not finish its initial scan within 60 s")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
            r = requests.request("PROPFIND", f"http://127.0.0.1:{port}/", headers={"Depth": "1"},
                                 auth=("alice", PASSWORDS["alice"]), timeout=10)  # fmt: skip
            if r.status_code != 503:
                break
        except (OSError, requests.RequestException):
            pass
        time.sleep(0.05)
    with LOCK:
        sid = next(COUNTER)
        SERVERS[sid] = served
    return {"id": sid, "port": port}


def indexed(req: dict[str, Any]) -> dict[str, Any]:
    """What the in-process fixture's wait_indexed checks, read from the server's index file."""
    served = SERVERS[req["id"]]
    if served.index is None:
        served.index = HashIndex(served.state_dir / "index.sqlite")
    skip_prefix = req.get("skip_prefix") or None
    on_disk = {nfc(p.relative_to(served.root).as_posix()) for p in served.root.rglob("*") if not p.is_symlink()
               and not is_internal_name(p.name)  # the share's marker, upload temps
               and not (skip_prefix and p.name.startswith(skip_prefix))}  # fmt: skip
    live = {nfc(p) for p in served.index.live_paths()}
    skip = (lambda name: name.startswith(skip_prefix)) if skip_prefix else (lambda name: False)
    return {"caught_up": live == on_disk and not stale_in_index(served.index, served.root, skip=skip)}


TOOLS = {"curl"}  # the Linux clients a Windows-side test may run here


def tool(req: dict[str, Any]) -> dict[str, Any]:
    if req["tool"] not in TOOLS:
        raise ValueError(f"{req['tool']!r} is not one of the broker's tools {sorted(TOOLS)}")
    data = base64.b64decode(req["data"]) if req.get("data") is not None else None
    r = subprocess.run([req["tool"], *req["args"]], input=data, capture_output=True, timeout=60)
    return {"stdout": base64.b64encode(r.stdout).decode(), "returncode": r.returncode}


def put(req: dict[str, Any]) -> dict[str, Any]:
    """Write a file into a served root on the Linux side: names Windows cannot hold (a:b, CON.txt,
    two names differing only by case or Unicode normalisation) exist only on the server."""
    root = linux_path(req["root"])
    target = root / req["name"]
    if ".." in Path(req["name"]).parts or Path(req["name"]).is_absolute():
        raise ValueError(f"{req['name']!r} is not a name inside the root")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(base64.b64decode(req["data"]))
    return {}


def stop(req: dict[str, Any]) -> dict[str, Any]:
    with LOCK:
        served = SERVERS.pop(req["id"], None)
    if served is not None:
        served.stop()
    return {}


RELAYS: dict[int, Proxy] = {}


def relay(req: dict[str, Any]) -> dict[str, Any]:
    """A fault relay (cuts, stalls, 503s, a slow link) on the Linux side, as a network's faults
    are: run inside the Windows test process, its thread closing a socket another thread waits on
    tripped wine 8.0's own server ("sock.c:1331: sock_poll_event: Assertion"), which ended the file."""
    faults: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in req["faults"].items()}
    proxy = Proxy(int(req["port"]), Faults(**faults))
    with LOCK:
        rid = next(COUNTER)
        RELAYS[rid] = proxy
    return {"id": rid, "port": proxy.port}


def relay_close(req: dict[str, Any]) -> dict[str, Any]:
    with LOCK:
        proxy = RELAYS.pop(req["id"], None)
    if proxy is not None:
        proxy.close()
    return {}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        actions = {"/start": start, "/indexed": indexed, "/stop": stop, "/tool": tool, "/put": put,
                   "/relay": relay, "/relay_close": relay_close}  # fmt: skip
        try:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answer, code = actions[self.path](body), 200
        except Exception as exc:  # reported to the test, which fails with it
            answer, code = {"error": f"{type(exc).__name__}: {exc}"}, 500
        data = json.dumps(answer).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--log-dir", type=Path, required=True, help="each server's output goes here")
    args = parser.parse_args()
    global LOG_DIR
    LOG_DIR = args.log_dir
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True

    def shutdown(*_: Any) -> None:
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    args.port_file.write_text(str(httpd.server_address[1]))
    try:
        httpd.serve_forever()
    finally:
        for proxy in list(RELAYS.values()):
            proxy.close()
        for served in list(SERVERS.values()):
            served.stop()


if __name__ == "__main__":
    main()
