"""Share links made on the folder page (pages/sharing.py): who may make them (a signed-in user
who may write), the page's header against cross-site forms, each user's own list, withdrawing one;
and the whole flow in real headless Chromium at phone and desktop size."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import requests
from browserhelp import DESKTOP, PHONE, chromium_at
from conftest import PASSWORDS, wait_until
from lxml import html as lxml_html

from davsync.server.links import LinkStore

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
PAGE = {"X-Davsync-Page": "1"}
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def tree(share) -> Any:
    (share.root / "Photos").mkdir()
    (share.root / "Photos" / "beach.jpg").write_bytes(b"sand" * 100)
    (share.root / "notes.txt").write_text("notes")
    share.wait_indexed()
    return share


def make(share, folder: str, user: str = "alice", **body: Any) -> requests.Response:
    data = {"mode": "read-only", "expires": "7d"} | body
    return share.request("POST", f"{folder}?share", user=user, json=data, headers=PAGE)


def test_a_user_who_may_write_makes_a_link_that_works_and_lists_only_their_own(tree) -> None:
    r = make(tree, "Photos/", label="for Anna")
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["url"].startswith(tree.url + "s/") and made["qr"].startswith("data:image/svg+xml")
    assert made["link"]["folder"] == "/Photos" and made["link"]["owner"] == "alice"
    assert "token_sha256" not in made["link"] and "password" not in made["link"]
    # the link opens the folder without any login
    assert requests.get(made["url"] + "beach.jpg", timeout=30).content == b"sand" * 100
    # the same store as `davsync share`: listed there, with its owner
    stored = LinkStore(tree.state_dir).links()
    assert [(s.id, s.path, s.mode, s.owner, s.label) for s in stored] == [
        (made["link"]["id"], "Photos", "read-only", "alice", "for Anna")
    ]
    cli_made = LinkStore(tree.state_dir).create("", "read-only", expires_in=None, password=None)
    mine = tree.request("GET", "?links").json()
    assert [row["id"] for row in mine] == [made["link"]["id"]]  # not the CLI's link
    assert cli_made.link.id not in {row["id"] for row in mine}


def test_password_and_expiry_and_write_modes(tree) -> None:
    r = make(tree, "", mode="read-write", expires="1d", password="open sesame")
    assert r.status_code == 201, r.text
    link = r.json()["link"]
    assert link["has_password"] and link["mode"] == "read-write" and link["folder"] == "/"
    assert 86_000 < link["expires"] - link["created"] <= 86_400
    url = r.json()["url"]
    assert requests.get(url + "notes.txt", timeout=30).status_code == 401
    assert requests.get(url + "notes.txt", auth=("x", "open sesame"), timeout=30).content == b"notes"
    drop = make(tree, "Photos/", mode="drop", expires="never")
    assert drop.status_code == 201 and drop.json()["link"]["expires"] is None


def test_read_only_users_guests_and_cross_site_forms_make_no_links(tree, start_share) -> None:
    assert make(tree, "Photos/", user="bob").status_code == 403  # read-only: POST is a write
    page = lxml_html.fromstring(tree.request("GET", "Photos/", user="bob", headers=HTML).content)
    assert not page.xpath("//*[@id='share']")
    page = lxml_html.fromstring(tree.request("GET", "Photos/", headers=HTML).content)
    assert page.xpath("//*[@id='share']//form")
    viewer = tree.request("GET", "Photos/beach.jpg?view", user="bob").content
    assert b"share-file" not in viewer and b"share-file" in tree.request("GET", "Photos/beach.jpg?view").content
    assert tree.request("GET", "?links", user="bob").status_code == 403
    # a form on another site cannot send the page's header
    r = tree.request("POST", "Photos/?share", json={"mode": "read-only", "expires": "7d"})
    assert r.status_code == 403 and "folder page" in r.json()["error"]
    assert make(tree, "Photos/", mode="admin").status_code == 400
    assert make(tree, "Photos/", expires="forever").status_code == 400
    assert make(tree, "missing.txt").status_code == 404
    assert make(tree, "notes.txt", user="bob").status_code == 403
    assert LinkStore(tree.state_dir).links() == []
    # through a read-write link: no page of links, and no link made from it
    issued = LinkStore(tree.state_dir).create("", "read-write", expires_in=3600, password=None)
    through = f"s/{issued.token}/"
    assert tree.request("POST", through + "Photos/?share", user=None, json={"mode": "read-only", "expires": "7d"},
                        headers=PAGE).status_code in (403, 405)  # fmt: skip
    assert not lxml_html.fromstring(tree.request("GET", through, user=None, headers=HTML).content).xpath(
        "//*[@id='share']"
    )
    assert len(LinkStore(tree.state_dir).links()) == 1


def test_a_file_is_shared_from_its_row_and_its_page(tree) -> None:
    page = lxml_html.fromstring(tree.request("GET", "Photos/", headers=HTML).content)
    [button] = page.xpath("//tr[@data-name='beach.jpg']//button[contains(@class, 'share')]")
    assert button.get("aria-label") == "Share beach.jpg by link"
    viewer = lxml_html.fromstring(tree.request("GET", "Photos/beach.jpg?view", headers=HTML).content)
    assert viewer.get_element_by_id("share-file").get("href") == "/Photos/#share=beach.jpg"
    r = make(tree, "Photos/beach.jpg", label="the beach")
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["link"]["kind"], made["link"]["path"], made["link"]["folder"]) == ("file", "Photos/beach.jpg",
                                                                                   "/Photos/beach.jpg")  # fmt: skip
    assert requests.get(made["url"] + "beach.jpg", timeout=30).content == b"sand" * 100
    assert requests.get(made["url"] + "../notes.txt", timeout=30).status_code in (400, 404)
    assert make(tree, "notes.txt", mode="read-write").status_code == 201
    drop = make(tree, "notes.txt", mode="drop")
    assert drop.status_code == 400 and drop.json()["error"].startswith("A drop link collects uploads into a folder")
    assert [x["kind"] for x in tree.request("GET", "?links").json()] == ["file", "file"]


def test_only_the_owner_withdraws_a_link_and_it_stops_at_once(tree) -> None:
    made = make(tree, "Photos/").json()
    assert requests.get(made["url"], headers=HTML, timeout=30).status_code == 200
    bobs = tree.request("POST", "?unshare", user="bob", json={"id": made["link"]["id"]}, headers=PAGE)
    assert bobs.status_code == 403
    # another writer's link is not alice's to withdraw, nor listed for her
    carols = LinkStore(tree.state_dir).create("Photos", "read-only", expires_in=3600, password=None, owner="carol")
    r = tree.request("POST", "?unshare", json={"id": carols.link.id}, headers=PAGE)
    assert r.status_code == 404 and LinkStore(tree.state_dir).links()[-1].revoked is None
    r = tree.request("POST", "?unshare", json={"id": made["link"]["id"]}, headers=PAGE)
    assert r.status_code == 200 and "stops working" in r.json()["message"]
    gone = requests.get(made["url"], headers=HTML, timeout=30)
    assert gone.status_code == 404 and "withdrawn" in gone.text
    assert [row["state"] for row in tree.request("GET", "?links").json()] == ["revoked"]


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_share_a_folder_in_chromium(tree, tmp_path: Path, size: tuple[int, int]) -> None:
    """Make a read-only link on the folder page, open it in a session without the login and see
    the files, withdraw it, and see the link refused with a page that says so."""
    from selenium.webdriver.common.by import By

    label = "phone" if size == PHONE else "desktop"
    with chromium_at(tmp_path, size, tmp_path / "downloads") as driver:
        auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {auth}"}})
        driver.get(tree.url + "Photos/")
        driver.find_element(By.CSS_SELECTOR, "#share summary").click()
        wait_until(lambda: "no links" in driver.find_element(By.ID, "share-list").text, 15, "the empty list")
        driver.find_element(By.ID, "share-label").send_keys("for Anna")
        driver.find_element(By.ID, "share-create").click()
        url_field = wait_until(lambda: [e for e in driver.find_elements(By.ID, "share-url") if e.is_displayed()], 15,
                               "the new link")[0]  # fmt: skip
        url = url_field.get_attribute("value")
        assert url.startswith(tree.url + "s/")
        qr = driver.find_element(By.ID, "share-qr")
        wait_until(lambda: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", qr), 15,
                   "the QR code")  # fmt: skip
        row = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#share-list li[data-state=active]"), 15,
                         "the link listed")[0]  # fmt: skip
        assert "/Photos" in row.text and "for Anna" in row.text
        assert driver.execute_script("return document.documentElement.scrollWidth") <= size[0]
        driver.execute_script("arguments[0].scrollIntoView()", url_field)
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / f"pages-{label}-share.png"))

        # a fresh session: no login, no cookies
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
        driver.delete_all_cookies()
        driver.get(url)
        names = [r.get_attribute("data-name") for r in driver.find_elements(By.CSS_SELECTOR, "#list tbody tr")]
        assert names == ["beach.jpg"]
        assert not driver.find_elements(By.ID, "share")

        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {auth}"}})
        driver.get(tree.url + "Photos/")
        driver.find_element(By.CSS_SELECTOR, "#share summary").click()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#share-list button.revoke"), 15, "the list")[
            0
        ].click()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#share-list li[data-state=revoked]"), 15,
                   "the link withdrawn")  # fmt: skip
        assert "stops working" in driver.find_element(By.ID, "share-note").text

        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
        driver.get(url)
        assert driver.find_element(By.TAG_NAME, "h1").text == "No such link"
        assert "withdrawn" in driver.find_element(By.TAG_NAME, "body").text
        assert not driver.find_elements(By.CSS_SELECTOR, "#list")


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_share_one_file_in_chromium(tree, tmp_path: Path, size: tuple[int, int]) -> None:
    """From a file's page (and its row's Share button) to a link to just that file: no drop choice
    for it; a friend's browser gets the file's page with its download, and nothing of the folder."""
    from selenium.webdriver.common.by import By

    (tree.root / "Photos" / "private.txt").write_text("not for the friend")
    label = "phone" if size == PHONE else "desktop"
    with chromium_at(tmp_path, size, tmp_path / "downloads") as driver:
        auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {auth}"}})
        driver.get(tree.url + "Photos/beach.jpg?view")
        driver.find_element(By.ID, "share-file").click()
        wait_until(lambda: driver.execute_script("const b = document.getElementById('share'); return b && b.open"),
                   15, "the folder page with its share box open")  # fmt: skip
        assert driver.find_element(By.ID, "share-summary").text == "Share “beach.jpg” by link"
        assert not driver.find_element(By.ID, "share-drop").is_displayed()  # a drop link is for folders
        driver.find_element(By.ID, "share-create").click()
        url = wait_until(lambda: [e for e in driver.find_elements(By.ID, "share-url") if e.is_displayed()], 15,
                         "the new link")[0].get_attribute("value")  # fmt: skip
        row = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#share-list li[data-state=active]"), 15,
                         "the link listed")[0]  # fmt: skip
        assert "/Photos/beach.jpg" in row.text
        [stored] = LinkStore(tree.state_dir).links()
        assert (stored.kind, stored.path, stored.mode) == ("file", "Photos/beach.jpg", "read-only")
        # the row's Share button chooses that file; closing the box goes back to the folder
        driver.find_element(By.CSS_SELECTOR, "#share summary").click()
        assert driver.find_element(By.ID, "share-summary").text == "Share this folder by link"
        driver.find_element(By.CSS_SELECTOR, "tr[data-name='private.txt'] button.share").click()
        assert driver.find_element(By.ID, "share-summary").text == "Share “private.txt” by link"

        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
        driver.delete_all_cookies()
        driver.get(url)
        assert driver.find_element(By.TAG_NAME, "h1").text == "beach.jpg"
        assert driver.find_element(By.ID, "download").is_displayed()
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "private" not in body and "Photos" not in body and not driver.find_elements(By.ID, "back")
        assert driver.find_elements(By.CSS_SELECTOR, ".preview img")  # an image is previewed
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / f"pages-{label}-file-link.png"))
        driver.find_element(By.ID, "download").click()
        got = tmp_path / "downloads" / "beach.jpg"
        wait_until(lambda: got.exists() and got.read_bytes() == b"sand" * 100, 15, "the download")


def test_a_link_gives_no_more_than_its_maker_has_now(start_share, users_file: Path) -> None:
    """A link made on the page stops writing when its maker becomes read-only (its read-only links
    go on), and stops altogether when the maker is removed; CLI links (no owner) are the operator's."""
    from davsync.server.admin import ADMIN_PREFIX
    from davsync.users import Users

    users = Users.load(users_file)
    users.add("root", "root-secret", read_only=False, admin=True)
    users.save(users_file)
    share = start_share(admin=True)
    (share.root / "Inbox").mkdir()
    (share.root / "Inbox" / "a.txt").write_text("a")
    share.wait_indexed()
    rw = make(share, "Inbox/", mode="read-write").json()["url"]
    ro = make(share, "Inbox/").json()["url"]
    cli = LinkStore(share.state_dir).create("Inbox", "read-write", expires_in=3600, password=None)
    cli_url = f"{share.url}s/{cli.token}/"
    assert requests.put(rw + "b.txt", data=b"b", timeout=30).status_code == 201

    admin = requests.Session()
    admin.auth = ("root", "root-secret")
    csrf = admin.get(share.url + ADMIN_PREFIX.lstrip("/") + "api/status", timeout=30).json()["csrf"]

    def change(verb: str, **body: Any) -> None:
        r = admin.post(share.url + ADMIN_PREFIX.lstrip("/") + f"api/users/{verb}", json={"name": "alice", **body},
                       headers={"X-CSRF-Token": csrf}, timeout=30)  # fmt: skip
        assert r.status_code == 200, r.text

    change("read-only", read_only=True)
    assert requests.put(rw + "c.txt", data=b"c", timeout=30).status_code == 404
    assert requests.get(rw + "a.txt", timeout=30).status_code == 404
    assert requests.get(ro + "a.txt", timeout=30).content == b"a"
    assert requests.put(cli_url + "d.txt", data=b"d", timeout=30).status_code == 201
    change("read-only", read_only=False)
    assert requests.get(rw + "a.txt", timeout=30).content == b"a"  # back with the maker's rights
    change("remove")
    assert requests.get(ro + "a.txt", timeout=30).status_code == 404
    assert not (share.root / "Inbox" / "c.txt").exists()
