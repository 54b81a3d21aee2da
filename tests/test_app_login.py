"""How a browser gets into `davsync app`'s dashboard: a one-time code in the launched URL, traded
once for a port-specific HttpOnly cookie; the long-lived secret never reaches a command line."""

from __future__ import annotations

import http.client
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests
from apphelp import start_app  # noqa: F401  (fixture)
from conftest import wait_until

from davsync.app.web import Dashboard

AGAIN = "davsync app --open"


@dataclass
class AppProcess:
    proc: subprocess.Popen[str]
    env: dict[str, str]
    state_dir: Path
    calls: Path
    lines: list[str]

    def browser_argvs(self, n: int) -> list[list[str]]:
        def read() -> list[list[str]] | None:
            if not self.calls.exists():
                return None
            got = [json.loads(line) for line in self.calls.read_text().splitlines() if line.strip()]
            return got if len(got) >= n else None

        return wait_until(read, 30, f"{n} browser launch(es)")  # type: ignore[no-any-return]

    def secret(self) -> str:
        data = json.loads((self.state_dir / "dashboard-login.json").read_text())
        return str(data["token"])


@pytest.fixture
def app_process(tmp_path: Path) -> Iterator[AppProcess]:
    """A real `davsync app` process whose browser is a script recording its argv (via $BROWSER)."""
    calls = tmp_path / "browser-calls.jsonl"
    browser = tmp_path / "fake-browser"
    browser.write_text(f"#!{sys.executable}\nimport json, sys\n"
                       f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv) + '\\n')\n")  # fmt: skip
    browser.chmod(0o755)
    state_dir = tmp_path / "app-state"
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "BROWSER": str(browser)}
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.Popen([sys.executable, "-m", "davsync", "app", "--no-tray", "--state-dir", str(state_dir)],
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    lines: list[str] = []
    assert proc.stdout is not None
    while not any("127.0.0.1:" in line for line in lines):
        line = proc.stdout.readline()
        assert line, "".join(lines)
        lines.append(line)
    try:
        yield AppProcess(proc, env, state_dir, calls, lines)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_browser_gets_a_one_time_code_never_the_secret(app_process: AppProcess) -> None:
    argv = app_process.browser_argvs(1)[0]
    url = argv[-1]
    assert url.startswith("http://127.0.0.1:") and "code=" in url
    secret = app_process.secret()
    assert secret not in " ".join(argv)
    assert secret not in "".join(app_process.lines)  # the console link is a one-time one too
    with open(f"/proc/{app_process.proc.pid}/cmdline", "rb") as f:
        assert secret.encode() not in f.read()
    mode = stat.S_IMODE((app_process.state_dir / "dashboard-login.json").stat().st_mode)
    assert mode & 0o077 == 0, oct(mode)

    # the code works once: cookie set, redirected to an address without it
    r = requests.get(url, allow_redirects=False, timeout=10)
    assert r.status_code == 303
    assert "code=" not in r.headers["Location"]
    base = url.split("/?")[0]
    port = base.rsplit(":", 1)[1]
    cookie = r.headers["Set-Cookie"]
    name = cookie.split("=", 1)[0]
    assert name == f"davsync_app_{port}"
    attrs = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert "httponly" in attrs and attrs["samesite"] == "SameSite=Strict" and attrs["path"] == "Path=/"
    s = requests.Session()
    s.cookies.set(name, r.cookies[name])
    assert s.get(base + "/api/state", timeout=10).status_code == 200
    s.close()

    # a second use is refused with a page saying what to do
    again = requests.get(url, allow_redirects=False, timeout=10)
    assert again.status_code == 403
    assert AGAIN in again.text and "Traceback" not in again.text
    assert "set-cookie" not in {k.lower() for k in again.headers}

    # the long-lived secret is not accepted in a URL any more
    assert requests.get(f"{base}/?token={secret}", allow_redirects=False, timeout=10).status_code == 403


def test_open_again_mints_a_fresh_code(app_process: AppProcess) -> None:
    first = app_process.browser_argvs(1)[0][-1]
    r = subprocess.run([sys.executable, "-m", "davsync", "app", "--open", "--state-dir", str(app_process.state_dir)],
                       env=app_process.env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    second = app_process.browser_argvs(2)[1][-1]
    assert second != first and "code=" in second
    assert app_process.secret() not in r.stdout + " ".join(app_process.browser_argvs(2)[1])
    printed = next(line.strip() for line in r.stdout.splitlines() if "code=" in line)
    assert printed != second  # the printed link and the launched one are separate one-time codes
    for link in (second, printed):
        assert requests.get(link, allow_redirects=False, timeout=10).status_code == 303


def test_open_without_a_running_app_says_so(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "davsync", "app", "--open", "--state-dir", str(tmp_path / "none")],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode != 0
    assert "not running" in r.stderr and "Traceback" not in r.stderr


def test_an_expired_code_is_refused(start_app) -> None:
    running = start_app()
    quick = Dashboard(running.app, 0, code_ttl=0.0)  # every code it mints has already expired
    quick.start()
    try:
        r = requests.get(quick.login_url(), allow_redirects=False, timeout=10)
        assert r.status_code == 403 and AGAIN in r.text
        assert "set-cookie" not in {k.lower() for k in r.headers}
        assert requests.get(running.dash.login_url(), allow_redirects=False, timeout=10).status_code == 303
    finally:
        quick.stop()


def test_the_login_form_answer_says_it_closes_the_connection(start_app) -> None:
    """/login closes its connection (its body may be unread), so its answer must say so: a client
    that kept it alive sent the next request into the closed socket (RemoteDisconnected in CI)."""
    running = start_app()
    port = running.dash.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/login", body=urlencode({"secret": running.dash.token}),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        answer = conn.getresponse()
        answer.read()
        assert answer.status == 200
        cookie = answer.getheader("Set-Cookie", "").split(";")[0]
        conn.request("GET", "/api/state", headers={"Cookie": cookie})  # the same connection, if it said nothing
        again = conn.getresponse()
        assert again.status == 200 and "csrf" in json.loads(again.read())
    finally:
        conn.close()
