"""`davsync pull` and `davsync status` against a real `davsync serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from brokered import relay
from conftest import PASSWORDS, kill_hard, shown, wait_until
from davhelp import WEIRD_NAMES
from proxy import Faults

from davsync.client.engine import RunOptions, run_once
from davsync.client.paths import name_problem
from davsync.client.transport import ConnectionSettings
from davsync.server.names import is_internal_name


def pull_cli(url: str, dest: Path, *args: str, user: str = "alice", timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS[user]}
    cmd = [sys.executable, "-m", "davsync", "pull", url, str(dest), "--user", user, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def pull_json(url: str, dest: Path, *args: str) -> tuple[int, dict]:
    r = pull_cli(url, dest, "--json", *args)
    try:
        return r.returncode, json.loads(r.stdout)
    except ValueError:
        raise AssertionError(f"no JSON: {r.stdout}\n{r.stderr}") from None


def conn(share, **kw) -> ConnectionSettings:  # type: ignore[no-untyped-def]
    return ConnectionSettings(share.url, "alice", PASSWORDS["alice"], **kw)


def tree(root: Path) -> dict[str, bytes | None]:
    """Relative path -> content (None for folders), ignoring davsync's own state."""
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.split("/")[0] == ".davsync" or is_internal_name(p.name):
            continue
        out[rel] = None if p.is_dir() else p.read_bytes()
    return out


# Windows cannot hold `what?.txt`: there the mirror tests use the names it can (skipping the others
# is tested in test_pull_hostile.py and, on real NTFS, test_client_volumes.py).
MIRROR_NAMES = [n for n in WEIRD_NAMES if sys.platform != "win32" or name_problem(n, "windows") is None]


