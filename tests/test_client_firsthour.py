"""A new user's first hour with the client (issue 11, items 7-17), against a real `davsync serve`.

Every test drives the command line as a person would and checks what lands on disk,
the exit status, and that no message carries raw exception text.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from brokered import put_on_server
from conftest import PASSWORDS, free_port, require_tool, wait_until

NFC = unicodedata.normalize("NFC", "café.txt")
NFD = unicodedata.normalize("NFD", "café.txt")
RAW = ("Traceback", "Error(", "Errno", "_ssl.c", "HTTPConnection", "object at 0x", "\\\\")


NO_DNS = Path(__file__).parent / "nodns"


def davsync(*args: str, password: str | None = PASSWORDS["alice"], env: dict[str, str] | None = None,
            timeout: int = 120, as_user: bool = False) -> subprocess.CompletedProcess[str]:  # fmt: skip
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DAVSYNC_")}
    if password is not None:
        full_env["DAVSYNC_PASSWORD"] = password
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "davsync", *args]
    if as_user and hasattr(os, "geteuid") and os.geteuid() == 0:  # root ignores permissions: run the client as nobody
        cmd = [require_tool("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)


def clean(r: subprocess.CompletedProcess[str]) -> None:
    """No raw exception text anywhere a user looks."""
    for marker in RAW:
        assert marker not in r.stdout + r.stderr, (marker, r.stdout, r.stderr)


def one_sentence(text: str) -> str:
    """The error line; it must be one line, start with 'davsync:' and have balanced quotes and brackets."""
    lines = [line for line in text.strip().splitlines() if line.startswith("davsync:") and "warning" not in line]
    assert len(lines) == 1, text
    line = lines[0]
    quotes = re.findall(r"(?<![A-Za-z])'|'(?![A-Za-z])", line)  # not the apostrophe in "server's"
    assert line.count("(") == line.count(")") and len(quotes) % 2 == 0, line
    return line


# --- 7: names in NFD on the server --------------------------------------------------------------


def test_nfd_names_are_fetched_by_the_servers_href_and_stored_nfc(share, tmp_path: Path) -> None:
    folder = unicodedata.normalize("NFD", "Müsli")
    (share.root / folder).mkdir()
    (share.root / folder / NFD).write_bytes(b"inside an NFD folder")
    (share.root / NFD).write_bytes(b"from a Mac")
    dest = tmp_path / "m"
    r = davsync("pull", share.url, str(dest), "-u", "alice")
    clean(r)
    assert r.returncode == 0, r.stdout + r.stderr
    nfc_folder = unicodedata.normalize("NFC", "Müsli")
    assert sorted(os.listdir(dest)) == sorted([".davsync", NFC, nfc_folder])  # stored NFC, byte for byte
    assert (dest / NFC).read_bytes() == b"from a Mac"
    assert (dest / nfc_folder / NFC).read_bytes() == b"inside an NFD folder"
    with sqlite3.connect(dest / ".davsync" / "state.db") as db:
        mapping = dict(db.execute("SELECT path, remote_name FROM placed"))
    assert mapping[NFC] == NFD and mapping[f"{nfc_folder}/{NFC}"] == f"{folder}/{NFD}"
    st = davsync("status", share.url, str(dest), "-u", "alice")
    assert st.returncode == 0 and "In sync" in st.stdout, st.stdout
    # An edit on the server arrives through the change list, fetched by href again.
    (share.root / NFD).write_bytes(b"edited on the Mac")
    share.wait_indexed()
    again = davsync("pull", share.url, str(dest), "-u", "alice", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["done"] == {"update": [NFC]}, again.stdout
    assert (dest / NFC).read_bytes() == b"edited on the Mac"


def test_names_differing_only_in_normalisation_are_skipped_and_reported(share, tmp_path: Path) -> None:
    (share.root / "keep.txt").write_bytes(b"k")
    (share.root / NFC).write_bytes(b"the NFC one")
    dest = tmp_path / "m"
    first = davsync("pull", share.url, str(dest), "-u", "alice", "--delete")
    assert first.returncode == 0 and (dest / NFC).read_bytes() == b"the NFC one"
    (share.root / NFD).write_bytes(b"the NFD one")
    share.wait_indexed()
    for mode in ([], ["--full"]):  # the change list names only the new NFD file: it must not win
        r = davsync("pull", share.url, str(dest), "-u", "alice", "--delete", "--json", *mode)
        clean(r)
        assert r.returncode == 3, r.stdout + r.stderr
        out = json.loads(r.stdout)
        assert [s["path"] for s in out["skipped"]] == [NFC] and "normalisation" in out["skipped"][0]["reason"]
        assert "(NFC)" in out["skipped"][0]["reason"] and "(NFD)" in out["skipped"][0]["reason"]
        assert out["done"] == {}
        assert (dest / NFC).read_bytes() == b"the NFC one"  # neither overwritten nor deleted
        assert not (dest / ".davsync" / "trash").exists()


# --- 8, 9: the URL as typed ----------------------------------------------------------------------


def test_url_typed_with_literal_spaces_and_accents(share, tmp_path: Path) -> None:
    (share.root / "dir with space" / "Ünïcode").mkdir(parents=True)
    (share.root / "dir with space" / "Ünïcode" / "a b.txt").write_bytes(b"deep")
    (share.root / "dir with space" / "x.txt").write_bytes(b"x")
    typed_urls = (share.url + "dir with space/", share.url + "dir%20with%20space", share.url + "dir with space/Ünïcode",
                  share.url + "/dir with space//")  # a slash too many, as pasted: still the share meant  # fmt: skip
    for typed in typed_urls:
        dest = tmp_path / str(abs(hash(typed)))
        r = davsync("pull", typed, str(dest), "-u", "alice", "--json")
        clean(r)
        assert r.returncode == 0, r.stdout + r.stderr
        out = json.loads(r.stdout)
        assert out["skipped"] == [] and out["done"].get("download"), out
        if typed.endswith("Ünïcode"):
            assert (dest / "a b.txt").read_bytes() == b"deep"
        else:
            assert (dest / "x.txt").read_bytes() == b"x" and (dest / "Ünïcode" / "a b.txt").read_bytes() == b"deep"
    # A share folder named in NFD on the server, its URL pasted from a browser: found as spelled.
    from urllib.parse import quote

    mac = unicodedata.normalize("NFD", "Fotos München")
    (share.root / mac).mkdir()
    (share.root / mac / "p.jpg").write_bytes(b"jpg")
    dest = tmp_path / "mac"
    r = davsync("pull", share.url + quote(mac) + "/", str(dest), "-u", "alice")
    assert r.returncode == 0 and (dest / "p.jpg").read_bytes() == b"jpg", r.stdout + r.stderr


def test_url_of_a_file_is_a_usage_error(share, tmp_path: Path) -> None:
    (share.root / "report.pdf").write_bytes(b"%PDF")
    for url in (share.url + "report.pdf", share.url + "report.pdf/"):
        r = davsync("pull", url, str(tmp_path / "m"), "-u", "alice")
        clean(r)
        assert r.returncode == 2, r.stdout + r.stderr
        line = one_sentence(r.stderr)
        assert "report.pdf is a file, not a folder" in line and share.url in line
        assert not (tmp_path / "m").exists()
        st = davsync("status", url, str(tmp_path / "m"), "-u", "alice")
        assert st.returncode == 2 and "is a file, not a folder" in st.stderr


def test_urls_a_new_user_might_type(share, tmp_path: Path) -> None:
    port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_until(lambda: davsync("pull", f"http://127.0.0.1:{port}/", str(tmp_path / "m")).returncode == 2, 30,
                   "a plain web server to answer")  # fmt: skip
        cases = [
            ((f"http://127.0.0.1:{port}/",), "is not a WebDAV share (PROPFIND answered HTTP 501): check the URL"),
            (("raspberrypi:8080",), "is not an http(s) URL: write it like http://raspberrypi:8080/."),
            ((share.url.replace("http://", "http://alice:secret@"),), "the URL holds a user name or password"),
            (("http://127.0.0.1:99999/",), "is not a number from 1 to 65535"),
            # The server answered: a wrong path is the URL's fault (exit 2), not the connection's.
            ((share.url + "nosuch/",), f"the server has no folder at {share.url}nosuch/ (404): check the path"),
        ]
        for args, expected in cases:
            r = davsync("pull", *args, str(tmp_path / "m"), "-u", "alice")
            clean(r)
            assert r.returncode == 2 and expected in one_sentence(r.stderr), (args, r.stderr)
            assert "secret" not in r.stderr
        assert not (tmp_path / "m").exists()
    finally:
        web.terminate()
        web.wait(10)


# --- 10, 15: nothing created before the server answers; DEST problems ----------------------------


def test_failed_pull_creates_nothing(share, tmp_path: Path) -> None:
    dest = tmp_path / "new" / "mirror"
    wrong = davsync("pull", share.url, str(dest), "-u", "alice", password="nope")
    assert wrong.returncode == 4 and "refused the login" in wrong.stderr
    down = davsync("pull", f"http://127.0.0.1:{free_port()}/", str(dest), "-u", "alice")
    assert down.returncode == 4 and "nothing is listening" in down.stderr
    clean(wrong), clean(down)
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert davsync("pull", share.url, str(empty), "-u", "alice", password="nope").returncode == 4
    assert list(empty.iterdir()) == []
    # A preview changes nothing either, even when the server answers.
    (share.root / "a.txt").write_bytes(b"a")
    assert davsync("status", share.url, str(dest), "-u", "alice").returncode == 1
    assert davsync("pull", share.url, str(empty), "-u", "alice", "--dry-run").returncode == 0
    assert not (tmp_path / "new").exists() and list(empty.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions (chmod 555, running as nobody); Windows uses ACLs")
def test_dest_is_a_file_or_unwritable(share, tmp_path: Path) -> None:
    (share.root / "a.txt").write_bytes(b"a")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    r = davsync("pull", share.url, str(a_file), "-u", "alice")
    clean(r)
    assert r.returncode == 2 and f"{a_file} is a file, not a folder" in one_sentence(r.stderr)
    below = davsync("pull", share.url, str(a_file / "sub"), "-u", "alice")
    assert below.returncode == 2 and f"{a_file} is a file, not a folder" in one_sentence(below.stderr)
    assert a_file.read_text() == "mine"
    with world_dir() as open_dir:
        locked = open_dir / "locked"
        locked.mkdir(mode=0o555)
        r = davsync("pull", share.url, str(locked), "-u", "alice", as_user=True)
        clean(r)
        assert r.returncode == 5, r.stdout + r.stderr
        assert f"{locked} is not writable (permission denied)" in one_sentence(r.stderr)
        r = davsync("pull", share.url, str(locked / "inner"), "-u", "alice", as_user=True)
        assert r.returncode == 5 and f"cannot create {locked / 'inner'}: {locked} is not writable" in r.stderr


class world_dir:
    """A folder anyone may enter, so a client run as an unprivileged user can reach it."""

    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="davsync-test-"))
        self.path.chmod(0o777)
        return self.path

    def __exit__(self, *exc: object) -> None:
        for p in self.path.rglob("*"):
            if p.is_dir():
                p.chmod(0o777)
        shutil.rmtree(self.path)


# --- 11, 12: exit statuses -------------------------------------------------------------------------


def test_status_exit_matches_what_pull_would_do(share, tmp_path: Path) -> None:
    (share.root / "a.txt").write_bytes(b"a")
    (share.root / "b.txt").write_bytes(b"b")
    dest = tmp_path / "m"
    assert davsync("pull", share.url, str(dest), "-u", "alice").returncode == 0

    def status() -> subprocess.CompletedProcess[str]:
        return davsync("status", share.url, str(dest), "-u", "alice")

    (dest / "a.txt").write_bytes(b"my local edit")
    st = status()
    assert st.returncode == 0 and "locally-modified: 1" in st.stdout and "In sync" in st.stdout, st.stdout
    assert davsync("pull", share.url, str(dest), "-u", "alice").returncode == 0  # the pull agrees: nothing to do
    (share.root / "c.txt").write_bytes(b"c")
    share.wait_indexed()
    assert status().returncode == 1  # a pull would download c.txt and succeed
    (share.root / "a.txt").write_bytes(b"server edit")
    share.wait_indexed()
    st = status()
    assert st.returncode == 3 and "conflicts: 1" in st.stdout, st.stdout  # a pull would end with a conflict
    assert davsync("pull", share.url, str(dest), "-u", "alice").returncode == 3


def test_skipped_names_and_refused_deletions_exit_3_and_show_with_quiet(share, tmp_path: Path) -> None:
    for name in ("fine.txt", "a:b.txt", "CON.txt", "Case.txt", "case.TXT", "x.txt", "y.txt", "z.txt"):
        put_on_server(share.root, name, name.encode())  # names Windows cannot hold: on the server's side
    share.wait_indexed()
    dest = tmp_path / "m"
    r = davsync("pull", share.url, str(dest), "-u", "alice", "--name-rules", "windows", "--quiet")
    clean(r)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "skipped: a:b.txt: name contains characters Windows forbids: ':'" in r.stdout
    assert "skipped: CON.txt: name is reserved on Windows" in r.stdout
    assert "skipped: case.TXT: differs only by case from 'Case.txt', which is synced here instead" in r.stdout
    assert "Done:" not in r.stdout  # --quiet: the problems, not the summary
    assert (dest / "fine.txt").exists() and not (dest / "a:b.txt").exists()
    assert davsync("status", share.url, str(dest), "-u", "alice", "--name-rules", "windows").returncode == 3
    ok = davsync("pull", share.url, str(dest), "-u", "alice", "--quiet")
    if sys.platform == "win32":  # Windows' rules always apply there (--name-rules cannot relax them)
        assert ok.returncode == 3 and "skipped: CON.txt: name is reserved on Windows" in ok.stdout, ok.stdout
    else:  # posix rules hold every name
        assert ok.returncode == 0 and ok.stdout == "", ok.stdout
    for name in ("x.txt", "y.txt", "z.txt"):
        (share.root / name).unlink()
    share.wait_indexed()
    r = davsync("pull", share.url, str(dest), "-u", "alice", "--delete", "--max-delete", "2", "--quiet", "--json")
    assert r.returncode == 3 and json.loads(r.stdout)["refused_deletions"] == 3
    r = davsync("pull", share.url, str(dest), "-u", "alice", "--delete", "--max-delete", "2", "--quiet")
    assert r.returncode == 3 and "Deletions refused: 3 files would go, more than --max-delete 2." in r.stdout
    assert all((dest / n).exists() for n in ("x.txt", "y.txt", "z.txt"))


# --- 13: an unwritable sub-folder --------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions (chmod 555, running as nobody); Windows uses ACLs")
def test_unwritable_subfolder_is_reported_by_its_real_path_and_the_rest_goes_on(share) -> None:
    for folder in ("locked", "open"):
        (share.root / folder).mkdir()
    (share.root / "top.txt").write_bytes(b"top")
    with world_dir() as base:
        dest = base / "m"
        assert davsync("pull", share.url, str(dest), "-u", "alice", as_user=True).returncode == 0
        (share.root / "locked" / "new.txt").write_bytes(b"cannot land")
        (share.root / "locked" / "new folder").mkdir()
        (share.root / "locked" / "new folder" / "f.txt").write_bytes(b"f")
        (share.root / "open" / "new.txt").write_bytes(b"lands")
        (share.root / "top.txt").write_bytes(b"top, edited")
        share.wait_indexed()
        if os.geteuid() == 0:
            os.chown(dest / "locked", 65534, 65534)
        (dest / "locked").chmod(0o555)
        r = davsync("pull", share.url, str(dest), "-u", "alice", as_user=True)
        clean(r)
        assert r.returncode == 3, r.stdout + r.stderr
        assert f"error: locked/new.txt: cannot write {dest / 'locked' / 'new.txt'}: permission denied" in r.stdout
        assert f"error: locked/new folder: cannot write {dest / 'locked' / 'new folder'}: permission denied" in r.stdout
        assert ".davsync" not in r.stdout
        assert (dest / "open" / "new.txt").read_bytes() == b"lands"
        assert (dest / "top.txt").read_bytes() == b"top, edited"
        assert list((dest / ".davsync" / "partial").glob("*")) == []  # no orphaned temp file
        (dest / "locked").chmod(0o755)
        again = davsync("pull", share.url, str(dest), "-u", "alice", as_user=True)
        assert again.returncode == 0 and (dest / "locked" / "new.txt").read_bytes() == b"cannot land"
        assert (dest / "locked" / "new folder" / "f.txt").read_bytes() == b"f"


# --- 14: connection and TLS errors, one clean sentence each --------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, Path]:
    openssl = require_tool("openssl")
    out = {}
    for name, subject, san in (("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1"), ("other", "/CN=other", "subjectAltName=DNS:other")):
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", subject, "-addext", san],
                       check=True, capture_output=True)  # fmt: skip
        out[name], out[f"{name}_key"] = cert, key
    out["garbage"] = tmp_path / "garbage.pem"
    out["garbage"].write_text("this is not a certificate\n")
    return out


def test_tls_and_connection_errors_are_one_clean_sentence(start_share, tls_files: dict[str, Path], tmp_path: Path) -> None:
    plain = start_share(tmp_path / "plain-root", state_dir=tmp_path / "s1")
    tls = start_share(tmp_path / "tls-root", state_dir=tmp_path / "s2", tls_cert=tls_files["server"],
                      tls_key=tls_files["server_key"])  # fmt: skip
    (tls.root / "a.txt").write_bytes(b"over https")
    https_url = tls.url
    assert https_url.startswith("https://")
    http_port_as_https = plain.url.replace("http://", "https://")
    https_port_as_http = https_url.replace("https://", "http://")
    dest = str(tmp_path / "m")
    cases = [
        ((https_url,), 4, "the server's certificate is self-signed: pass --ca-cert FILE"),
        ((https_url, "--ca-cert", str(tls_files["garbage"])), 2, "garbage.pem holds no PEM certificate"),
        ((https_url, "--ca-cert", str(tls_files["other"])), 4, "is not signed by the CA in"),
        ((https_url.replace("127.0.0.1", "localhost"), "--ca-cert", str(tls_files["server"])), 4,
         "the server's certificate is not valid for localhost"),
        ((http_port_as_https,), 4, "speaks plain http, not https: use " + plain.url),
        ((https_port_as_http,), 4, "speaks https, not plain http: use " + https_url),
        (("http://davsync-test.invalid:8080/",), 4, "the host name davsync-test.invalid is unknown"),
    ]
    for args, code, expected in cases:
        # An unknown name is answered by a stand-in resolver (tests/nodns): no DNS query leaves the machine.
        no_dns = {"PYTHONPATH": str(NO_DNS)} if ".invalid" in args[0] else None
        r = davsync("pull", args[0], dest, "-u", "alice", *args[1:], env=no_dns)
        clean(r)
        assert r.returncode == code, (args, r.stderr)
        line = one_sentence(r.stderr)
        assert expected in line, (args, line)
        assert "--ca-cert FILE" not in line or "--ca-cert" not in args, line  # no hint for a flag already given
    ok = davsync("pull", https_url, dest, "-u", "alice", "--ca-cert", str(tls_files["server"]))
    assert ok.returncode == 0 and (tmp_path / "m" / "a.txt").read_bytes() == b"over https"
    (tls.root / "b.txt").write_bytes(b"b")
    tls.wait_indexed()
    insecure = davsync("pull", https_url, str(tmp_path / "m2"), "-u", "alice", "--insecure")
    clean(insecure)
    assert insecure.returncode == 0
    assert insecure.stderr.count("--insecure") == 1 and "InsecureRequestWarning" not in insecure.stderr
    assert "warnings.warn" not in insecure.stderr and len(insecure.stderr.strip().splitlines()) == 1


def test_login_only_share_without_user_says_so(share, tmp_path: Path) -> None:
    r = davsync("pull", share.url, str(tmp_path / "m"), password=None)
    clean(r)
    assert r.returncode == 4
    assert "this share needs a login: add --user NAME" in one_sentence(r.stderr)


# --- 16: environment variables -------------------------------------------------------------------------


def test_davsync_url_and_dest_from_the_environment(share, tmp_path: Path) -> None:
    (share.root / "a.txt").write_bytes(b"a")
    only_url = davsync("pull", str(tmp_path / "one"), "-u", "alice", env={"DAVSYNC_URL": share.url})
    assert only_url.returncode == 0, only_url.stderr
    assert (tmp_path / "one" / "a.txt").read_bytes() == b"a"
    both = davsync("pull", "-u", "alice", env={"DAVSYNC_URL": share.url, "DAVSYNC_DEST": str(tmp_path / "two")})
    assert both.returncode == 0 and (tmp_path / "two" / "a.txt").exists()
    explicit = davsync("pull", share.url, str(tmp_path / "three"), "-u", "alice",
                       env={"DAVSYNC_URL": "http://127.0.0.1:1/", "DAVSYNC_DEST": str(tmp_path / "wrong")})  # fmt: skip
    assert explicit.returncode == 0 and (tmp_path / "three" / "a.txt").exists() and not (tmp_path / "wrong").exists()
    swapped = davsync("pull", str(tmp_path / "four"), share.url, "-u", "alice")  # SRC/DEST first, as rclone writes it
    assert swapped.returncode == 0 and (tmp_path / "four" / "a.txt").exists(), swapped.stderr
    url_arg = davsync("status", share.url, "-u", "alice", env={"DAVSYNC_DEST": str(tmp_path / "two")})
    assert url_arg.returncode == 0 and "In sync" in url_arg.stdout
    user_env = davsync("status", str(tmp_path / "two"), env={"DAVSYNC_URL": share.url, "DAVSYNC_USER": "alice"})
    assert user_env.returncode == 0, user_env.stderr
    doctor = davsync("doctor", "-u", "alice", env={"DAVSYNC_URL": share.url})
    assert doctor.returncode == 0, doctor.stdout
    missing = davsync("pull", str(tmp_path / "x"), "-u", "alice")
    clean(missing)
    assert missing.returncode == 2 and "name the share: davsync pull URL DEST, or set DAVSYNC_URL" in missing.stderr
    no_dest = davsync("pull", share.url, "-u", "alice")
    assert no_dest.returncode == 2 and "or set DAVSYNC_DEST" in no_dest.stderr


# --- 17: the smaller things ----------------------------------------------------------------------------


def test_help_shows_plain_metavars(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from davsync.cli import command  # what the `davsync` entry point runs

    monkeypatch.setenv("COLUMNS", "200")

    def help_of(*args: str) -> str:
        assert command().main([*args, "--help"], prog_name="davsync", standalone_mode=False) == 0
        return capsys.readouterr().out

    for name in ("pull", "status", "watch", "doctor", "serve"):
        text = help_of(name)
        assert "<bool>" not in text and "{url}" not in text and "{dest}" not in text, text
    for name in ("pull", "status", "watch"):
        assert "[URL] [DEST]" in help_of(name)
    assert "[URL]" in help_of("doctor")
    assert "DAVSYNC_DEST" in help_of()


def test_doctor_allows_for_the_date_headers_one_second_resolution() -> None:
    from email.utils import formatdate

    from davsync.client.doctor import _clock

    for _ in range(3):
        sent = time.time()
        header = formatdate(int(sent), usegmt=True)  # what a server with a perfect clock sends
        check = _clock(header, sent, sent + 0.05)
        assert check.ok and "agrees" in check.detail, check.detail
    skewed = _clock(formatdate(time.time() + 90, usegmt=True), time.time(), time.time())
    assert not skewed.ok and "ahead" in skewed.detail


def test_backslash_names_are_shown_as_they_are(share, tmp_path: Path) -> None:
    put_on_server(share.root, "back\\slash.txt", b"b")  # a folder separator on Windows: on the server's side
    (share.root / "ok.txt").write_bytes(b"o")
    r = davsync("pull", share.url, str(tmp_path / "m"), "-u", "alice")
    assert r.returncode == 3
    assert "skipped: back\\slash.txt: the name 'back\\slash.txt' contains a backslash" in r.stdout, r.stdout
    assert "\\\\" not in r.stdout and "%5C" not in r.stdout


@pytest.fixture
def watch_process(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen, Path]]]:
    procs: list[subprocess.Popen] = []

    def start(*args: str, command: tuple[str, ...] = ("watch",)) -> tuple[subprocess.Popen, Path]:
        log = tmp_path / f"watch-{len(procs)}.log"
        env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "davsync", *command, *args], stdout=out,
                                    stderr=subprocess.STDOUT, env=env)  # fmt: skip
        procs.append(proc)
        return proc, log

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(15)


def test_watch_reports_server_deletions_it_keeps_once(share, tmp_path: Path, watch_process) -> None:
    (share.root / "a.txt").write_bytes(b"a")
    (share.root / "b.txt").write_bytes(b"b")
    dest = tmp_path / "m"
    proc, log = watch_process(share.url, str(dest), "-u", "alice", "--interval", "0.3")
    wait_until(lambda: (dest / "b.txt").exists(), 30, "the first pull")
    (share.root / "a.txt").unlink()
    wait_until(lambda: "kept: a.txt" in log.read_text(), 30, "watch to report the kept file")
    text = log.read_text()
    assert "1 file deleted on the server is kept here; run with --delete to remove them:" in text
    (share.root / "c.txt").write_bytes(b"c")
    wait_until(lambda: (dest / "c.txt").exists(), 30, "the next change")
    wait_until(lambda: "c.txt" in log.read_text(), 30, "the next report")
    assert log.read_text().count("kept: a.txt") == 1  # said once, not every round
    assert (dest / "a.txt").read_bytes() == b"a"
    proc.terminate()
    # SIGTERM ends a watch cleanly (0); on Windows terminate() is TerminateProcess(handle, 1): no
    # handler runs, so the exit code is the one it passes
    assert proc.wait(15) == (1 if sys.platform == "win32" else 0)
    clean(subprocess.CompletedProcess([], 0, log.read_text(), ""))
    assert stat.S_ISREG(os.stat(dest / "a.txt").st_mode)


@pytest.mark.parametrize("command", [("watch",), ("sync", "--watch")], ids=["watch", "sync-watch"])
def test_a_watch_waits_while_another_run_holds_the_folder_and_goes_on(
    share, tmp_path: Path, watch_process, command: tuple[str, ...]
) -> None:
    """A scheduled pull that runs while the user's watch is between rounds must not end the watch."""
    from davsync import osfs

    (share.root / "a.txt").write_bytes(b"a")
    share.wait_indexed()
    dest = tmp_path / "m"
    proc, log = watch_process(share.url, str(dest), "-u", "alice", "--interval", "0.3", command=command)
    wait_until(lambda: (dest / "a.txt").exists(), 30, "the first round")
    lock = dest / ".davsync" / "lock"

    def take() -> Any:  # between two of the watch's rounds
        held = osfs.exclusive_lock(lock)
        try:
            held.__enter__()
        except osfs.DestLocked:
            return None
        return held

    held = wait_until(take, 30, "the folder's lock, between two rounds")
    try:
        wait_until(lambda: "another davsync" in log.read_text(encoding="utf-8"), 30, "the watch to meet the lock")
        (share.root / "b.txt").write_bytes(b"b")
    finally:
        held.__exit__(None, None, None)
    wait_until(lambda: (dest / "b.txt").exists() or proc.poll() is not None, 30, "the next round")
    text = log.read_text(encoding="utf-8")
    assert proc.poll() is None, text
    assert (dest / "b.txt").read_bytes() == b"b"
    assert text.count("another davsync") == 1, text  # said once while it waited, not every round


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT to a child process: POSIX (Windows' Ctrl-C "
                    "reaches a whole console group, which a test cannot aim at one child under wine)")  # fmt: skip
@pytest.mark.parametrize("command", [("watch",), ("sync", "--watch")], ids=["watch", "sync-watch"])
def test_ctrl_c_ends_a_watch_at_once_not_after_its_interval(
    share, tmp_path: Path, watch_process, command: tuple[str, ...]
) -> None:
    import signal

    (share.root / "a.txt").write_bytes(b"a")
    share.wait_indexed()
    dest = tmp_path / "m"
    proc, log = watch_process(share.url, str(dest), "-u", "alice", "--interval", "3600", command=command)
    wait_until(lambda: "Done" in log.read_text(encoding="utf-8"), 30, "the first round")
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(60)  # a guard against waiting out the hour, not a timing
    except subprocess.TimeoutExpired:
        pytest.fail(f"`davsync {' '.join(command)}` went on waiting for its interval after Ctrl-C")
    text = log.read_text(encoding="utf-8")
    assert code == 0 and text.rstrip().endswith("stopped"), text
