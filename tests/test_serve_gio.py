"""gio/gvfs (GNOME Files' WebDAV) as a real client, on a private D-Bus session with gvfsd --no-fuse."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import PASSWORDS, require_tool
from davhelp import checksums, md5sum_tool

GVFSD = Path("/usr/libexec/gvfsd")
NAMES = ["hash#tag.txt", "what?.txt", "100%.txt", "semi;colon&a=b+c.txt", "naïve café.txt", "日本語.txt"]


def gio_session(share, tmp_path: Path, commands: list[str]) -> subprocess.CompletedProcess[str]:
    """Run gio commands against the share inside `dbus-run-session`, which also ends
    gvfsd and its backends when the script exits."""
    require_tool("gio")
    require_tool("gdbus")
    session = require_tool("dbus-run-session")
    if not GVFSD.exists() or not (GVFSD.parent / "gvfsd-dav").exists():
        pytest.skip("gvfs is not installed (apt-get install gvfs-daemons gvfs-backends); .ci/run installs it")
    runtime = tmp_path / "xdg-run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    (tmp_path / "gio-home").mkdir(exist_ok=True)
    mount_url = f"dav://alice@127.0.0.1:{share.server.port}/"
    script = "\n".join([
        f"{GVFSD} --no-fuse & GVFSD_PID=$!",
        'trap \'kill "$GVFSD_PID" 2>/dev/null || true\' EXIT',
        # Wait until gvfsd owns its name, so D-Bus activation does not start a second one
        # (with FUSE). Asking the bus itself activates nothing.
        "for i in $(seq 200); do gdbus call --session --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus"
        " --method org.freedesktop.DBus.NameHasOwner org.gtk.vfs.Daemon 2>/dev/null | grep -q true && break;"
        " sleep 0.05; done",
        f'printf "%s\\n" "$DAV_PASSWORD" | gio mount {shlex.quote(mount_url)} || exit 90',
        "set -e",
        *commands,
        f"gio mount -u {shlex.quote(mount_url)}",
    ])  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBUS_", "DISPLAY", "WAYLAND"))}
    env.update(HOME=str(tmp_path / "gio-home"), XDG_RUNTIME_DIR=str(runtime), LC_ALL="C.UTF-8",
               DAV_PASSWORD=PASSWORDS["alice"], GIO_USE_VOLUME_MONITOR="unix")  # fmt: skip
    result = subprocess.run([session, "--", "bash", "-c", script], capture_output=True, text=True, timeout=180,
                            env=env, cwd=tmp_path)  # fmt: skip
    if result.returncode == 90:
        pytest.fail(f"gio could not mount the share:\n{result.stdout}\n{result.stderr}")
    return result


def test_gio_round_trip(share, tmp_path: Path) -> None:
    url = f"dav://alice@127.0.0.1:{share.server.port}/"
    up = tmp_path / "up"
    up.mkdir()
    down = tmp_path / "down"
    down.mkdir()
    sources = {}
    for i, name in enumerate(NAMES):
        p = up / name
        p.write_bytes(os.urandom(2000 + 51 * i))
        sources[name] = p
    pi_file = share.root / "from the pi #1.bin"
    pi_file.write_bytes(os.urandom(400_000))

    def remote(path: str) -> str:
        return shlex.quote(url + quote(path))

    folder = "dir #1/"
    commands = [f"gio mkdir {remote(folder)}"]
    commands += [f"gio copy {shlex.quote(str(sources[n]))} {remote(folder + n)}" for n in NAMES]
    commands += [
        f"echo LISTING; gio list {remote(folder)}; echo END",
        f"gio copy {remote('from the pi #1.bin')} {shlex.quote(str(down / 'got.bin'))}",
        f"gio copy {remote(folder + 'naïve café.txt')} {shlex.quote(str(down / 'got café.txt'))}",
        f"gio rename {remote(folder + 'what?.txt')} 'renamed?.txt'",
        f"gio move {remote(folder + '100%.txt')} {remote('moved 100%.txt')}",
        f"gio copy {remote(folder + '日本語.txt')} {remote('copy of 日本語.txt')}",
        f"gio remove {remote(folder + 'hash#tag.txt')}",
        f"echo FINAL; gio list {remote('')}; echo END",
    ]
    result = gio_session(share, tmp_path, commands)
    assert result.returncode == 0, result.stdout + result.stderr
    listing = result.stdout.split("LISTING\n", 1)[1].split("END", 1)[0].splitlines()
    assert sorted(listing) == sorted(NAMES), result.stdout
    final = result.stdout.split("FINAL\n", 1)[1].split("END", 1)[0].splitlines()
    assert sorted(final) == sorted(["dir #1", "from the pi #1.bin", "moved 100%.txt", "copy of 日本語.txt"]), final

    remote_dir = share.root / "dir #1"
    left = {"semi;colon&a=b+c.txt", "naïve café.txt", "日本語.txt", "renamed?.txt"}
    assert {p.name for p in remote_dir.iterdir()} == left
    assert (remote_dir / "renamed?.txt").read_bytes() == sources["what?.txt"].read_bytes()
    assert (share.root / "moved 100%.txt").read_bytes() == sources["100%.txt"].read_bytes()
    assert (share.root / "copy of 日本語.txt").read_bytes() == sources["日本語.txt"].read_bytes()
    for name in left - {"renamed?.txt"}:
        assert (remote_dir / name).read_bytes() == sources[name].read_bytes(), name
    assert (down / "got.bin").read_bytes() == pi_file.read_bytes()
    assert (down / "got café.txt").read_bytes() == sources["naïve café.txt"].read_bytes()
    # MD5s: coreutils on both ends, and the server's published checksums.
    sent = md5sum_tool([sources[n] for n in sorted(left - {"renamed?.txt"})])
    placed = md5sum_tool([remote_dir / n for n in sorted(left - {"renamed?.txt"})])
    assert sorted(sent.values()) == sorted(placed.values())
    published = checksums(share, "/dir%20%231/")
    for name in left:
        assert published[f"/dir #1/{name}"] == "MD5:" + md5sum_tool([remote_dir / name])[str(remote_dir / name)]


def test_gio_reads_a_guest_share(start_share, tmp_path: Path) -> None:
    """Anonymous read: gvfs mounts as a guest (it never sees a challenge, so it never sends
    the password; a later write then fails inside gvfs: see the README)."""
    share = start_share(anonymous="read")
    (share.root / "shared #1.txt").write_bytes(b"for everyone")
    url = f"dav://alice@127.0.0.1:{share.server.port}/"
    got = tmp_path / "got.txt"
    result = gio_session(share, tmp_path, [f"gio list {shlex.quote(url)}",
                                           f"gio copy {shlex.quote(url + quote('shared #1.txt'))} {shlex.quote(str(got))}"])  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "shared #1.txt" in result.stdout.splitlines()
    assert got.read_bytes() == b"for everyone"