def make_source(root: Path) -> None:
    (root / "empty folder").mkdir(parents=True)
    (root / "deep" / "er" / "est").mkdir(parents=True)
    for i, name in enumerate(MIRROR_NAMES):
        folder = root if i % 2 else root / "deep" / "er"
        (folder / name).write_bytes(b"" if name == "empty" else os.urandom(200 + 37 * i))
    (root / "deep" / "er" / "est" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    os.utime(root / "deep" / "er" / "est" / "big.bin", (1_600_000_000, 1_600_000_000))


def test_first_pull_is_an_exact_mirror(share, tmp_path: Path) -> None:
    make_source(share.root)
    dest = tmp_path / "mirror"
    code, out = pull_json(share.url, dest)
    assert code == 0, out
    assert tree(dest) == tree(share.root)
    for p in share.root.rglob("*"):
        if p.is_file() and not is_internal_name(p.name):
            mirrored = dest / p.relative_to(share.root)
            assert int(mirrored.stat().st_mtime) == int(p.stat().st_mtime), p
    assert not list((dest / ".davsync" / "partial").glob("*.part"))


def test_second_pull_transfers_nothing_and_reads_no_file(share, tmp_path: Path) -> None:
    make_source(share.root)
    dest = tmp_path / "mirror"
    assert run_once(conn(share), dest, RunOptions()).exit_code == 0
    opened: list[str] = []
    prefix = str(dest)

    def audit(event: str, args: tuple) -> None:
        if event == "open" and isinstance(args[0], str) and args[0].startswith(prefix):
            rel = args[0][len(prefix) :].replace(os.sep, "/")
            synced = not rel.startswith("/.davsync/") and rel != "/.davsyncignore"
            if synced and (len(args) < 2 or "r" in str(args[1]) or args[1] is None):
                opened.append(args[0])

    sys.addaudithook(audit)
    try:
        result = run_once(conn(share), dest, RunOptions())
    finally:
        prefix = "\0never"  # the hook cannot be removed; make it inert
    assert result.exit_code == 0 and result.bytes_downloaded == 0 and not result.done.get("download")
    assert result.local_files_read == 0
    assert opened == [], opened


def test_server_side_changes_are_exactly_what_is_acted_on(share, tmp_path: Path) -> None:
    make_source(share.root)
    for i in range(30):
        (share.root / f"file{i:02}.txt").write_bytes(os.urandom(100))
    dest = tmp_path / "mirror"
    assert pull_json(share.url, dest)[0] == 0
    (share.root / "brand new.txt").write_bytes(b"new")
    same = share.root / "file05.txt"
    st = same.stat()
    same.write_bytes(os.urandom(100))  # same size...
    os.utime(same, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and mtime put back
    (share.root / "file07.txt").write_bytes(b"different size now")
    (share.root / "file09.txt").unlink()
    share.wait_indexed()  # (an incremental pull knows what the server's tracker has seen)
    code, out = pull_json(share.url, dest, "--delete")
    assert code == 0, out
    done = {kind: sorted(paths) for kind, paths in out["done"].items()}
    assert done == {"download": ["brand new.txt"], "update": ["file05.txt", "file07.txt"], "delete": ["file09.txt"]}
    assert tree(dest) == tree(share.root)
    assert (dest / ".davsync" / "trash").is_dir() and list((dest / ".davsync" / "trash").rglob("file09.txt"))


def test_conflict_keeps_local_edit_and_reports(share, tmp_path: Path) -> None:
    (share.root / "notes.txt").write_bytes(b"v1")
    dest = tmp_path / "mirror"
    assert pull_json(share.url, dest)[0] == 0
    (dest / "notes.txt").write_bytes(b"my local edit")
    (share.root / "notes.txt").write_bytes(b"v2 from the server")
    share.wait_indexed()
    code, out = pull_json(share.url, dest)
    assert code == 3, out
    assert out["conflicts"][0]["path"] == "notes.txt"
    copy = out["conflicts"][0]["local_copy"]
    assert copy.startswith("notes.sync-conflict-") and copy.endswith(".txt")
    assert (dest / copy).read_bytes() == b"my local edit"
    assert (dest / "notes.txt").read_bytes() == b"v2 from the server"


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need a privilege on Windows, and under wine they are plain files")
def test_a_file_link_in_dest_is_left_alone_and_reported(share, tmp_path: Path) -> None:
    """A symbolic link where the server has a file is the user's: never read through, set
    aside or replaced; reported as skipped (exit 3) while the rest is pulled."""
    (share.root / "notes.txt").write_bytes(b"from the server")
    (share.root / "other.txt").write_bytes(b"other")
    share.wait_indexed()
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"not davsync's")
    dest = tmp_path / "mirror"
    dest.mkdir()
    (dest / "notes.txt").symlink_to(outside)
    result = run_once(conn(share), dest, RunOptions())
    assert result.exit_code == 3 and not result.conflicts, result.as_json()
    assert [s.path for s in result.skipped] == ["notes.txt"] and "link" in result.skipped[0].reason
    assert result.local_files_read == 0  # the link's target was not read
    assert (dest / "notes.txt").is_symlink() and outside.read_bytes() == b"not davsync's"
    assert (dest / "other.txt").read_bytes() == b"other"


def test_local_edit_without_remote_change_is_left_alone(share, tmp_path: Path) -> None:
    (share.root / "a.txt").write_bytes(b"server")
    dest = tmp_path / "mirror"
    pull_json(share.url, dest)
    (dest / "a.txt").write_bytes(b"mine")
    code, out = pull_json(share.url, dest, "--full")
    assert code == 0 and out["done"] == {"locally-modified": ["a.txt"]}
    code, out = pull_json(share.url, dest)  # incremental: nothing changed on the server
    assert code == 0 and out["done"] == {}
    assert (dest / "a.txt").read_bytes() == b"mine"
    status = subprocess.run([sys.executable, "-m", "davsync", "status", share.url, str(dest), "-u", "alice"],
                            capture_output=True, text=True, env={**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]})  # fmt: skip
    assert status.returncode == 0 and "locally-modified: 1" in status.stdout and "a.txt" in status.stdout


def test_untracked_local_file_is_never_overwritten(share, tmp_path: Path) -> None:
    (share.root / "same.txt").write_bytes(b"identical")
    (share.root / "differs.txt").write_bytes(b"server version")
    dest = tmp_path / "mirror"
    dest.mkdir()
    (dest / "same.txt").write_bytes(b"identical")
    (dest / "differs.txt").write_bytes(b"my own file")
    code, out = pull_json(share.url, dest)
    assert code == 3
    assert out["done"]["adopt"] == ["same.txt"]
    kept = out["conflicts"][0]["local_copy"]
    assert (dest / kept).read_bytes() == b"my own file" and (dest / "differs.txt").read_bytes() == b"server version"


