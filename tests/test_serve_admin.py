"""`serve --admin`: the admin page for users with the admin flag (API without a browser, and a
look in real headless Chromium), `user add --admin`."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import requests
from conftest import PASSWORDS, wait_until
from typer.testing import CliRunner

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


def test_byte_accounting_leaves_bodies_with_a_length_untouched(admin_share) -> None:
    """The client log counts an answer's Content-Length; only a body without one is counted chunk
    by chunk. A download (the fast GET path) goes out as the very object the share returned."""
    import base64
    import io
    from wsgiref.util import setup_testing_defaults

    from davsync.server.admin import AdminGate

    (admin_share.root / "a.txt").write_bytes(b"hello")
    admin_share.wait_indexed()
    returned: list = []

    def share_app(environ: dict, start_response):  # type: ignore[no-untyped-def]
        returned.append(admin_share.server.app.app(environ, start_response))
        return returned[-1]

    gate = AdminGate(share_app, admin_share.server.app.users, admin_share.settings, admin_share.server.state)
    login = "Basic " + base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()

    def call(method: str, path: str, body: bytes = b"", **headers: str) -> tuple[object, bytes]:
        environ = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "HTTP_AUTHORIZATION": login, "REMOTE_ADDR": "10.1.2.3",
                   "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), **headers}  # fmt: skip
        setup_testing_defaults(environ)
        result = gate(environ, lambda status, headers, exc_info=None: None)
        data = b"".join(result)
        getattr(result, "close", lambda: None)()
        return result, data

    def sent() -> int:
        return next(c["bytes_sent"] for c in gate.clients.view() if c["address"] == "10.1.2.3")

    result, data = call("GET", "/a.txt")
    assert data == b"hello" and result is returned[-1] and sent() == 5
    _, data = call("HEAD", "/a.txt")
    assert data == b"" and sent() == 5
    _, data = call("PROPFIND", "/", b"", HTTP_DEPTH="1")  # WsgiDAV's answer starts when first iterated
    assert b"a.txt" in data and sent() == 5 + len(data)


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


def _kept(admin_share) -> tuple[requests.Session, str, dict[str, str]]:
    """alice overwrites a.txt (v1 kept) and deletes docs/ with two files (kept whole)."""
    base = admin_share.url.rstrip("/") + ADMIN_PREFIX
    for path, data in (("a.txt", b"v1"), ("a.txt", b"v2 longer")):
        assert admin_share.request("PUT", path, data=data).status_code in (201, 204)
    assert admin_share.request("MKCOL", "docs").status_code == 201
    for name in ("x.txt", "y.txt"):
        assert admin_share.request("PUT", f"docs/{name}", data=f"{name} body".encode()).status_code == 201
    assert admin_share.request("DELETE", "docs").status_code == 204
    s = requests.Session()
    s.auth = ADMIN
    return s, base, {"X-CSRF-Token": s.get(base + "api/status", timeout=10).json()["csrf"]}


def test_admin_lists_kept_versions(admin_share) -> None:
    s, base, _h = _kept(admin_share)
    listing = s.get(base + "api/versions", timeout=10).json()
    assert [(f["path"], f["files"], f["bytes"], f["user"], f["method"]) for f in listing["folders"]] == [
        ("docs", 2, len(b"x.txt body") * 2, "alice", "DELETE")]
    # a deleted folder is one line: its files are not in the top list
    assert [(v["path"], v["size"], v["user"], v["method"], v["folder"]) for v in listing["files"]] == [
        ("a.txt", 2, "alice", "PUT", None)]
    assert listing["kept"] == 2 and listing["bytes"] == 2 + 20 and listing["more"] == 0
    a = listing["files"][0]
    assert abs(a["time"] - time.time()) < 60 and a["mtime"] > 0
    # expanded: the folder's files, by its id
    folder_id = listing["folders"][0]["id"]
    inside = s.get(base + "api/versions", params={"id": folder_id}, timeout=10).json()
    assert sorted(v["path"] for v in inside["files"]) == ["docs/x.txt", "docs/y.txt"] and inside["folders"] == []
    assert all(v["folder"] == "docs" and v["id"] == folder_id for v in inside["files"])
    # filtered by a path inside the folder: the folder line and that file
    only = s.get(base + "api/versions", params={"path": "docs/x.txt"}, timeout=10).json()
    assert [v["path"] for v in only["files"]] == ["docs/x.txt"] and [f["path"] for f in only["folders"]] == ["docs"]
    none = s.get(base + "api/versions", params={"path": "nothing/here"}, timeout=10).json()
    assert none["files"] == [] and none["folders"] == []
    assert s.get(base + "api/status", timeout=10).json()["versions"]["kept"] == 2


def test_admin_restores_to_its_path_and_to_a_new_path(admin_share) -> None:
    s, base, h = _kept(admin_share)
    listing = s.get(base + "api/versions", timeout=10).json()
    a_id, folder_id = listing["files"][0]["id"], listing["folders"][0]["id"]
    seq = admin_share.index.current_seq
    # to its path: what is there now (v2) is kept as a version first
    r = s.post(base + "api/versions/restore", json={"path": "a.txt", "id": a_id}, headers=h, timeout=10)
    assert r.status_code == 200, r.text
    assert (admin_share.root / "a.txt").read_bytes() == b"v1" and r.json()["replaced"]
    after = s.get(base + "api/versions", params={"path": "a.txt"}, timeout=10).json()["files"]
    assert [(v["size"], v["user"], v["method"]) for v in after] == [(len(b"v2 longer"), "root", "RESTORE")]
    assert a_id not in {v["id"] for v in after}  # the restored version is the live file again
    # one file out of the deleted folder, to a new path in a folder that does not exist yet
    r = s.post(base + "api/versions/restore", json={"path": "docs/x.txt", "id": folder_id, "to": "back/x-old.txt"},
               headers=h, timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["target"] == "back/x-old.txt" and r.json()["replaced"] is None
    assert (admin_share.root / "back" / "x-old.txt").read_bytes() == b"x.txt body"
    assert not (admin_share.root / "docs").exists()
    # the change journal has them at once, as for any other change (clients sync them)
    changed = {c.path for c in admin_share.index.changes_since(seq) if not c.deleted}
    assert {"a.txt", "back", "back/x-old.txt"} <= changed
    assert admin_share.request("GET", "back/x-old.txt").content == b"x.txt body"
    # the rest of the folder, whole, to its path, where alice has made a new docs/ meanwhile
    assert admin_share.request("MKCOL", "docs").status_code == 201
    assert admin_share.request("PUT", "docs/new.txt", data=b"new").status_code == 201
    admin_share.wait_indexed()
    seq = admin_share.index.current_seq
    r = s.post(base + "api/versions/restore", json={"path": "docs", "id": folder_id}, headers=h, timeout=10)
    assert r.status_code == 200 and "1 file)" in r.json()["message"] and r.json()["replaced"], r.text
    assert sorted(p.name for p in (admin_share.root / "docs").iterdir()) == ["y.txt"]
    changes = {c.path: c.deleted for c in admin_share.index.changes_since(seq)}
    assert changes.get("docs/new.txt") is True and changes.get("docs/y.txt") is False, changes
    admin_share.wait_indexed()
    assert set(admin_share.index.live_paths()) == {"a.txt", "back", "back/x-old.txt", "docs", "docs/y.txt"}
    new = s.get(base + "api/versions", params={"path": "docs/new.txt"}, timeout=10).json()["files"]
    assert [(v["path"], v["user"], v["method"], v["folder"]) for v in new] == [("docs/new.txt", "root", "RESTORE", "docs")]
    assert s.get(base + "api/versions", params={"id": folder_id}, timeout=10).json()["files"] == []
    # a version that is gone now: one clear sentence
    r = s.post(base + "api/versions/restore", json={"path": "docs", "id": folder_id}, headers=h, timeout=10)
    assert r.status_code == 409 and r.json()["error"].startswith("There is no version") and "--" not in r.json()["error"]


def test_admin_restore_refusals(admin_share, tmp_path: Path) -> None:
    s, base, h = _kept(admin_share)
    a_id = s.get(base + "api/versions", timeout=10).json()["files"][0]["id"]
    body = {"path": "a.txt", "id": a_id, "to": "copy.txt"}
    url = base + "api/versions/restore"
    # not an admin, no login, no CSRF token, a wrong one
    assert requests.post(url, json=body, auth=("alice", PASSWORDS["alice"]), headers=h, timeout=10).status_code == 403
    assert requests.get(base + "api/versions", auth=("alice", PASSWORDS["alice"]), timeout=10).status_code == 403
    assert requests.post(url, json=body, headers=h, timeout=10).status_code == 401
    r = s.post(url, json=body, timeout=10)
    assert r.status_code == 403 and "CSRF" in r.json()["error"]
    assert s.post(url, json=body, headers={"X-CSRF-Token": "guess"}, timeout=10).status_code == 403
    assert s.get(url, timeout=10).status_code == 404  # a restore is a POST
    # hostile or malformed paths: one clear sentence each, nothing written anywhere
    outside = tmp_path / "outside"
    outside.mkdir()
    (admin_share.root / "out").symlink_to(outside)
    hostile = [
        ({"to": "../escape.txt"}, 400), ({"to": "a/../../escape.txt"}, 400), ({"to": "x\\..\\escape.txt"}, 400),
        ({"to": "a\x00b"}, 400), ({"to": "ok\nname"}, 400), ({"to": "/"}, 400), ({"to": 7}, 400),
        ({"to": ".~davsync-admin/x.txt"}, 409), ({"to": "dir/.~davsync-versions"}, 409), ({"to": "out/escape.txt"}, 409),
        ({"path": "../../etc/passwd"}, 400), ({"path": "nope.txt"}, 409), ({"id": "bogus"}, 409), ({"id": None}, 400),
    ]  # fmt: skip
    for change, status in hostile:
        r = s.post(url, json={**body, **change}, headers=h, timeout=10)
        assert r.status_code == status, (change, r.text)
        error = r.json()["error"]
        assert error.endswith(".") and "Traceback" not in error and "\n" not in error, error
    r = s.post(url, data=b"[not json", headers={**h, "Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400
    assert list(outside.iterdir()) == [] and not (tmp_path / "escape.txt").exists()
    assert not (admin_share.root / "copy.txt").exists() and not (admin_share.root / "dir").exists()
    assert (admin_share.root / "a.txt").read_bytes() == b"v2 longer"
    assert s.get(base + "api/versions", timeout=10).json()["kept"] == 2  # nothing was used up
    # an admin who is read-only on the share cannot write to it by restoring either
    assert s.post(base + "api/users/read-only", json={"name": "root", "read_only": True}, headers=h, timeout=10).ok
    r = s.post(url, json=body, headers=h, timeout=10)
    assert r.status_code == 403 and "read-only" in r.json()["error"] and not (admin_share.root / "copy.txt").exists()


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
    # alice deletes a file and a folder: the page brings them back
    assert admin_share.request("PUT", "gone.txt", data=b"precious bytes\n").status_code == 201
    assert admin_share.request("MKCOL", "docs").status_code == 201
    for name in ("x.txt", "y.txt"):
        assert admin_share.request("PUT", f"docs/{name}", data=f"{name} body".encode()).status_code == 201
    for path in ("gone.txt", "docs"):
        assert admin_share.request("DELETE", path).status_code == 204
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

        # Versions: restore the deleted file to its path
        row = "tr[data-version-path='{}'] "

        def text_of(css: str) -> str:  # read in the page: the list may be re-rendered between a find and a read
            return str(driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : ''", css))

        driver.find_element(By.CSS_SELECTOR, row.format("gone.txt") + "button.restore").click()
        wait_until(lambda: (admin_share.root / "gone.txt").exists(), 15, "gone.txt back on disk")
        assert (admin_share.root / "gone.txt").read_bytes() == b"precious bytes\n"
        wait_until(lambda: "Restored gone.txt" in text_of("#message"), 15, "the page to say so")
        wait_until(lambda: not driver.find_elements(By.CSS_SELECTOR, row.format("gone.txt")), 15, "gone.txt leaving the list")
        # the deleted folder is one line; expanded, one of its files goes to a new path
        assert not driver.find_elements(By.CSS_SELECTOR, row.format("docs/x.txt"))
        driver.find_element(By.CSS_SELECTOR, row.format("docs") + "button.expand").click()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, row.format("docs/x.txt")), 15, "the folder's files")
        driver.find_element(By.CSS_SELECTOR, row.format("docs/x.txt") + "button.restore-to").click()
        field = driver.find_element(By.CSS_SELECTOR, row.format("docs/x.txt") + "input.restore-path")
        field.clear()
        field.send_keys("rescued/x.txt")
        driver.execute_script("document.getElementById('versions-card').scrollIntoView()")
        driver.save_screenshot(str(REPO / "test-artifacts" / "admin-versions.png"))
        driver.find_element(By.CSS_SELECTOR, row.format("docs/x.txt") + "button.restore-here").click()
        wait_until(lambda: (admin_share.root / "rescued" / "x.txt").exists(), 15, "rescued/x.txt on disk")
        assert (admin_share.root / "rescued" / "x.txt").read_bytes() == b"x.txt body"
        assert not (admin_share.root / "docs").exists()
        wait_until(lambda: "Show 1 file" in text_of(row.format("docs")), 15, "the folder line to count one file left")
        # the filter narrows the list to a path
        driver.find_element(By.ID, "versions-path").send_keys("nothing/here")
        driver.find_element(By.ID, "versions-go").click()
        wait_until(lambda: "No versions kept at or below nothing/here" in text_of("#versions-list"), 15, "the filtered list")
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
    API with an admin's cached login; so is every other file (issue 23); listings are not."""
    evil = b"<script>fetch('/.~davsync-admin/api/status')</script>"
    auth = ("alice", PASSWORDS["alice"])
    assert requests.put(admin_share.url + "evil.html", data=evil, auth=auth, timeout=10).status_code in (200, 201, 204)
    assert requests.put(admin_share.url + "note.txt", data=b"hi", auth=auth, timeout=10).status_code in (200, 201, 204)
    r = requests.get(admin_share.url + "evil.html", auth=auth, timeout=10)
    assert r.content == evil and r.headers["Content-Security-Policy"].startswith("sandbox")
    note = requests.get(admin_share.url + "note.txt", auth=auth, timeout=10)
    assert note.content == b"hi" and note.headers["Content-Security-Policy"].startswith("sandbox")
    listing = requests.get(admin_share.url, auth=auth, timeout=10)
    assert listing.status_code == 200 and "sandbox" not in listing.headers.get("Content-Security-Policy", "")
