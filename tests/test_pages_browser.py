"""davsync's folder page in real headless Chromium, at phone size (390x844) and desktop size:
browse, search, sort, upload with progress, new folder, rename, delete, zip download, and a
read-only link that shows no write controls. The files on the server's disk prove each action.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import base64
import importlib.util
import io
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from browserhelp import DESKTOP, PHONE, axe_source, chromium_at, png
from conftest import PASSWORDS, wait_until

from davsync.server.links import LinkStore

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"


def shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"pages-{name}.png"))


def rows(driver: Any) -> list[str]:
    """The names the listing shows, in order (read in one go: the page may replace its rows)."""
    return list(driver.execute_script(
        "return Array.from(document.querySelectorAll('#list tbody tr'))"
        ".filter((r) => r.getClientRects().length > 0).map((r) => r.dataset.name)"
    ))  # fmt: skip


def answer_dialog(driver: Any, text: str | None) -> str:
    """Accept the page's prompt (typing `text`) or confirm; returns what it asked."""
    alert = wait_until(lambda: _alert(driver), 10, "the dialog")
    asked = alert.text
    if text is not None:
        alert.send_keys(text)
    alert.accept()
    return str(asked)


def _alert(driver: Any) -> Any:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return None


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_folder_page_in_chromium(share, tmp_path: Path, size: tuple[int, int]) -> None:
    from selenium.webdriver.common.by import By

    label = "phone" if size == PHONE else "desktop"
    root = share.root
    (root / "Photos").mkdir()
    (root / "Photos" / "beach.jpg").write_bytes(os.urandom(40_000))
    (root / "notes.txt").write_text("notes")
    (root / "big.bin").write_bytes(os.urandom(2_000_000))
    (root / "Photos" / "pic.png").write_bytes(png(64, 48))
    (root / "Photos" / "page.html").write_text("<h1>not rendered</h1><script>document.title='ran'</script>")
    share.wait_indexed()
    to_send = tmp_path / "send"
    to_send.mkdir()
    (to_send / "movie.bin").write_bytes(os.urandom(6_000_000))
    (to_send / "small.txt").write_text("small file")
    downloads = tmp_path / "downloads"

    with chromium_at(tmp_path, size, downloads) as driver:
        auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {auth}"}})
        driver.get(share.url)
        assert rows(driver) == ["Photos", "big.bin", "notes.txt"]
        # one column on a phone, a table on a desktop
        display = driver.execute_script("return getComputedStyle(document.querySelector('#list tbody tr')).display")
        assert display == ("grid" if size == PHONE else "table-row")
        assert driver.execute_script("return document.documentElement.scrollWidth") <= size[0]  # no sideways scroll
        # local times, rendered by the page's script from the ISO timestamps
        shown = driver.find_element(By.CSS_SELECTOR, "tr[data-name='notes.txt'] time").text
        assert shown and not shown.endswith("UTC")
        shot(driver, f"{label}-listing")
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme",
                                                                            "value": "dark"}]})  # fmt: skip
        wait_until(lambda: driver.execute_script("return getComputedStyle(document.body).backgroundColor")
                   == "rgb(31, 31, 31)", 10, "the dark theme")  # fmt: skip
        shot(driver, f"{label}-listing-dark")
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

        by_size = driver.find_element(By.CSS_SELECTOR, "[data-sort=size]")
        by_size.click()  # largest first, folders always first
        assert by_size.get_attribute("data-order") == "desc" and rows(driver) == ["Photos", "big.bin", "notes.txt"]
        by_size.click()
        assert by_size.get_attribute("data-order") == "asc" and rows(driver) == ["Photos", "notes.txt", "big.bin"]
        driver.find_element(By.ID, "filter").send_keys("NOT")
        wait_until(lambda: rows(driver) == ["notes.txt"], 10, "the search")
        driver.find_element(By.ID, "filter").clear()
        driver.execute_script("document.getElementById('filter').dispatchEvent(new Event('input'))")
        wait_until(lambda: len(rows(driver)) == 3, 10, "the search cleared")

        # --- new folder ----------------------------------------------------------------
        driver.find_element(By.ID, "mkdir").click()
        answer_dialog(driver, "Albums")
        wait_until(lambda: (root / "Albums").is_dir() and "Albums" in rows(driver), 15, "the new folder")

        # --- upload two files, slowed down so the progress bars move -------------------
        driver.execute_script("""
            window.progressSeen = [];
            new MutationObserver((ms) => { for (const m of ms) if (m.target.tagName === 'PROGRESS')
              window.progressSeen.push(m.target.value); })
            .observe(document.getElementById('uploads'), {attributes: true, subtree: true, attributeFilter: ['value']});""")
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                               "downloadThroughput": -1, "uploadThroughput": 3_000_000})  # fmt: skip
        driver.find_element(By.ID, "files").send_keys(f"{to_send / 'movie.bin'}\n{to_send / 'small.txt'}")
        wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#uploads li[data-state=done]")) == 2, 60,
                   "both uploads")  # fmt: skip
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                               "downloadThroughput": -1, "uploadThroughput": -1})  # fmt: skip
        seen = driver.execute_script("return window.progressSeen")
        assert any(0 < v < 100 for v in seen), seen  # the bar moved while the file was on its way
        assert all(
            int(p.get_attribute("value")) == 100 for p in driver.find_elements(By.CSS_SELECTOR, "#uploads progress")
        )
        assert (root / "movie.bin").read_bytes() == (to_send / "movie.bin").read_bytes()
        assert (root / "small.txt").read_text() == "small file"
        wait_until(lambda: "movie.bin" in rows(driver), 15, "the listing refreshed")
        shot(driver, f"{label}-uploaded")

        # --- a folder upload keeps the folder's tree ------------------------------------
        tree = tmp_path / "Trip"
        (tree / "day 1").mkdir(parents=True)
        (tree / "day 1" / "a.txt").write_text("first day")
        (tree / "b.txt").write_text("b")
        driver.find_element(By.ID, "folder").send_keys(str(tree))
        wait_until(lambda: (root / "Trip" / "day 1" / "a.txt").exists() and (root / "Trip" / "b.txt").exists(), 30,
                   "the folder upload")  # fmt: skip
        assert (root / "Trip" / "day 1" / "a.txt").read_text() == "first day"
        wait_until(lambda: "Trip" in rows(driver), 15, "the uploaded folder listed")

        # --- rename, then delete (undoable: the server keeps a version) -----------------
        driver.find_element(By.CSS_SELECTOR, "tr[data-name='notes.txt'] button.rename").click()
        answer_dialog(driver, "renamed.txt")
        wait_until(lambda: (root / "renamed.txt").exists() and not (root / "notes.txt").exists(), 15, "the rename")
        wait_until(lambda: "renamed.txt" in rows(driver), 15, "the renamed row")
        driver.find_element(By.CSS_SELECTOR, "tr[data-name='small.txt'] button.rename").click()
        answer_dialog(driver, "Albums/small.txt")  # a path: moved into the folder
        wait_until(lambda: (root / "Albums" / "small.txt").exists() and "small.txt" not in rows(driver), 15, "the move")
        driver.find_element(By.CSS_SELECTOR, "tr[data-name='renamed.txt'] button.delete").click()
        asked = answer_dialog(driver, None)
        assert "versions" in asked and "restored" in asked
        wait_until(lambda: not (root / "renamed.txt").exists(), 15, "the delete")
        wait_until(lambda: "renamed.txt" not in rows(driver), 15, "the row gone")
        assert [v.path for v in share.server.state.versions.files("renamed.txt")] == ["renamed.txt"]
        assert "restored" in driver.find_element(By.ID, "status").text
        driver.find_element(By.CSS_SELECTOR, "#deleted summary").click()  # ... and restore it from the page
        restore = "#deleted-list li[data-name='renamed.txt'] button.restore"
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, restore), 15, "the deleted file listed")[0].click()
        wait_until(lambda: (root / "renamed.txt").exists() and "renamed.txt" in rows(driver), 15, "the restore")
        assert (root / "renamed.txt").read_text() == "notes"
        (to_send / "renamed.txt").write_text("notes, edited")  # overwritten by an upload ...
        driver.find_element(By.ID, "files").send_keys(str(to_send / "renamed.txt"))
        wait_until(lambda: (root / "renamed.txt").read_text() == "notes, edited", 30, "the overwrite")
        driver.get(share.url + "renamed.txt?view")  # ... and the earlier version restored from its page
        driver.find_element(By.CSS_SELECTOR, "#versions summary").click()
        driver.execute_script("window.beforeRestore = true;")
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#versions-list button.restore"), 15, "the versions")[
            0
        ].click()
        wait_until(lambda: (root / "renamed.txt").read_text() == "notes", 15, "the earlier version back")
        # the page reloads itself once the restore is answered: let it, or it may land after our next page
        wait_until(lambda: driver.execute_script("return !window.beforeRestore && document.readyState === 'complete'"),
                   15, "the file's page reloaded after the restore")  # fmt: skip
        driver.get(share.url)

        # --- the folder as a zip ------------------------------------------------------------
        wait_until(lambda: driver.find_elements(By.ID, "zip"), 15, "the folder page")[0].click()
        target = downloads / "Home.zip"
        wait_until(lambda: target.exists() and not list(downloads.glob("*.crdownload")), 30, "the zip download")
        with zipfile.ZipFile(io.BytesIO(target.read_bytes())) as zf:
            assert zf.testzip() is None
            assert zf.read("movie.bin") == (root / "movie.bin").read_bytes()
            assert {"Albums/", "Albums/small.txt", "Photos/", "Photos/beach.jpg", "Photos/pic.png", "big.bin"} <= set(
                zf.namelist()
            )

        # --- previews: an image inline, HTML source as text in a sandboxed frame --------
        driver.get(share.url + "Photos/")
        if importlib.util.find_spec("PIL") is not None:  # thumbnails need Pillow on the server
            thumb = "tr[data-name='pic.png'] img.thumb"
            wait_until(lambda: driver.execute_script(f"const i = document.querySelector(\"{thumb}\");"
                                                     "return i && i.complete && i.naturalWidth") == 64, 15,
                       "the thumbnail")  # fmt: skip
            # beach.jpg is not really a JPEG: no thumbnail, and the page shows the image icon instead
            wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "tr[data-name='beach.jpg'] svg.icon.image"), 15,
                       "the icon instead of a broken thumbnail")  # fmt: skip
            shot(driver, f"{label}-thumbnails")
        driver.find_element(By.PARTIAL_LINK_TEXT, "pic.png").click()
        img = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".preview img"), 15, "the image page")[0]
        wait_until(lambda: driver.execute_script("return arguments[0].naturalWidth", img) == 64, 15, "the image")
        assert not driver.find_element(By.CSS_SELECTOR, "main time").text.endswith("UTC")  # the script ran
        shot(driver, f"{label}-image")
        driver.find_element(By.ID, "back").click()
        driver.find_element(By.PARTIAL_LINK_TEXT, "page.html").click()
        frame = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".preview iframe"), 15, "the text page")[0]
        driver.switch_to.frame(frame)
        wait_until(lambda: "<script>" in driver.find_element(By.TAG_NAME, "body").text, 15, "the source shown as text")
        driver.switch_to.default_content()
        assert driver.title.startswith("page.html")

        # --- a read-only link: the same page, no write controls -------------------------
        issued = LinkStore(share.state_dir).create("Photos", "read-only", expires_in=3600, password=None)
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
        driver.get(f"{share.url}s/{issued.token}/")
        assert rows(driver) == ["beach.jpg", "page.html", "pic.png"]
        for selector in ("#mkdir", "#files", "button.rename", "button.delete", "#dropzone"):
            assert not driver.find_elements(By.CSS_SELECTOR, selector), selector
        assert driver.find_element(By.ID, "zip").is_displayed()
        shot(driver, f"{label}-readonly-link")


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_have_no_axe_violations(share, tmp_path: Path, size: tuple[int, int], scheme: str) -> None:
    """axe-core (not a dependency: browserhelp.axe_source) finds nothing on the folder page (also
    with its share box open, for the folder and for a file), a file's page, a link's page, a file
    link's page, a drop link's page (also after an upload) and a withdrawn link's page."""
    from selenium.webdriver.common.by import By

    axe = axe_source()
    (share.root / "Photos").mkdir()
    (share.root / "Photos" / "pic.png").write_bytes(png(8, 8))
    (share.root / "notes.txt").write_text("notes")
    issued = LinkStore(share.state_dir).create("Photos", "read-only", expires_in=3600, password=None)
    drop = LinkStore(share.state_dir).create("Photos", "drop", expires_in=3600, password=None)
    gone = LinkStore(share.state_dir).create("Photos", "read-only", expires_in=3600, password=None)
    LinkStore(share.state_dir).revoke(gone.link.id)
    one_file = LinkStore(share.state_dir).create("Photos/pic.png", "read-only", expires_in=3600, password=None,
                                                 kind="file")  # fmt: skip
    with chromium_at(tmp_path, size, tmp_path / "downloads") as driver:
        auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {auth}"}})
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                               {"features": [{"name": "prefers-color-scheme", "value": scheme}]})  # fmt: skip

        def check(target: str) -> None:
            driver.execute_script(axe)
            found = driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "axe.run().then((r) => done(r.violations.map((v) => [v.impact, v.id, v.nodes[0].html])));"
            )
            assert found == [], (target, found)

        for target in ("", "Photos/", "notes.txt?view", "Photos/pic.png?view", f"s/{issued.token}/",
                       f"s/{drop.token}/", f"s/{gone.token}/", f"s/{one_file.token}/"):  # fmt: skip
            driver.get(share.url + target)
            check(target)
        # the share box open, with a link made and listed, and a drop page with an upload done
        driver.get(share.url + "Photos/")
        driver.find_element(By.CSS_SELECTOR, "#share summary").click()
        driver.find_element(By.ID, "share-create").click()
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#share-list li[data-state=active]"), 15, "a link")
        check("Photos/ (share box)")
        driver.find_element(By.CSS_SELECTOR, "tr[data-name='pic.png'] button.share").click()
        driver.find_element(By.ID, "share-create").click()
        wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#share-list li[data-state=active]")) == 2, 15,
                   "a link to the file")  # fmt: skip
        check("Photos/ (share box for a file)")
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
        driver.get(f"{share.url}s/{drop.token}/")
        (tmp_path / "sent.txt").write_text("sent")
        driver.find_element(By.ID, "files").send_keys(str(tmp_path / "sent.txt"))
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#uploads li[data-state=done]"), 15, "the upload")
        check("drop page (uploaded)")


def test_admin_page_fits_a_phone(start_share, users_file: Path, tmp_path: Path) -> None:
    """`serve --admin` on a phone: the page never scrolls sideways (wide tables scroll in their card)."""
    from selenium.webdriver.common.by import By

    from davsync.server.admin import ADMIN_PREFIX
    from davsync.users import Users

    users = Users.load(users_file)
    users.add("root", "root-secret", read_only=False, admin=True)
    users.save(users_file)
    share = start_share(admin=True)
    assert share.request("PUT", "a%20rather%20long%20file%20name%20from%20a%20camera.jpg", data=b"x").status_code == 201
    assert share.request("DELETE", "a%20rather%20long%20file%20name%20from%20a%20camera.jpg").status_code == 204
    with chromium_at(tmp_path, PHONE, tmp_path / "downloads") as driver:
        driver.get(share.url.replace("http://", "http://root:root-secret@").rstrip("/") + ADMIN_PREFIX)
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "tr[data-user='root']"), 15, "the users table")
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#versions-list tr"), 15, "the versions table")
        shot(driver, "admin-phone")
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= PHONE[0], f"the admin page is {width} px wide on a {PHONE[0]} px phone"
