"""`davsync doctor` against what goes wrong first: a wrong password, TLS on one side only, a
refused port, a web server that is not WebDAV, a read-only account. Each failure is one
sentence with the fix, from the same transport a pull uses, and never a traceback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import PASSWORDS, free_port
from typer.testing import CliRunner

from davsync.cli import app
from davsync.exitcodes import Exit

runner = CliRunner()


def doctor(url: str, *args: str, user: str | None = "alice", password: str | None = None) -> tuple[int, str]:
    env = {"DAVSYNC_PASSWORD": password if password is not None else PASSWORDS.get(user or "", "")}
    result = runner.invoke(app, ["doctor", url, *(["-u", user] if user else []), *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def failed(output: str, check: str) -> str:
    """The detail of the FAIL line for `check`, asserted to be one sentence ending in a full stop."""
    lines = [line for line in output.splitlines() if line.startswith(f"FAIL  {check}")]
    assert len(lines) == 1, output
    detail = lines[0].split(": ", 1)[1]
    assert detail.endswith(".") and "\n" not in detail and "Error(" not in detail, detail
    return detail


@pytest.fixture
def plain_web_server(tmp_path: Path) -> Iterator[str]:
    """Python's own http.server: answers GET, refuses OPTIONS and PROPFIND with 501."""
    (tmp_path / "www").mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "www"))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_a_wrong_password_is_a_connection_failure_with_the_fix(share) -> None:  # type: ignore[no-untyped-def]
    code, out = doctor(share.url, password="not-the-password")
    assert code == Exit.CONNECTION, out
    assert "PASS  reachable" in out
    assert "refused the login for user 'alice'" in failed(out, "authentication")


def test_a_read_only_account_is_told_so(share) -> None:  # type: ignore[no-untyped-def]
    code, out = doctor(share.url, user="bob")
    assert code == 0, out
    assert "PASS  access: read-only" in out
    code, out = doctor(share.url, user="alice")
    assert code == 0 and "PASS  access: read-write" in out, out


def test_a_refused_port(tmp_path: Path) -> None:
    code, out = doctor(f"http://127.0.0.1:{free_port()}/")
    assert code == Exit.CONNECTION, out
    assert "nothing is listening there" in failed(out, "reachable")


def test_a_web_server_that_is_not_webdav(plain_web_server: str) -> None:
    code, out = doctor(plain_web_server, user=None)
    assert code == Exit.CONNECTION, out
    assert "PASS  reachable" in out
    detail = failed(out, "WebDAV share")
    assert "is not a WebDAV share" in detail and "check the URL and the port" in detail


def test_tls_on_one_side_only_and_an_untrusted_certificate(share, start_share, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out = doctor(share.url.replace("http://", "https://"))
    assert code == Exit.CONNECTION, out
    assert f"speaks plain http, not https: use {share.url}" in failed(out, "reachable with valid TLS")

    trustme = pytest.importorskip("trustme", reason="trustme is in the test extras")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    key_file, cert_file, ca_file = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    ca.cert_pem.write_to_path(str(ca_file))
    secure = start_share(tmp_path / "tls-root", state_dir=tmp_path / "tls-state", tls_cert=cert_file, tls_key=key_file)
    assert secure.url.startswith("https://")

    code, out = doctor(secure.url)
    assert code == Exit.CONNECTION, out
    assert "pass --ca-cert FILE" in failed(out, "reachable with valid TLS")
    code, out = doctor(secure.url.replace("https://", "http://"))
    assert code == Exit.CONNECTION, out
    assert f"speaks https, not plain http: use {secure.url}" in failed(out, "reachable")
    code, out = doctor(secure.url, "--ca-cert", str(ca_file))
    assert code == 0 and "PASS  reachable with valid TLS" in out, out
