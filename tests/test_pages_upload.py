"""Uploads from davsync's pages (pages/static/upload.js): a drop link takes big files in the
server's resumable form (resumable.py) and still never overwrites nor tells what is there; in
real headless Chromium, a drop link's page shows progress per file, uploads several files and a
folder's tree, and a big upload cut off on its way (tests/proxy.py) goes on from the server's
offset."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import requests
from browserhelp import DESKTOP, PHONE, chromium_at
from conftest import wait_until
from proxy import Faults, Proxy

from davsync.server.links import LinkStore

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def tree(share) -> Any:
    (share.root / "Inbox").mkdir()
    (share.root / "Inbox" / "report.pdf").write_bytes(b"the original")
    share.wait_indexed()
    return share


def drop_link(share, folder: str = "Inbox", mode: str = "drop") -> str:
    issued = LinkStore(share.state_dir).create(folder, mode, expires_in=3600, password=None)
    return f"{share.url}s/{issued.token}/"


def test_a_drop_link_takes_a_resumable_upload_under_a_free_name(tree) -> None:
    url = drop_link(tree)
    payload = os.urandom(300_000)
    made = requests.post(url + "report.pdf", headers={"Upload-Complete": "?0", "Upload-Length": str(len(payload))},
                         timeout=30)  # fmt: skip
    assert made.status_code == 201, made.text
    where = made.headers["Location"]
    assert where.startswith(url.removeprefix(tree.url.rstrip("/"))) and ".~davsync-upload/" in where
    session = tree.url.rstrip("/") + where
    part = {"Content-Type": "application/partial-upload", "Upload-Complete": "?0"}
    r = requests.patch(session, data=payload[:100_000], headers=part | {"Upload-Offset": "0"}, timeout=30)
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "100000"
    assert requests.head(session, timeout=30).headers["Upload-Offset"] == "100000"
    # another link cannot see or continue this upload
    assert requests.head(drop_link(tree).rstrip("/") + where[where.index("/.~"):], timeout=30).status_code == 404
    stale = requests.patch(session, data=b"x", headers=part | {"Upload-Offset": "5"}, timeout=30)
    assert stale.status_code == 409 and stale.headers["Upload-Offset"] == "100000"
    done = requests.patch(session, data=payload[100_000:], timeout=30,
                          headers=part | {"Upload-Offset": "100000", "Upload-Complete": "?1"})  # fmt: skip
    assert done.status_code == 201, done.text
    assert not {"ETag", "Location", "OC-ETag", "Last-Modified"} & set(done.headers)  # no name, no oracle
    assert (tree.root / "Inbox" / "report.pdf").read_bytes() == b"the original"  # never overwritten
    assert hashlib.md5((tree.root / "Inbox" / "report (2).pdf").read_bytes()).digest() == hashlib.md5(payload).digest()


def test_links_that_are_not_drop_links_take_no_resumable_upload(tree) -> None:
    for mode in ("read-only", "read-write"):
        r = requests.post(drop_link(tree, mode=mode) + "x.bin", headers={"Upload-Complete": "?1"}, data=b"x",
                          timeout=30)  # fmt: skip
        assert r.status_code in (403, 405), (mode, r.status_code)
    assert not (tree.root / "Inbox" / "x.bin").exists()
    # the drop page's assets, and nothing else of davsync's names, through a drop link
    url = drop_link(tree)
    assert requests.get(url + ".~davsync-pages/upload.js", timeout=30).status_code == 200
    assert requests.get(url + ".~davsync-upload/abc", timeout=30).status_code in (403, 404, 405)
    page = requests.get(url, headers=HTML, timeout=30)
    assert page.status_code == 200 and "upload.js" in page.text and "report.pdf" not in page.text


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_drop_page_in_chromium(tree, tmp_path: Path, size: tuple[int, int]) -> None:
    """Several files with a progress bar each, a folder's tree, then a big file whose upload is cut
    on its way (the proxy closes the connection) and goes on from the server's offset."""
    from selenium.webdriver.common.by import By

    label = "phone" if size == PHONE else "desktop"
    send = tmp_path / "send"
    (send / "Trip" / "day 1").mkdir(parents=True)
    (send / "movie.bin").write_bytes(os.urandom(3_000_000))
    (send / "small.txt").write_text("small")
    (send / "Trip" / "day 1" / "a.txt").write_text("first day")
    (send / "Trip" / "b.txt").write_text("b")
    big = os.urandom(8_000_000)
    (send / "big.bin").write_bytes(big)
    inbox = tree.root / "Inbox"
    proxy = Proxy(tree.server.port)
    url = drop_link(tree).replace(tree.url, proxy.url)
    try:
        with chromium_at(tmp_path, size, tmp_path / "downloads") as driver:
            driver.get(url)
            assert driver.find_element(By.TAG_NAME, "h1").text == "Upload only"
            assert driver.execute_script("return document.documentElement.scrollWidth") <= size[0]
            driver.execute_script("""
                window.progressSeen = [];
                new MutationObserver((ms) => { for (const m of ms) if (m.target.tagName === 'PROGRESS')
                  window.progressSeen.push(m.target.value); })
                .observe(document.getElementById('uploads'), {attributes: true, subtree: true, attributeFilter: ['value']});""")
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                   "downloadThroughput": -1, "uploadThroughput": 2_000_000})  # fmt: skip
            driver.find_element(By.ID, "files").send_keys(f"{send / 'movie.bin'}\n{send / 'small.txt'}")
            done = "#uploads li[data-state=done]"
            wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, done)) == 2, 60, "both uploads")
            driver.execute_cdp_cmd("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                   "downloadThroughput": -1, "uploadThroughput": -1})  # fmt: skip
            seen = driver.execute_script("return window.progressSeen")
            assert any(0 < v < 100 for v in seen), seen
            assert (inbox / "movie.bin").read_bytes() == (send / "movie.bin").read_bytes()
            assert (inbox / "small.txt").read_text() == "small"
            assert "Uploaded 2 files" in driver.find_element(By.ID, "status").text

            driver.find_element(By.ID, "folder").send_keys(str(send / "Trip"))
            wait_until(lambda: (inbox / "Trip" / "day 1" / "a.txt").exists() and (inbox / "Trip" / "b.txt").exists(),
                       30, "the folder's tree")  # fmt: skip
            assert (inbox / "Trip" / "day 1" / "a.txt").read_text() == "first day"

            # the big file's part is cut after 3 MB on its way to the server
            proxy.faults = Faults(cut_request_after=3_000_000, request_cuts_left=1, only_for="PATCH")
            driver.find_element(By.ID, "files").send_keys(str(send / "big.bin"))
            row = "#uploads li[data-resumed-at]"
            resumed = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, row), 60, "the upload resumed")[0]
            at = int(resumed.get_attribute("data-resumed-at"))
            assert 1_000_000 < at < len(big), at  # from where the server was, not from the start
            wait_until(lambda: len(driver.find_elements(By.CSS_SELECTOR, done)) == 5, 60, "the big upload")
            assert proxy.faults.request_cuts_left == 0
            assert (inbox / "big.bin").read_bytes() == big
            ARTIFACTS.mkdir(exist_ok=True)
            driver.save_screenshot(str(ARTIFACTS / f"pages-{label}-drop.png"))
    finally:
        proxy.close()


