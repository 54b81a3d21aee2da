"""`davsync login`, the credential store, --log-file and the windowless entry point.

The credential store is keyrings.alt's PlaintextKeyring in a temporary folder (selected by
PYTHON_KEYRING_BACKEND): a real keyring backend, the one CI can run without a desktop
session. On Windows the same calls reach the Credential Manager, on macOS the Keychain.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PASSWORDS

PLAINTEXT = "keyrings.alt.file.PlaintextKeyring"


def env_for(tmp_path: Path, backend: str = PLAINTEXT, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAVSYNC_PASSWORD", "DAVSYNC_USER", "DAVSYNC_URL")}
    env.update(PYTHON_KEYRING_BACKEND=backend, XDG_DATA_HOME=str(tmp_path / "data"), HOME=str(tmp_path / "home"),
               LOCALAPPDATA=str(tmp_path / "data"))  # where keyrings.alt's files go on Windows
    env.update(extra)
    return env


def davsync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "davsync", *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip


def test_login_stores_the_password_and_pull_uses_it(share, tmp_path: Path) -> None:
    pytest.importorskip("keyrings.alt", reason="keyrings.alt is in the test extras")
    (share.root / "a.txt").write_bytes(b"hello")
    share.wait_indexed()
    env = env_for(tmp_path)
    dest = tmp_path / "mirror"

    no_password = davsync(env, "pull", share.url, str(dest), "-u", "alice")
    assert no_password.returncode == 2
    assert f"davsync login {share.url} --user alice" in no_password.stderr

    wrong = davsync({**env, "DAVSYNC_PASSWORD": "not it"}, "login", share.url, "--user", "alice")
    assert wrong.returncode == 4 and "Nothing was stored" in wrong.stderr, wrong.stderr
    good = davsync({**env, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}, "login", share.url.rstrip("/"), "--user", "alice")
    assert good.returncode == 0, good.stderr
    assert list((tmp_path / "data").rglob("*.cfg")), "nothing reached the credential store"

    pulled = davsync(env, "pull", share.url, str(dest), "-u", "alice", "-q")
    assert pulled.returncode == 0, pulled.stderr
    assert (dest / "a.txt").read_bytes() == b"hello"
    assert davsync(env, "status", share.url, str(dest), "-u", "alice").returncode == 0
    assert davsync(env, "doctor", share.url, "-u", "alice").stdout.count("PASS") >= 2

    forgot = davsync(env, "login", share.url, "--user", "alice", "--forget")
    assert forgot.returncode == 0 and "Forgot" in forgot.stdout
    assert davsync(env, "pull", share.url, str(dest), "-u", "alice").returncode == 2


@pytest.mark.parametrize("command", ["pull", "sync", "doctor", "login"])
def test_no_console_and_no_password_ends_at_once_with_how_to_store_one(share, tmp_path: Path, command: str) -> None:
    """stdin from NUL (Windows) or /dev/null, as a scheduled task has it, and no stored password: no
    prompt that nobody can answer. On Windows CPython NUL is a character device, so isatty() is True
    for it and getpass would wait on the console for ever (found on the Windows lane)."""
    pytest.importorskip("keyrings.alt", reason="keyrings.alt is in the test extras")
    args = {"pull": [str(tmp_path / "m")], "sync": [str(tmp_path / "m")], "doctor": [], "login": []}[command]
    try:
        proc = davsync(env_for(tmp_path), command, share.url, *args, "--user", "alice")
    except subprocess.TimeoutExpired:
        pytest.fail(f"`davsync {command}` with stdin from {os.devnull} waited for a password nobody can type")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    how = "DAVSYNC_PASSWORD" if command == "login" else f"davsync login {share.url} --user alice"
    assert lines[0].startswith("davsync: no password:") and how in lines[0], lines[0]


def test_no_credential_store_is_one_clear_sentence(share, tmp_path: Path) -> None:
    env = env_for(tmp_path, backend="keyring.backends.fail.Keyring", DAVSYNC_PASSWORD=PASSWORDS["alice"])
    proc = davsync(env, "login", share.url, "--user", "alice")
    assert proc.returncode == 2, proc.stderr  # a fact about this system, said before any password is asked for
    assert proc.stderr == (
        "davsync: this system has no credential store (keyring) to keep the password in: set DAVSYNC_PASSWORD "
        "for each run instead, or run davsync in a terminal to be asked for it.\n"
    )
    # Other commands then offer what works here, not `davsync login`.
    no_password = davsync({k: v for k, v in env.items() if k != "DAVSYNC_PASSWORD"}, "pull", share.url,
                          str(tmp_path / "m"), "-u", "alice")  # fmt: skip
    assert no_password.returncode == 2 and "davsync login" not in no_password.stderr, no_password.stderr
    assert "no password: set DAVSYNC_PASSWORD" in no_password.stderr and "Traceback" not in no_password.stderr


def test_the_credentials_api_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("keyrings.alt", reason="keyrings.alt is in the test extras")
    import keyring
    from keyrings.alt.file import PlaintextKeyring

    from davsync.client.credentials import delete_password, load_password, save_password

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    previous = keyring.get_keyring()
    keyring.set_keyring(PlaintextKeyring())
    try:
        assert load_password("http://pi:8080/", "alice") is None
        save_password("http://pi:8080/", "alice", "s3cret ünïcode")
        assert load_password("http://PI:8080", "alice") == "s3cret ünïcode"
        assert load_password("http://pi:8080/", "bob") is None
        assert delete_password("http://pi:8080/", "alice") is True
        assert delete_password("http://pi:8080/", "alice") is False
        assert load_password("http://pi:8080/", "alice") is None
    finally:
        keyring.set_keyring(previous)


def test_log_file_and_windowless_entry_point(share, tmp_path: Path) -> None:
    """`davsyncw` runs with no stdout or stderr at all (pythonw); --log-file gets everything."""
    (share.root / "日本語.txt").write_bytes(b"x")
    share.wait_indexed()
    log = tmp_path / "logs" / "pull.log"
    dest = tmp_path / "mirror"
    script = (
        "import sys\n"
        "sys.stdout = sys.stderr = None\n"
        f"sys.argv = ['davsyncw', 'pull', {share.url!r}, {str(dest)!r}, '-u', 'alice', '--log-file', {str(log)!r}]\n"
        "from davsync.cli import run_windowless\n"
        "run_windowless()\n"
    )
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc
    assert proc.stdout == b"" and proc.stderr == b""
    text = log.read_text(encoding="utf-8")
    assert "davsync pull" in text and "日本語.txt" in text and "Done" in text
    assert (dest / "日本語.txt").read_bytes() == b"x"

    env_bad = {**os.environ, "DAVSYNC_PASSWORD": "wrong"}
    bad = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env_bad, timeout=120)
    assert bad.returncode == 4 and bad.stdout == b"" and bad.stderr == b""
    assert "davsync:" in log.read_text(encoding="utf-8").splitlines()[-1]
