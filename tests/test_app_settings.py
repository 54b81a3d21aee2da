"""Settings are checked before they are saved: a folder inside (or around) another pair's folder, the
same folder twice, a wrong password in Settings, an unreachable server: refused with the reason,
and nothing changes."""

from __future__ import annotations

import tomllib
from pathlib import Path

from apphelp import MemoryKeyring, memory_keyring, start_app  # noqa: F401  (fixtures)
from conftest import PASSWORDS, free_port, wait_until


def form(url: str, dest: Path, **kw: object) -> dict[str, object]:
    return {"url": url, "user": "alice", "password": PASSWORDS["alice"], "local": str(dest), "mode": "pull",
            "interval": "0.5", "save": True, **kw}  # fmt: skip


def test_folders_of_two_pairs_may_not_overlap(share, start_app, memory_keyring, tmp_path: Path) -> None:
    running = start_app()
    c = running.client()
    dest = tmp_path / "Pi"
    assert c.post("/api/pairs", form(share.url, dest)).json()["saved"] is True
    before = running.config_file.read_text()
    other = share.url + "sub/"  # another share: still the same folder must not be synced twice
    for local, why in ((dest, "already synced"), (dest / "Photos", "inside"), (tmp_path, "does not contain it")):
        r = c.post("/api/pairs", form(other, local))
        assert r.status_code == 409, (local, r.text)
        error = r.json()["error"]
        assert why in error and str(dest) in error and "choose" in error, error
    assert running.config_file.read_text() == before
    assert len(running.state()["pairs"]) == 1
    # a sibling folder is fine to check
    r = c.post("/api/pairs", form(share.url, tmp_path / "Other", save=False))
    assert r.status_code == 200 and all(ch["ok"] for ch in r.json()["checks"])


def test_an_unreachable_server_is_refused_when_adding(start_app, memory_keyring, tmp_path: Path) -> None:
    running = start_app()
    r = running.client().post("/api/pairs", form(f"http://127.0.0.1:{free_port()}/", tmp_path / "m")).json()
    assert r["saved"] is False
    failed = [ch for ch in r["checks"] if ch["required"] and not ch["ok"]]
    assert failed and "nothing is listening" in failed[0]["detail"]
    assert not running.config_file.exists()


def test_a_wrong_password_in_settings_is_refused(share, start_app, memory_keyring: MemoryKeyring,
                                                 tmp_path: Path) -> None:  # fmt: skip
    running = start_app()
    c = running.client()
    assert c.post("/api/pairs", form(share.url, tmp_path / "m")).json()["saved"] is True
    wait_until(lambda: running.state()["overall"]["state"] == "ok", 20, "Up to date")
    pid = running.pair()["id"]
    before = running.config_file.read_text()
    r = c.post(f"/api/pairs/{pid}/edit", {"user": "alice", "password": "not the password", "interval": "5"})
    assert r.status_code == 409 and "refused the login" in r.json()["error"], r.text
    assert "Nothing was changed" in r.json()["error"] and "--user" not in r.json()["error"]
    assert list(memory_keyring.store.values()) == [PASSWORDS["alice"]]  # the good one is kept
    assert running.config_file.read_text() == before
    # the right one is taken
    r = c.post(f"/api/pairs/{pid}/edit", {"user": "alice", "password": PASSWORDS["alice"], "interval": "5"})
    assert r.status_code == 200, r.text
    assert tomllib.loads(running.config_file.read_text())["pair"][0]["interval"] == 5


def test_settings_that_cannot_be_saved_are_refused_with_the_reason(share, start_app, memory_keyring,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    """The config file cannot be written (its temp name is taken by a folder: even root cannot write it):
    Settings say so in one sentence, and the pair keeps running as it was."""
    running = start_app()
    c = running.client()
    assert c.post("/api/pairs", form(share.url, tmp_path / "m")).json()["saved"] is True
    pid = running.pair()["id"]
    before = running.config_file.read_text()
    (running.config_file.parent / (running.config_file.name + ".tmp")).mkdir()
    r = c.post(f"/api/pairs/{pid}/edit", {"interval": "7"})
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert str(running.config_file) in error and "try again" in error and "Errno" not in error, error
    assert error.count(".") >= 1 and "\n" not in error, error
    assert running.config_file.read_text() == before
    assert running.app.config.get(pid).interval != 7  # what the dashboard shows is what is saved
    # adding says the same
    r = c.post("/api/pairs", form(share.url, tmp_path / "n"))
    assert r.status_code == 409 and str(running.config_file) in r.json()["error"], r.text


def test_removing_a_pair_when_the_config_cannot_be_saved_keeps_it_running(share, start_app, memory_keyring,
                                                                           tmp_path: Path) -> None:  # fmt: skip
    """Remove wrote the config after stopping the pair: a config that could not be written raised a
    raw OSError with the pair already stopped. It says so in one sentence, and the pair goes on."""
    running = start_app()
    c = running.client()
    assert c.post("/api/pairs", form(share.url, tmp_path / "m")).json()["saved"] is True
    pid = running.pair()["id"]
    before = running.config_file.read_text()
    (running.config_file.parent / (running.config_file.name + ".tmp")).mkdir()
    r = c.post(f"/api/pairs/{pid}/remove", {})
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert str(running.config_file) in error and "Errno" not in error and "\n" not in error, error
    assert running.config_file.read_text() == before
    assert running.app.config.get(pid) is not None and pid in running.app.runners
    assert c.post(f"/api/pairs/{pid}/sync-now", {}).status_code == 200  # still syncing
