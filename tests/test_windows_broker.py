"""The Windows lane's broker (tests/windows/broker.py), on Linux where it runs: the fault relay it
starts for a Windows-side test cuts and forwards as the in-process relay does, and ends when asked."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import PASSWORDS, wait_until

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
