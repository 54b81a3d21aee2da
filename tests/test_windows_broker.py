"""The Windows lane's harness, checked on Linux: the broker (tests/windows/broker.py) starts a fault
relay for a Windows-side test that cuts and forwards as the in-process relay does, and ends when
asked; a process start wine fails with ERROR_INTERNAL_ERROR is tried again (tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from conftest import PASSWORDS, WINE_SPAWN_FAILED, spawn_again_when_wine_fails, wait_until

BROKER = Path(__file__).parent / "windows" / "broker.py"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    port_file = tmp_path / "broker.port"
    proc = subprocess.Popen([sys.executable, str(BROKER), "--port-file", str(port_file), "--log-dir", str(tmp_path / "logs")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), 30, "the broker to listen")
        yield f"http://127.0.0.1:{port_file.read_text().strip()}/"
    finally:
        proc.terminate()
        proc.wait(15)


def test_the_brokers_relay_cuts_then_forwards_and_closes(share, broker: str) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    (share.root / "f.bin").write_bytes(body)
    answer = requests.post(broker + "relay", json={"port": share.server.port,
                                                   "faults": {"cut_after": 64 * 1024, "cuts_left": 1}}, timeout=30)  # fmt: skip
    assert answer.status_code == 200, answer.text
    url = f"http://127.0.0.1:{answer.json()['port']}/f.bin"
    auth = ("alice", PASSWORDS["alice"])
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # the first answer is cut short
        requests.get(url, auth=auth, timeout=30).content  # noqa: B018 (reading the body is the point)
    assert requests.get(url, auth=auth, timeout=30).content == body
    assert requests.post(broker + "relay_close", json={"id": answer.json()["id"]}, timeout=30).status_code == 200
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, auth=auth, timeout=5)


def test_the_broker_refuses_a_fault_it_does_not_know(broker: str) -> None:
    answer = requests.post(broker + "relay", json={"port": 1, "faults": {"no_such_fault": 1}}, timeout=30)
    assert answer.status_code == 500 and "no_such_fault" in answer.json()["error"]


def _failing(*codes: int | None) -> tuple[list[int], Callable[..., str]]:
    """A CreateProcess stand-in that fails with these Windows error codes, then succeeds."""
    calls: list[int] = []

    def create(*args: object) -> str:
        calls.append(len(args))
        if len(calls) <= len(codes):
            exc = OSError("CreateProcess failed")
            exc.winerror = codes[len(calls) - 1]  # type: ignore[attr-defined]
            raise exc
        return "started"

    return calls, create


def test_a_start_wine_fails_internally_is_tried_again_and_nothing_else_is() -> None:
    calls, create = _failing(WINE_SPAWN_FAILED, WINE_SPAWN_FAILED)
    assert spawn_again_when_wine_fails(create)("python.exe", "cmd") == "started" and calls == [2, 2, 2]
    calls, create = _failing(WINE_SPAWN_FAILED, WINE_SPAWN_FAILED, WINE_SPAWN_FAILED)
    with pytest.raises(OSError):  # the third try's failure is the caller's
        spawn_again_when_wine_fails(create)()
    assert len(calls) == 3
    calls, create = _failing(2)  # ERROR_FILE_NOT_FOUND: a real failure, not tried again
    with pytest.raises(OSError):
        spawn_again_when_wine_fails(create)()
    assert len(calls) == 1
