"""Sharing and versions from the app's dashboard, in real headless Chromium against a real server.

A share link is made for a folder of the pair (the QR code shows, the link opens the folder for
anyone), listed and revoked (then it stops working); a file's earlier version is restored on the
server and arrives in the local folder. axe-core finds nothing serious or critical on these
panels, light and dark.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from apphelp import memory_keyring, start_app  # noqa: F401  (fixtures)
from browserhelp import axe_source
from conftest import PASSWORDS, wait_until
from test_app_a11y import RUN
from test_app_browser import chromium, shot  # noqa: F401  (fixture)

from davsync.app.config import FolderPair
from davsync.client import credentials
from davsync.server.links import LinkStore


def accessibility_problems(driver: Any) -> dict[str, list[str]]:
    """axe-core's serious and critical findings on the page as it is now, light and dark."""
    found = {}
    driver.execute_script(axe_source())
    for scheme in ("light", "dark"):
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                               {"features": [{"name": "prefers-color-scheme", "value": scheme}]})  # fmt: skip
        problems = driver.execute_async_script(RUN)
        if problems:
            found[scheme] = problems
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    return found


def share_panel(driver: Any, running: Any) -> tuple[Callable[[str], Any], Callable[[str], bool]]:
    """The dashboard, with the pair's "Share and versions" panel open (and "are you sure?" answered
    yes); find(css) and present(css) on the page."""
    from selenium.webdriver.common.by import By

    def find(css: str) -> Any:
        return driver.find_element(By.CSS_SELECTOR, css)

    def present(css: str) -> bool:
        return bool(driver.find_elements(By.CSS_SELECTOR, css))

    driver.get(running.dash.login_url())
    wait_until(lambda: present(".pair"), 15, "the pair's card")
    driver.execute_script("window.confirm = () => true;")
    find(".share-panel summary").click()
    return find, present


def test_share_a_folder_revoke_it_and_restore_a_version(start_share, start_app, memory_keyring, chromium,  # noqa: F811
                                                        tmp_path: Path) -> None:  # fmt: skip
    from selenium.webdriver.common.by import By

    driver = chromium
    root = tmp_path / "root"
    (root / "Photos" / "2026").mkdir(parents=True)
    (root / "Photos" / "2026" / "beach.jpg").write_bytes(b"a picture of the beach")
    (root / "Letters").mkdir()
    (root / "report.txt").write_bytes(b"the first draft\n")
    share = start_share(root)
    # Overwritten through WebDAV: the server keeps the first draft as a version.
    put = share.session("alice").put(share.url + "report.txt", data=b"the second draft, worse\n", timeout=10)
    assert put.status_code in (201, 204)
    dest = tmp_path / "PiMirror"
    credentials.save_password(share.url, "alice", PASSWORDS["alice"])
    running = start_app([FolderPair(share.url, str(dest), user="alice", interval=0.3)])
    wait_until(lambda: (dest / "report.txt").exists() and running.pair()["state"] == "ok", 30, "the first sync")
    find, present = share_panel(driver, running)
    wait_until(lambda: present('.browse li[data-path="Photos"] .share'), 15, "the server's folder listed")
    assert present('.browse li[data-path="report.txt"] .show-versions')

    # --- a read-only link to Photos, with its QR code ---------------------------------------
    find('.browse li[data-path="Photos"] .share').click()
    wait_until(lambda: present(".share-form"), 5, "the share form")
    driver.find_element(By.CSS_SELECTOR, '.share-form select[name="expires"] option[value="1d"]').click()
    find('.share-form input[name="label"]').send_keys("for Grandma")
    find(".share-form .make-link").click()
    wait_until(lambda: present(".made-link img.qr"), 15, "the QR code")
    qr = find(".made-link img.qr")
    assert qr.get_attribute("src").startswith("data:image/svg+xml")
    assert driver.execute_script("return arguments[0].naturalWidth", qr) > 0  # the SVG really renders
    url = find(".made-link .link-url").get_attribute("value")
    assert url.startswith(share.url + "s/")
    [link] = LinkStore(share.state_dir).links()
    assert (link.path, link.mode, link.label, link.owner) == ("Photos", "read-only", "for Grandma", "alice")
    assert link.expires is not None and 0 < link.expires - link.created <= 86400 + 1
    anyone = requests.get(url + "2026/beach.jpg", timeout=10)
    assert anyone.status_code == 200 and anyone.content == b"a picture of the beach"
    wait_until(lambda: present(f'.links li[data-link="{link.id}"][data-state="active"]'), 10, "the link listed")
    shot(driver, "share-link")
    assert accessibility_problems(driver) == {}

    # --- revoke it: it stops working at once -------------------------------------------------
    find(f'.links li[data-link="{link.id}"] .revoke').click()
    wait_until(lambda: present(f'.links li[data-link="{link.id}"][data-state="revoked"]'), 10, "the link revoked")
    assert not present(f'.links li[data-link="{link.id}"] .revoke')
    assert requests.get(url + "2026/beach.jpg", timeout=10).status_code == 404
    assert LinkStore(share.state_dir).links()[0].revoked is not None

    # --- the report's first draft comes back -------------------------------------------------
    find('.browse li[data-path="report.txt"] .show-versions').click()
    wait_until(lambda: present(".version-list li[data-version] .restore-version"), 15, "the versions")
    assert len(driver.find_elements(By.CSS_SELECTOR, ".version-list li[data-version]")) == 1
    shot(driver, "versions")
    assert accessibility_problems(driver) == {}
    first = find(".version-list li[data-version]").get_attribute("data-version")
    find(".version-list .restore-version").click()
    wait_until(lambda: "Restored" in find("#message").text, 15, "the restore's message")
    assert (root / "report.txt").read_bytes() == b"the first draft\n"
    wait_until(lambda: (dest / "report.txt").read_bytes() == b"the first draft\n", 30, "the restored file here")
    # What the restore replaced is itself kept: the list now offers the second draft instead.
    def listed() -> list[str]:  # read in the page at once: a re-render cannot stale it
        return driver.execute_script(  # type: ignore[no-any-return]
            "return [...document.querySelectorAll('.version-list li')].map((li) => li.dataset.version || null);")

    wait_until(lambda: listed() and first not in listed() and None not in listed(), 10, "the replaced version listed")


