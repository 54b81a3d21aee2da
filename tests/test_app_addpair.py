"""Adding a pair on the dashboard, in real headless Chromium against a real server.

The server found on the network fills the URL; the server's folders are browsed (PROPFIND) and
one is picked, with a subfolder unticked (it becomes an exclude line, so it is never synced);
the local folder is typed and checked as typed, or chosen in the system's dialog (zenity or
kdialog on Linux; without either, the page says to type it). A folder excluded after it was
synced stays on both sides. axe-core: nothing serious or critical, light and dark.

Not tested here: multicast itself (the loopback interface has none, and tests stay on
127.0.0.1), so the record `serve --advertise` publishes is handed to the app's browser directly;
the real zenity/kdialog windows (a stand-in program answers as they do); Windows' dialogs.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from apphelp import memory_keyring, start_app  # noqa: F401  (fixtures)
from conftest import PASSWORDS, wait_until
from test_app_browser import chromium, shot  # noqa: F401  (fixture)
from test_app_share import accessibility_problems

from davsync.client.filters import Filter, folder_line
from davsync.server.discovery import service_info


@pytest.mark.parametrize("name", ["Raw", "Photos [2026]", "a*b?", "#notes", "!important", "trailing ", "back\\slash"])
def test_a_skipped_folder_line_skips_that_folder_only(name: str, tmp_path: Path) -> None:
    spec = Filter.load(tmp_path, [folder_line(name)])
    assert spec.excluded(name, True) and spec.excluded(f"{name}/inside.jpg", False)
    assert not spec.excluded(name + "x", True) and not spec.excluded(f"Other/{name}", True)
    assert not spec.excluded(name, False)  # a file of that name is not a folder


ATTRS = "return [...document.querySelectorAll(arguments[0])].map((el) => el.dataset[arguments[1]]);"


def _stand_in(bin_dir: Path, name: str, answer: str, code: int = 0) -> Path:
    """A program answering as zenity/kdialog do: the chosen path on stdout, exit 1 on Cancel."""
    bin_dir.mkdir(exist_ok=True)
    log = bin_dir / f"{name}.args"
    script = bin_dir / name
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{log}"\nprintf "%s\\n" "{answer}"\nexit {code}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


def test_add_a_pair_found_browsed_and_partly_skipped(start_share, start_app, memory_keyring, chromium,  # noqa: F811
                                                     monkeypatch, tmp_path: Path) -> None:  # fmt: skip
    from selenium.webdriver.common.by import By

    driver = chromium
    root = tmp_path / "root"
    for rel, data in {"Photos/2026/beach.jpg": b"beach", "Photos/Raw/beach.cr2": b"raw" * 1000,
                      "Music/song.mp3": b"la", "notes.txt": b"n"}.items():  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    share = start_share(root)
    running = start_app()
    # The record `davsync serve --advertise` publishes for this server, as the browser hears it.
    running.app.lan.note(service_info("davsync on raspberrypi", share.server.port, ["127.0.0.1"]))
    monkeypatch.setenv("PATH", str(tmp_path / "no-dialogs") + os.pathsep + "/usr/bin:/bin")
    if any((Path(d) / p).exists() for d in ("/usr/bin", "/bin") for p in ("zenity", "kdialog")):
        pytest.skip("zenity or kdialog is installed here: the no-dialog case cannot be shown")

    def el(css: str) -> Any:
        return driver.find_element(By.CSS_SELECTOR, css)

    def present(css: str) -> list[Any]:
        return driver.find_elements(By.CSS_SELECTOR, css)

    def attrs(css: str, key: str) -> list[str]:  # read in the page at once: a re-render cannot stale it
        return driver.execute_script(ATTRS, css, key)  # type: ignore[no-any-return]

    driver.get(running.dash.login_url())
    wait_until(lambda: el("#overall").get_attribute("data-state") == "empty", 15, "the empty dashboard")
    el("#add-open").click()
    wait_until(lambda: present("#lan-list .use-server"), 10, "the server found on the network")
    assert "davsync on raspberrypi" in el("#lan-list").text
    el("#lan-list .use-server").click()
    assert el("#add-url").get_attribute("value") == share.url
    el("#add-user").send_keys("alice")
    el("#add-password").send_keys(PASSWORDS["alice"])

    # --- the server's folders: open Photos, untick Raw, sync Photos ---------------------------
    el("#add-browse").click()
    wait_until(lambda: attrs("#remote-list li", "path") == ["Music", "Photos"], 15, "the share's folders")
    el('#remote-list li[data-path="Photos"] .open-sub').click()
    wait_until(lambda: present('#remote-list li[data-path="Photos/Raw"]'), 15, "the folders in Photos")
    el('#remote-list li[data-path="Photos/Raw"] .sync-sub').click()  # untick
    shot(driver, "add-remote-picker")
    assert accessibility_problems(driver) == {}
    el("#remote-use").click()
    assert el("#add-url").get_attribute("value") == share.url + "Photos/"
    assert el("#add-excludes").get_attribute("value") == "/Raw/"

    # --- the local folder: no dialog here, so typed and checked as typed ----------------------
    el("#add-pick-local").click()
    wait_until(lambda: "type the folder's full path" in el("#add-local-check").text, 10, "no dialog available")
    local = el("#add-local")
    local.send_keys("Pictures")
    el("#add-user").click()  # leaving the field checks it
    wait_until(lambda: "not a full path" in el("#add-local-check").text, 10, "a relative path refused")
    assert local.get_attribute("aria-invalid") == "true"
    dest = tmp_path / "Pictures from the Pi"
    local.clear()
    local.send_keys(str(dest))
    el("#add-user").click()
    wait_until(lambda: "will be created" in el("#add-local-check").text, 10, "the new folder accepted")
    el("#add-interval").clear()
    el("#add-interval").send_keys("0.5")
    el("#add-delete").click()  # deletions follow the server: the strongest case for the skipped folder
    el("#add-save").click()
    wait_until(lambda: (dest / "2026" / "beach.jpg").exists(), 30, "the first sync")
    wait_until(lambda: running.pair()["state"] == "ok", 30, "up to date")
    assert not (dest / "Raw").exists() and not (dest / "Music").exists()
    assert running.app.config.pairs[0].excludes == ("/Raw/",)

    # --- a synced folder skipped afterwards stays, here and there ----------------------------
    running.app.edit_pair(running.pair()["id"], {"excludes": "/Raw/\n/2026/"})
    (root / "Photos" / "2026" / "later.jpg").write_bytes(b"later")
    (root / "Photos" / "new.jpg").write_bytes(b"new")
    wait_until(lambda: (dest / "new.jpg").exists(), 30, "a file outside the skipped folders")
    wait_until(lambda: running.pair()["state"] == "ok", 30, "up to date")
    assert (dest / "2026" / "beach.jpg").read_bytes() == b"beach"  # not deleted here
    assert (root / "Photos" / "2026" / "beach.jpg").read_bytes() == b"beach"  # nor there
    assert not (dest / "2026" / "later.jpg").exists()  # and nothing new comes in


@pytest.mark.parametrize("dialog", ["zenity", "kdialog"])
def test_the_local_folder_from_the_system_dialog(dialog: str, start_app, chromium, monkeypatch,  # noqa: F811
                                                 tmp_path: Path) -> None:  # fmt: skip
    from selenium.webdriver.common.by import By

    chosen = tmp_path / "Documents" / "Family photos"
    chosen.mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    log = _stand_in(bin_dir, dialog, str(chosen))
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + "/usr/bin:/bin")
    running = start_app()
    driver = chromium
    driver.get(running.dash.login_url())
    wait_until(lambda: driver.find_element(By.ID, "overall").get_attribute("data-state") == "empty", 15, "the page")
    driver.find_element(By.ID, "add-open").click()
    driver.find_element(By.ID, "add-pick-local").click()
    wait_until(lambda: driver.find_element(By.ID, "add-local").get_attribute("value") == str(chosen), 15, "the choice")
    wait_until(lambda: "empty, writable" in driver.find_element(By.ID, "add-local-check").text, 10, "checked")
    assert "--directory" in log.read_text() or "--getexistingdirectory" in log.read_text()
    # Cancel (exit 1): the field keeps what it had.
    _stand_in(bin_dir, dialog, "", code=1)
    driver.find_element(By.ID, "add-pick-local").click()
    wait_until(lambda: driver.find_element(By.ID, "add-local-check").text == "", 15, "the cancel")
    assert driver.find_element(By.ID, "add-local").get_attribute("value") == str(chosen)


def test_a_record_names_its_share_url() -> None:
    """What `serve --advertise` publishes, read back as the Add form shows it (no network)."""
    from davsync.app.discover import url_of

    assert url_of(service_info("davsync on pi", 8080, ["192.0.2.7"])) == "http://192.0.2.7:8080/"
    assert url_of(service_info("davsync on pi", 8443, ["192.0.2.7"], tls=True)) == "https://192.0.2.7:8443/"
    assert url_of(service_info("nas", 80, ["192.0.2.9"], path="/dav/team")) == "http://192.0.2.9:80/dav/team/"