def test_deletion_guards(share, tmp_path: Path) -> None:
    for i in range(5):
        (share.root / f"f{i}").write_bytes(b"x")
    (share.root / "keep").write_bytes(b"k")
    dest = tmp_path / "mirror"
    pull_json(share.url, dest)
    # Without --delete: kept and reported. (Each disk change is awaited in the server's change
    # journal: a pull started before its tracker saw it would rightly not know of it yet.)
    (share.root / "f0").unlink()
    share.wait_indexed()
    code, out = pull_json(share.url, dest)
    assert code == 0 and out["done"] == {"deleted-remotely": ["f0"]} and (dest / "f0").exists()
    # Locally modified: never deleted.
    (dest / "f0").write_bytes(b"edited")
    code, out = pull_json(share.url, dest, "--delete")
    assert (dest / "f0").read_bytes() == b"edited" and out["done"] == {"deleted-remotely": ["f0"]}
    # More than --max-delete: all refused.
    for i in (1, 2, 3):
        (share.root / f"f{i}").unlink()
    share.wait_indexed()
    code, out = pull_json(share.url, dest, "--delete", "--max-delete", "2")
    assert "delete" not in out["done"] and all((dest / f"f{i}").exists() for i in (1, 2, 3))
    assert any("--max-delete" in w for w in out["warnings"])
    # Remote root empty while the mirror is not: refused.
    for name in shown(share.root):
        (share.root / name).unlink()
    share.wait_indexed()
    code, out = pull_json(share.url, dest, "--delete")
    assert "delete" not in out["done"] and (dest / "keep").exists()
    assert any("empty" in w for w in out["warnings"])


def test_a_folder_deleted_on_the_server_is_kept_like_its_files(share, tmp_path: Path) -> None:
    """Without --delete a folder deleted on the server (with a sub-folder and files) is kept and
    said once per path, exit 0, as for files; `status` calls that in sync; --delete removes it."""
    (share.root / "gone" / "inner").mkdir(parents=True)
    (share.root / "gone" / "f.txt").write_bytes(b"f")
    (share.root / "gone" / "inner" / "g.txt").write_bytes(b"g")
    (share.root / "stays.txt").write_bytes(b"s")
    dest = tmp_path / "mirror"
    assert pull_cli(share.url, dest).returncode == 0
    share.wait_indexed()
    assert share.request("DELETE", "/gone/").status_code in (200, 204)
    share.wait_indexed()
    kept = pull_cli(share.url, dest)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    lines = kept.stdout.splitlines()
    assert not [line for line in lines if line.startswith(("error", "warning"))], kept.stdout
    listed = [line.strip().rstrip("/") for line in lines]
    for path in ("gone", "gone/inner", "gone/f.txt", "gone/inner/g.txt"):
        assert listed.count(path) == 1, (path, kept.stdout)  # reported once, under "kept here"
    assert "kept here" in kept.stdout and "error" not in kept.stdout
    assert (dest / "gone" / "inner" / "g.txt").exists()
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    status = subprocess.run([sys.executable, "-m", "davsync", "status", share.url, str(dest), "-u", "alice"],
                            capture_output=True, text=True, env=env)  # fmt: skip
    assert status.returncode == 0 and "blocked" not in status.stdout, status.stdout
    code, out = pull_json(share.url, dest, "--delete", "--max-delete", "100%")  # (2 of 3 files: above the default)
    assert code == 0 and not (dest / "gone").exists() and (dest / "stays.txt").exists(), out


def test_deletions_skipped_when_a_listing_fails(share, tmp_path: Path, no_backoff: list[float]) -> None:
    (share.root / "ok").mkdir()
    (share.root / "ok" / "gone.txt").write_bytes(b"x")
    (share.root / "flaky").mkdir()
    (share.root / "flaky" / "y.txt").write_bytes(b"y")
    dest = tmp_path / "mirror"
    pull_json(share.url, dest)
    (share.root / "ok" / "gone.txt").unlink()
    share.wait_indexed()
    proxy = relay(share.server.port, Faults(fail_paths=("/flaky/",)))
    try:  # in-process, so the listing's retries take the injected backoff
        out = run_once(ConnectionSettings(proxy.url, "alice", PASSWORDS["alice"]), dest, RunOptions(delete=True)).as_json()
    finally:
        proxy.close()
    code = out["exit_code"]
    assert no_backoff == [0.25, 0.5, 1.0]  # the failing folder was retried by the policy
    assert code == 3 and (dest / "ok" / "gone.txt").exists() and (dest / "flaky" / "y.txt").exists()
    assert [e["path"] for e in out["errors"]] == ["flaky"]
    assert any("could not be listed" in w for w in out["warnings"])


