"""Full disks: a pull into a tiny filesystem, and a PUT onto one. Clear errors, nothing truncated, then recovery."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import PASSWORDS, upload_temps

ENV = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A 4 MiB tmpfs when this process may mount one; else a folder plus RLIMIT_FSIZE for the child."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True).returncode == 0
    try:
        yield mnt, "tmpfs" if mounted else "rlimit"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (3 * 1024 * 1024, 3 * 1024 * 1024))


def test_pull_into_a_full_disk_stops_clearly_and_recovers(share, small_fs, tmp_path: Path) -> None:
    mnt, kind = small_fs
    for i in range(20):
        (share.root / f"s{i:02}.txt").write_bytes(os.urandom(2000))
    big = os.urandom(5 * 1024 * 1024)
    (share.root / "zz-big.bin").write_bytes(big)
    dest = mnt / "mirror"
    (dest).mkdir()
    (dest / "zz-big.bin").write_bytes(b"my old copy")  # an existing file that must survive
    cmd = [sys.executable, "-m", "davsync", "pull", share.url, str(dest), "-u", "alice", "--jobs", "1"]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=120,
                       preexec_fn=_limit_file_size if kind == "rlimit" else None)  # fmt: skip
    assert r.returncode == 5, (kind, r.stdout, r.stderr)
    assert "disk full" in r.stderr and "Traceback" not in r.stderr
    assert (dest / "zz-big.bin").read_bytes() == b"my old copy"
    for p in dest.iterdir():
        if p.is_file() and p.name.startswith("s"):
            assert len(p.read_bytes()) == 2000, "a truncated file was placed"
    # With room again (a roomier copy of the same mirror), the next run completes.
    roomy = tmp_path / "roomy"
    subprocess.run(["cp", "-a", str(dest), str(roomy)], check=True)
    (roomy / "zz-big.bin").unlink()  # the user moved their own copy away
    ok = subprocess.run([*cmd[:5], str(roomy), *cmd[6:], "--json"], env=ENV, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert hashlib.md5((roomy / "zz-big.bin").read_bytes()).hexdigest() == hashlib.md5(big).hexdigest()
    assert json.loads(ok.stdout)["errors"] == []


def test_put_onto_a_full_disk_is_507_and_keeps_the_original(serve_process, small_fs) -> None:
    mnt, kind = small_fs
    if kind != "tmpfs":
        pytest.skip("cannot mount a tmpfs here; test_serve_uploads covers RLIMIT_FSIZE for the server")
    root = mnt / "share"
    root.mkdir()
    (root / "doc.txt").write_bytes(b"original")
    server = serve_process(root)
    auth = ("alice", PASSWORDS["alice"])
    r = requests.put(server.url + "doc.txt", data=os.urandom(6 * 1024 * 1024), auth=auth, timeout=60)
    assert r.status_code == 507 and "disk is full" in r.text
    assert (root / "doc.txt").read_bytes() == b"original"
    assert not upload_temps(root)
    assert requests.put(server.url + "doc.txt", data=b"fits", auth=auth, timeout=60).status_code == 204
