"""Everyday use: the browser (real headless Chromium), QR, DNS-SD records, doctor, deploy units, CLI polish."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PASSWORDS, require_tool, wait_until
from typer.main import get_command
from typer.testing import CliRunner

from davsync.cli import app

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
runner = CliRunner()


# --- browser -----------------------------------------------------------------------


@pytest.fixture
def chromium(tmp_path: Path):  # type: ignore[no-untyped-def]
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (in the test extra)")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_exe = shutil.which("chromedriver")
    if not binary or not driver_exe:
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,800"):  # fmt: skip
        opts.add_argument(arg)
    opts.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver_exe))
    driver.set_page_load_timeout(30)
    try:
        yield driver, downloads
    finally:
        driver.quit()


def test_browser_lists_navigates_and_downloads(share, chromium) -> None:
    from selenium.webdriver.common.by import By

    driver, downloads = chromium
    (share.root / "Photos 2024").mkdir()
    payload = os.urandom(50_000)
    (share.root / "Photos 2024" / "holiday video.bin").write_bytes(payload)
    (share.root / "notes.txt").write_text("hello")
    (share.root / ".~davsync-inflight.part").write_bytes(b"x")
    auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {auth}"}})
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})

    driver.get(share.url)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "Photos 2024" in body and "notes.txt" in body and "davsync-inflight" not in body
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "browser-listing.png"))

    driver.find_element(By.PARTIAL_LINK_TEXT, "Photos 2024").click()
    wait_until(lambda: "holiday video.bin" in driver.find_element(By.TAG_NAME, "body").text, 15, "the folder page")
    driver.save_screenshot(str(ARTIFACTS / "browser-folder.png"))
    driver.find_element(By.PARTIAL_LINK_TEXT, "holiday video.bin").click()
    target = downloads / "holiday video.bin"
    wait_until(lambda: target.exists() and target.stat().st_size == len(payload), 30, "the download")
    assert target.read_bytes() == payload


# --- QR and discovery ------------------------------------------------------------------


def test_serve_prints_a_qr_code_of_the_lan_url(tmp_path: Path, users_file: Path) -> None:
    import segno
    from conftest import free_port

    root = tmp_path / "root"
    root.mkdir()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "davsync", "serve", str(root), "--host", "127.0.0.1", "--port",
                             str(port), "--users", str(users_file), "--state-dir", str(tmp_path / "s"), "--qr"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        lines = []
        while not any("Scan to connect" in line for line in lines):
            lines.append(proc.stdout.readline())
        qr = "".join(proc.stdout.readline() for _ in range(14))
    finally:
        proc.terminate()
        proc.wait(10)
    url = f"http://127.0.0.1:{port}/"
    assert url in lines[-1]
    import io

    expected = io.StringIO()
    segno.make(url, error="m").terminal(out=expected, compact=True, border=2)
    assert qr and expected.getvalue().startswith(qr)


def test_no_qr_flag(tmp_path: Path, users_file: Path) -> None:
    from conftest import free_port

    root = tmp_path / "root"
    root.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "davsync", "serve", str(root), "--host", "127.0.0.1", "--port",
                             str(free_port()), "--users", str(users_file), "--state-dir", str(tmp_path / "s"), "--no-qr"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        lines: list[str] = []
        while not lines or "Press Ctrl-C" not in lines[-1]:
            line = proc.stdout.readline()
            assert line, "serve exited early: " + "".join(lines)
            lines.append(line)
        out = "".join(lines)
    finally:
        proc.terminate()
        proc.wait(10)
    assert "Press Ctrl-C" in out and "Scan to connect" not in out


def test_dns_sd_record_without_sending_anything() -> None:
    from davsync.server.discovery import service_info

    info = service_info("davsync on pi", 8080, ["192.168.1.20"])
    assert info.type == "_webdav._tcp.local."
    assert info.name == "davsync on pi._webdav._tcp.local."
    assert info.port == 8080
    assert info.properties[b"path"] == b"/"
    assert info.parsed_addresses() == ["192.168.1.20"]
    secure = service_info("x", 8443, ["10.0.0.2"], tls=True)
    assert secure.type == "_webdavs._tcp.local."


# --- doctor ---------------------------------------------------------------------------------


def doctor(url: str, *args: str, user: str | None = "alice") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS.get(user or "", "")}
    cmd = [sys.executable, "-m", "davsync", "doctor", url, *(["-u", user] if user else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


def test_doctor_passes_on_davsync(share) -> None:
    (share.root / "f.txt").write_text("f")
    r = doctor(share.url)
    assert r.returncode == 0, r.stdout
    for name in ("reachable", "authentication", "access: read-write", "DAV class", "checksums", "sync-collection",
                 "clock skew", "Windows Explorer: Digest offered"):  # fmt: skip
        assert f"PASS  {name}" in r.stdout, r.stdout
    ro = doctor(share.url, user="bob")
    assert ro.returncode == 0 and "access: read-only" in ro.stdout


def test_doctor_fails_clearly(share, tmp_path: Path) -> None:
    from conftest import free_port

    wrong = subprocess.run([sys.executable, "-m", "davsync", "doctor", share.url, "-u", "alice"], capture_output=True,
                           text=True, env={**os.environ, "DAVSYNC_PASSWORD": "nope"})  # fmt: skip
    assert wrong.returncode != 0 and "refused the login" in wrong.stdout
    down = doctor(f"http://127.0.0.1:{free_port()}/")
    assert down.returncode == 4 and "FAIL  reachable" in down.stdout


def test_doctor_on_a_server_without_checksums_or_sync(rclone_webdav, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    r = doctor(rclone_webdav(src), user=None)
    assert r.returncode == 3
    assert "FAIL  checksums" in r.stdout and "FAIL  sync-collection" in r.stdout and "PASS  reachable" in r.stdout


# --- deploy ------------------------------------------------------------------------------------


def test_systemd_units_verify(tmp_path: Path) -> None:
    exe = require_tool("systemd-analyze")
    davsync_bin = shutil.which("davsync") or str(Path(sys.executable).with_name("davsync"))
    for unit in ("davsync.service", "davsync-watch.service", "davsync-pull.service", "davsync-pull.timer"):
        text = (REPO / "deploy" / unit).read_text()
        text = text.replace("/opt/davsync/venv/bin/davsync", davsync_bin)
        text = text.replace("%h/.local/davsync/venv/bin/davsync", davsync_bin)
        text = text.replace("User=davsync\n", "").replace("Group=davsync\n", "")
        text = text.replace("EnvironmentFile=%h/.config/davsync/client.env\n", "")
        (tmp_path / unit).write_text(text)
    r = subprocess.run([exe, "verify", *(str(tmp_path / u) for u in ("davsync.service", "davsync-watch.service",
                        "davsync-pull.service", "davsync-pull.timer"))], capture_output=True, text=True)  # fmt: skip
    problems = [line for line in r.stderr.splitlines() if "davsync" in line and "Failed to" in line]
    if "System has not been booted with systemd" in r.stderr and r.returncode != 0 and not problems:
        pytest.skip("systemd-analyze cannot verify without systemd running here")
    assert r.returncode == 0 and not problems, r.stderr


def test_example_config_is_valid(tmp_path: Path) -> None:
    from davsync.server.settings import load_config

    values = load_config(REPO / "deploy" / "davsync.toml")
    assert values["port"] == 8080 and values["anonymous"] == "off" and str(values["root"]) == "/srv/davsync/share"


# --- CLI polish -------------------------------------------------------------------------------


def test_help_lists_environment_variables() -> None:
    r = runner.invoke(app, ["--help"])
    for var in ("DAVSYNC_URL", "DAVSYNC_USER", "DAVSYNC_PASSWORD"):
        assert var in r.output


def test_every_option_has_help() -> None:
    root = get_command(app)
    missing = []

    def visit(cmd, path: str) -> None:  # type: ignore[no-untyped-def]
        for p in cmd.params:
            if getattr(p, "param_type_name", "") == "option" and not (p.help or "").strip():
                missing.append(f"{path} {p.opts[0]}")
        for name, sub in getattr(cmd, "commands", {}).items():
            visit(sub, f"{path} {name}")

    visit(root, "davsync")
    assert not missing, missing
    assert {"serve", "pull", "status", "watch", "doctor", "user"} <= set(root.commands)