def test_kill_9_during_large_download_then_resume(share, tmp_path: Path) -> None:
    data = os.urandom(48 * 1024 * 1024)
    (share.root / "movie.mkv").write_bytes(data)
    proxy = relay(share.server.port, Faults(rate=8 * 1024 * 1024))
    dest = tmp_path / "mirror"
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    proc = subprocess.Popen([sys.executable, "-m", "davsync", "pull", proxy.url, str(dest), "-u", "alice", "-q"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        partial = dest / ".davsync" / "partial"

        def enough() -> bool:
            return any(p.stat().st_size > 8 * 1024 * 1024 for p in partial.glob("*.part")) if partial.exists() else False

        wait_until(enough, 60, "the download to get going")
        kill_hard(proc.pid)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.close()
    assert not (dest / "movie.mkv").exists(), "a partial download was placed"
    code, out = pull_json(share.url, dest)
    assert code == 0, out
    assert 0 < out["bytes_downloaded"] < len(data)
    assert (dest / "movie.mkv").read_bytes() == data


def test_resume_starts_over_when_remote_changed(share, tmp_path: Path, no_backoff: list[float]) -> None:
    (share.root / "f.bin").write_bytes(os.urandom(6 * 1024 * 1024))  # above SMALL_FILE: resumable
    dest = tmp_path / "mirror"
    proxy = relay(share.server.port, Faults(cut_after=1024 * 1024, cuts_left=100))
    try:
        result = run_once(ConnectionSettings(proxy.url, "alice", PASSWORDS["alice"]), dest, RunOptions())
    finally:
        proxy.close()
    assert result.exit_code == 3 and list((dest / ".davsync" / "partial").glob("*.part"))
    assert no_backoff == [0.5, 1.0, 2.0, 4.0, 8.0]  # every retry of the policy, none waited for
    new = os.urandom(6 * 1024 * 1024)
    (share.root / "f.bin").write_bytes(new)
    share.wait_indexed()
    result = run_once(conn(share), dest, RunOptions())
    assert result.exit_code == 0 and (dest / "f.bin").read_bytes() == new


class _Killed(BaseException):
    """A kill -9 at one exact moment: nothing after it runs."""


def test_a_kill_while_starting_over_never_leaves_old_bytes_under_the_new_version(
    share, tmp_path: Path, no_backoff: list[float], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """The partial of an old version is emptied before the new version's meta is written; in
    the other order a kill between the two resumes the old bytes into the new file."""
    from davsync.client import transfer

    (share.root / "f.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    dest = tmp_path / "mirror"
    proxy = relay(share.server.port, Faults(cut_after=1024 * 1024, cuts_left=100))
    try:
        run_once(ConnectionSettings(proxy.url, "alice", PASSWORDS["alice"]), dest, RunOptions())
    finally:
        proxy.close()
    (part,) = (dest / ".davsync" / "partial").glob("*.part")
    assert part.stat().st_size > 0
    new = os.urandom(6 * 1024 * 1024)
    (share.root / "f.bin").write_bytes(new)
    share.wait_indexed()
    write_meta = transfer._write_meta

    def kill_after_meta(*args):  # type: ignore[no-untyped-def]
        write_meta(*args)
        raise _Killed

    monkeypatch.setattr(transfer, "_write_meta", kill_after_meta)
    try:
        run_once(conn(share), dest, RunOptions())
    except _Killed:
        pass
    assert part.stat().st_size == 0, "the old version's bytes sit under the new version's meta"
    monkeypatch.setattr(transfer, "_write_meta", write_meta)
    result = run_once(conn(share), dest, RunOptions())
    assert result.exit_code == 0 and (dest / "f.bin").read_bytes() == new


def test_cut_connections_are_retried_and_resumed(share, tmp_path: Path, no_backoff: list[float]) -> None:
    data = os.urandom(6 * 1024 * 1024)
    (share.root / "f.bin").write_bytes(data)
    proxy = relay(share.server.port, Faults(cut_after=2 * 1024 * 1024, cuts_left=2))
    try:
        result = run_once(ConnectionSettings(proxy.url, "alice", PASSWORDS["alice"]), tmp_path / "m", RunOptions())
    finally:
        proxy.close()
    assert result.exit_code == 0, result.errors
    assert (tmp_path / "m" / "f.bin").read_bytes() == data
    assert result.bytes_downloaded < 2 * len(data)  # resumed, not restarted each time


def test_stalled_connection_times_out_and_is_reported(share, tmp_path: Path, no_backoff: list[float]) -> None:
    (share.root / "f.bin").write_bytes(os.urandom(1024 * 1024))
    proxy = relay(share.server.port, Faults(stall_after=300_000, stalls_left=100))
    t0 = time.monotonic()
    try:
        result = run_once(
            # A short read timeout: the transfer is tried 6 times, and each try waits the timeout out.
            ConnectionSettings(proxy.url, "alice", PASSWORDS["alice"], timeout=0.3), tmp_path / "m", RunOptions()
        )
    finally:
        proxy.close()
    assert result.exit_code in (3, 4)
    assert time.monotonic() - t0 < 120, "a stalled connection must not hang the pull"
    assert not (tmp_path / "m" / "f.bin").exists()


def test_status_exit_codes_and_json(share, tmp_path: Path) -> None:
    (share.root / "a.txt").write_bytes(b"a")
    dest = tmp_path / "mirror"
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}

    def status(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "davsync", "status", share.url, str(dest), "-u", "alice", *extra],
                              capture_output=True, text=True, env=env)  # fmt: skip

    before = status("--json")
    assert before.returncode == 1 and json.loads(before.stdout)["plan"] == {"download": ["a.txt"]}
    assert not (dest / "a.txt").exists()
    dry = pull_cli(share.url, dest, "--dry-run")
    assert dry.returncode == 0 and "new: 1" in dry.stdout and not (dest / "a.txt").exists()
    pull_cli(share.url, dest)
    after = status()
    assert after.returncode == 0 and "In sync." in after.stdout


def test_errors_name_cause_and_fix(share, tmp_path: Path) -> None:
    wrong = subprocess.run([sys.executable, "-m", "davsync", "pull", share.url, str(tmp_path / "m"), "-u", "alice"],
                           capture_output=True, text=True, env={**os.environ, "DAVSYNC_PASSWORD": "nope"})  # fmt: skip
    assert wrong.returncode == 4 and "refused the login" in wrong.stderr and "Traceback" not in wrong.stderr
    from conftest import free_port

    down = pull_cli(f"http://127.0.0.1:{free_port()}/", tmp_path / "m")
    assert down.returncode == 4 and "cannot reach" in down.stderr and "Traceback" not in down.stderr
    bad = pull_cli("ftp://example/", tmp_path / "m")
    assert bad.returncode == 2 and "not an http(s) URL" in bad.stderr


def test_excludes_and_ignore_file(share, tmp_path: Path) -> None:
    (share.root / "build").mkdir()
    (share.root / "build" / "out.o").write_bytes(b"o")
    (share.root / "a.tmp").write_bytes(b"t")
    (share.root / "keep.txt").write_bytes(b"k")
    dest = tmp_path / "mirror"
    dest.mkdir()
    (dest / ".davsyncignore").write_text("build/\n")
    code, out = pull_json(share.url, dest, "--exclude", "*.tmp")
    assert code == 0
    assert sorted(tree(dest)) == [".davsyncignore", "keep.txt"]


def test_pull_from_rclone_serve_webdav(rclone_webdav, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_source(src)
    url = rclone_webdav(src)
    dest = tmp_path / "mirror"
    result = run_once(ConnectionSettings(url), dest, RunOptions())
    assert result.exit_code == 0, (result.fatal, result.errors)
    assert tree(dest) == tree(src)
    again = run_once(ConnectionSettings(url), dest, RunOptions())
    assert again.bytes_downloaded == 0 and again.local_files_read == 0
    (src / "deep" / "er" / "new.txt").write_bytes(b"new")
    third = run_once(ConnectionSettings(url), dest, RunOptions())
    assert third.done == {"download": ["deep/er/new.txt"]}


def test_a_kill_after_the_whole_body_arrived_resumes_into_a_placed_file(
    share, tmp_path: Path, no_backoff: list[float], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A kill between the last byte and the rename leaves a complete partial file; the next run
    must place it (or fetch it again), not ask for the range past its end forever (a 416)."""
    data = os.urandom(6 * 1024 * 1024)  # above SMALL_FILE: resumable
    (share.root / "f.bin").write_bytes(data)
    dest = tmp_path / "mirror"

    def killed(*args, **kw):  # type: ignore[no-untyped-def]
        raise _Killed

    from davsync.client import sides

    place = sides.Disk.place  # (the executor places through its LocalSide, client/sides.py)
    monkeypatch.setattr(sides.Disk, "place", staticmethod(killed))
    try:
        run_once(conn(share), dest, RunOptions())
    except _Killed:
        pass
    (part,) = (dest / ".davsync" / "partial").glob("*.part")
    assert part.stat().st_size == len(data)
    monkeypatch.setattr(sides.Disk, "place", staticmethod(place))
    result = run_once(conn(share), dest, RunOptions())
    assert result.exit_code == 0, result.errors
    assert (dest / "f.bin").read_bytes() == data
