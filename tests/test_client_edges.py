"""Client paths that had no test: two pulls on one DEST, the reporters' output, a trustme CA."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PASSWORDS, wait_until
from proxy import Faults, Proxy

from davsync.client.engine import RunOptions, run_once
from davsync.client.report import PlainReporter, RichReporter, summary_lines
from davsync.client.transport import ConnectionSettings

ENV = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}


def pull_cli(url: str, dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "davsync", "pull", url, str(dest), "-u", "alice", *args],
                          capture_output=True, text=True, env=ENV, timeout=300)  # fmt: skip


def test_two_pulls_on_one_dest_second_is_refused_and_nothing_is_damaged(share, tmp_path: Path) -> None:
    data = os.urandom(12 * 1024 * 1024)  # resumable (above the small-file size), slowed by the proxy
    (share.root / "big.bin").write_bytes(data)
    (share.root / "small.txt").write_bytes(b"small")
    share.wait_indexed()
    dest = tmp_path / "mirror"
    proxy = Proxy(share.server.port, Faults(rate=4 * 1024 * 1024))
    try:
        first = subprocess.Popen([sys.executable, "-m", "davsync", "pull", proxy.url, str(dest), "-u", "alice", "-q"],
                                 env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        partial = dest / ".davsync" / "partial"
        wait_until(lambda: any(p.stat().st_size > 0 for p in partial.glob("*.part")) if partial.exists() else False,
                   60, "the first pull to be downloading")  # fmt: skip
        second = pull_cli(share.url, dest)
        assert first.poll() is None, "the first pull ended before the second one ran; slow the proxy down"
        out, err = first.communicate(timeout=300)
    finally:
        proxy.close()
    assert second.returncode == 2, second.stdout + second.stderr
    assert "another davsync pull, sync or watch is running on" in second.stderr and "Traceback" not in second.stderr
    assert first.returncode == 0, out + err
    assert (dest / "big.bin").read_bytes() == data and (dest / "small.txt").read_bytes() == b"small"
    assert not list(partial.glob("*.part"))
    again = pull_cli(share.url, dest, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["done"] == {}, again.stdout


def _conn(share) -> ConnectionSettings:  # type: ignore[no-untyped-def]
    return ConnectionSettings(share.url, "alice", PASSWORDS["alice"])


def test_plain_reporter_prints_one_line_per_action(share, tmp_path: Path) -> None:
    (share.root / "docs").mkdir()
    (share.root / "docs" / "a.txt").write_bytes(b"a")
    (share.root / "b.txt").write_bytes(b"bb")
    share.wait_indexed()
    out = io.StringIO()
    result = run_once(_conn(share), tmp_path / "m", RunOptions(), PlainReporter(out))
    assert result.exit_code == 0
    lines = out.getvalue().splitlines()
    assert sorted(lines) == sorted(
        ["created folder: docs", "Downloading 2 files, 3 B", "downloaded: b.txt", "downloaded: docs/a.txt"]
    )
    assert lines.index("Downloading 2 files, 3 B") < lines.index("downloaded: b.txt")
    assert summary_lines(result) == ["Done: 2 downloaded (3 B)."]


def test_the_summary_counts_agree_and_a_long_report_shows_a_few_paths_and_the_fix() -> None:
    """A sync with a conflict (its server version down, the local copy up) and 311 deletions a
    guard refused: counts that match the bytes and the guard's warning, five paths, the way on."""
    from davsync.client.plan import Action, Kind, LocalEntry, Mode, Plan, RemoteEntry
    from davsync.client.results import Conflict, RunResult

    conflict = Action(Kind.CONFLICT, "r.txt", remote=RemoteEntry("r.txt", False, 2100), local=LocalEntry(False, 8))
    folders = [Action(Kind.KEPT_ON_SERVER, f"d{i}", remote=RemoteEntry(f"d{i}", True)) for i in range(11)]
    files = [Action(Kind.KEPT_ON_SERVER, f"d0/f{i}", remote=RemoteEntry(f"d0/f{i}", False, 1)) for i in range(300)]
    plan = Plan(actions=[conflict, *folders, *files], guards=["max-delete-remote"], refused_deletions=311)
    result = RunResult(
        command=Mode.SYNC, plan=plan, bytes_downloaded=2100, bytes_uploaded=8,
        done={Kind.CONFLICT: ["r.txt"], Kind.KEPT_ON_SERVER: [a.path for a in folders + files]},
        conflicts=[Conflict("r.txt", "r.sync-conflict-20261122-013000.txt", "changed on both sides", uploaded=True)],
    )  # fmt: skip
    lines = summary_lines(result, url="http://pi:8080/", folder="pc", list_paths=True)
    assert lines[0] == (
        "Done: 1 downloaded (2.1 kB), 1 uploaded (8 B), 1 conflict, 300 files and 11 folders deleted here but kept "
        "on the server."
    )
    assert lines[1:3] == ["deleted here but kept on the server:", "  d0/"]
    assert "  … and 306 more (--json lists them all)" in lines and len(lines) < 12, lines
    assert lines[-1] == "Check these deletions; if they are meant, run again with --max-delete 100% (or --max-delete 300)."
    out = io.StringIO()
    PlainReporter(out, "sync").file_done(files[0])  # reported, not acted on: no line per file
    assert out.getvalue() == ""