def test_a_refusal_is_one_sentence_on_the_page(start_share, start_app, memory_keyring, chromium,  # noqa: F811
                                               tmp_path: Path) -> None:  # fmt: skip
    """Read-only bob cannot make links: the page says so in the server's words, nothing is made."""
    from selenium.webdriver.common.by import By

    driver = chromium
    root = tmp_path / "root"
    (root / "Music").mkdir(parents=True)
    share = start_share(root)
    credentials.save_password(share.url, "bob", PASSWORDS["bob"])
    dest = tmp_path / "Music mirror"
    running = start_app([FolderPair(share.url, str(dest), user="bob", interval=0.3)])
    wait_until(lambda: running.pair()["state"] == "ok", 60, "the first sync")  # as a user finds it: settled
    driver.get(running.dash.login_url())
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".pair"), 30, "the pair's card")
    driver.find_element(By.CSS_SELECTOR, ".share-panel summary").click()
    shown: list[str] = []

    def listed() -> bool:
        # read at once in the page (the list may be replaced between two WebDriver calls)
        shown[:] = driver.execute_script("return [...document.querySelectorAll('.browse li')].map(li => li.textContent)")
        return bool(driver.execute_script("return !!document.querySelector('.browse li[data-path=\"Music\"] .share')"))

    try:
        wait_until(listed, 45, "the server's folder listed")
    except AssertionError as e:
        raise AssertionError(f"{e}; the panel shows: {shown}") from None
    driver.find_element(By.CSS_SELECTOR, '.browse li[data-path="Music"] .share').click()
    driver.find_element(By.CSS_SELECTOR, ".share-form .make-link").click()
    wait_until(lambda: "read-only" in driver.find_element(By.ID, "message").text, 15, "the refusal")
    message = driver.find_element(By.ID, "message").text
    assert "Traceback" not in message and "HTTP" not in message, message
    assert LinkStore(share.state_dir).links() == []


