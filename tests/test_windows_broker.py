"""The Windows lane's harness, checked on Linux: the broker (tests/windows/broker.py) starts a fault
relay for a Windows-side test that cuts and forwards as the in-process relay does, and ends when
asked; a process start wine fails with ERROR_INTERNAL_ERROR is tried again (tests/conftest.py); the
verdict (tests/windows/summary.py) names what failed and ends the output."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from conftest import PASSWORDS, WINE_SPAWN_FAILED, spawn_again_when_wine_fails, wait_until

BROKER = Path(__file__).parent / "windows" / "broker.py"
SUMMARY = Path(__file__).parent / "windows" / "summary.py"


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


def _junit(path: Path, *cases: str) -> None:
    """A JUnit report of test cases, each "pass", "fail" or "skip"."""
    inner = {"pass": "", "fail": '<failure message="boom"/>', "skip": '<skipped message="Skipped: why"/>'}
    path.write_text("<testsuites><testsuite>" + "".join(
        f'<testcase name="t{i}">{inner[c]}</testcase>' for i, c in enumerate(cases)) + "</testsuite></testsuites>")  # fmt: skip


def test_the_lanes_verdict_shows_the_failing_files_logs_and_ends_with_the_counts(tmp_path: Path) -> None:
    junit = tmp_path / "junit-3.11"
    junit.mkdir()
    _junit(junit / "ok.xml", "pass", "skip")  # passed, though its log mentions an error
    (junit / "ok.log").write_text("PytestWarning: (rm_rf) error removing C:\\x\n1 passed, 1 skipped in 1s\n")
    _junit(junit / "bad.xml", "pass", "fail")
    (junit / "bad.log").write_text("E   AssertionError: the cause\n1 failed, 1 passed in 1s\n")
    (junit / "gone.log").write_text("..wineserver64: Assertion\n")  # no report: crashed
    r = subprocess.run([sys.executable, str(SUMMARY), str(tmp_path), "3.11", "--", "tests/ok.py", "tests/bad.py",
                        "tests/gone.py"], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 1, r.stdout + r.stderr
    assert "the cause" in r.stdout and "wineserver64: Assertion" in r.stdout and "rm_rf" not in r.stdout
    last = r.stdout.strip().splitlines()[-4:]
    assert last == ["== Windows CPython 3.11: 4 collected, 2 passed, 1 failed, 1 skipped, 1 files without a report",
                    "   skipped 1: why", "   FAILED bad::t1", "   NO REPORT gone (crashed or timed out; see its log)"]  # fmt: skip
    ok = subprocess.run([sys.executable, str(SUMMARY), str(tmp_path), "3.11", "--", "tests/ok.py"],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0 and "logs of failing files" not in ok.stdout, ok.stdout