def test_rich_reporter_draws_progress_and_still_names_conflicts(share, tmp_path: Path) -> None:
    from rich.console import Console

    (share.root / "f.txt").write_bytes(b"server v1")
    share.wait_indexed()
    dest = tmp_path / "m"
    assert run_once(_conn(share), dest, RunOptions()).exit_code == 0
    (dest / "f.txt").write_bytes(b"my local edit")
    (share.root / "f.txt").write_bytes(b"server v2, changed too")
    (share.root / "new.bin").write_bytes(b"x" * 5000)
    share.wait_indexed()
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120, color_system=None)
    result = run_once(_conn(share), dest, RunOptions(), RichReporter(console))
    text = buf.getvalue()
    total = len(b"server v2, changed too") + 5000
    assert "pull" in text and f"{total}/{total}" in text and "5.0/5.0 kB" in text  # the bar, completed
    assert "CONFLICT: f.txt (your" in text  # conflicts are printed, not only drawn
    assert "downloaded: new.bin" not in text  # plain downloads show in the bar only
    assert [c.path for c in result.conflicts] == ["f.txt"]


def test_json_summary_is_stable(share, tmp_path: Path) -> None:
    (share.root / "a.txt").write_bytes(b"a")
    share.wait_indexed()
    r = pull_cli(share.url, tmp_path / "m", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["done"] == {"download": ["a.txt"]} and out["errors"] == [] and out["conflicts"] == []
    assert out["exit_code"] == 0 and out["bytes_downloaded"] == 1


def test_ca_cert_from_a_trustme_ca(start_share, tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme", reason="trustme is in the test extras")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    key_file, cert_file, ca_file = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    ca.cert_pem.write_to_path(str(ca_file))
    share = start_share(tls_cert=cert_file, tls_key=key_file)
    (share.root / "secure.txt").write_bytes(b"over TLS")
    share.wait_indexed()
    url = share.url
    assert url.startswith("https://"), url
    refused = pull_cli(url, tmp_path / "no-ca")
    assert refused.returncode == 4 and "--ca-cert" in refused.stderr and "Traceback" not in refused.stderr
    ok = pull_cli(url, tmp_path / "m", "--ca-cert", str(ca_file))
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "m" / "secure.txt").read_bytes() == b"over TLS"
    assert hashlib.md5((tmp_path / "m" / "secure.txt").read_bytes()).hexdigest() == hashlib.md5(b"over TLS").hexdigest()


def test_sync_token_fallback_end_to_end(share, tmp_path: Path) -> None:
    """The server forgets the mirror's token (compaction): the next pull lists in full, says so,
    converges (a deletion whose tombstone is gone included), and the one after is incremental again."""
    for name in ("a.txt", "b.txt", "c.txt"):
        (share.root / name).write_bytes(name.encode())
    share.wait_indexed()
    dest = tmp_path / "m"
    first = pull_cli(share.url, dest, "--json")
    assert first.returncode == 0 and json.loads(first.stdout)["mode"] == "initial-report", first.stdout + first.stderr

    assert share.request("PUT", "/a.txt", data=b"a, changed").status_code == 204
    assert share.request("DELETE", "/b.txt").status_code == 204
    assert share.request("PUT", "/d.txt", data=b"d").status_code == 201
    for i in range(5):
        share.request("PUT", f"/t{i}", data=b"t")
        share.request("DELETE", f"/t{i}")
    share.index.compact_tombstones(2)  # b.txt's tombstone and the mirror's token are gone

    second = pull_cli(share.url, dest, "--json", "--delete")
    out = json.loads(second.stdout)
    assert second.returncode == 0, second.stdout + second.stderr
    assert out["mode"] == "walk"
    assert any("no longer knows this folder's sync token" in w for w in out["warnings"]), out["warnings"]
    placed = {p.name: p.read_bytes() for p in dest.iterdir() if p.is_file()}
    assert placed == {"a.txt": b"a, changed", "c.txt": b"c.txt", "d.txt": b"d"}

    assert share.request("PUT", "/e.txt", data=b"e").status_code == 201
    third = pull_cli(share.url, dest, "--json", "--delete")
    out = json.loads(third.stdout)
    assert third.returncode == 0 and out["mode"] == "sync-collection", third.stdout + third.stderr
    assert out["done"] == {"download": ["e.txt"]} and (dest / "e.txt").read_bytes() == b"e"


class DigestOnlyFront:
    """An HTTP front for our server that allows Digest only (as some deployments do): it refuses
    Basic credentials and hides the Basic challenge. Our server still checks every Digest login."""

    HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}

    def __init__(self, port: int) -> None:
        import http.client
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        front = self
        self.schemes: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in front.HOP}
                auth = headers.get("Authorization", "")
                front.schemes.append(auth.split(" ", 1)[0] or "-")
                if auth.lower().startswith("basic"):
                    headers.pop("Authorization")  # the server then answers 401 with its Digest challenge
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response(resp.status, resp.reason)
                    for k, v in resp.getheaders():
                        if k.lower() in front.HOP or (k.lower() == "www-authenticate" and v.lower().startswith("basic")):
                            continue
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = do_PROPFIND = do_REPORT = do_MKCOL = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_client_logs_in_with_digest_when_basic_is_not_offered(share, tmp_path: Path) -> None:
    data = os.urandom(6 * 1024 * 1024)  # large: the fast download path must take the Digest login too
    (share.root / "big.bin").write_bytes(data)
    (share.root / "sub").mkdir()
    (share.root / "sub" / "small.txt").write_bytes(b"small")
    share.wait_indexed()
    front = DigestOnlyFront(share.server.port)
    try:
        ok = pull_cli(front.url, tmp_path / "m")
        wrong = subprocess.run([sys.executable, "-m", "davsync", "pull", front.url, str(tmp_path / "w"), "-u", "alice"],
                               capture_output=True, text=True, timeout=120,
                               env={**os.environ, "DAVSYNC_PASSWORD": "not the password"})  # fmt: skip
    finally:
        front.close()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert (tmp_path / "m" / "big.bin").read_bytes() == data
    assert (tmp_path / "m" / "sub" / "small.txt").read_bytes() == b"small"
    assert front.schemes.count("Digest") >= 3  # listing and both downloads went through Digest
    assert wrong.returncode != 0 and "Traceback" not in wrong.stderr
    assert "refused the login" in wrong.stderr, wrong.stderr
    assert not (tmp_path / "w" / "big.bin").exists()


