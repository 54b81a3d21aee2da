"""`davsync app` driven through its dashboard in real headless Chromium, against a real server.

Add a folder pair through the form; watch Syncing -> Up to date; a change on the server arrives;
a conflict is resolved from the page (the files on disk prove it); the trash restores; pause
stops everything; a stopped server shows Offline. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from apphelp import memory_keyring, start_app  # noqa: F401  (fixtures)
from conftest import PASSWORDS, wait_until
from proxy import Faults, Proxy

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture
def chromium(tmp_path: Path):  # type: ignore[no-untyped-def]
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (in the test extra)")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_exe = shutil.which("chromedriver")
    if not binary or not driver_exe:
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,1000"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(executable_path=driver_exe))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"app-{name}.png"))


def stays(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """Check that something stays true for a while (the negative of wait_until)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), what
        time.sleep(0.05)


def test_dashboard_end_to_end(serve_process, start_app, memory_keyring, chromium, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = chromium
    root = tmp_path / "root"
    (root / "Photos").mkdir(parents=True)
    (root / "Photos" / "holiday.bin").write_bytes(os.urandom(9_000_000))
    (root / "report.txt").write_bytes(b"the server's first version\n")
    (root / "notes.txt").write_bytes(b"notes\n")
    sp = serve_process(root)
    server_port = int(sp.url.rsplit(":", 1)[1].strip("/"))
    proxy = Proxy(server_port, Faults(rate=3_000_000))  # ~3 s for the big file (over 4 MiB: streamed in 1 MiB steps): Syncing is visible
    dest = tmp_path / "PiMirror"
    running = start_app()

    def text(element_id: str) -> str:
        from selenium.common.exceptions import StaleElementReferenceException

        try:
            return driver.find_element(By.ID, element_id).text
        except StaleElementReferenceException:  # re-rendered between find and read: read again
            return ""

    def overall() -> str:
        return driver.find_element(By.ID, "overall").get_attribute("data-state") or ""

    def pair_card() -> Any:
        return driver.find_element(By.CSS_SELECTOR, ".pair")

    try:
        driver.get(running.dash.login_url())
        wait_until(lambda: overall() == "empty", 15, "the empty dashboard")
        assert "token" not in driver.current_url  # traded for a cookie
        # The page records every overall state it shows, so a short Syncing phase is not missed.
        driver.execute_script("""
            window.seen = [];
            new MutationObserver(() => {
              const s = document.getElementById('overall').dataset.state;
              if (window.seen[window.seen.length - 1] !== s) window.seen.push(s);
            }).observe(document.getElementById('overall'), {attributes: true});""")
        shot(driver, "1-empty")

        # --- add a folder pair through the form: check first, then save -----------------------
        driver.find_element(By.ID, "add-open").click()
        driver.find_element(By.ID, "add-url").send_keys(proxy.url)
        driver.find_element(By.ID, "add-user").send_keys("alice")
        driver.find_element(By.ID, "add-password").send_keys("not the password")
        driver.find_element(By.ID, "add-local").send_keys(str(dest))
        interval = driver.find_element(By.ID, "add-interval")
        interval.clear()
        interval.send_keys("0.5")
        driver.find_element(By.ID, "add-save").click()
        wait_until(lambda: "Not saved" in text("add-result"), 20, "the refusal")
        assert "refused the login" in driver.find_element(By.ID, "add-checks").text
        assert not running.config_file.exists()
        pw = driver.find_element(By.ID, "add-password")
        pw.clear()
        pw.send_keys(PASSWORDS["alice"])
        driver.find_element(By.ID, "add-check").click()
        wait_until(lambda: "checks passed" in text("add-result"), 20, "the checks")
        checks = driver.find_elements(By.CSS_SELECTOR, "#add-checks li")
        assert len(checks) >= 8 and all(li.get_attribute("data-ok") == "1" for li in checks)
        shot(driver, "2-add-form-checked")
        driver.find_element(By.ID, "add-save").click()

        # --- Syncing -> Up to date ------------------------------------------------------------
        wait_until(lambda: overall() == "syncing", 20, "Syncing")
        label = driver.find_element(By.ID, "overall-label").text
        assert label.startswith("Syncing ") and " of 3 files" in label
        # mid-transfer: bytes, speed and time left
        wait_until(lambda: " left" in text("overall-detail"), 20, "speed and ETA")
        assert " of 9.0 MB at " in text("overall-detail")
        shot(driver, "3-syncing")
        wait_until(lambda: overall() == "ok", 60, "Up to date")
        assert driver.find_element(By.ID, "overall-label").text == "Up to date"
        assert "Last checked at" in text("overall-detail")
        seen = driver.execute_script("return window.seen")
        assert seen.index("syncing") < seen.index("ok"), seen
        assert (dest / "Photos" / "holiday.bin").read_bytes() == (root / "Photos" / "holiday.bin").read_bytes()
        assert "alice" in running.config_file.read_text() and PASSWORDS["alice"] not in running.config_file.read_text()

        # --- a change on the server arrives, and shows in Recent changes ----------------------
        (root / "notes.txt").write_bytes(b"notes, edited on the server\n")
        wait_until(lambda: (dest / "notes.txt").read_bytes() == b"notes, edited on the server\n", 30, "the edit to arrive")
        pair_card().find_element(By.CSS_SELECTOR, ".recent-panel summary").click()
        wait_until(lambda: "updated" in pair_card().find_element(By.CSS_SELECTOR, ".recent").text, 10, "recent change")
        assert "notes.txt" in pair_card().find_element(By.CSS_SELECTOR, ".recent").text
        shot(driver, "4-up-to-date")

        # --- a conflict, resolved from the page -----------------------------------------------
        pair_card().find_element(By.CSS_SELECTOR, "button.pause").click()
        wait_until(lambda: pair_card().get_attribute("data-state") == "paused", 15, "the pair to pause")
        mine = b"my local edit of the report\n"
        theirs = b"the server's second version, longer than mine\n"
        (dest / "report.txt").write_bytes(mine)
        (root / "report.txt").write_bytes(theirs)
        wait_until(lambda: requests.get(sp.url + "report.txt", auth=("alice", PASSWORDS["alice"]), timeout=10).content
                   == theirs, 15, "the server to serve its new version")  # fmt: skip
        pair_card().find_element(By.CSS_SELECTOR, "button.pause").click()  # resume
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, ".conflict"), 30, "the conflict on the page")
        wait_until(lambda: overall() == "attention", 10, "Needs attention")
        assert driver.find_element(By.ID, "overall-label").text == "Needs attention (1)"
        item = driver.find_element(By.CSS_SELECTOR, ".conflict")
        assert "report.txt" in item.text
        assert f"{len(theirs)} B" in item.text and f"{len(mine)} B" in item.text  # both versions' sizes
        copies = list(dest.glob("report.sync-conflict-*.txt"))
        assert len(copies) == 1 and copies[0].read_bytes() == mine
        driver.execute_script("arguments[0].scrollIntoView()", item)
        shot(driver, "5-conflict")
        item.find_element(By.CSS_SELECTOR, ".keep-mine").click()
        wait_until(lambda: not driver.find_elements(By.CSS_SELECTOR, ".conflict"), 15, "the conflict to go")
        assert (dest / "report.txt").read_bytes() == mine  # my version has the name
        assert not copies[0].exists()
        trashed = list((dest / ".davsync" / "trash").rglob("report.txt"))
        assert [t.read_bytes() for t in trashed] == [theirs]  # the server's version is in the trash
        wait_until(lambda: overall() == "ok", 20, "Up to date after resolving")

        # --- the trash: browse and restore ------------------------------------------------------
        pair_card().find_element(By.CSS_SELECTOR, ".trash-panel summary").click()
        wait_until(lambda: pair_card().find_elements(By.CSS_SELECTOR, ".trash .restore"), 10, "the trash list")
        assert "report.txt" in pair_card().find_element(By.CSS_SELECTOR, ".trash").text
        shot(driver, "6-trash")
        pair_card().find_element(By.CSS_SELECTOR, ".trash .restore").click()
        wait_until(lambda: list(dest.glob("report.restored-*.txt")), 10, "the restored file")
        assert list(dest.glob("report.restored-*.txt"))[0].read_bytes() == theirs
        assert (dest / "report.txt").read_bytes() == mine

        # --- pause: nothing arrives, even on Sync now --------------------------------------------
        driver.find_element(By.ID, "pause-all").click()
        wait_until(lambda: overall() == "paused", 15, "Paused")
        (root / "while-paused.txt").write_bytes(b"wait for me\n")
        wait_until(lambda: requests.get(sp.url + "while-paused.txt", auth=("alice", PASSWORDS["alice"]),
                                        timeout=10).status_code == 200, 15, "the server to serve the new file")  # fmt: skip
        driver.find_element(By.ID, "sync-all").click()
        shot(driver, "7-paused")
        stays(lambda: not (dest / "while-paused.txt").exists() and overall() == "paused", 3.0, "nothing arrives while paused")
        driver.find_element(By.ID, "pause-all").click()  # resume
        wait_until(lambda: (dest / "while-paused.txt").exists(), 20, "the file after resuming")

        # --- stop the server: Offline ------------------------------------------------------------
        wait_until(lambda: overall() == "ok", 20, "Up to date before the server stops")
        sp.stop()
        wait_until(lambda: overall() == "offline", 30, "Offline")
        assert driver.find_element(By.ID, "overall-label").text.startswith("Offline since ")
        assert "tries again at" in text("overall-detail")
        shot(driver, "8-offline")
    finally:
        proxy.close()


