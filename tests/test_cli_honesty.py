"""What the CLI says and exits with agrees with what it did (issue 24, "honest exits and
messages"): status answers as the command it views, counts agree, advice runs as printed.
Real `davsync` subprocesses against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import PASSWORDS, wait_until
from test_client_firsthour import tls_files  # noqa: F401, F811
from test_client_login import env_for


def davsync(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    cmd = [sys.executable, "-m", "davsync", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


def listed(out: str, label: str, path: str) -> bool:
    """Is `path` listed under the heading `label` ("label:" in a summary, "label: N" in status)?"""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line == f"{label}:" or line.startswith(f"{label}: "):
            return f"  {path}" in lines[i + 1 : i + 6]
    return False


def pushed_folder(share, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    """SRC last used with push: a.txt pushed, then extra.txt put on the server by someone else."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a1")
    r = davsync("push", share.url, str(src), "--user", "alice")
    assert r.returncode == 0, r.stdout + r.stderr
    assert share.request("PUT", "/extra.txt", data=b"the server's own").status_code == 201
    share.wait_indexed()
    return src


def test_a_server_only_file_in_a_push_folder_is_no_problem_and_status_agrees(share, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = pushed_folder(share, tmp_path)
    for delete in ([], ["--delete"]):
        push = davsync("push", share.url, str(src), "--user", "alice", *delete)
        status = davsync("status", share.url, str(src), "--user", "alice")
        assert push.returncode == status.returncode == 0, (delete, push.stdout, push.stderr, status.stdout)
        for out in (push.stdout, status.stdout):
            assert "changed on the server" not in out and "run `davsync sync" not in out, out
        assert (share.root / "extra.txt").read_bytes() == b"the server's own"  # push deletes only its own
    said = "on the server only, not deleted (push deletes only what it pushed from here)"
    for out in (push.stdout, status.stdout):
        assert out.count("extra.txt") == 1 and listed(out, said, "extra.txt"), out
    assert "In sync" in status.stdout, status.stdout


def test_status_views_a_push_delete_folder_as_push_delete_would_run(share, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = pushed_folder(share, tmp_path)
    (src / "b.txt").write_bytes(b"b1")
    r = davsync("push", share.url, str(src), "--user", "alice", "--delete")
    assert r.returncode == 0, r.stdout + r.stderr
    (src / "b.txt").unlink()  # the next push --delete deletes it on the server: status says so, exit 1
    status = davsync("status", share.url, str(src), "--user", "alice")
    assert status.returncode == 1, status.stdout + status.stderr
    assert "to delete on the server (deleted here): 1\n  b.txt" in status.stdout, status.stdout
    dry = davsync("push", share.url, str(src), "--user", "alice", "--delete", "--dry-run")
    assert "to delete on the server (deleted here): 1\n  b.txt" in dry.stdout, dry.stdout
    assert (share.root / "b.txt").exists()
    # --as push views a push as it was last run here: with --delete
    plain = davsync("status", share.url, str(src), "--user", "alice", "--as", "push")
    assert plain.returncode == 1 and "to delete on the server" in plain.stdout, plain.stdout


def test_push_says_never_pushed_for_a_file_it_never_pushed_and_its_advice_runs(share, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = pushed_folder(share, tmp_path)
    (src / "extra.txt").write_bytes(b"mine, never pushed")  # a different file of the same name here
    (src / "a.txt").write_bytes(b"a2 here")
    assert share.request("PUT", "/a.txt", data=b"a2 on the server").status_code == 204
    share.wait_indexed()
    r = davsync("push", share.url, str(src), "--user", "alice")
    status = davsync("status", share.url, str(src), "--user", "alice")
    assert r.returncode == status.returncode == 3, r.stdout + r.stderr + status.stdout
    for out in (r.stdout, status.stdout):
        assert listed(out, "changed on the server, not overwritten", "a.txt"), out
        assert listed(out, "on the server too, never pushed from here, not overwritten", "extra.txt"), out
    advice = f"run `davsync sync {share.url} {src} --user alice` to take the server's changes in"
    assert advice in r.stdout and advice in status.stdout, r.stdout + status.stdout
    # as printed, it runs: the suggested sync takes the server's changes in (both versions kept)
    followed = davsync("sync", share.url, str(src), "--user", "alice")
    assert followed.returncode == 3 and (src / "a.txt").read_bytes() == b"a2 on the server", followed.stdout


def settle(*paths: Path) -> None:
    """Age files past the two-second 'still being written' window, as a file saved a while ago."""
    old = time.time() - 10
    for p in paths:
        os.utime(p, (old, old))


def test_a_conflict_runs_first_line_counts_what_its_done_line_counts(share, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (share.root / "report.txt").write_bytes(b"v1")
    share.wait_indexed()
    dest = tmp_path / "pc"
    assert davsync("sync", share.url, str(dest), "--user", "alice").returncode == 0
    (dest / "report.txt").write_bytes(b"mine, written on the pc")
    (dest / "new-here.txt").write_bytes(b"new here")
    settle(dest / "report.txt", dest / "new-here.txt")
    assert share.request("PUT", "/report.txt", data=b"theirs, from a phone").status_code == 204
    assert share.request("PUT", "/new-there.txt", data=b"new on the server").status_code == 201
    share.wait_indexed()
    r = davsync("sync", share.url, str(dest), "--user", "alice")
    assert r.returncode == 3, r.stdout + r.stderr
    first = re.search(r"^Transferring (\d+) files, (.+)$", r.stdout, re.M)
    done = re.search(r"^Done: (\d+) downloaded \((.+?)\), (\d+) uploaded \((.+?)\), 1 conflict", r.stdout, re.M)
    assert first and done, r.stdout
    assert int(first[1]) == int(done[1]) + int(done[3]) == 4, r.stdout  # the conflict copy's upload too
    total = len(b"theirs, from a phone" + b"new on the server" + b"mine, written on the pc" + b"new here")
    assert first[2] == f"{total} B" and int(done[2].split()[0]) + int(done[4].split()[0]) == total, r.stdout


def deleted_folders_on_the_server(share, dest: Path, command: str) -> None:  # type: ignore[no-untyped-def]
    """16 files tracked in DEST; the server loses 9 of them in 5 folders: more than 50% is 8."""
    for i in range(7):
        (share.root / f"top{i}.txt").write_bytes(b"top")
    for d, n in (("d1", 2), ("d2", 2), ("d3", 2), ("d4", 2), ("d5", 1)):
        (share.root / d).mkdir()
        for i in range(n):
            (share.root / d / f"f{i}.txt").write_bytes(b"inside")
    share.wait_indexed()
    r = davsync(command, share.url, str(dest), "--user", "alice", *(["--delete"] if command == "pull" else []))
    assert r.returncode == 0, r.stdout + r.stderr
    for d in ("d1", "d2", "d3", "d4", "d5"):
        shutil.rmtree(share.root / d)
    share.wait_indexed()


ADVICE = "Check these deletions; if they are meant, run again with --max-delete 100% (or --max-delete 9)."


def test_refused_deletions_are_counted_alike_in_status_json_and_the_warning(share, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dest = tmp_path / "pc"
    deleted_folders_on_the_server(share, dest, "sync")
    status = davsync("status", share.url, str(dest), "--user", "alice")
    data = json.loads(davsync("status", share.url, str(dest), "--user", "alice", "--json").stdout)
    assert status.returncode == 3 and data["exit_code"] == 3, status.stdout + status.stderr
    assert "warning: Deletions refused: 9 local files would go, more than --max-delete 8." in status.stdout
    assert "deleted on the server, kept here: 9 files and 5 folders\n" in status.stdout, status.stdout
    assert data["refused_deletions"] == 9 and data["refused_folders"] == 5, data
    assert ADVICE in status.stdout, status.stdout
    r = davsync("sync", share.url, str(dest), "--user", "alice")
    assert r.returncode == 3 and ADVICE in r.stdout, r.stdout
    assert "9 files and 5 folders deleted on the server but kept here." in r.stdout, r.stdout


def test_pulls_guard_gives_the_same_advice_as_syncs(share, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dest = tmp_path / "pc"
    deleted_folders_on_the_server(share, dest, "pull")
    r = davsync("pull", share.url, str(dest), "--user", "alice", "--delete")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "warning: Deletions refused: 9 files would go, more than --max-delete 8." in r.stdout, r.stdout
    assert ADVICE in r.stdout, r.stdout
    data = json.loads(davsync("pull", share.url, str(dest), "--user", "alice", "--delete", "--json").stdout)
    assert data["refused_deletions"] == 9, data
    follow = davsync("pull", share.url, str(dest), "--user", "alice", "--delete", "--max-delete", "100%")
    assert follow.returncode == 0 and not (dest / "d1").exists(), follow.stdout  # the advice, as printed, works


def test_a_dry_run_says_it_is_one(share, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (share.root / "s.txt").write_bytes(b"on the server")
    share.wait_indexed()
    src = tmp_path / "src"
    src.mkdir()
    (src / "up.txt").write_bytes(b"here")
    settle(src / "up.txt")
    for command, folder in (("pull", tmp_path / "pc"), ("sync", tmp_path / "pc2"), ("push", src)):
        r = davsync(command, share.url, str(folder), "--user", "alice", "--dry-run")
        assert r.returncode == 0 and r.stdout.splitlines()[-1] == "Dry run: nothing was changed.", (command, r.stdout)
        data = json.loads(davsync(command, share.url, str(folder), "--user", "alice", "-n", "--json").stdout)
        assert data["dry_run"] is True, data
    assert not (tmp_path / "pc" / "s.txt").exists() and not (share.root / "up.txt").exists()
    real = json.loads(davsync("push", share.url, str(src), "--user", "alice", "--json").stdout)
    assert real["dry_run"] is False and (share.root / "up.txt").exists(), real
    nothing = davsync("push", share.url, str(src), "--user", "alice", "--dry-run")
    assert nothing.stdout.splitlines()[-1] == "Dry run: nothing was changed.", nothing.stdout


def in_tokyo(*args: str) -> subprocess.CompletedProcess[str]:
    """A davsync command on a machine whose clock is at UTC+9 (a POSIX TZ rule: no tzdata needed)."""
    env = {**os.environ, "TZ": "XYZ-9"}
    return subprocess.run([sys.executable, "-m", "davsync", *args], capture_output=True, text=True, timeout=120, env=env)


def shown_at_plus_9(utc: datetime, seconds: bool) -> str:
    local = utc.astimezone(timezone(timedelta(hours=9)))
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + " (UTC+09:00)"


def test_every_time_the_cli_prints_names_its_zone(share, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert share.request("PUT", "/d.txt", data=b"1").status_code == 201
    assert share.request("DELETE", "/d.txt").status_code == 204
    state = ["--state-dir", str(share.state_dir)]
    (kept,) = json.loads(in_tokyo("versions", "list", *state, "--json").stdout)["versions"]
    table = in_tokyo("versions", "list", *state)
    assert table.returncode == 0, table.stdout + table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("d.txt"))
    set_aside = datetime.fromisoformat(kept["time"].replace("Z", "+00:00"))
    assert shown_at_plus_9(set_aside, seconds=True) in row, (row, kept["time"])

    made = in_tokyo("share", "create", "", "--read-only", "--expires", "2d", *state)
    assert made.returncode == 0, made.stdout + made.stderr
    (link,) = json.loads(in_tokyo("share", "list", *state, "--json").stdout)
    expires = datetime.fromtimestamp(link["expires"], UTC)
    listed = in_tokyo("share", "list", *state)
    assert shown_at_plus_9(expires, seconds=False) in listed.stdout, listed.stdout
    assert f"(expires {shown_at_plus_9(expires, seconds=False)})" in made.stdout, made.stdout
    # a watch's lines start with the time of day: its first line says the zone; a log file's header too
    log = tmp_path / "watch.log"
    env = {**os.environ, "TZ": "XYZ-9", "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    cmd = [sys.executable, "-m", "davsync", "watch", share.url, str(tmp_path / "pc"), "--user", "alice",
           "--log-file", str(log)]  # fmt: skip
    watch = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: log.is_file() and "watching" in log.read_text(), 60, "the watch's first line")
    finally:
        watch.terminate()
        watch.wait(timeout=30)
    text = log.read_text()
    assert re.search(r"^--- \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(UTC\+09:00\) davsync watch", text, re.M), text
    assert "(Ctrl-C to stop; times are UTC+09:00)" in text, text


def test_the_login_hint_carries_the_tls_option_given(start_share, tls_files: dict[str, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    pytest.importorskip("keyrings.alt", reason="keyrings.alt is in the test extras")
    tls = start_share(tmp_path / "tls-root", state_dir=tmp_path / "s2", tls_cert=tls_files["server"],
                      tls_key=tls_files["server_key"])  # fmt: skip
    cert = str(tls_files["server"])
    env = env_for(tmp_path)
    r = subprocess.run([sys.executable, "-m", "davsync", "pull", tls.url, str(tmp_path / "m"), "-u", "alice",
                        "--ca-cert", cert], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                       timeout=120)  # fmt: skip
    hint = f"run `davsync login {tls.url} --user alice --ca-cert {cert}` once"
    assert r.returncode == 2 and hint in r.stderr, r.stderr
    printed = hint.split("`")[1].split()[1:]  # as printed, it runs (the password from the variable)
    login = subprocess.run([sys.executable, "-m", "davsync", *printed], capture_output=True, text=True,
                           env={**env, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}, timeout=120)  # fmt: skip
    assert login.returncode == 0, login.stderr
