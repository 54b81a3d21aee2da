"""Conflicts on the dashboard, in real headless Chromium against a real server, two-way sync.

Three files changed on both sides: the page lists each with both versions' sizes, sorts them,
previews either version, and takes one choice for two selected at once; those show
"uploading" until the server has them (held while the pair is paused), then go. axe-core finds
nothing serious or critical, light and dark.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from apphelp import memory_keyring, start_app  # noqa: F401  (fixtures)
from conftest import PASSWORDS, wait_until
from test_app_addpair import ATTRS
from test_app_browser import chromium, shot, stays  # noqa: F401  (fixture)
from test_app_share import accessibility_problems

from davsync.app.config import FolderPair
from davsync.client import credentials

MINE = {"apples.txt": b"my apples, edited here\n", "budget.txt": b"my budget\n", "cherries.txt": b"my cherries, a long edit\n" * 9}
THEIRS = {"apples.txt": b"their apples\n", "budget.txt": b"their budget, edited on the phone, much longer\n" * 3,
          "cherries.txt": b"their cherries\n"}  # fmt: skip


def test_conflicts_sorted_previewed_and_resolved_in_bulk(start_share, start_app, memory_keyring, chromium,  # noqa: F811
                                                         tmp_path: Path) -> None:  # fmt: skip
    from selenium.webdriver.common.by import By

    driver = chromium
    root = tmp_path / "root"
    root.mkdir()
    for name in MINE:
        (root / name).write_bytes(b"the agreed version\n")
    share = start_share(root)
    dest = tmp_path / "Household"
    credentials.save_password(share.url, "alice", PASSWORDS["alice"])
    running = start_app([FolderPair(share.url, str(dest), user="alice", mode="sync", interval=0.3)])
    app, pid = running.app, running.pair()["id"]
    wait_until(lambda: running.pair()["state"] == "ok" and (dest / "apples.txt").exists(), 30, "the first sync")

    app.set_paused(True, pid)
    alice = share.session("alice")
    for name in MINE:
        (dest / name).write_bytes(MINE[name])
        assert alice.put(share.url + name, data=THEIRS[name], timeout=10).status_code in (201, 204)
    app.set_paused(False, pid)

    def present(css: str) -> list[Any]:
        return driver.find_elements(By.CSS_SELECTOR, css)

    def attrs(css: str, key: str) -> list[str]:  # read in the page at once: a re-render cannot stale it
        return driver.execute_script(ATTRS, css, key)  # type: ignore[no-any-return]

    def order() -> list[str]:
        return attrs(".conflict", "path")

    driver.get(running.dash.login_url())
    wait_until(lambda: len(present(".conflict")) == 3, 30, "three conflicts on the page")
    driver.execute_script("window.confirm = () => true;")
    assert order() == ["apples.txt", "budget.txt", "cherries.txt"]  # by name first
    item = present('.conflict[data-path="budget.txt"]')[0]
    assert f"{len(THEIRS['budget.txt'])} B" in item.text and f"{len(MINE['budget.txt'])} B" in item.text
    assert item.text.count("modified ") == 2  # both versions' times
    driver.find_element(By.CSS_SELECTOR, ".conflict-sort option[value=size]").click()
    wait_until(lambda: order() == ["cherries.txt", "budget.txt", "apples.txt"], 5, "biggest first")

    # --- preview each version of apples.txt -------------------------------------------------
    item = present('.conflict[data-path="apples.txt"]')[0]
    item.find_elements(By.CSS_SELECTOR, ".preview-open")[1].click()  # mine
    wait_until(lambda: "my apples" in present('.conflict[data-path="apples.txt"] .preview')[0].text, 10, "mine")
    present('.conflict[data-path="apples.txt"] .preview-open')[0].click()  # theirs
    wait_until(lambda: "their apples" in present('.conflict[data-path="apples.txt"] .preview')[0].text, 10, "theirs")
    driver.find_element(By.CSS_SELECTOR, ".conflict-sort option[value=name]").click()  # the list is built again
    wait_until(lambda: order() == ["apples.txt", "budget.txt", "cherries.txt"], 5, "by name again")
    wait_until(lambda: "their apples" in present('.conflict[data-path="apples.txt"] .preview')[0].text, 10,
               "the open preview kept")  # fmt: skip
    # Only a listed conflict's two files are previewed or opened, nothing else on the disk.
    api = running.client()
    for rel in ("../root/apples.txt", "notes-elsewhere.txt", ".davsync/state.db"):
        refused = api.get(f"/api/pairs/{pid}/preview?path={rel}")
        assert refused.status_code == 409 and "not part of a listed conflict" in refused.json()["error"]
    shot(driver, "conflicts")
    assert accessibility_problems(driver) == {}

    # --- select two, keep mine: "uploading" until the server has them ------------------------
    app.set_paused(True, pid)  # hold the upload, so "uploading" can be seen to stay
    for name in ("apples.txt", "budget.txt"):
        present(f'.conflict[data-path="{name}"] .pick')[0].click()
    wait_until(lambda: "2 selected" in present(".conflict-tools")[0].text, 5, "two selected")
    present(".bulk-mine")[0].click()
    wait_until(lambda: set(attrs(".uploading", "path")) == {"apples.txt", "budget.txt"}, 10, "the two shown as uploading")
    assert order() == ["cherries.txt"]
    assert "Kept your version for 2 files" in driver.find_element(By.ID, "message").text
    assert (dest / "apples.txt").read_bytes() == MINE["apples.txt"]
    stays(lambda: len(present(".uploading")) == 2 and alice.get(share.url + "apples.txt", timeout=10).content
          == THEIRS["apples.txt"], 1.0, "uploading while paused, the server still has theirs")  # fmt: skip
    app.set_paused(False, pid)
    wait_until(lambda: not present(".uploading"), 30, "the server to confirm")
    for name in ("apples.txt", "budget.txt"):
        assert alice.get(share.url + name, timeout=10).content == MINE[name]

    # --- the last one: keep theirs ----------------------------------------------------------
    present('.conflict[data-path="cherries.txt"] .keep-theirs')[0].click()
    wait_until(lambda: not present(".conflict"), 10, "no conflicts left")
    assert (dest / "cherries.txt").read_bytes() == THEIRS["cherries.txt"]
    assert [p.read_bytes() for p in (dest / ".davsync" / "trash").rglob("cherries.sync-conflict-*")] == [
        MINE["cherries.txt"]
    ]
    wait_until(lambda: running.pair()["state"] == "ok", 30, "up to date again")


def test_open_hands_the_listed_file_to_the_system(start_share, start_app, memory_keyring, monkeypatch,  # noqa: F811
                                                 tmp_path: Path) -> None:  # fmt: skip
    """*Open* runs the system's opener (xdg-open on Linux; a stand-in here records what it was given)."""
    import stat

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opener = bin_dir / "xdg-open"
    opener.write_text(f'#!/bin/sh\nprintf "%s" "$1" > "{bin_dir / "opened"}"\n')
    opener.chmod(opener.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ["PATH"])
    root = tmp_path / "root"
    root.mkdir()
    (root / "plan.txt").write_bytes(b"agreed\n")
    share = start_share(root)
    dest = tmp_path / "Household"
    credentials.save_password(share.url, "alice", PASSWORDS["alice"])
    running = start_app([FolderPair(share.url, str(dest), user="alice", mode="sync", interval=0.3)])
    pid = running.pair()["id"]
    wait_until(lambda: running.pair()["state"] == "ok" and (dest / "plan.txt").exists(), 30, "the first sync")
    running.app.set_paused(True, pid)
    (dest / "plan.txt").write_bytes(b"mine\n")
    assert share.session("alice").put(share.url + "plan.txt", data=b"theirs!\n", timeout=10).status_code == 204
    running.app.set_paused(False, pid)
    wait_until(lambda: running.pair()["conflicts"], 30, "the conflict")
    copy = running.pair()["conflicts"][0]["local_copy"]
    api = running.client()
    assert api.post(f"/api/pairs/{pid}/open-file", {"path": copy}).status_code == 200
    wait_until(lambda: (bin_dir / "opened").exists(), 10, "the opener to run")
    assert (bin_dir / "opened").read_text() == str(dest / copy)
    refused = api.post(f"/api/pairs/{pid}/open-file", {"path": "../root/plan.txt"})
    assert refused.status_code == 409 and "not part of a listed conflict" in refused.json()["error"]