def test_a_server_without_links_says_so_in_a_sentence(rclone_webdav, start_app, memory_keyring,  # noqa: F811
                                                      tmp_path: Path) -> None:  # fmt: skip
    """Another WebDAV server (rclone's) has no ?links or ?versions: the app says what to do."""
    served = tmp_path / "served"
    (served / "Photos").mkdir(parents=True)
    (served / "Photos" / "a.jpg").write_bytes(b"a")
    url = rclone_webdav(served)
    running = start_app([FolderPair(url, str(tmp_path / "mirror"), interval=600)])
    api = running.client()
    pid = running.pair()["id"]
    listed = api.get(f"/api/pairs/{pid}/browse?path=")
    assert listed.status_code == 200 and [e["name"] for e in listed.json()["entries"]] == ["Photos"]
    for answer in (api.get(f"/api/pairs/{pid}/links"), api.post(f"/api/pairs/{pid}/share", {"path": "Photos",
                   "mode": "read-only"}), api.get(f"/api/pairs/{pid}/versions?path=Photos/a.jpg")):  # fmt: skip
        assert answer.status_code == 409, answer.text
        error = answer.json()["error"]
        assert "does not offer this" in error and "update davsync on the server" in error, error
        assert "Traceback" not in error and "<" not in error


def test_share_one_file_from_the_app(start_share, start_app, memory_keyring, chromium,  # noqa: F811
                                     tmp_path: Path) -> None:  # fmt: skip
    """A file of the pair gets its own link: no drop-only choice for it, a QR code, the link opens
    that file and nothing beside it, it is listed as a file and revoked like any link."""
    from selenium.webdriver.common.by import By

    driver = chromium
    root = tmp_path / "root"
    (root / "Letters").mkdir(parents=True)
    (root / "Letters" / "to Anna.txt").write_bytes(b"Dear Anna\n")
    (root / "Letters" / "diary.txt").write_bytes(b"not for Anna")
    share = start_share(root)
    dest = tmp_path / "PiMirror"
    credentials.save_password(share.url, "alice", PASSWORDS["alice"])
    running = start_app([FolderPair(share.url, str(dest), user="alice", interval=0.3)])
    wait_until(lambda: (dest / "Letters" / "diary.txt").exists() and running.pair()["state"] == "ok", 30,
               "the first sync")  # fmt: skip
    find, present = share_panel(driver, running)
    wait_until(lambda: present('.browse li[data-path="Letters"] .open-folder'), 15, "the server's folder listed")
    find('.browse li[data-path="Letters"] .open-folder').click()
    item = '.browse li[data-path="Letters/to Anna.txt"]'
    wait_until(lambda: present(f"{item} .share"), 15, "the folder's files listed")
    find(f"{item} .share").click()
    wait_until(lambda: present(".share-form"), 5, "the share form")
    assert find(".share-form h3").get_attribute("textContent") == "Share the file /Letters/to Anna.txt"
    modes = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, '.share-form select[name="mode"] option')]
    assert modes == ["read-only", "read-write"]  # drop-only is for folders
    find(".share-form .make-link").click()
    wait_until(lambda: present(".made-link img.qr"), 15, "the QR code")
    assert "link to the file /Letters/to Anna.txt" in find(".made-link").text
    url = find(".made-link .link-url").get_attribute("value")
    [link] = LinkStore(share.state_dir).links()
    assert (link.kind, link.path, link.mode, link.owner) == ("file", "Letters/to Anna.txt", "read-only", "alice")
    assert requests.get(url + "to%20Anna.txt", timeout=10).content == b"Dear Anna\n"
    assert requests.get(url + "diary.txt", timeout=10).status_code == 404
    row = f'.links li[data-link="{link.id}"]'
    wait_until(lambda: present(f'{row}[data-state="active"]'), 10, "the link listed")
    assert "file" in find(row).text
    shot(driver, "share-file-link")
    assert accessibility_problems(driver) == {}
    find(f"{row} .revoke").click()
    wait_until(lambda: present(f'{row}[data-state="revoked"]'), 10, "the link revoked")
    assert requests.get(url + "to%20Anna.txt", timeout=10).status_code == 404
