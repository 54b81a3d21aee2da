"""`davsync pull` against a server that stalls, trickles or floods: the process ends within its
deadlines, promptly on Ctrl-C, with bounded memory, and never leaves a partial file in place.

The server is a tiny http.server on 127.0.0.1; the client is a real `davsync pull` process
(its peak RSS is VmHWM from /proc/<pid>/status, read while it runs; wait4's ru_maxrss, also
printed, is an upper bound: Linux counts the forking test process's own peak in it)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import wait_until

ROOT = (b'<?xml version="1.0"?><d:multistatus xmlns:d="DAV:"><d:response><d:href>/share/</d:href>'
        b"<d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop>"
        b"<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>")  # fmt: skip
HEAD = b'<?xml version="1.0"?><d:multistatus xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">'
BIG = 8 * 1024 * 1024


def member(name: str, size: int = BIG, etag: str = "e") -> bytes:
    return (f"<d:response><d:href>/share/{name}</d:href><d:propstat><d:prop><d:resourcetype/>"
            f"<d:getcontentlength>{size}</d:getcontentlength><d:getetag>\"{etag}-{name}\"</d:getetag>"
            "<d:getlastmodified>Mon, 01 Jan 2024 00:00:00 GMT</d:getlastmodified></d:prop>"
            "<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>").encode()  # fmt: skip


Body = Callable[["Hostile"], Iterator[bytes]]


def one_big_file(h: Hostile, etag: str = "e") -> Iterator[bytes]:
    yield HEAD + ROOT[ROOT.index(b"<d:response>") : ROOT.index(b"</d:multistatus>")] + member("big.bin", BIG, etag)
    yield b"</d:multistatus>"


@dataclass
class Hostile:
    """What the server does with a Depth-1 listing and with a GET (a lazily made body each)."""

    listing: Body
    get: Body | None = None
    report: Body | None = None  # a sync-collection answer (else 501: no such REPORT here)
    released: threading.Event = field(default_factory=threading.Event)
    stalled: threading.Event = field(default_factory=threading.Event)  # set once it went silent
    port: int = 0

    def hang(self) -> Iterator[bytes]:
        """Send nothing more, holding the connection open, until the test ends."""
        self.stalled.set()
        self.released.wait(120)
        return iter(())

    def trickle(self, data: bytes, every: float) -> Iterator[bytes]:
        """A byte at a time, each well within the client's no-byte timeout."""
        self.stalled.set()
        for i in range(len(data)):
            if self.released.wait(every):
                return
            yield data[i : i + 1]


