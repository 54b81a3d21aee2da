"""`serve --admin`: the admin page for users with the admin flag (API without a browser, and a
look in real headless Chromium), `user add --admin`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests
from typer.testing import CliRunner

from conftest import PASSWORDS, wait_until
from davsync.cli import app as cli_app
from davsync.server.admin import ADMIN_PREFIX
from davsync.users import Users

ADMIN = ("root", "root-secret")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def admin_share(start_share, users_file: Path):  # type: ignore[no-untyped-def]
    users = Users.load(users_file)
    users.add(*ADMIN, read_only=False, admin=True)
    users.save(users_file)
    return start_share(admin=True)


def test_user_add_admin_flag(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    r = CliRunner().invoke(cli_app, ["user", "add", "boss", "--admin", "--users", str(path)], env={"DAVSYNC_PASSWORD": "pw"})
    assert r.exit_code == 0 and "admin" in r.output
    assert Users.load(path).users["boss"].admin
    r = CliRunner().invoke(cli_app, ["user", "list", "--users", str(path)])
    assert "boss\tread-write\tadmin" in r.output


def test_admin_page_needs_an_admin(admin_share, start_share) -> None:
    url = admin_share.url.rstrip("/") + ADMIN_PREFIX
    r = requests.get(url, timeout=10)
    assert r.status_code == 401 and "Basic" in r.headers["WWW-Authenticate"]
    assert requests.get(url, auth=("root", "wrong"), timeout=10).status_code == 401
    r = requests.get(url, auth=("alice", PASSWORDS["alice"]), timeout=10)
    assert r.status_code == 403 and "davsync user add alice --admin" in r.text
    r = requests.get(url, auth=ADMIN, timeout=10)
    assert r.status_code == 200 and "davsync admin" in r.text
    # the prefix is davsync's own: the share cannot hold it, so a user cannot put a file there
    put = requests.put(admin_share.url + ADMIN_PREFIX.strip("/") + "/x", data=b"x", auth=("alice", PASSWORDS["alice"]), timeout=10)
    assert put.status_code in (401, 403)


def test_admin_status_and_user_changes(admin_share) -> None:
    base = admin_share.url.rstrip("/") + ADMIN_PREFIX
    (admin_share.root / "a.txt").write_bytes(b"hello")
    admin_share.wait_indexed()
    assert admin_share.request("GET", "a.txt").content == b"hello"  # alice is a client
    s = requests.Session()
    s.auth = ADMIN
    # a client is noted when its response is closed, just after the bytes went out
    wait_until(lambda: any(c["user"] == "alice" and c["bytes_sent"] >= 5
                           for c in s.get(base + "api/status", timeout=10).json()["clients"]), 10, "alice in the log")
    st = s.get(base + "api/status", timeout=10).json()
    assert st["me"] == "root" and st["disk"]["free"] > 0 and st["qr"].startswith("data:image/svg+xml")
    assert st["index"]["scan_done"] and st["index"]["files"] == 1 and st["index"]["last_rescan"]
    alice = next(c for c in st["clients"] if c["user"] == "alice")
    assert alice["address"] == "127.0.0.1" and alice["bytes_sent"] >= 5 and alice["requests"] >= 1
    assert {u["name"]: u["admin"] for u in st["users"]} == {"alice": False, "bob": False, "root": True}
    assert "DavWWWRoot" in st["explorer"]["unc"]

    # POSTs need the CSRF token
    assert s.post(base + "api/users/add", json={"name": "carol", "password": "c"}, timeout=10).status_code == 403
    h = {"X-CSRF-Token": st["csrf"]}
    r = s.post(base + "api/users/add", json={"name": "carol", "password": "carol-pw"}, headers=h, timeout=10)
    assert r.status_code == 200, r.text
    assert requests.request("PROPFIND", admin_share.url, auth=("carol", "carol-pw"), headers={"Depth": "1"},
                            timeout=10).status_code == 207  # fmt: skip
    assert Users.load(admin_share.users_file).users["carol"].read_only is False  # saved to the file
    assert s.post(base + "api/users/read-only", json={"name": "carol", "read_only": True}, headers=h, timeout=10).ok
    assert requests.put(admin_share.url + "c.txt", data=b"c", auth=("carol", "carol-pw"), timeout=10).status_code == 403
    assert s.post(base + "api/users/password", json={"name": "carol", "password": "new-pw"}, headers=h, timeout=10).ok
    assert requests.request("PROPFIND", admin_share.url, auth=("carol", "carol-pw"), headers={"Depth": "1"},
                            timeout=10).status_code == 401  # fmt: skip
    assert requests.request("PROPFIND", admin_share.url, auth=("carol", "new-pw"), headers={"Depth": "1"},
                            timeout=10).status_code == 207  # fmt: skip
    r = s.post(base + "api/users/remove", json={"name": "root"}, headers=h, timeout=10)
    assert r.status_code == 409 and "yourself" in r.json()["error"]
    r = s.post(base + "api/users/add", json={"name": "bad:name", "password": "x"}, headers=h, timeout=10)
    assert r.status_code == 409 and "Invalid user name" in r.json()["error"]
    assert s.post(base + "api/users/remove", json={"name": "carol"}, headers=h, timeout=10).ok
    assert "carol" not in Users.load(admin_share.users_file).users
    assert requests.request("PROPFIND", admin_share.url, auth=("carol", "new-pw"), headers={"Depth": "1"},
                            timeout=10).status_code == 401  # fmt: skip


def test_without_admin_there_is_no_page(share) -> None:
    r = requests.get(share.url.rstrip("/") + ADMIN_PREFIX, auth=("alice", PASSWORDS["alice"]), timeout=10)
    assert r.status_code in (403, 404)


def test_admin_page_in_chromium(admin_share, tmp_path: Path) -> None:
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (in the test extra)")
    from selenium.webdriver.common.by import By

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_exe = shutil.which("chromedriver")
    if not binary or not driver_exe:
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,1300"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver_exe))
    try:
        admin_share.request("GET", "")  # alice shows up as a client
        url = admin_share.url.replace("http://", f"http://{ADMIN[0]}:{ADMIN[1]}@").rstrip("/") + ADMIN_PREFIX
        driver.get(url)
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "tr[data-user='root']"), 15, "the users table")
        assert "alice" in driver.find_element(By.ID, "clients").text
        driver.find_element(By.ID, "new-name").send_keys("dave")
        driver.find_element(By.ID, "new-password").send_keys("dave-pw")
        driver.find_element(By.ID, "add").click()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "tr[data-user='dave']"), 15, "the new user")
        assert "dave" in Users.load(admin_share.users_file).users
        (REPO / "test-artifacts").mkdir(exist_ok=True)
        driver.save_screenshot(str(REPO / "test-artifacts" / "admin-page.png"))
    finally:
        driver.quit()


def test_serve_prints_the_admin_page(serve_process, tmp_path: Path) -> None:
    root = tmp_path / "share"
    root.mkdir()
    sp = serve_process(root, "--admin", "--no-qr")
    assert sp.proc.stdout is not None
    out = ""
    while "Admin page" not in out:
        line = sp.proc.stdout.readline().decode()
        assert line, out  # the server exited or closed its output without the line
        out += line
    assert "Admin page: http://127.0.0.1:" in out and "/.~davsync-admin/" in out and "davsync user add NAME --admin" in out


def test_share_files_cannot_script_the_admin_page(admin_share) -> None:
    """An uploaded page is served sandboxed (no scripts, no origin), so it cannot read the admin
    API with an admin's cached login; folder listings and plain files are unchanged."""
    evil = b"<script>fetch('/.~davsync-admin/api/status')</script>"
    auth = ("alice", PASSWORDS["alice"])
    assert requests.put(admin_share.url + "evil.html", data=evil, auth=auth, timeout=10).status_code in (200, 201, 204)
    assert requests.put(admin_share.url + "note.txt", data=b"hi", auth=auth, timeout=10).status_code in (200, 201, 204)
    r = requests.get(admin_share.url + "evil.html", auth=auth, timeout=10)
    assert r.content == evil and r.headers["Content-Security-Policy"] == "sandbox"
    assert "Content-Security-Policy" not in requests.get(admin_share.url + "note.txt", auth=auth, timeout=10).headers
    listing = requests.get(admin_share.url, auth=auth, timeout=10)
    assert listing.status_code == 200 and "sandbox" not in listing.headers.get("Content-Security-Policy", "")
