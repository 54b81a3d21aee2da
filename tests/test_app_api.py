"""`davsync app` without a browser: the overall state, the token and CSRF gates, the JSON API
against a real server and real folders, the config file, autostart and the tray's icons."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests
from apphelp import MemoryKeyring, memory_keyring, start_app  # noqa: F401  (fixtures)
from conftest import PASSWORDS, wait_until

from davsync.app import autostart
from davsync.app.config import AppConfig, ConfigError, FolderPair
from davsync.app.status import PairStatus, Progress, overall
from davsync.app.tray import ICONS, draw, icon_for
from davsync.client import credentials

NOW = 1_800_000_000.0


# --- the overall state: pure ----------------------------------------------------------


def ok_pair(pid: str = "a", **kw: object) -> PairStatus:
    p = PairStatus(id=pid, interval=30, last_check=NOW - 5, last_result="Nothing changed.")
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def test_overall_is_green_only_when_every_pair_is_fine() -> None:
    assert overall([ok_pair("a"), ok_pair("b")], NOW, False)["state"] == "ok"
    assert overall([], NOW, False)["state"] == "empty"
    # never green with a conflict, an error, a skipped name, a stopped pair or a failed run
    conflict = {"path": "x", "local_copy": "x.sync-conflict-1"}
    assert overall([ok_pair(), ok_pair("b", conflicts=[conflict])], NOW, False)["state"] == "attention"
    assert overall([ok_pair(errors=[{"path": "x", "error": "e", "fix": "f"}])], NOW, False)["label"] == "Needs attention (1)"
    assert overall([ok_pair(skipped=[{"path": "a:b", "reason": "r"}])], NOW, False)["state"] == "attention"
    assert overall([ok_pair(fatal={"error": "login refused", "fix": "f"})], NOW, False)["state"] == "error"
    assert overall([ok_pair(last_run_failed=True)], NOW, False)["state"] == "attention"
    # never green when the last good check is older than twice the interval
    assert overall([ok_pair(last_check=NOW - 61)], NOW, False)["state"] == "stale"
    assert overall([ok_pair(last_check=NOW - 59)], NOW, False)["state"] == "ok"
    assert overall([ok_pair(last_check=NOW - 61, running=True)], NOW, False)["state"] == "checking"
    # never green before the first check
    assert overall([ok_pair(last_check=None)], NOW, False)["state"] == "checking"


def test_overall_offline_paused_and_syncing() -> None:
    off = ok_pair(offline_since=NOW - 100, next_retry=NOW + 20, last_run_failed=True)
    o = overall([off, ok_pair("b")], NOW, False)
    assert o["state"] == "offline" and o["since"] == NOW - 100 and o["next_retry"] == NOW + 20
    assert overall([ok_pair(paused=True), ok_pair("b")], NOW, False)["state"] == "paused"
    progress = Progress(files_total=4, files_done=1, bytes_total=4000)
    progress.add_bytes(0, 100.0)
    progress.add_bytes(1000, 101.0)
    o = overall([ok_pair(progress=progress), ok_pair("b", skipped=[{"path": "x", "reason": "r"}])], NOW, False)
    assert o["state"] == "attention"  # a person's choice outranks a transfer (one order: see test_app_state)
    o = overall([ok_pair(progress=progress), ok_pair("b")], NOW, False)
    assert o["state"] == "syncing" and o["label"] == "Syncing 1 of 4 files"
    assert o["bytes_done"] == 1000 and o["bytes_total"] == 4000
    # a paused pair never hides one that needs a person
    assert overall([ok_pair(paused=True), ok_pair("b", errors=[{"path": "x", "error": "e", "fix": "f"}])], NOW,
                   False)["state"] == "attention"  # fmt: skip


# --- the gates: token, host, CSRF --------------------------------------------------------


def test_every_request_needs_the_token(start_app) -> None:
    running = start_app()
    base = running.base
    for path in ("/", "/app.js", "/api/state", "/api/events", "/api/pairs/x/trash"):
        r = requests.get(base + path, timeout=10)
        assert r.status_code == 403, path
        assert "access token" in r.text
    assert requests.get(base + "/?token=wrong", timeout=10).status_code == 403
    assert requests.get(base + "/", cookies={running.dash.cookie: "wrong"}, timeout=10).status_code == 403
    assert requests.post(base + "/api/pause", json={}, timeout=10).status_code == 403
    # the printed URL sets the cookie and drops the token from the address
    r = requests.get(running.dash.login_url(), allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == "/"
    assert "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Strict" in r.headers["Set-Cookie"]
    s = requests.Session()
    assert s.get(running.dash.login_url(), timeout=10).status_code == 200
    assert "Add a folder pair" in s.get(base + "/", timeout=10).text
    # DNS rebinding: a foreign Host header is refused even with the cookie
    r = s.get(base + "/api/state", headers={"Host": f"evil.example:{running.dash.port}"}, timeout=10)
    assert r.status_code == 403
    s.close()


def test_posts_need_the_csrf_token(start_app) -> None:
    running = start_app()
    c = running.client()
    for headers in ({}, {"X-CSRF-Token": "wrong"}):
        r = c.session.post(running.base + "/api/pause", json={}, headers=headers, timeout=10)
        assert r.status_code == 403 and "CSRF" in r.json()["error"]
    assert not running.app.all_paused.is_set()
    assert c.post("/api/pause").status_code == 200
    assert running.app.all_paused.is_set() and running.state()["overall"]["state"] == "empty"
    assert c.post("/api/resume").status_code == 200 and not running.app.all_paused.is_set()
    r = c.session.post(running.base + "/api/pause", data="not json", timeout=10,
                       headers={"X-CSRF-Token": c.csrf, "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    assert c.post("/api/nothing").status_code == 404
    assert not running.app.quit.is_set()
    assert c.post("/api/quit").status_code == 200 and running.app.quit.is_set()


# --- with a real server ------------------------------------------------------------------


def add_form(share, dest: Path, **kw: object) -> dict[str, object]:
    return {"url": share.url, "user": "alice", "password": PASSWORDS["alice"], "local": str(dest),
            "mode": "pull", "interval": "0.5", **kw}  # fmt: skip


def test_add_a_pair_checks_then_saves_and_syncs(share, start_app, memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    (share.root / "docs").mkdir()
    (share.root / "docs" / "a.txt").write_bytes(b"alpha")
    share.wait_indexed()
    running = start_app()
    c = running.client()
    dest = tmp_path / "mirror"

    # a wrong password: the checks fail, nothing is saved
    r = c.post("/api/pairs", add_form(share, dest, password="wrong", save=True)).json()
    assert r["saved"] is False
    failed = [ch for ch in r["checks"] if not ch["ok"]]
    assert failed and failed[0]["required"] and "refused the login" in failed[0]["detail"]
    assert not running.config_file.exists() and not memory_keyring.store

    # check only: everything passes, still nothing saved
    r = c.post("/api/pairs", add_form(share, dest)).json()
    assert r["saved"] is False and all(ch["ok"] for ch in r["checks"]), r["checks"]
    assert {ch["name"] for ch in r["checks"]} >= {"authentication", "checksums (oc:checksums)", "local folder"}

    r = c.post("/api/pairs", add_form(share, dest, save=True)).json()
    assert r["saved"] is True
    saved = tomllib.loads(running.config_file.read_text())["pair"]
    assert saved[0]["url"] == share.url and saved[0]["user"] == "alice"
    assert PASSWORDS["alice"] not in running.config_file.read_text()
    assert list(memory_keyring.store.values()) == [PASSWORDS["alice"]]

    wait_until(lambda: (dest / "docs" / "a.txt").exists(), 20, "the first sync")
    wait_until(lambda: running.state()["overall"]["state"] == "ok", 20, "Up to date")
    assert (dest / "docs" / "a.txt").read_bytes() == b"alpha"
    recent = running.pair()["recent"]
    assert any(e["path"] == "docs/a.txt" and e["what"] == "downloaded" for e in recent)

    # a change on the server arrives by itself
    (share.root / "docs" / "b.txt").write_bytes(b"beta")
    wait_until(lambda: (dest / "docs" / "b.txt").exists(), 20, "the change to arrive")

    # the same folder twice is refused
    r = c.post("/api/pairs", add_form(share, dest, save=True))
    assert r.status_code == 409 and "already" in r.json()["error"]


def test_an_unknown_mode_is_refused_clearly(share, start_app, memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    running = start_app()
    c = running.client()
    r = c.post("/api/pairs", add_form(share, tmp_path / "m", mode="both-ways", save=True))
    assert r.status_code == 409 and "unknown mode" in r.json()["error"]
    assert not running.config_file.exists()


def test_a_sync_pair_carries_changes_both_ways(share, start_app, memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    (share.root / "from-server.txt").write_bytes(b"server")
    share.wait_indexed()
    dest = tmp_path / "pc"
    dest.mkdir()
    (dest / "from-pc.txt").write_bytes(b"pc")
    old = time.time() - 10  # saved a while ago, not still being written
    os.utime(dest / "from-pc.txt", (old, old))
    running = start_app()
    c = running.client()
    assert c.post("/api/pairs", add_form(share, dest, mode="sync", save=True)).json()["saved"] is True
    assert tomllib.loads(running.config_file.read_text())["pair"][0]["mode"] == "sync"
    wait_until(lambda: (dest / "from-server.txt").exists() and (share.root / "from-pc.txt").exists(), 20,
               "the first two-way sync")  # fmt: skip
    wait_until(lambda: running.state()["overall"]["state"] == "ok", 20, "Up to date")
    assert (share.root / "from-pc.txt").read_bytes() == b"pc"
    assert any(e["path"] == "from-pc.txt" and e["what"] == "uploaded" for e in running.pair()["recent"])
    (dest / "later.txt").write_bytes(b"written on the pc")
    wait_until(lambda: (share.root / "later.txt").exists(), 20, "a later local file to go up")
    assert (share.root / "later.txt").read_bytes() == b"written on the pc"


def test_conflict_listed_with_both_versions_and_resolved(share, start_app, memory_keyring, tmp_path: Path) -> None:
    (share.root / "report.txt").write_bytes(b"v1")
    share.wait_indexed()
    dest = tmp_path / "mirror"
    credentials.save_password(share.url, "alice", PASSWORDS["alice"])
    running = start_app([FolderPair(share.url, str(dest), user="alice", interval=0.3)])
    c = running.client()
    wait_until(lambda: (dest / "report.txt").exists() and running.state()["overall"]["state"] == "ok", 20, "first sync")

    for round_, choice in enumerate(("mine", "theirs", "both")):
        c.post(f"/api/pairs/{running.pair()['id']}/pause")
        wait_until(lambda: running.pair()["state"] == "paused", 10, "paused")
        mine, theirs = f"mine {round_} local edit".encode(), f"theirs {round_}".encode()
        (dest / "report.txt").write_bytes(mine)
        (share.root / "report.txt").write_bytes(theirs)
        share.wait_indexed()
        c.post(f"/api/pairs/{running.pair()['id']}/resume")
        wait_until(lambda: running.pair()["conflicts"], 20, "the conflict to be listed")
        assert running.state()["overall"]["state"] == "attention"
        conflict = running.pair()["conflicts"][0]
        assert conflict["path"] == "report.txt"
        assert conflict["theirs"]["size"] == len(theirs) and conflict["mine"]["size"] == len(mine)
        assert (dest / conflict["local_copy"]).read_bytes() == mine

        # the list persists across a restart of the app's view of the pair (it is on disk)
        saved = (tmp_path / "app-state" / f"{running.pair()['id']}.json").read_text()
        assert conflict["local_copy"] in saved

        r = c.post(f"/api/pairs/{running.pair()['id']}/resolve", {"local_copy": conflict["local_copy"], "choice": choice})
        assert r.status_code == 200, r.text
        assert not running.pair()["conflicts"]
        if choice == "mine":
            assert (dest / "report.txt").read_bytes() == mine
            assert not (dest / conflict["local_copy"]).exists()
        elif choice == "theirs":
            assert (dest / "report.txt").read_bytes() == theirs
            assert not (dest / conflict["local_copy"]).exists()
        else:
            assert (dest / "report.txt").read_bytes() == theirs
            assert (dest / conflict["local_copy"]).read_bytes() == mine
            (dest / conflict["local_copy"]).unlink()
        # whatever was not kept is in the trash, restorable
        trash = c.get(f"/api/pairs/{running.pair()['id']}/trash").json()["items"]
        if choice != "both":
            assert any(it["path"].startswith("report") for it in trash)

    # restore the version "keep theirs" set aside; the name is taken, so it comes back beside it
    trash = c.get(f"/api/pairs/{running.pair()['id']}/trash").json()["items"]
    item = next(it for it in trash if it["path"].startswith("report.sync-conflict"))
    r = c.post(f"/api/pairs/{running.pair()['id']}/restore", {"item": item["id"]})
    assert r.status_code == 200 and "Restored" in r.json()["message"]
    assert (dest / item["path"]).read_bytes() == b"mine 1 local edit"
    r = c.post(f"/api/pairs/{running.pair()['id']}/restore", {"item": "../../etc/x"})
    assert r.status_code == 409
    for bad in ("../outside", "/etc", ".davsync/state.db"):
        r = c.post(f"/api/pairs/{running.pair()['id']}/open", {"path": bad})
        assert r.status_code == 409 and "inside" in r.json()["error"], bad


def test_trash_browse_and_restore(share, start_app, memory_keyring, tmp_path: Path) -> None:
    (share.root / "gone.txt").write_bytes(b"bye")
    (share.root / "stays.txt").write_bytes(b"stays")
    share.wait_indexed()
    dest = tmp_path / "mirror"
    credentials.save_password(share.url, "alice", PASSWORDS["alice"])
    running = start_app([FolderPair(share.url, str(dest), user="alice", interval=0.3, delete=True)])
    c = running.client()
    wait_until(lambda: (dest / "gone.txt").exists(), 20, "first sync")
    (share.root / "gone.txt").unlink()
    wait_until(lambda: not (dest / "gone.txt").exists(), 20, "the deletion to arrive")
    assert any(e["what"] == "moved to the trash" and e["path"] == "gone.txt" for e in running.pair()["recent"])
    items = c.get(f"/api/pairs/{running.pair()['id']}/trash").json()["items"]
    assert [it["path"] for it in items] == ["gone.txt"] and items[0]["size"] == 3
    c.post(f"/api/pairs/{running.pair()['id']}/pause")
    r = c.post(f"/api/pairs/{running.pair()['id']}/restore", {"item": items[0]["id"]})
    assert r.status_code == 200 and (dest / "gone.txt").read_bytes() == b"bye"
    assert c.get(f"/api/pairs/{running.pair()['id']}/trash").json()["items"] == []


def test_offline_then_back(serve_process, start_app, memory_keyring, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a")
    sp = serve_process(root)
    port = int(sp.url.rsplit(":", 1)[1].strip("/"))
    dest = tmp_path / "mirror"
    credentials.save_password(sp.url, "alice", PASSWORDS["alice"])
    running = start_app([FolderPair(sp.url, str(dest), user="alice", interval=0.3)])
    wait_until(lambda: running.state()["overall"]["state"] == "ok", 30, "Up to date")
    sp.stop()
    wait_until(lambda: running.state()["overall"]["state"] == "offline", 30, "Offline")
    o = running.state()["overall"]
    assert o["since"] <= time.time() and o["next_retry"] > o["since"]
    assert "cannot reach" in running.pair()["last_result"]
    (root / "b.txt").write_bytes(b"b")
    serve_process(root, port=port)
    running.app.sync_now()
    wait_until(lambda: (dest / "b.txt").exists(), 30, "the file after the server came back")
    wait_until(lambda: running.state()["overall"]["state"] == "ok", 30, "Up to date again")


# --- the config file ----------------------------------------------------------------------


def test_config_round_trip_and_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    cfg = AppConfig(path)
    cfg.upsert(FolderPair("http://127.0.0.1:1/", str(tmp_path / 'Mirror "quoted"'), user="me", excludes=("*.tmp",)))
    again = AppConfig.load(path)
    assert again.pairs == cfg.pairs and again.pairs[0].excludes == ("*.tmp",)
    path.write_text("[[pair]]\nurl = 'ftp://x/'\nlocal = '/tmp/x'\n")
    with pytest.raises(ConfigError, match="pair 1: the server URL"):
        AppConfig.load(path)
    path.write_text("[[pair]]\nurl = 'http://x/'\nlocal = 'relative'\n")
    with pytest.raises(ConfigError, match="full path"):
        AppConfig.load(path)
    path.write_text("[[pair]]\nurl = 'http://x/'\nlocal = '/tmp/x'\ncolour = 'red'\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        AppConfig.load(path)
    path.write_text("[[pair\n")
    r = subprocess.run([sys.executable, "-m", "davsync", "app", "--config", str(path), "--no-browser", "--no-tray"],
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "not valid TOML" in r.stderr and "Traceback" not in r.stderr


def test_app_command_prints_the_url_and_quits_on_signal(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg"), "XDG_STATE_HOME": str(tmp_path / "st")}
    env.pop("DISPLAY", None)
    proc = subprocess.Popen([sys.executable, "-m", "davsync", "app", "--no-browser"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        while not any("No tray icon" in line for line in lines):
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        url = next(line.strip() for line in lines if "code=" in line)
        assert url.startswith("http://127.0.0.1:")
        assert requests.get(url.split("?")[0], timeout=10).status_code == 403
        assert requests.get(url, timeout=10).status_code == 200
        assert "No tray icon (no graphical display)" in lines[-1]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "Stopping" in out


def test_install_autostart_writes_an_xdg_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if sys.platform in ("win32", "darwin"):
        pytest.skip("the XDG autostart entry is the Linux form")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "davsync", "app", "--install-autostart", "--config", str(tmp_path / "c.toml")],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)})  # fmt: skip
    assert r.returncode == 0, r.stderr
    entry = tmp_path / "autostart" / "davsync-app.desktop"
    text = entry.read_text()
    assert f"Exec={sys.executable} -m davsync app --no-browser --config {tmp_path / 'c.toml'}" in text
    assert "Terminal=false" in text
    assert "no longer starts" in autostart.uninstall() and not entry.exists()


# --- the tray -------------------------------------------------------------------------------


def test_tray_icon_for_each_state() -> None:
    states = ("ok", "syncing", "error", "attention", "offline", "stale", "paused", "checking", "empty")
    assert set(ICONS) == set(states)
    assert [s for s in states if icon_for(s).green] == ["ok"]
    assert icon_for("something new").green is False
    assert icon_for("ok").color != icon_for("attention").color != icon_for("syncing").color
    assert len({icon_for(s).glyph for s in ("ok", "syncing", "attention", "offline", "paused")}) == 5
    for s in states:
        img = draw(icon_for(s), 64)
        assert img.size == (64, 64)
        # the disc's colour is the state's: sample near the rim, away from the glyph
        r, g, b, a = img.getpixel((32, 6))
        assert a == 255 and f"#{r:02x}{g:02x}{b:02x}" == icon_for(s).color


def test_events_push_changes_and_overdue_checks(start_app) -> None:
    """SSE sends the state on every change, and also when time alone makes a check overdue."""
    import json

    running = start_app()
    c = running.client()
    running.app.hub.add(PairStatus(id="x", interval=0.5, last_check=time.time(), last_result="Nothing changed."))
    states: list[str] = []
    with c.session.get(running.base + "/api/events", stream=True, timeout=30) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        for line in r.iter_lines(chunk_size=1):  # events are small; do not wait for a full buffer
            if line.startswith(b"data: "):
                states.append(json.loads(line[6:])["overall"]["state"])
                if states[-1] == "stale":
                    break
    assert states[0] == "ok" and states[-1] == "stale"  # no writer touched the hub in between


def test_edit_and_remove_a_pair(share, start_app, memory_keyring: MemoryKeyring, tmp_path: Path) -> None:
    (share.root / "a.txt").write_bytes(b"a")
    (share.root / "b.tmp").write_bytes(b"b")
    share.wait_indexed()
    dest = tmp_path / "mirror"
    credentials.save_password(share.url, "alice", "an old password")
    running = start_app([FolderPair(share.url, str(dest), user="alice", interval=0.3)])
    c = running.client()
    wait_until(lambda: running.state()["overall"]["state"] == "error", 20, "the refused login to stop the pair")
    assert "Edit this folder pair" in running.pair()["fatal"]["fix"]
    pid = running.pair()["id"]

    # a new password and an exclusion, from the Settings form
    r = c.post(f"/api/pairs/{pid}/edit", {"password": PASSWORDS["alice"], "excludes": "*.tmp", "interval": "0.4",
                                          "url": "http://elsewhere/"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert credentials.load_password(share.url, "alice") == PASSWORDS["alice"]
    saved = AppConfig.load(running.config_file).pairs[0]
    assert saved.excludes == ("*.tmp",) and saved.interval == 0.4 and saved.url == share.url  # the URL stays
    wait_until(lambda: running.state()["overall"]["state"] == "ok", 20, "Up to date with the new password")
    assert (dest / "a.txt").exists() and not (dest / "b.tmp").exists()
    assert c.post(f"/api/pairs/{pid}/edit", {"interval": "fast"}).status_code == 409

    # removing stops syncing and forgets the password; the files stay
    assert c.post(f"/api/pairs/{pid}/remove").status_code == 200
    assert running.state()["pairs"] == [] and AppConfig.load(running.config_file).pairs == []
    assert credentials.load_password(share.url, "alice") is None
    (share.root / "c.txt").write_bytes(b"c")
    assert (dest / "a.txt").read_bytes() == b"a"
    stays = time.monotonic() + 1.5
    while time.monotonic() < stays:
        assert not (dest / "c.txt").exists()
        time.sleep(0.05)
    assert c.post(f"/api/pairs/{pid}/pause").status_code == 409


def test_a_pair_without_a_stored_password_says_so(share, start_app, memory_keyring, tmp_path: Path) -> None:
    running = start_app([FolderPair(share.url, str(tmp_path / "m"), user="alice", interval=0.3)])
    wait_until(lambda: running.pair()["fatal"] is not None, 10, "the missing password")
    assert "no password for user 'alice'" in running.pair()["fatal"]["error"]
    assert "Settings" in running.pair()["fatal"]["fix"]
    assert running.state()["overall"]["state"] == "error" and not (tmp_path / "m").exists()
    c = running.client()
    assert c.post(f"/api/pairs/{running.pair()['id']}/edit", {"password": PASSWORDS["alice"]}).status_code == 200
    wait_until(lambda: running.state()["overall"]["state"] == "ok", 20, "Up to date once the password is there")


def test_a_hand_edit_of_the_config_is_picked_up(share, start_app, tmp_path: Path) -> None:
    (share.root / "a.txt").write_bytes(b"a")
    share.wait_indexed()
    running = start_app()
    assert running.app.reload_if_changed() is False
    first, second = tmp_path / "first", tmp_path / "second"
    running.config_file.write_text(f'[[pair]]\nurl = "{share.url}"\nlocal = "{first}"\ninterval = 0.3\n'
                                   f'[[pair]]\nurl = "{share.url}"\nlocal = "{second}"\ninterval = 0.3\n'
                                   f'[[pair]]\nurl = "{share.url}"\nlocal = "{tmp_path / "x"}"\nmode = "sync"\n')  # fmt: skip
    assert running.app.reload_if_changed() is True
    assert len(running.state()["pairs"]) == 3
    # alice's share needs a login: both pull pairs run and say so; the sync pair is refused
    wait_until(lambda: all(p["fatal"] for p in running.state()["pairs"]), 20, "every pair to run")
    keep = running.state()["pairs"][0]["id"]
    running.config_file.write_text("[[pair]\n")
    assert running.app.reload_if_changed() is False
    notice = running.state()["notice"]
    assert "not valid TOML" in notice and "keep running" in notice and len(running.state()["pairs"]) == 3
    running.config_file.write_text(f'[[pair]]\nurl = "{share.url}"\nlocal = "{first}"\ninterval = 0.3\n')
    assert running.app.reload_if_changed() is True
    assert [p["id"] for p in running.state()["pairs"]] == [keep] and running.state()["notice"] == ""
    assert set(running.app.runners) == {keep}


def test_no_credential_store_means_nothing_saved(share, start_app, tmp_path: Path) -> None:
    import keyring
    from keyring.backends.fail import Keyring as NoKeyring

    before = keyring.get_keyring()
    keyring.set_keyring(NoKeyring())
    try:
        running = start_app()
        c = running.client()
        r = c.post("/api/pairs", add_form(share, tmp_path / "m", save=True))
        assert r.status_code == 409 and "password store" in r.json()["error"]
        assert not running.config_file.exists() and running.state()["pairs"] == []
    finally:
        keyring.set_keyring(before)


def test_needs_attention_survives_a_restart(share, start_app, memory_keyring, tmp_path: Path) -> None:
    (share.root / "r.txt").write_bytes(b"v1")
    share.wait_indexed()
    dest = tmp_path / "mirror"
    credentials.save_password(share.url, "alice", PASSWORDS["alice"])
    pair = FolderPair(share.url, str(dest), user="alice", interval=0.3)
    running = start_app([pair])
    wait_until(lambda: (dest / "r.txt").exists(), 20, "first sync")
    running.app.set_paused(True)
    (dest / "r.txt").write_bytes(b"mine")
    (share.root / "r.txt").write_bytes(b"theirs!")
    share.wait_indexed()
    running.app.set_paused(False)
    wait_until(lambda: running.pair()["conflicts"], 20, "the conflict")
    running.app.stop()
    running.dash.stop()

    again = start_app()  # same config file and state dir: a restart of the app
    p = again.pair()
    assert [c["path"] for c in p["conflicts"]] == ["r.txt"]  # no run reports it again: it was kept
    assert again.state()["overall"]["state"] == "attention"


def test_skipped_names_are_listed_with_the_reason(share, start_app, memory_keyring, tmp_path: Path) -> None:
    (share.root / ".davsync").mkdir()
    (share.root / ".davsync" / "state.db").write_bytes(b"not ours")
    (share.root / "ok.txt").write_bytes(b"ok")
    share.wait_indexed()
    dest = tmp_path / "mirror"
    credentials.save_password(share.url, "alice", PASSWORDS["alice"])
    running = start_app([FolderPair(share.url, str(dest), user="alice", interval=0.3)])
    wait_until(lambda: running.pair()["skipped"], 20, "the skipped name")
    assert (dest / "ok.txt").read_bytes() == b"ok"
    skipped = running.pair()["skipped"]
    assert ".davsync" in [s["path"] for s in skipped] and all("reserved" in s["reason"] for s in skipped)
    assert running.state()["overall"]["state"] == "attention"  # never green while a name is skipped
    assert not (dest / ".davsync" / "state.db").read_bytes() == b"not ours"


def test_a_mode_plugs_in_and_a_crash_in_it_is_contained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The runner takes any mode from MODES (as two-way sync will be added); a bug in a run is
    shown as Needs attention and the loop goes on."""
    import threading

    from davsync.app.runner import MODES, PairRunner, RunOutcome
    from davsync.app.status import StatusHub

    runs: list[int] = []

    class Flaky:
        def __init__(self, pair: FolderPair, password: str | None, reporter: object) -> None:
            self.pair = pair

        def run_once(self) -> RunOutcome:
            runs.append(1)
            if len(runs) == 1:
                raise RuntimeError("boom")
            return RunOutcome(summary="Nothing changed.", counts={"download": 0})

        def stop(self) -> None: ...

        def close(self) -> None: ...

    monkeypatch.setitem(MODES, "flaky", Flaky)
    hub = StatusHub()
    pair = FolderPair("http://127.0.0.1:9/", str(tmp_path / "m"), mode="flaky", interval=0.2, id="p")
    hub.add(PairStatus(id="p", interval=0.2))
    runner = PairRunner(pair, hub, tmp_path / "state", lambda p: None, threading.Event())
    runner.start()
    try:
        wait_until(lambda: (hub.pair("p").fatal or {}).get("error", "").startswith("internal error (RuntimeError: boom)"),
                   10, "the contained crash")  # fmt: skip
        assert hub.overall()["state"] == "error"
        wait_until(lambda: hub.pair("p").last_check is not None, 10, "the next run")
        assert hub.pair("p").fatal is None and hub.overall()["state"] == "ok"
    finally:
        runner.stop()
