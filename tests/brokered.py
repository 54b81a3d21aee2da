"""Servers for tests running on Windows CPython (the Windows lane, tests/windows/lane.sh).

davsync's server is Linux-only, and wine cannot start a Linux process, so there the fixtures ask
the lane's broker (tests/windows/broker.py, on 127.0.0.1) for a real `davsync serve` on the Linux
side. A BrokeredServer stands where the fixtures' in-process DavServer stands: port, scheme,
scan_done, stop(). What only an in-process server has (its index object, request counters) skips
the test with the reason.
"""

from __future__ import annotations

import base64
import os
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import pytest
import requests
from proxy import Faults, Proxy

BROKER = os.environ.get("DAVSYNC_TEST_BROKER", "")


def brokered() -> bool:
    """True when this test process runs on the Windows lane (servers come from the broker)."""
    return bool(BROKER)


def _ask(action: str, **body: Any) -> dict[str, Any]:
    r = requests.post(BROKER + action, json=body, timeout=120)
    answer: dict[str, Any] = r.json()
    if r.status_code != 200:
        raise AssertionError(f"the broker could not {action}: {answer.get('error')}")
    return answer


def linux_tool(tool: str, args: list[str], data: bytes | None) -> bytes:
    """Run a Linux client (curl) on the Linux side and return its stdout: on the Windows lane the
    third writer of the sync scenarios stays the real client it is on Linux."""
    answer = _ask("tool", tool=tool, args=args, data=base64.b64encode(data).decode() if data is not None else None)
    return base64.b64decode(answer["stdout"])


def put_on_server(root: Path, name: str, data: bytes) -> None:
    """Write a file into a served root. On the Windows lane the broker writes it on the Linux side,
    so a name Windows cannot hold (a:b.txt, CON.txt, a case or NFC/NFD twin) exists as on a Pi."""
    if not brokered():
        (root / name).write_bytes(data)
        return
    _ask("put", root=str(root), name=name, data=base64.b64encode(data).decode())


class Relay(Protocol):
    """What a test uses of a fault relay in front of its server."""

    @property
    def url(self) -> str: ...

    def close(self) -> None: ...


def relay(server_port: int, faults: Faults) -> Relay:
    """A relay that cuts, stalls or slows a server's connections (tests/proxy.py): in this process
    on Linux; on the Windows lane on the Linux side, as a network's faults are (wine's own server
    died on an assertion when the Windows test process cut sockets its other threads waited on)."""
    if not brokered():
        return Proxy(server_port, faults)
    return _BrokeredRelay(_ask("relay", port=server_port, faults=asdict(faults)))


class _BrokeredRelay:
    def __init__(self, answer: dict[str, Any]) -> None:
        self.id: int = answer["id"]
        self.url = f"http://127.0.0.1:{answer['port']}/"

    def close(self) -> None:
        _ask("relay_close", id=self.id)


class BrokeredServer:
    scheme = "http"

    def __init__(self, root: Path, state_dir: Path, users: Path, **opts: Any) -> None:
        paths = [k for k, v in opts.items() if isinstance(v, Path)]
        answer = _ask("start", root=str(root), state_dir=str(state_dir), users=str(users),
                      opts={k: str(v) if isinstance(v, Path) else v for k, v in opts.items()}, paths=paths)  # fmt: skip
        self.id: int = answer["id"]
        self.port: int = answer["port"]
        self.scan_done = threading.Event()
        self.scan_done.set()  # the broker answers once listings no longer say 503
        self._stopped = False

    def start(self) -> None:
        """Started by the broker already (the in-process server's start() is a separate step)."""

    def caught_up(self, skip_prefix: str = "") -> bool:
        """The server's index knows every file on its disk as it is now (read by the broker)."""
        return bool(_ask("indexed", id=self.id, skip_prefix=skip_prefix)["caught_up"])

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            _ask("stop", id=self.id)

    def __getattr__(self, name: str) -> Any:  # state, app, tracker, ...: in-process only
        pytest.skip(f"reads the server's in-process {name!r}; on the Windows lane the server is a separate Linux process")
