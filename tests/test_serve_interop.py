"""Real clients against `davsync serve`: litmus, rclone, cadaver, curl; plus TLS and the browser page."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import PASSWORDS, require_tool
from davhelp import WEIRD_NAMES, md5sum_tool

ALICE = ("alice", PASSWORDS["alice"])


def rclone(share, *args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    exe = require_tool("rclone")
    obscured = subprocess.run([exe, "obscure", PASSWORDS["alice"]], capture_output=True, text=True, check=True)
    cmd = [exe, *args, "--webdav-url", share.url, "--webdav-user", "alice", "--webdav-pass", obscured.stdout.strip(),
           "--webdav-vendor", "owncloud", "--config", "/dev/null", "--low-level-retries", "1", "--retries", "1"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_litmus_passes_everything(share) -> None:
    exe = require_tool("litmus")
    out = subprocess.run(
        [exe, share.url, "alice", PASSWORDS["alice"]], capture_output=True, text=True, timeout=600, cwd=share.state_dir
    ).stdout
    summaries = re.findall(r"summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed", out)
    assert [s[0] for s in summaries] == ["basic", "copymove", "props", "locks", "http"], out
    run = sum(int(s[1]) for s in summaries)
    passed = sum(int(s[2]) for s in summaries)
    assert (passed, run) == (104, 104), out


def make_tree(root: Path) -> list[Path]:
    files = []
    for i, name in enumerate(WEIRD_NAMES):
        p = (root / "folder #1" / name) if i % 3 == 0 else root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"" if name == "empty" else os.urandom(100 + i))
        files.append(p)
    return files


def test_rclone_md5sum_equals_md5sum(share) -> None:
    files = make_tree(share.root)
    result = rclone(share, "md5sum", ":webdav:")
    assert result.returncode == 0, result.stderr
    got = {}
    for line in result.stdout.splitlines():
        digest, name = line.split("  ", 1)
        got[name] = digest
    expected = {str(Path(f).relative_to(share.root)): d for f, d in md5sum_tool(files).items()}
    assert got == expected


def test_rclone_check_finds_same_size_same_mtime_edit(share, tmp_path: Path) -> None:
    make_tree(share.root)
    local = tmp_path / "local"
    copied = rclone(share, "copy", ":webdav:", str(local))
    assert copied.returncode == 0, copied.stderr
    clean = rclone(share, "check", ":webdav:", str(local), "--checksum")
    assert clean.returncode == 0, clean.stderr
    victim = share.root / "hash#tag.txt"
    st = victim.stat()
    victim.write_bytes(bytes(b ^ 0xFF for b in victim.read_bytes()))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    dirty = rclone(share, "check", ":webdav:", str(local), "--checksum")
    assert dirty.returncode != 0
    assert "hash#tag.txt" in dirty.stderr and "1 differences found" in dirty.stderr


def test_rclone_upload_sets_mtime_and_checksum(share, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    f = src / "up.txt"
    f.write_bytes(b"uploaded by rclone")
    os.utime(f, (1_234_567_890, 1_234_567_890))
    result = rclone(share, "copy", str(src), ":webdav:dest")
    assert result.returncode == 0, result.stderr
    placed = share.root / "dest" / "up.txt"
    assert placed.read_bytes() == b"uploaded by rclone"
    assert int(placed.stat().st_mtime) == 1_234_567_890
    check = rclone(share, "check", str(src), ":webdav:dest", "--checksum")
    assert check.returncode == 0, check.stderr


def test_cadaver_session(share, tmp_path: Path) -> None:
    exe = require_tool("cadaver")
    (share.root / "hello.txt").write_text("hello from the pi\n")
    upload = tmp_path / "up.txt"
    upload.write_text("from cadaver\n")
    netrc = tmp_path / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login alice password {PASSWORDS['alice']}\n")
    netrc.chmod(0o600)
    script = f"ls\nget hello.txt {tmp_path / 'got.txt'}\nput {upload} cad.txt\nmkcol newdir\nquit\n"
    result = subprocess.run(
        [exe, share.url], input=script, capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)}
    )
    assert "hello.txt" in result.stdout, result.stdout + result.stderr
    assert (tmp_path / "got.txt").read_text() == "hello from the pi\n"
    assert (share.root / "cad.txt").read_text() == "from cadaver\n"
    assert (share.root / "newdir").is_dir()


def test_curl_upload_download_resume(share, tmp_path: Path) -> None:
    exe = require_tool("curl")
    data = os.urandom(200_000)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    user = f"alice:{PASSWORDS['alice']}"
    put = subprocess.run([exe, "-sS", "-f", "-u", user, "-T", str(src), share.url + "c.bin"], capture_output=True)
    assert put.returncode == 0, put.stderr
    out = tmp_path / "out.bin"
    out.write_bytes(data[:50_000])
    get = subprocess.run([exe, "-sS", "-f", "--digest", "-u", user, "-C", "-", "-o", str(out), share.url + "c.bin"],
                         capture_output=True)  # fmt: skip
    assert get.returncode == 0, get.stderr
    assert out.read_bytes() == data


def test_tls_round_trip(start_share, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    share = start_share(tls_cert=cert_file, tls_key=key_file)
    assert share.url.startswith("https://")
    r = requests.put(share.url + "secure.txt", data=b"over tls", auth=ALICE, verify=str(ca_file), timeout=30)
    assert r.status_code == 201
    got = requests.get(share.url + "secure.txt", auth=ALICE, verify=str(ca_file), timeout=30)
    assert got.content == b"over tls"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(share.url + "secure.txt", auth=ALICE, timeout=30)  # not trusted without the CA


def test_browser_listing_page(share) -> None:
    (share.root / "Photos 2024").mkdir()
    (share.root / "Photos 2024" / "beach.jpg").write_bytes(b"\xff\xd8jpeg")
    (share.root / "notes.txt").write_text("notes")
    (share.root / ".~davsync-x.part").write_text("hidden")
    page = requests.get(share.url, auth=ALICE, timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    assert "Photos 2024" in page.text and "notes.txt" in page.text and "davsync-x" not in page.text
    sub = requests.get(share.url + "Photos%202024/", auth=ALICE, timeout=30)
    assert sub.status_code == 200 and "beach.jpg" in sub.text
    assert requests.get(share.url + "Photos%202024/beach.jpg", auth=ALICE, timeout=30).content == b"\xff\xd8jpeg"
