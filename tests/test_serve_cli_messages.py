"""`davsync serve` tells a new user the right thing: TLS file problems, defaults in --help, no QR code in logs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port, wait_until
from typer.testing import CliRunner

from davsync.cli import app

runner = CliRunner()


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    files = {}
    for name in ("a", "b"):
        cert = ca.issue_cert("127.0.0.1")
        files[f"{name}.pem"] = tmp_path / f"{name}.pem"
        files[f"{name}.key"] = tmp_path / f"{name}.key"
        cert.cert_chain_pems[0].write_to_path(str(files[f"{name}.pem"]))
        cert.private_key_pem.write_to_path(str(files[f"{name}.key"]))
    files["junk"] = tmp_path / "junk.txt"
    files["junk"].write_text("not a certificate\n")
    files["enc.key"] = tmp_path / "enc.key"
    subprocess.run(["openssl", "pkey", "-in", str(files["a.key"]), "-aes256", "-passout", "pass:pw", "-out",
                    str(files["enc.key"])], check=True, capture_output=True)  # fmt: skip
    return files


@pytest.mark.parametrize(
    ("cert", "key", "message"),
    [
        ("a.pem", "b.key", "does not belong to the certificate"),
        ("junk", "a.key", "is not a PEM certificate"),
        ("a.pem", "junk", "is not a PEM private key"),
        ("a.pem", "enc.key", "protected by a passphrase"),
    ],
)
def test_bad_tls_files_are_named_not_blamed_on_the_port(
    tmp_path: Path, users_file: Path, tls_files: dict[str, Path], cert: str, key: str, message: str
) -> None:
    (tmp_path / "root").mkdir()
    r = runner.invoke(app, ["serve", str(tmp_path / "root"), "--users", str(users_file), "--state-dir",
                            str(tmp_path / "st"), "--port", str(free_port()), "--host", "127.0.0.1",
                            "--tls-cert", str(tls_files[cert]), "--tls-key", str(tls_files[key])])  # fmt: skip
    assert r.exit_code == 2, r.output
    assert message in r.output and str(tls_files[key if "key" in message or "passphrase" in message else cert]) in r.output
    assert "port" not in r.output and "Traceback" not in r.output and "SSLError" not in r.output
    assert r.output.count("\n") <= 2, r.output  # one sentence, not a dump


def test_serve_help_shows_defaults() -> None:
    r = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    for option, default in [("--host", "0.0.0.0"), ("--port", "8080"), ("--users", "~/.config/davsync/users.json"),
                            ("--rescan-interval", "600"), ("--anonymous", "off"), ("--qr", "only on a terminal")]:
        after = text.split(option, 1)[1]
        assert re.match(rf"[^\[]*\[default: \(?{re.escape(default)}\)?\]", after), (option, r.output)


def _serve_output(tmp_path: Path, users_file: Path, *extra: str) -> str:
    (tmp_path / "root").mkdir(exist_ok=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "davsync", "serve", str(tmp_path / "root"), "--host", "127.0.0.1",
                             "--port", str(port), "--state-dir", str(tmp_path / "st"), "--users", str(users_file),
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []
    try:
        wait_until(lambda: lines.append(proc.stdout.readline()) or "Ctrl-C" in lines[-1], 30, "the serve banner")
    finally:
        proc.terminate()
        lines += proc.stdout.readlines()
        proc.wait(15)
    return "".join(lines)


def test_no_qr_code_when_stdout_is_not_a_terminal(tmp_path: Path, users_file: Path) -> None:
    out = _serve_output(tmp_path, users_file)
    assert "davsync is sharing" in out and "Scan to connect" not in out and "█" not in out and "▀" not in out
    asked = _serve_output(tmp_path, users_file, "--qr")
    assert "Scan to connect" in asked


def _serve_fails(tmp_path: Path, users_file: Path, *args: str) -> str:
    (tmp_path / "root").mkdir(exist_ok=True)
    r = runner.invoke(app, ["serve", str(tmp_path / "root"), "--users", str(users_file), "--no-qr", *args])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and "Errno" not in r.output and "No socket could be created" not in r.output
    return r.output


def test_listen_and_state_dir_problems_are_named(tmp_path: Path, users_file: Path) -> None:
    import socket

    st = ["--state-dir", str(tmp_path / "st")]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        out = _serve_fails(tmp_path, users_file, "--host", "127.0.0.1", "--port", port, *st)
        assert f"port {port} is already in use" in out, out
    out = _serve_fails(tmp_path, users_file, "--host", "999.1.1.1", *st)
    assert "neither an IP address nor a known host name" in out, out
    out = _serve_fails(tmp_path, users_file, "--host", "192.0.2.77", *st)  # TEST-NET-1: never ours
    assert "is not an address of this machine" in out, out
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = _serve_fails(tmp_path, users_file, "--host", "127.0.0.1", "--port", str(free_port()),
                       "--state-dir", str(blocker / "state"))  # fmt: skip
    assert f"cannot create or open the state dir {blocker / 'state'}" in out and "port" not in out, out


def test_damaged_users_file_is_described_not_dumped(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    cases = {"{bad": "not valid JSON at line 1, column 2", '{"users": {"x": {}}}': "not a davsync users file",
             '["a list"]': "not a davsync users file", b"\xff\xfe": "is damaged (not UTF-8 text)"}  # fmt: skip
    for content, message in cases.items():
        users = tmp_path / "users.json"
        users.write_bytes(content if isinstance(content, bytes) else content.encode())
        r = runner.invoke(app, ["serve", str(tmp_path / "root"), "--users", str(users), "--no-qr"])
        assert r.exit_code == 2 and message in r.output, (content, r.output)
        assert "Expecting" not in r.output and "KeyError" not in r.output and "'scrypt'" not in r.output
        assert "davsync user add NAME" in r.output


def test_serve_stops_on_sigterm_after_its_reader_went_away(tmp_path: Path, users_file: Path) -> None:
    """`davsync serve | head -1`: the pipe closes, and SIGTERM must still stop the server."""
    import requests

    (tmp_path / "root").mkdir()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "davsync", "serve", str(tmp_path / "root"), "--host", "127.0.0.1",
                             "--port", str(port), "--state-dir", str(tmp_path / "st"), "--users", str(users_file),
                             "--qr"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert b"davsync is sharing" in proc.stdout.readline()
        proc.stdout.close()  # the reader is gone, as when `head` exits
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 401, 30, "serving")
        proc.terminate()
        assert proc.wait(20) == 0
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
