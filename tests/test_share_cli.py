"""`davsync share` end to end: the CLI, a running `davsync serve`, a phone app's requests, pull,
doctor and a real browser through share links."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests
from conftest import wait_until
from lxml import etree
from typer.testing import CliRunner

from davsync.cli import app

try:  # the real headless Chromium fixture lives with the everyday tests (unless moved to conftest)
    from test_everyday import chromium  # noqa: F401
except ImportError:
    pass

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

runner = CliRunner()


def cli(*args: str, password: str | None = None) -> Any:
    env = {"DAVSYNC_PASSWORD": password} if password is not None else {}
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


def create(state: Path, *args: str, password: str | None = None) -> dict:
    result = cli("share", "create", *args, "--state-dir", str(state), "--json", *(["--password"] if password else []),
                 password=password)  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# --- the CLI ------------------------------------------------------------------------------


def test_create_list_revoke_reissue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import segno

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "root"
    (root / "Photos" / "2024").mkdir(parents=True)
    made = cli("share", "create", "Photos/2024", "--read-only", "--root", str(root), "--expires", "2d",
               "--label", "Grandma", "--base-url", "http://pi.local:8080")  # fmt: skip
    assert made.exit_code == 0, made.output
    out = made.output
    url = next(line.split()[-1] for line in out.splitlines() if line.strip().startswith("Link:"))
    token = urlsplit(url).path.split("/")[2]
    assert url == f"http://pi.local:8080/s/{token}/" and len(token) >= 27
    assert f"\\\\pi.local@8080\\s\\{token}" in out
    qr = io.StringIO()
    segno.make(url, error="m").terminal(out=qr, compact=True, border=2)
    assert qr.getvalue() in out  # the QR code is the link's
    assert "read-only access to /Photos/2024" in out and "shown only this once" in out

    listed = cli("share", "list", "--root", str(root))
    assert listed.exit_code == 0 and "Grandma" in listed.output and token not in listed.output
    assert f"{token[:4]}…" in listed.output
    links = json.loads(cli("share", "list", "--root", str(root), "--json").output)
    assert [(x["mode"], x["path"], x["state"], x["has_password"]) for x in links] == [("read-only", "Photos/2024", "active", False)]
    assert 2 * 86400 - 60 < links[0]["expires"] - links[0]["created"] <= 2 * 86400
    link_id = links[0]["id"]
    # the command it suggests names the server the way this one did (without it, it fails)
    assert f"Lost it? davsync share reissue {link_id} --root {root}" in out.replace("\n", " ")

    again = cli("share", "reissue", link_id, "--root", str(root), "--json", "--expires", "never")
    assert again.exit_code == 0, again.output
    new = json.loads(again.output)
    assert new["id"] == link_id and new["token"] != token and new["expires"] is None

    assert cli("share", "revoke", link_id, "--root", str(root)).exit_code == 0
    links = json.loads(cli("share", "list", "--root", str(root), "--json").output)
    assert links[0]["state"] == "revoked"
    refused = cli("share", "reissue", link_id, "--root", str(root))
    assert refused.exit_code != 0 and "revoked" in refused.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Photos", "--read-only", "--drop"], "exactly one of"),
        (["Photos"], "exactly one of"),
        (["/etc", "--drop"], "outside the shared folder"),
        (["missing", "--drop"], "does not exist"),
        (["Photos/beach.jpg", "--drop"], "a drop link collects uploads into a folder"),
        (["Photos", "--drop", "--expires", "soon"], "cannot read the duration"),
        (["Photos", "--read-only", "--expires=0"], "cannot read the duration"),  # not "never": 0 is no lifetime
        (["Photos", "--read-only", "--expires", "none"], "cannot read the duration"),
        (["Photos", "--read-only", "--expires", "0m"], "cannot read the duration"),
        ([".~DAVSYNC-versions", "--read-only"], "davsync's own"),
    ],
)
def test_create_refuses_bad_input_with_one_sentence(tmp_path: Path, args: list[str], message: str) -> None:
    root = tmp_path / "root"
    (root / "Photos").mkdir(parents=True)
    (root / "Photos" / "beach.jpg").write_bytes(b"sand")
    (root / ".~DAVSYNC-versions").mkdir()  # how the versions area looks through a case-insensitive volume
    result = cli("share", "create", *args, "--root", str(root), "--state-dir", str(tmp_path / "state"))
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "state" / "shares.json").exists() or "[]" in (tmp_path / "state" / "shares.json").read_text()


def test_create_a_link_to_one_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "Photos").mkdir(parents=True)
    (root / "Photos" / "beach.jpg").write_bytes(b"sand")
    state = ["--root", str(root), "--state-dir", str(tmp_path / "state")]
    made = cli("share", "create", str(root / "Photos" / "beach.jpg"), "--read-only", *state, "--no-qr")
    assert made.exit_code == 0, made.output
    assert "read-only access to the file /Photos/beach.jpg" in made.output
    as_json = json.loads(cli("share", "create", "Photos/beach.jpg", "--read-write", *state, "--json").output)
    assert (as_json["kind"], as_json["path"], as_json["mode"]) == ("file", "Photos/beach.jpg", "read-write")
    listed = cli("share", "list", *state)
    assert listed.output.count("/Photos/beach.jpg (file)") == 2, listed.output


def test_revoke_twice_says_already_revoked_and_unknown_ids_list_live_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "Photos").mkdir(parents=True)
    state = ["--root", str(root), "--state-dir", str(tmp_path / "state")]
    gone = json.loads(cli("share", "create", "Photos", "--read-only", *state, "--json").output)["id"]
    live = json.loads(cli("share", "create", "Photos", "--read-only", *state, "--json").output)["id"]
    first = cli("share", "revoke", gone, *state)
    assert first.exit_code == 0 and "stops working at once" in first.output
    second = cli("share", "revoke", gone, *state)
    assert second.exit_code == 0 and "already revoked" in second.output and "at once" not in second.output
    unknown = cli("share", "revoke", "nosuch", *state)
    assert unknown.exit_code == 2 and live in unknown.output and gone not in unknown.output, unknown.output


def test_list_lines_up_and_a_symlink_is_named(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (tmp_path / "elsewhere.txt").write_text("x")
    (root / "docs" / "link.txt").symlink_to(tmp_path / "elsewhere.txt")
    state = ["--root", str(root), "--state-dir", str(tmp_path / "state")]
    assert cli("share", "create", "docs", "--read-only", "--label", "Anna", *state).exit_code == 0
    header, row = cli("share", "list", *state).output.splitlines()[:2]
    assert header.index("SHARED") == row.index("/docs") and header.index("LABEL") == row.index("Anna"), (header, row)
    refused = cli("share", "create", "docs/link.txt", "--read-only", *state)
    assert refused.exit_code == 2 and "symlink" in refused.output, refused.output


def test_a_drop_link_gets_no_explorer_address(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "Inbox").mkdir(parents=True)
    state = ["--root", str(root), "--state-dir", str(tmp_path / "state"), "--base-url", "http://pi.local:8080"]
    made = cli("share", "create", "Inbox", "--drop", *state, "--no-qr")
    assert made.exit_code == 0 and "Link:" in made.output and "Explorer" not in made.output, made.output
    assert json.loads(cli("share", "create", "Inbox", "--drop", *state, "--json").output).get("explorer") is None


def test_share_finds_the_state_through_the_serve_config(tmp_path: Path) -> None:
    (tmp_path / "srv" / "root" / "Music").mkdir(parents=True)
    config = tmp_path / "srv" / "davsync.toml"
    config.write_text('root = "root"\nstate-dir = "state"\nport = 8765\nhost = "127.0.0.1"\n')
    made = cli("share", "create", "Music", "--read-only", "--config", str(config), "--json")
    assert made.exit_code == 0, made.output
    assert json.loads(made.output)["url"].startswith("http://127.0.0.1:8765/s/")
    assert (tmp_path / "srv" / "state" / "shares.json").exists()
    listed = cli("share", "list", "--state-dir", str(tmp_path / "srv" / "state"), "--json")
    assert [x["path"] for x in json.loads(listed.output)] == ["Music"]


def test_share_needs_to_know_which_server(tmp_path: Path) -> None:
    result = cli("share", "list")
    assert result.exit_code == 2 and "--root" in result.output


# --- a running server -----------------------------------------------------------------------


@pytest.fixture
def served(serve_process, tmp_path: Path) -> Any:
    root = tmp_path / "root"
    (root / "Photos" / "2024").mkdir(parents=True)
    (root / "Photos" / "beach.jpg").write_bytes(b"sand" * 1000)
    (root / "Photos" / "2024" / "x.txt").write_text("x")
    (root / "secret.txt").write_text("secret")
    return serve_process(root)


def test_running_server_sees_new_and_revoked_links_at_once(served) -> None:
    state = served.state_dir
    wait_until(lambda: (state / "server.json").exists(), 20, "server.json")
    made = create(state, "Photos", "--read-only")  # no --root: found from the running server's state
    assert made["url"].startswith(served.url + "s/")  # ...and so is its address
    assert requests.get(made["url"] + "beach.jpg", timeout=10).content == b"sand" * 1000
    assert cli("share", "revoke", made["id"], "--state-dir", str(state)).exit_code == 0
    assert requests.get(made["url"] + "beach.jpg", timeout=10).status_code == 404
    new = create(state, "Photos", "--drop", "--expires", "1h")
    assert requests.put(new["url"] + "beach.jpg", data=b"from a friend", timeout=10).status_code == 201
    assert (served.root / "Photos" / "beach (2).jpg").read_bytes() == b"from a friend"


def test_a_running_server_serves_a_file_link_and_nothing_beside_it(served) -> None:
    state = served.state_dir
    wait_until(lambda: (state / "server.json").exists(), 20, "server.json")
    made = create(state, "--root", str(served.root), "Photos/beach.jpg", "--read-only")
    assert requests.get(made["url"] + "beach.jpg", timeout=10).content == b"sand" * 1000
    page = requests.get(made["url"], headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and 'id="download"' in page.text and "beach.jpg" in page.text
    for beside in ("2024/x.txt", "2024/", "../secret.txt", "%2e%2e/secret.txt"):
        assert requests.get(made["url"] + beside, timeout=10).status_code in (400, 404), beside
    assert cli("share", "revoke", made["id"], "--state-dir", str(state)).exit_code == 0
    assert requests.get(made["url"] + "beach.jpg", timeout=10).status_code == 404


def test_phone_app_request_sequence_through_a_link(served) -> None:
    """What a phone WebDAV app sends when it opens a link, browses, views, uploads, files and deletes."""
    made = create(served.state_dir, "Photos", "--read-write", password="for my phone")
    url = made["url"]
    prefix = urlsplit(url).path
    ua = {"User-Agent": "Solid Explorer/2.8 (Android 14)"}
    phone = requests.Session()
    phone.headers.update(ua)

    first = phone.options(url, timeout=10)
    assert first.status_code == 401 and "Basic" in first.headers["WWW-Authenticate"]
    phone.auth = ("my-phone", "for my phone")  # any user name
    opts = phone.options(url, timeout=10)
    assert opts.status_code == 200 and {"PROPFIND", "DELETE", "MOVE"} <= set(opts.headers["Allow"].split(", "))
    assert "2" in opts.headers["DAV"]

    root = phone.request("PROPFIND", url, headers={"Depth": "0"}, timeout=10)
    assert root.status_code == 207 and [unquote(h.text) for h in etree.fromstring(root.content).iter("{DAV:}href")] == [prefix]
    body = ('<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop><D:getlastmodified/>'
            "<D:getcontentlength/><D:resourcetype/><D:getetag/><D:quota-available-bytes/></D:prop></D:propfind>")  # fmt: skip
    listing = phone.request("PROPFIND", url, data=body, headers={"Depth": "1"}, timeout=10)
    names = sorted(unquote(h.text)[len(prefix):] for h in etree.fromstring(listing.content).iter("{DAV:}href"))
    assert names == ["", "2024/", "beach.jpg"]

    thumb = phone.get(url + "beach.jpg", headers={"Range": "bytes=0-99"}, timeout=10)
    assert thumb.status_code == 206 and thumb.content == (b"sand" * 1000)[:100]

    def chunks() -> Iterator[bytes]:
        yield b"\xff\xd8" + b"photo" * 1000
        yield b"end"

    up = phone.put(url + "IMG_0001.jpg", data=chunks(), headers={"X-OC-Mtime": "1700000000"}, timeout=10)
    assert up.status_code == 201
    assert phone.request("MKCOL", url + "Camera", timeout=10).status_code == 201
    move = phone.request("MOVE", url + "IMG_0001.jpg", headers={"Destination": url + "Camera/IMG_0001.jpg", "Overwrite": "F"},
                         timeout=10)  # fmt: skip
    assert move.status_code == 201
    placed = served.root / "Photos" / "Camera" / "IMG_0001.jpg"
    assert placed.read_bytes() == b"\xff\xd8" + b"photo" * 1000 + b"end" and int(placed.stat().st_mtime) == 1700000000
    camera = phone.request("PROPFIND", url + "Camera/", headers={"Depth": "1"}, timeout=10)
    assert sorted(unquote(h.text) for h in etree.fromstring(camera.content).iter("{DAV:}href")) == [
        prefix + "Camera/", prefix + "Camera/IMG_0001.jpg"]  # fmt: skip
    assert phone.delete(url + "Camera/IMG_0001.jpg", timeout=10).status_code == 204
    assert not placed.exists() and (served.root / "secret.txt").exists()


def test_pull_through_a_link_is_incremental(served, tmp_path: Path) -> None:
    made = create(served.state_dir, "Photos", "--read-only", password="pw")
    dest = tmp_path / "mirror"
    first = cli("pull", made["url"], str(dest), "--json", "--user", "anyone", password="pw")
    assert first.exit_code == 0, first.output
    assert (dest / "beach.jpg").read_bytes() == b"sand" * 1000 and (dest / "2024" / "x.txt").read_text() == "x"
    assert not (dest / "secret.txt").exists()

    (served.root / "Photos" / "2024" / "new.txt").write_text("new")
    (served.root / "elsewhere.txt").write_text("not in the link")

    def pulled() -> dict:
        result = cli("pull", made["url"], str(dest), "--json", "--user", "anyone", password="pw")
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    report = wait_until(lambda: (r := pulled()) and (dest / "2024" / "new.txt").exists() and r, 20, "the new file")
    assert report["mode"] == "sync-collection"  # O(changes): the server listed only what changed
    assert report["done"].get("download", report["done"]) and not (dest / "elsewhere.txt").exists()
    status = cli("status", made["url"], str(dest), "--user", "anyone", password="pw")
    assert status.exit_code == 0 and "In sync" in status.output

    doctor = cli("doctor", made["url"], "--user", "x", password="pw")
    assert "share link: read-only link" in doctor.output and "expires" in doctor.output


# --- a browser -------------------------------------------------------------------------------


def page_text(driver: Any) -> str:
    """The page's text, or '' while a navigation replaces the page."""
    from selenium.common.exceptions import WebDriverException

    try:
        return str(driver.find_element("tag name", "body").text)
    except WebDriverException:
        return ""