def test_dragging_a_folder_in_uploads_its_tree(tree, tmp_path: Path) -> None:
    """A drop event whose items are a folder's entries (what webkitGetAsEntry gives for a folder
    dragged from the desktop; WebDriver cannot drag from the OS, so the page gets the same entry
    objects made in the page), and plain dropped files: both land, the tree with its empty folder."""
    from selenium.webdriver.common.by import By

    inbox = tree.root / "Inbox"
    with chromium_at(tmp_path, DESKTOP, tmp_path / "downloads") as driver:
        driver.get(drop_link(tree))
        driver.execute_script("""
            const file = (name, text) => { const f = new File([text], name);
              return {isFile: true, isDirectory: false, name, file: (ok) => ok(f)}; };
            const dir = (name, children) => { let given = false; return {isFile: false, isDirectory: true, name,
              createReader: () => ({readEntries: (ok) => { ok(given ? [] : children); given = true; }})}; };
            const album = dir('Album', [file('one.txt', 'one'), dir('Empty', []), dir('Sub', [file('two.txt', 'two')])]);
            const items = [{kind: 'file', webkitGetAsEntry: () => album}];
            const ev = new Event('drop', {bubbles: true, cancelable: true});
            ev.dataTransfer = {items, files: []};
            document.dispatchEvent(ev);""")
        wait_until(lambda: (inbox / "Album" / "Sub" / "two.txt").exists() and (inbox / "Album" / "one.txt").exists(),
                   30, "the dragged folder's tree")  # fmt: skip
        assert (inbox / "Album" / "Sub" / "two.txt").read_text() == "two"
        assert (inbox / "Album" / "Empty").is_dir()
        driver.execute_script("""
            const dt = new DataTransfer();
            dt.items.add(new File(['dropped'], 'loose.txt'));
            const ev = new DragEvent('drop', {bubbles: true, cancelable: true, dataTransfer: dt});
            document.dispatchEvent(ev);""")
        wait_until(lambda: (inbox / "loose.txt").exists(), 30, "the dropped file")
        assert (inbox / "loose.txt").read_text() == "dropped"
        assert driver.find_elements(By.CSS_SELECTOR, "#uploads li[data-state=done]")


def test_a_read_write_links_page_uploads_big_files_too(tree, tmp_path: Path) -> None:
    """A read-write link takes no resumable uploads (only drop links do): its page sends a big
    file as one PUT instead."""
    from selenium.webdriver.common.by import By

    big = os.urandom(2_500_000)
    (tmp_path / "big.bin").write_bytes(big)
    with chromium_at(tmp_path, DESKTOP, tmp_path / "downloads") as driver:
        driver.get(drop_link(tree, mode="read-write"))
        driver.find_element(By.ID, "files").send_keys(str(tmp_path / "big.bin"))
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#uploads li[data-state=done], "
                                                "#uploads li[data-state=failed]"), 30, "the upload")  # fmt: skip
        assert driver.find_elements(By.CSS_SELECTOR, "#uploads li[data-state=done]"), driver.find_element(
            By.ID, "uploads"
        ).text
    assert (tree.root / "Inbox" / "big.bin").read_bytes() == big


def test_a_password_drop_link_asks_for_it_on_every_step_of_a_resumable_upload(tree) -> None:
    issued = LinkStore(tree.state_dir).create("Inbox", "drop", expires_in=3600, password="let me in")
    url = f"{tree.url}s/{issued.token}/"
    start = {"Upload-Complete": "?0", "Upload-Length": "3"}
    assert requests.post(url + "n.txt", headers=start, timeout=30).status_code == 401
    made = requests.post(url + "n.txt", headers=start, auth=("x", "let me in"), timeout=30)
    assert made.status_code == 201, made.text
    session = tree.url.rstrip("/") + made.headers["Location"]
    last = {"Content-Type": "application/partial-upload", "Upload-Offset": "0", "Upload-Complete": "?1"}
    assert requests.patch(session, data=b"new", headers=last, timeout=30).status_code == 401
    assert requests.patch(session, data=b"new", headers=last, auth=("x", "let me in"), timeout=30).status_code == 201
    assert (tree.root / "Inbox" / "n.txt").read_bytes() == b"new"