def serve(h: Hostile) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def _answer(self, status: int, chunks: Iterator[bytes], ctype: str, length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            if length is None:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(length))
            self.end_headers()
            try:
                for chunk in chunks:
                    if chunk:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if length is None else chunk)
                        self.wfile.flush()
                if length is None:
                    self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def do_PROPFIND(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Depth") == "0":
                self._answer(207, iter([ROOT]), "application/xml", len(ROOT))
            else:
                self._answer(207, h.listing(h), "application/xml")

        def do_REPORT(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if h.report is not None:
                self._answer(207, h.report(h), "application/xml")
                return
            self.send_response(501)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802
            assert h.get is not None
            self._answer(200, h.get(h), "application/octet-stream", BIG)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    h.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@dataclass
class Run:
    code: int
    out: str
    seconds: float
    peak_rss_mb: float  # VmHWM


@pytest.fixture
def pull(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    servers: list[tuple[ThreadingHTTPServer, Hostile]] = []

    def run(h: Hostile, *, env: dict[str, str] | None = None, interrupt: int | None = None) -> Run:
        servers.append((serve(h), h))
        dest = tmp_path / "mirror"
        proc = subprocess.Popen(
            [sys.executable, "-m", "davsync", "pull", f"http://127.0.0.1:{h.port}/share/", str(dest), "--quiet"],
            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            if interrupt is not None:
                wait_until(h.stalled.is_set, 60, "the server to go silent mid-answer")
                time.sleep(0.3)  # not a timing assertion: lets the client block in its read first
                started = time.monotonic()
                proc.send_signal(interrupt)
            else:
                started = time.monotonic()
            ended: list[tuple[int, int, object]] = []
            hwm = [0.0]

            def reaped() -> bool:
                try:
                    status_text = Path(f"/proc/{proc.pid}/status").read_text()
                except OSError:
                    status_text = ""
                for line in status_text.splitlines():
                    if line.startswith("VmHWM:"):
                        hwm[0] = max(hwm[0], int(line.split()[1]) / 1024)
                got = os.wait4(proc.pid, os.WNOHANG)
                if got[0]:
                    ended.append(got)
                return bool(got[0])

            wait_until(reaped, 180, "the client to end")
            seconds = time.monotonic() - started
            _, status, usage = ended[0]
            proc.returncode = os.waitstatus_to_exitcode(status)
            assert proc.stdout is not None
            out = proc.stdout.read()
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
            h.released.set()
        upper = usage.ru_maxrss / 1024  # type: ignore[attr-defined]  # KiB on Linux
        print(f"\n  exit {proc.returncode} after {seconds:.2f}s, VmHWM {hwm[0]:.0f} MB (ru_maxrss {upper:.0f} MB): "
              f"{out.strip()[:300]}")  # fmt: skip
        assert "Traceback" not in out
        assert hwm[0] > 0  # it was measured
        return Run(proc.returncode, out, seconds, hwm[0])

    yield run
    for server, h in servers:
        h.released.set()
        server.shutdown()
        server.server_close()


# --- memory: hostile listings --------------------------------------------------------------


def huge(h: Hostile) -> Iterator[bytes]:
    """Two million members, made as they are sent."""
    yield HEAD + member("", 0).replace(b"<d:resourcetype/>", b"<d:resourcetype><d:collection/></d:resourcetype>")
    batch = 2000
    for i in range(0, 2_000_000, batch):
        yield b"".join(member(f"f{j:07d}.bin", 10) for j in range(i, i + batch))
    yield b"</d:multistatus>"


def test_a_listing_of_two_million_members_is_refused_with_bounded_memory(pull) -> None:
    run = pull(Hostile(huge))
    assert run.code == 4
    assert "127.0.0.1:" in run.out and "more than" in run.out
    assert run.peak_rss_mb < 200, run.peak_rss_mb


def test_a_change_list_of_two_million_members_is_listed_folder_by_folder_instead(pull, tmp_path: Path) -> None:
    run = pull(Hostile(one_big_file, lambda h: iter([b"1" * BIG]), report=huge))
    assert run.code == 0, run.out
    assert (tmp_path / "mirror" / "big.bin").stat().st_size == BIG
    assert run.peak_rss_mb < 200, run.peak_rss_mb


def test_bad_deadline_settings_are_refused(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "davsync", "pull", "http://127.0.0.1:9/share/", str(tmp_path / "m")],
                       env={**os.environ, "DAVSYNC_STALL_TIMEOUT": "soon"}, capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 2 and "DAVSYNC_STALL_TIMEOUT must be a number of seconds" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("shape", ["text", "elements"])
def test_an_endless_property_is_refused_with_bounded_memory(pull, shape: str) -> None:
    def endless(h: Hostile) -> Iterator[bytes]:
        yield HEAD + b"<d:response><d:href>/share/x</d:href><d:propstat><d:prop><d:displayname>"
        piece = b"y" * 65536 if shape == "text" else b"<oc:x>1</oc:x>" * 4096
        for _ in range(4096):  # 256 MiB
            yield piece

    run = pull(Hostile(endless))
    assert run.code == 4 and "127.0.0.1:" in run.out
    assert run.peak_rss_mb < 200, run.peak_rss_mb


# --- deadlines: a server that trickles -----------------------------------------------------

QUICK = {"DAVSYNC_TIMEOUT": "2", "DAVSYNC_STALL_TIMEOUT": "3"}


def test_a_trickling_download_ends_the_run_at_the_stall_deadline(pull, tmp_path: Path) -> None:
    def get(h: Hostile) -> Iterator[bytes]:
        yield b"x" * 100_000
        yield from h.trickle(b"x" * BIG, 0.5)  # a byte every 0.5 s: never silent for 2 s

    run = pull(Hostile(one_big_file, get), env=QUICK)
    assert run.code == 4, run.out
    assert "DAVSYNC_STALL_TIMEOUT" in run.out
    assert not (tmp_path / "mirror" / "big.bin").exists()
    assert run.seconds < 60  # generous: the deadline is 3 s (retries may add a few rounds)


def test_a_trickling_listing_ends_the_run_at_the_stall_deadline(pull) -> None:
    def listing(h: Hostile) -> Iterator[bytes]:
        yield HEAD
        yield from h.trickle(member("a.bin") * 1000, 0.5)

    run = pull(Hostile(listing), env=QUICK)
    assert run.code == 4, run.out
    assert "DAVSYNC_STALL_TIMEOUT" in run.out
    assert run.seconds < 60


# --- Ctrl-C: whatever the server does ------------------------------------------------------


def test_ctrl_c_mid_listing_ends_at_once(pull) -> None:
    def listing(h: Hostile) -> Iterator[bytes]:
        yield HEAD + member("a.bin")
        yield from h.hang()

    run = pull(Hostile(listing), interrupt=signal.SIGINT)
    assert run.code == 130 and "interrupted" in run.out
    assert run.seconds < 5, run.seconds


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_mid_download_ends_at_once_and_places_nothing(pull, tmp_path: Path, sig: int) -> None:
    def get(h: Hostile) -> Iterator[bytes]:
        yield b"x" * 100_000
        yield from h.hang()

    run = pull(Hostile(one_big_file, get), interrupt=sig)
    assert run.code == 130 and "interrupted" in run.out
    assert run.seconds < 5, run.seconds
    assert not (tmp_path / "mirror" / "big.bin").exists()


def test_ctrl_c_mid_download_keeps_the_previous_version_in_place(pull, tmp_path: Path) -> None:
    first = Hostile(one_big_file, lambda h: iter([b"1" * BIG]))
    assert pull(first).code == 0
    assert (tmp_path / "mirror" / "big.bin").read_bytes() == b"1" * BIG

    def get(h: Hostile) -> Iterator[bytes]:
        yield b"2" * 100_000
        yield from h.hang()

    run = pull(Hostile(lambda h: one_big_file(h, "changed"), get), interrupt=signal.SIGINT)
    assert run.code == 130 and run.seconds < 5, (run.code, run.seconds)
    assert (tmp_path / "mirror" / "big.bin").read_bytes() == b"1" * BIG