def test_browser_opens_a_password_link_through_the_form(served, chromium) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    driver, downloads = chromium
    payload = os.urandom(40_000)
    (served.root / "Photos" / "holiday video.bin").write_bytes(payload)
    made = create(served.state_dir, "Photos", "--read-only", "--label", "Holiday", password="sunny")
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})

    driver.get(made["url"])
    assert "Password required" in driver.find_element(By.TAG_NAME, "body").text
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "share-link-login.png"))
    driver.find_element(By.ID, "password").send_keys("wrong")
    driver.find_element(By.ID, "login").click()
    wait_until(lambda: "Wrong password" in page_text(driver), 15, "the error")
    driver.find_element(By.ID, "password").send_keys("sunny")
    driver.find_element(By.ID, "login").click()
    wait_until(lambda: "holiday video.bin" in page_text(driver), 15, "the listing")
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "beach.jpg" in body and "2024" in body and "secret" not in body
    driver.save_screenshot(str(ARTIFACTS / "share-link-listing.png"))
    cookies = driver.get_cookies()
    assert [(c["name"], c["httpOnly"], c.get("sameSite")) for c in cookies] == [("davsync_share", True, "Lax")]

    driver.find_element(By.PARTIAL_LINK_TEXT, "holiday video.bin").click()
    target = downloads / "holiday video.bin"
    wait_until(lambda: target.exists() and target.stat().st_size == len(payload), 30, "the download")
    assert target.read_bytes() == payload


@pytest.mark.slow
def test_browser_drops_files_into_an_upload_only_link(served, chromium, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    driver, _ = chromium
    made = create(served.state_dir, "Photos", "--drop", password="drop it")
    upload = tmp_path / "beach.jpg"
    upload.write_bytes(b"a friend's beach")
    driver.get(made["url"])
    driver.find_element(By.ID, "password").send_keys("drop it")
    driver.find_element(By.ID, "login").click()
    wait_until(lambda: "Upload only" in page_text(driver), 15, "the upload page")
    assert "2024" not in driver.find_element(By.TAG_NAME, "body").text  # nothing is listed
    driver.find_element(By.ID, "files").send_keys(str(upload))  # sent as soon as it is chosen
    wait_until(lambda: "Uploaded beach.jpg" in driver.find_element(By.ID, "status").text, 15, "the upload")
    assert (served.root / "Photos" / "beach.jpg").read_bytes() == b"sand" * 1000  # never overwritten
    assert (served.root / "Photos" / "beach (2).jpg").read_bytes() == b"a friend's beach"