def test_a_stopped_server_and_a_quit_app_are_never_green(serve_process, start_app, memory_keyring, chromium,
                                                          tmp_path: Path) -> None:  # fmt: skip
    """Two pairs on one server: when one finds it down, both say Offline (the other's own next check
    is ten minutes away). Then Quit: the page says it lost contact with the app, and since when."""
    import threading

    from selenium.webdriver.common.by import By

    from davsync.app.config import FolderPair
    from davsync.client import credentials

    driver = chromium
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a")
    sp = serve_process(root)
    credentials.save_password(sp.url, "alice", PASSWORDS["alice"])
    running = start_app([FolderPair(sp.url, str(tmp_path / "Photos"), user="alice", interval=0.5),
                         FolderPair(sp.url, str(tmp_path / "Music"), user="alice", interval=600)])  # fmt: skip

    def stop_like_main() -> None:  # what `davsync app` does when Quit is chosen
        running.app.quit.wait()
        running.app.stop()
        running.dash.stop()

    threading.Thread(target=stop_like_main, daemon=True).start()

    def states() -> list[str]:
        return [c.get_attribute("data-state") or "" for c in driver.find_elements(By.CSS_SELECTOR, ".pair")]

    def overall() -> str:
        return driver.find_element(By.ID, "overall").get_attribute("data-state") or ""

    def dot_colour() -> str:
        return str(driver.execute_script(
            "return getComputedStyle(document.querySelector('#overall .dot')).backgroundColor"))  # fmt: skip

    driver.get(running.dash.login_url())
    wait_until(lambda: states() == ["ok", "ok"] and overall() == "ok", 30, "both pairs up to date")
    green = dot_colour()
    sp.stop()
    wait_until(lambda: states() == ["offline", "offline"], 30, "both pairs offline")
    assert overall() == "offline" and dot_colour() != green
    assert running.app.hub.pair(running.pair(1)["id"]).offline_since is None  # the second never checked itself
    cards = driver.find_elements(By.CSS_SELECTOR, ".pair")
    assert all("Offline since" in c.text and "cannot be reached" in c.text for c in cards)
    shot(driver, "9-server-down-two-pairs")

    driver.find_element(By.ID, "quit").click()
    driver.switch_to.alert.accept()
    wait_until(lambda: overall() == "lost", 20, "the page to say it lost contact")
    label = driver.find_element(By.ID, "overall-label").text
    assert label.startswith("Lost contact with davsync app at "), label
    assert any(ch.isdigit() for ch in label)  # the time it happened
    assert "not running" in driver.find_element(By.ID, "overall-detail").text
    assert dot_colour() != green
    assert driver.title.startswith("davsync: Lost contact")
    assert all(c.get_attribute("aria-disabled") == "true" for c in driver.find_elements(By.CSS_SELECTOR, ".pair"))
    shot(driver, "10-lost-contact")
