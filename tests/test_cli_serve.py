"""`davsync serve` and `davsync user` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import requests
from conftest import PASSWORDS, free_port
from typer.testing import CliRunner

from davsync.cli import app

runner = CliRunner()


def test_user_add_list_remove(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    r = runner.invoke(app, ["user", "add", "carol", "--users", str(users)], env={"DAVSYNC_PASSWORD": "pw-carol"})
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["user", "add", "dave", "--read-only", "--users", str(users)], env={"DAVSYNC_PASSWORD": "x"})
    assert r.exit_code == 0
    data = json.loads(users.read_text())
    assert set(data["users"]) == {"carol", "dave"} and data["users"]["dave"]["read_only"] is True
    assert "pw-carol" not in users.read_text()
    assert oct(users.stat().st_mode & 0o777) == "0o600"
    listing = runner.invoke(app, ["user", "list", "--users", str(users)])
    assert "carol\tread-write" in listing.output and "dave\tread-only" in listing.output
    assert runner.invoke(app, ["user", "remove", "carol", "--users", str(users)]).exit_code == 0
    missing = runner.invoke(app, ["user", "remove", "carol", "--users", str(users)])
    assert missing.exit_code == 2 and "no user 'carol'" in missing.output


def test_user_add_never_replaces_an_existing_password_without_update(tmp_path: Path) -> None:
    from davsync.users import Users

    users = tmp_path / "users.json"
    assert runner.invoke(app, ["user", "add", "bob", "--users", str(users)], env={"DAVSYNC_PASSWORD": "first"}).exit_code == 0
    r = runner.invoke(app, ["user", "add", "bob", "--read-only", "--users", str(users)], env={"DAVSYNC_PASSWORD": "second"})
    assert r.exit_code == 2 and "already exists" in r.output and "davsync user add bob --update" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    db = Users.load(users)
    assert db.check_basic("bob", "first") is not None and not db.users["bob"].read_only  # untouched
    r = runner.invoke(app, ["user", "add", "bob", "--update", "--users", str(users)], env={"DAVSYNC_PASSWORD": "second"})
    assert r.exit_code == 0 and "Updated read-write user 'bob'" in r.output, r.output
    assert Users.load(users).check_basic("bob", "second") is not None


def test_serve_without_users_explains_how_to_add_one(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    r = runner.invoke(
        app, ["serve", str(tmp_path / "root"), "--users", str(tmp_path / "none.json"), "--state-dir", str(tmp_path / "s")]
    )
    assert r.exit_code == 2
    assert "davsync user add NAME" in r.output and "Traceback" not in r.output


def test_serve_rejects_bad_settings_clearly(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    cases = [
        (["serve", str(tmp_path / "missing")], "does not exist"),
        (["serve", str(tmp_path / "root"), "--anonymous", "maybe"], "--anonymous must be"),
        (["serve", str(tmp_path / "root"), "--state-dir", str(tmp_path / "root" / "st")], "inside the served folder"),
        (["serve", str(tmp_path / "root"), "--tls-cert", str(tmp_path / "c.pem")], "both --tls-cert and --tls-key"),
        (["serve", "--config", str(tmp_path / "nope.toml")], "does not exist"),
    ]
    for args, message in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output


def test_serve_from_config_file_prints_urls_and_serves(tmp_path: Path, users_file: Path) -> None:
    root = tmp_path / "share"
    root.mkdir()
    (root / "hi.txt").write_text("hi")
    port = free_port()
    config = tmp_path / "davsync.toml"
    config.write_text(
        f'root = "share"\nhost = "127.0.0.1"\nport = {port}\nstate-dir = "state"\nusers = "{users_file}"\n'
        'anonymous = "read"\n'
    )
    proc = subprocess.Popen([sys.executable, "-m", "davsync", "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        banner = [proc.stdout.readline() for _ in range(3)]
        assert f"http://127.0.0.1:{port}/" in "".join(banner), banner
        assert requests.get(f"http://127.0.0.1:{port}/hi.txt", timeout=30).text == "hi"  # anonymous read
        put = requests.put(f"http://127.0.0.1:{port}/x", data=b"x", auth=("bob", PASSWORDS["bob"]), timeout=30)
        assert put.status_code == 403
        assert (tmp_path / "state" / "index.sqlite").exists()
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0
    rest = proc.stdout.read()
    assert "Windows Explorer" in rest and "Traceback" not in rest


def test_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.startswith("davsync ")
