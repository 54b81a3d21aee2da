"""lftp as a real WebDAV client: listing, upload, download, rename, delete, awkward names; bytes and MD5s on disk."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import PASSWORDS, require_tool
from davhelp import checksums, md5sum_tool

# lftp's own quoting takes care of spaces; these are the names a URL makes hard.
NAMES = ["hash#tag.txt", "what?.txt", "100%.txt", "semi;colon&a=b+c.txt", "naïve café.txt", "日本語.txt"]
SETTINGS = ("set cmd:fail-exit yes; set net:max-retries 4; set net:reconnect-interval-base 0; "
            "set net:reconnect-interval-multiplier 1; set net:timeout 15; set xfer:clobber on;")  # fmt: skip


def lftp(share, tmp_path: Path, script: str, *, propfind: bool) -> subprocess.CompletedProcess[str]:
    exe = require_tool("lftp")
    home = tmp_path / "lftp-home"
    home.mkdir(exist_ok=True)
    opener = f"open -u alice,{PASSWORDS['alice']} {share.url};"
    mode = f"set http:use-propfind {'yes' if propfind else 'no'};"
    return subprocess.run([exe, "-c", SETTINGS + mode + opener + script], capture_output=True, text=True,
                          timeout=180, cwd=tmp_path, env={**os.environ, "HOME": str(home), "LC_ALL": "C.UTF-8"})  # fmt: skip


def q(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.parametrize("propfind", [False, True], ids=["html-listing", "propfind"])
def test_lftp_round_trip(share, tmp_path: Path, propfind: bool) -> None:
    up = tmp_path / "up"
    up.mkdir()
    sources = {}
    for i, name in enumerate(NAMES):
        p = up / name
        p.write_bytes(os.urandom(1000 + 37 * i))
        os.utime(p, (1_500_000_000 + i, 1_500_000_000 + i))
        sources[name] = p
    (share.root / "from the pi #1.bin").write_bytes(os.urandom(300_000))

    puts = " ".join(f"put {q(str(sources[n]))} -o {q('dir #1/' + n)};" for n in NAMES)
    script = (f'mkdir "dir #1"; {puts} cls -1 "dir #1/"; '
              f'get {q("from the pi #1.bin")} -o got.bin; get {q("dir #1/naïve café.txt")} -o got2.txt; '
              f'mv {q("dir #1/what?.txt")} {q("dir #1/renamed?.txt")}; mv {q("dir #1/100%.txt")} {q("moved 100%.txt")}; '
              f'rm {q("dir #1/hash#tag.txt")}; cls -1; cls -1 "dir #1/"')  # fmt: skip
    result = lftp(share, tmp_path, script, propfind=propfind)
    assert result.returncode == 0, result.stdout + result.stderr
    listed = set(result.stdout.splitlines())
    for name in NAMES:
        assert f"dir #1/{name}" in listed or name in listed, (name, result.stdout)

    remote = share.root / "dir #1"
    expected_there = {n for n in NAMES if n not in ("what?.txt", "100%.txt", "hash#tag.txt")} | {"renamed?.txt"}
    assert {p.name for p in remote.iterdir()} == expected_there
    assert (share.root / "moved 100%.txt").read_bytes() == sources["100%.txt"].read_bytes()
    assert (remote / "renamed?.txt").read_bytes() == sources["what?.txt"].read_bytes()
    for name in expected_there - {"renamed?.txt"}:
        placed = remote / name
        assert placed.read_bytes() == sources[name].read_bytes(), name
        assert int(placed.stat().st_mtime) == int(sources[name].stat().st_mtime), name  # X-OC-MTime
    # MD5s: md5sum on both sides and the server's own property agree.
    local = md5sum_tool([sources[n] for n in sorted(expected_there - {"renamed?.txt"})])
    on_server = md5sum_tool([remote / n for n in sorted(expected_there - {"renamed?.txt"})])
    assert sorted(local.values()) == sorted(on_server.values())
    published = checksums(share, "/dir%20%231/")
    for name in expected_there:
        assert published[f"/dir #1/{name}"] == "MD5:" + md5sum_tool([remote / name])[str(remote / name)]
    assert (tmp_path / "got.bin").read_bytes() == (share.root / "from the pi #1.bin").read_bytes()
    assert (tmp_path / "got2.txt").read_bytes() == sources["naïve café.txt"].read_bytes()


# --- item 5: lftp's PROPPATCH after a PUT ----------------------------------------------

LFTP_PROPPATCH = (
    "PROPPATCH /{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: lftp/4.9.2\r\nAccept: */*\r\n"
    "Content-Type: text/xml\r\nContent-Length: {length}\r\n\r\n{body}"
    # lftp writes these after the body: the server never sees them as headers.
    'Authorization: Digest username="alice",realm="davsync",nonce="x",uri="/{path}",response="0"\r\n'
    "Connection: keep-alive\r\n\r\n"
)


def _replay_lftp_proppatch(share, path: str, http_date: str) -> str:
    body = ('<?xml version="1.0" ?><propertyupdate xmlns="DAV:"><set><prop><getlastmodified>'
            f"{http_date}</getlastmodified></prop></set></propertyupdate>")  # fmt: skip
    raw = LFTP_PROPPATCH.format(path=path, port=share.server.port, length=len(body), body=body)
    with socket.create_connection(("127.0.0.1", share.server.port), timeout=30) as s:
        s.sendall(raw.encode())
        answer = http.client.HTTPResponse(s)
        answer.begin()
        return f"HTTP/1.1 {answer.status}\n{answer.read().decode(errors='replace')}"


def test_lftp_proppatch_after_its_upload_is_answered(share) -> None:
    """lftp 4.9 (use-propfind) follows each PUT with a PROPPATCH whose Authorization header
    comes after the body; the upload succeeded, so lftp must not be told it failed."""
    put = requests.put(share.url + "a%20b.txt", data=b"lftp", auth=("alice", PASSWORDS["alice"]), timeout=30,
                       headers={"User-Agent": "lftp/4.9.2", "X-OC-MTime": "1577934245", "Connection": "close"})  # fmt: skip
    assert put.status_code == 201 and put.headers["Connection"] == "close"  # lftp asked for it
    wrong_time = _replay_lftp_proppatch(share, "a%20b.txt", "Fri, 03 Jan 2020 03:04:05 GMT")
    assert wrong_time.startswith("HTTP/1.1 401"), wrong_time
    other_file = _replay_lftp_proppatch(share, "other.txt", "Thu, 02 Jan 2020 03:04:05 GMT")
    assert other_file.startswith("HTTP/1.1 401"), other_file
    same = _replay_lftp_proppatch(share, "a%20b.txt", "Thu, 02 Jan 2020 03:04:05 GMT")
    assert same.startswith("HTTP/1.1 207") and "200 OK" in same, same
    assert (share.root / "a b.txt").stat().st_mtime == 1577934245
    again = _replay_lftp_proppatch(share, "a%20b.txt", "Thu, 02 Jan 2020 03:04:05 GMT")
    assert again.startswith("HTTP/1.1 401"), again  # once per upload


def test_other_clients_get_no_such_allowance(share) -> None:
    requests.put(share.url + "c.txt", data=b"c", auth=("alice", PASSWORDS["alice"]), timeout=30,
                 headers={"X-OC-MTime": "1577934245"})  # fmt: skip
    body = ('<propertyupdate xmlns="DAV:"><set><prop><getlastmodified>Thu, 02 Jan 2020 03:04:05 GMT'
            "</getlastmodified></prop></set></propertyupdate>")  # fmt: skip
    r = requests.request("PROPPATCH", share.url + "c.txt", data=body, timeout=30, headers={"User-Agent": "curl/8"})
    assert r.status_code == 401
    assert re.search(r"digest", r.headers["WWW-Authenticate"], re.I)