def test_damaged_journal_is_a_clear_local_error_and_releases_the_lock(share, tmp_path: Path) -> None:
    (share.root / "a.txt").write_bytes(b"from the server")
    share.wait_indexed()
    dest = tmp_path / "mirror"
    assert pull_cli(share.url, dest).returncode == 0
    (dest / "mine.txt").write_bytes(b"my own file")
    (dest / ".davsync" / "state.db").write_bytes(b"this is not an SQLite database" * 100)
    for _ in range(2):  # the second run must meet the same message, not "another pull is running"
        r = pull_cli(share.url, dest)
        assert r.returncode == 5, r.stderr
        assert "state file" in r.stderr and "damaged" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (dest / "mine.txt").read_bytes() == b"my own file"
    (dest / ".davsync" / "state.db").rename(dest / ".davsync" / "state.db.damaged")  # what the message says to do
    r = pull_cli(share.url, dest)
    assert r.returncode == 0, r.stderr
    assert (dest / "a.txt").read_bytes() == b"from the server" and (dest / "mine.txt").read_bytes() == b"my own file"


def test_an_upload_logs_in_with_digest_and_sends_its_whole_body_again(share, tmp_path: Path, no_backoff) -> None:
    """The first PUT goes out with Basic and gets a Digest challenge; requests sends it again,
    and the body must start over (it once sent zero bytes and hung until the timeout)."""
    from davsync.client.remote import PutRequest, Remote

    data = os.urandom(300 * 1024)
    source = tmp_path / "up.bin"
    source.write_bytes(data)
    front = DigestOnlyFront(share.server.port)
    remote = Remote(ConnectionSettings(front.url, "alice", PASSWORDS["alice"], timeout=5))
    try:
        up = remote.put_file(PutRequest("up.bin", source, md5=hashlib.md5(data).hexdigest(), if_none_match=True,
                                        mtime_ns=source.stat().st_mtime_ns))
    finally:
        remote.close()
        front.close()
    assert up.sent_md5 == hashlib.md5(data).hexdigest()
    assert (share.root / "up.bin").read_bytes() == data
    assert front.schemes == ["Basic", "-", "Digest"], front.schemes  # one challenge each, no retry after a hang
