"""No command-line jargon on the dashboard: every state, rendered by the real page in Chromium,
holds none of the words a person who never typed a command would not know."""

from __future__ import annotations

import re
import time
from typing import Any

from apphelp import start_app  # noqa: F401  (fixtures)
from conftest import wait_until
from test_app_browser import chromium  # noqa: F401  (fixture)

from davsync.app.runner import FIXES
from davsync.app.status import PairStatus, Progress, StatusHub
from davsync.app.words import COUNT_WORDS, count_words, plain
from davsync.client.credentials import NO_STORE
from davsync.client.plan import Kind

FORBIDDEN = re.compile(
    r"\bjournal\b|\bbase\b|\betags?\b|--[a-z]|DAVSYNC_|\bterminal\b|\bmax_delete\b|\bca_cert\b|\bremote_gone\b|`|Traceback|Errno|gitignore|"
    + "|".join(re.escape(k.value) for k in Kind if "-" in k.value),
    re.IGNORECASE,
)

# What the client library says, verbatim (davsync/client/plan.py, remote.py, engine.py), as the
# app receives it: warnings, conflict reasons, kept-deletion reasons, fatal errors.
LIBRARY = [
    "Deletions refused: the server lists an empty share while the journal is not empty (an unmounted disk on the server?).",
    "Deletions refused: the local folder is empty or missing while the journal is not (an unplugged drive?).",
    "Deletions refused: 40 files on the server would go, more than --max-delete 10.",
    "Deletions refused: the server lists an empty share while the mirror is not empty (an unmounted disk on the server?).",
    "deleted on the server; kept (use --delete to remove)",
    "an unsynced local file differs from the remote",
    "the remote replaced this file with a folder",
    "the server refused the login for user 'anna'. Check --user and the password (DAVSYNC_PASSWORD).",
    "this share needs a login: add --user NAME (the password is asked for, or read from DAVSYNC_PASSWORD).",
    "cannot reach 127.0.0.1:8080: nothing is listening there; check that `davsync serve` is running and the port is right.",
    NO_STORE,  # a PC without a keyring, when a pair is added (found by a new-user trial)
]


def test_every_change_kind_has_plain_words() -> None:
    assert set(COUNT_WORDS) == {k.value for k in Kind}
    words = count_words({k.value: 2 for k in Kind} | {"something-new": 1})
    assert words[-1] == "1 other change"
    for w in words:
        assert not FORBIDDEN.search(w), w


def test_the_librarys_sentences_come_out_plain() -> None:
    for text in LIBRARY + [fix for _pattern, fix in FIXES]:
        assert not FORBIDDEN.search(plain(text)), (text, plain(text))
    assert plain("more than --max-delete 10") == "more than the safety limit (10)"


def test_a_pc_without_a_password_store_is_told_plainly(monkeypatch: Any) -> None:
    """Adding a pair on a PC with no keyring said "set DAVSYNC_PASSWORD ..., or run davsync in a
    terminal" on the dashboard (a new-user trial)."""
    import keyring
    from keyring.backends import fail

    from davsync.app.config import FolderPair
    from davsync.app.core import CommandError, _save_password

    monkeypatch.setattr(keyring, "get_keyring", lambda: fail.Keyring())
    monkeypatch.setattr(keyring, "set_password", fail.Keyring().set_password)
    try:
        _save_password(FolderPair(url="http://pi.local:8080/", local="/home/anna/Pi", user="anna"), "secret")
    except CommandError as e:
        said = str(e)
    else:
        raise AssertionError("no error without a password store")
    assert "password store" in said and not FORBIDDEN.search(said), said


def _states() -> list[tuple[str, list[PairStatus]]]:
    now = time.time()  # read when the states are rendered, not when the module was imported

    def pair(pid: str, **kw: Any) -> PairStatus:
        p = PairStatus(id=pid, url=f"http://pi.local:8080/{pid}/", local=f"/home/anna/{pid}", mode="sync",
                       interval=30, last_check=now - 5, last_result="Nothing changed.")  # fmt: skip
        for k, v in kw.items():
            setattr(p, k, v)
        return p

    g = Progress(files_total=3, files_done=1, bytes_total=3000)
    g.add_bytes(500)
    held = [{"path": "Photos/beach.jpg", "where": "here"}, {"path": "letter.odt", "where": "server"}]
    errors = [{"path": "(deletions)", "error": w, "fix": fixes, "files": held, "can_accept": True, "can_restore": True}
              for w, (_, fixes) in zip(LIBRARY[:4], FIXES[:4], strict=True)]
    return [
        ("error", [pair("Photos", fatal={"error": LIBRARY[-1], "fix": FIXES[-1][1]})]),
        ("offline", [pair("Photos", offline_since=now - 60, next_retry=now + 30, last_run_failed=True,
                          last_result=f"Could not reach the server: {LIBRARY[-1]}"), pair("Music")]),  # fmt: skip
        ("attention", [pair("Photos", errors=errors, counts={k.value: 1 for k in Kind},
                            conflicts=[{"path": "holiday.jpg", "local_copy": "holiday.sync-conflict-1.jpg",
                                        "reason": LIBRARY[5]}],
                            skipped=[{"path": "a:b.txt", "reason": "the name is not allowed on Windows"}],
                            recent=[{"time": now, "what": "kept", "path": "x.txt", "note": LIBRARY[4]}])]),
        ("syncing", [pair("Photos", progress=g), pair("Music", deferred=["film.mp4"]),
                     pair("Docs", uploading=[{"path": "letter.odt", "since": now}])]),
        ("paused", [pair("Photos", paused=True, pair_paused=True, deferred=["film.mp4"])]),
        ("stale", [pair("Photos", last_check=now - 3600)]),
        ("checking", [pair("Photos", last_check=None, running=True)]),
        ("ok", [pair("Photos"), pair("Music")]),
    ]


def test_no_jargon_in_any_rendered_state(start_app, chromium) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    running = start_app()
    driver = chromium
    driver.get(running.dash.login_url())
    wait_until(lambda: driver.find_element(By.ID, "overall").get_attribute("data-state") == "empty", 15, "the page")
    csrf = driver.execute_script("return csrf")
    # The app's own live updates would re-render its real (empty) state between our renders.
    driver.execute_script("source.onmessage = null; source.close();")
    driver.find_element(By.ID, "add-open").click()  # the form's words count too
    for state, pairs in _states():
        hub = StatusHub()
        hub.set_pairs(pairs)
        snap = hub.snapshot() | {"csrf": csrf, "config_file": "/home/anna/.config/davsync/app.toml"}
        for view in snap["pairs"]:
            view["settings"] = {}
        assert snap["overall"]["state"] == state
        driver.execute_script("render(arguments[0]);"
                              "document.querySelectorAll('details').forEach((d) => { d.open = true; });", snap)  # fmt: skip
        wait_until(lambda: driver.find_element(By.ID, "overall").get_attribute("data-state") == state, 5, state)  # noqa: B023
        text = driver.find_element(By.TAG_NAME, "body").text
        assert len(driver.find_elements(By.CSS_SELECTOR, ".pair")) == len(pairs)
        if state == "attention":  # the held deletions are listed, with where they would have gone
            assert "Photos/beach.jpg (on this PC)" in text and "letter.odt (on the server)" in text
            assert "This is right, go ahead" in text and "Restore them" in text
        found = FORBIDDEN.findall(text)
        assert not found, f"{state}: {found} in\n{text}"
