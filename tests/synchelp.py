"""End-to-end harness for `davsync sync` / `push` (and `pull`): a real davsync server on
127.0.0.1 behind a recording proxy, the client as its own process, a phone (curl) as a third
writer, and one checker for the invariants every two-way sync test must hold (issue 12):

- no content lost: every MD5 present when a run starts, or written by anyone during it, is
  afterwards on the share, in DEST, in DEST/.davsync/trash or in the server's versions area;
- convergence after exit 0: the same tree and MD5s on both sides (ignoring DEST/.davsync);
- an immediate second run sends no PUT/GET/MOVE/DELETE/MKCOL/COPY and exits 0;
- no partial file visible on either side (every visible file is a complete version someone
  wrote; no temp names);
- the journal (DEST/.davsync/state.db) holds a base only for a version present on both sides.

The proxy parses HTTP passively in both directions, so a test can count what reached the server
(`Run.requests`) and act at an exact moment of an exchange (`RecordingProxy.on`): run a phone's
write just before the client's PUT goes on (a deterministic 412 race), cut the connection after
the server has answered (a lost response), or SIGKILL the client in the middle of a body.
A bulk upload (davsync's POST of a tar of small files) is recorded as the POST and, once its
body has passed, as one PUT exchange per member (`in_bulk`: the POST's number) carrying the
member's preconditions and checksum as headers and, once answered, its own status: per-path
counts and header checks hold whichever way a file travelled. Likewise a bundle REPORT (many
small downloads in one answer) is followed by one GET exchange per file it asked for, with the
REPORT's status.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import unicodedata
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from brokered import BrokeredServer, brokered, linux_tool
from conftest import PASSWORDS, kill_hard, stale_in_index, wait_until

# Requests that move or change content; a no-op run sends none of them.
TRANSFER_METHODS = frozenset({"PUT", "GET", "MOVE", "DELETE", "MKCOL", "COPY"})
CONFLICT_RE = re.compile(r"\.sync-conflict-\d{8}-\d{6}(-\d+)?(?=\.[^./]*$|$)")
SERVER_TEMP = ".~davsync-"  # the server's in-flight upload files and in-share versions area
DIR = "<dir>"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def md5_file(path: Path) -> str:
    with open(path, "rb", buffering=0) as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def is_conflict_copy(rel: str) -> bool:
    return bool(CONFLICT_RE.search(rel.rpartition("/")[2]))


def conflict_copies(tree: dict[str, str], of: str | None = None) -> dict[str, str]:
    """Conflict copies in a tree (of one path, when given: `a/x.txt` -> `a/x.sync-conflict-...txt`)."""
    out = {}
    for rel, digest in tree.items():
        if not is_conflict_copy(rel):
            continue
        if of is None or CONFLICT_RE.sub("", rel) == of:
            out[rel] = digest
    return out


class KnownBug(AssertionError):
    """An expectation the engine does not meet yet (a reported engine bug). Tests collect these
    with `Known` and raise at their very end, after every other check ran, so an
    `xfail(strict=True, raises=KnownBug)` marks exactly that bug and no other failure."""


@dataclass
class Known:
    bugs: list[str] = field(default_factory=list)

    def expect(self, ok: bool, bug: str) -> None:
        if not ok:
            self.bugs.append(bug)

    def done(self) -> None:
        if self.bugs:
            raise KnownBug("; ".join(self.bugs))


# --- the recording proxy ---------------------------------------------------------------------


@dataclass
class Exchange:
    """One request seen by the proxy, and what the server answered."""

    n: int
    conn: int
    method: str
    target: str
    headers: dict[str, str]
    status: int | None = None
    body_sent: int = 0  # request body bytes forwarded to the server
    body_received: int = 0  # response body bytes forwarded to the client
    started: float = field(default_factory=time.monotonic)  # when its head reached the proxy
    answered: float | None = None  # when the server's answer did
    in_bulk: int | None = None  # a bulk upload's member: the number of its POST
    members: list[Exchange] = field(default_factory=list)  # a bulk POST's members
    _sent: bytearray | None = None  # a bulk POST's body, and its answer (parsed into `members`)
    _answer: bytearray | None = None

    @property
    def is_bundle(self) -> bool:
        """davsync's bundle REPORT (a tar of small files, 200) or bulk POST, not a change list (207)."""
        return (self.method == "REPORT" and self.status == 200) or self.method == "POST"

    def bulk_members(self) -> list[Exchange]:
        """A bulk POST's body as one PUT exchange per member; a bundle REPORT's as one GET per file."""
        from davsync.paxstream import PaxReader, TarFormatError

        body = bytes(self._sent or b"")
        folder = urlsplit(self.target).path.rstrip("/")
        if self.method == "REPORT":
            if b"bundle" not in body[:300]:
                return []  # a change list, not a bundle
            from lxml import etree

            files = etree.fromstring(body).iterfind("{urn:davsync:}file")
            return [Exchange(self.n, self.conn, "GET", f"{folder}/{quote(f.text or '')}", {}, in_bulk=self.n)
                    for f in files]  # fmt: skip
        pos = 0

        def read(n: int) -> bytes:
            nonlocal pos
            chunk = body[pos : pos + n]
            pos += len(chunk)
            return chunk

        reader = PaxReader(read)
        out: list[Exchange] = []
        try:
            while (m := reader.next()) is not None:
                headers = {"oc-checksum": f"MD5:{m.attrs.get('md5', '')}"}
                if "if-match" in m.attrs:
                    headers["if-match"] = m.attrs["if-match"]
                if "if-none-match" in m.attrs:
                    headers["if-none-match"] = m.attrs["if-none-match"]
                out.append(Exchange(self.n, self.conn, "PUT", f"{folder}/{quote(m.path)}", headers, in_bulk=self.n,
                                    body_sent=m.size))  # fmt: skip
        except TarFormatError:
            pass  # a cut body: the members before the cut
        return out

    def answer_members(self) -> None:
        """Each member's status from the bulk POST's multistatus (in order); a bundle's: the REPORT's."""
        if self.method == "REPORT":
            for ex in self.members:
                ex.status = self.status
            return
        found = re.findall(rb"<d:status>HTTP/1\.1 (\d{3})", bytes(self._answer or b""))
        for ex, status in zip(self.members, found, strict=False):  # (a refusal of the whole POST lists none)
            ex.status = int(status)

    @property
    def path(self) -> str:
        """Relative, decoded, NFC, no slashes at either end ('' is the root)."""
        return nfc(unquote(urlsplit(self.target).path)).strip("/")

    @property
    def destination(self) -> str | None:
        d = self.headers.get("destination")
        return None if d is None else nfc(unquote(urlsplit(d).path)).strip("/")

    def __str__(self) -> str:
        extra = f" -> {self.destination}" if self.destination is not None else ""
        return f"{self.method} /{self.path}{extra} [{self.status}]"


class _Framer:
    """Splits one direction of an HTTP/1.1 connection into messages without changing a byte.

    `feed` yields ("head", (start_line, headers)), ("headdata", bytes), ("data", body bytes) and
    ("end", None) in stream order; a head is yielded before its bytes are, so the proxy can act
    before forwarding it.
    """

    def __init__(self, request: bool, method_of_next: Callable[[], str] = lambda: "GET") -> None:
        self.request = request
        self.method_of_next = method_of_next
        self.state = "head"
        self.buf = bytearray()
        self.left = 0

    def feed(self, data: bytes) -> Iterator[tuple[str, Any]]:
        i, n = 0, len(data)
        while i < n:
            if self.state == "head":
                self.buf += data[i:]
                k = self.buf.find(b"\r\n\r\n")
                if k < 0:
                    return
                head, rest = bytes(self.buf[: k + 4]), bytes(self.buf[k + 4 :])
                self.buf.clear()
                data, i, n = rest, 0, len(rest)
                lines = head.decode("latin-1").split("\r\n")
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                self._framing(lines[0], headers)  # before yielding: the response side pops its request next
                yield "head", (lines[0], headers)
                yield "headdata", head
                if self.state == "head":
                    yield "end", None
            elif self.state == "close":
                yield "data", data[i:]
                return
            elif self.state in ("body", "chunk-data"):
                take = min(self.left, n - i)
                yield "data", data[i : i + take]
                i += take
                self.left -= take
                if self.left == 0:
                    if self.state == "body":
                        self.state = "head"
                        yield "end", None
                    else:
                        self.state = "chunk-line"
            else:  # chunk-line or trailer: one CRLF-terminated line
                k = data.find(b"\n", i)
                piece = data[i : n if k < 0 else k + 1]
                self.buf += piece
                yield "data", piece
                i += len(piece)
                if k < 0:
                    return
                line = bytes(self.buf).strip()
                self.buf.clear()
                if self.state == "trailer":
                    if not line:
                        self.state = "head"
                        yield "end", None
                    continue
                size = int(line.split(b";")[0] or b"0", 16)
                if size == 0:
                    self.state = "trailer"
                else:
                    self.state, self.left = "chunk-data", size + 2

    def _framing(self, start: str, headers: dict[str, str]) -> None:
        if not self.request:
            parts = start.split(" ", 2)
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 200
            if status < 200 or status in (204, 304) or self.method_of_next() == "HEAD":
                self.state = "head"
                return
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.state = "chunk-line"
        elif headers.get("content-length", "0").strip() not in ("", "0"):
            self.state, self.left = "body", int(headers["content-length"])
        elif self.request or "content-length" in headers:
            self.state = "head"
        else:
            self.state = "close"


@dataclass
class Trigger:
    """Act at one moment of a matching exchange.

    phase: "request" (the request head arrived; nothing of it forwarded yet), "body" (`after`
    request-body bytes forwarded), "response" (the server's answer arrived; nothing of it
    forwarded to the client yet: cutting here is a lost response), "response-body" (`after`
    response-body bytes forwarded).
    """

    method: str | None = None
    path: str | Callable[[str], bool] | None = None
    phase: str = "request"
    after: int = 0
    nth: int = 1  # fire from the nth match on...
    times: int = 1  # ...this many times
    action: Callable[[Exchange], object] | None = None
    cut: bool = False  # then close the connection
    respond: bytes | None = None  # ("request" phase) answer this instead of forwarding, then close
    header: tuple[str, str] | None = None  # (lowercase name, value) the request must carry
    seen: int = 0
    counted: set[int] = field(default_factory=set)
    fired: list[Exchange] = field(default_factory=list)

    def matches(self, ex: Exchange) -> bool:
        if self.method is not None and ex.method != self.method:
            return False
        if self.header is not None and ex.headers.get(self.header[0]) != self.header[1]:
            return False
        if self.path is None:
            return True
        return self.path(ex.path) if callable(self.path) else ex.path == self.path


class _Cut(Exception):
    pass


class RecordingProxy:
    """A TCP proxy on 127.0.0.1 that records every HTTP exchange and fires triggers."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self.log: list[Exchange] = []
        self.triggers: list[Trigger] = []
        self._conns = 0
        self._piping: Counter[int] = Counter()  # connection -> its pipe threads still running
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def mark(self) -> int:
        with self._lock:
            return len(self.log)

    def since(self, mark: int) -> list[Exchange]:
        with self._lock:
            return list(self.log[mark:])

    def finished(self, mark: int, timeout: float = 30) -> list[Exchange]:
        """`since(mark)` once every connection that carried those exchanges has closed. A body's
        members and their statuses are recorded after its last bytes are forwarded, so a client
        that has exited may have heard them before this proxy's thread wrote them down."""
        conns = {ex.conn for ex in self.since(mark)}

        def closed() -> bool:
            with self._lock:
                return not any(self._piping[c] for c in conns)

        wait_until(closed, timeout, "the proxy to finish recording the exchanges")
        return self.since(mark)

    def on(self, method: str | None = None, path: str | Callable[[str], bool] | None = None, **kw: Any) -> Trigger:
        t = Trigger(method, path, **kw)
        with self._lock:
            self.triggers.append(t)
        return t

    def clear_triggers(self) -> None:
        with self._lock:
            self.triggers.clear()

    def drop_connections(self) -> None:
        """Close every open connection (a cut cable); new ones are accepted again."""
        with self._lock:
            socks = list(self._sockets)
        for s in socks:
            _close(s)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self.drop_connections()

    # -- plumbing --

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                _close(client)  # the server is down: the client sees a refused/closed connection
                continue
            with self._lock:
                self._conns += 1
                conn_id = self._conns
                self._sockets |= {client, upstream}
                self._piping[conn_id] = 2
            pending: deque[Exchange] = deque()
            args = (conn_id, pending, client, upstream)
            threading.Thread(target=self._pipe, args=(*args, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(*args, False), daemon=True).start()

    def _fire(self, ex: Exchange, phase: str, position: int = 0, length: int = 0,
              reply: socket.socket | None = None) -> int | None:  # fmt: skip
        """Run the triggers due at this moment; returns the byte offset to cut at, if any."""
        due: list[tuple[Trigger, int]] = []
        positional = phase in ("body", "response-body")
        with self._lock:
            for t in self.triggers:
                if t.phase != phase or len(t.fired) >= t.times:
                    continue
                if positional and not position <= t.after < position + max(length, 1):
                    continue
                if not t.matches(ex):
                    continue
                if ex.n not in t.counted:
                    t.counted.add(ex.n)
                    t.seen += 1
                if t.seen < t.nth or ex in t.fired:
                    continue
                t.fired.append(ex)
                due.append((t, t.after - position if positional else 0))
        cut_at: int | None = None
        for t, offset in due:
            if t.action is not None:
                t.action(ex)
            if t.respond is not None and reply is not None:
                ex.status = int(t.respond.split(b" ", 2)[1])
                reply.sendall(t.respond)
                cut_at = 0
            if t.cut:
                cut_at = offset if cut_at is None else min(cut_at, offset)
        return cut_at

    def _pipe(self, conn_id: int, pending: deque[Exchange], client: socket.socket, upstream: socket.socket,
              to_server: bool) -> None:  # fmt: skip
        src, dst = (client, upstream) if to_server else (upstream, client)
        framer = _Framer(to_server, lambda: pending[0].method if pending else "GET")
        current: Exchange | None = None
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                for kind, value in framer.feed(data):
                    if kind == "head":
                        start, headers = value
                        if to_server:
                            method, _, rest = start.partition(" ")
                            target = rest.rsplit(" ", 1)[0]
                            with self._lock:
                                current = Exchange(len(self.log), conn_id, method, target, headers)
                                self.log.append(current)
                            if method == "POST" and "tar" in headers.get("content-type", ""):
                                current._sent, current._answer = bytearray(), bytearray()
                            elif method == "REPORT":
                                current._sent = bytearray()
                            pending.append(current)
                            if self._fire(current, "request", reply=src) is not None:
                                raise _Cut
                        else:
                            parts = start.split(" ", 2)
                            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
                            if status >= 200 or status == 0:
                                current = pending.popleft() if pending else None
                                if current is not None:
                                    current.status = status
                                    current.answered = time.monotonic()
                                    if current.method == "REPORT":
                                        current.answer_members()
                                    if self._fire(current, "response") is not None:
                                        raise _Cut
                            else:
                                current = None  # an interim 1xx answer
                    elif kind == "headdata":
                        dst.sendall(value)
                    elif kind == "data":
                        self._forward(dst, value, current, to_server)
                    elif kind == "end":
                        if current is not None and current._sent is not None:
                            if to_server:  # a bulk POST's body has passed: record its members
                                with self._lock:
                                    current.members = current.bulk_members()
                                    for m in current.members:
                                        m.n = len(self.log)
                                        self.log.append(m)
                            else:
                                current.answer_members()
                        current = None if to_server else current
        except (_Cut, OSError):
            pass
        finally:
            for s in (src, dst):
                _close(s)
            with self._lock:
                self._sockets -= {src, dst}
                self._piping[conn_id] -= 1
                if not self._piping[conn_id]:
                    del self._piping[conn_id]

    def _forward(self, dst: socket.socket, data: bytes, ex: Exchange | None, to_server: bool) -> None:
        if ex is None or not data:
            dst.sendall(data)
            return
        phase = "body" if to_server else "response-body"
        position = ex.body_sent if to_server else ex.body_received
        cut = self._fire(ex, phase, position, len(data))
        if cut is not None:
            dst.sendall(data[: max(0, cut)])
            raise _Cut
        dst.sendall(data)
        if to_server:
            ex.body_sent += len(data)
            if ex._sent is not None:
                ex._sent += data
        else:
            ex.body_received += len(data)
            if ex._answer is not None:
                ex._answer += data


def canned(status: int, reason: str, body: bytes = b"", content_type: str = "text/plain") -> bytes:
    """A whole HTTP response for `Trigger(respond=...)`."""
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")  # fmt: skip
    return head.encode() + body


INVALID_TOKEN = canned(403, "Forbidden", b'<?xml version="1.0"?><D:error xmlns:D="DAV:"><D:valid-sync-token/></D:error>',
                       "application/xml")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _RcloneServer:
    proc: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


# --- trees, the ledger and the journal ----------------------------------------------------


def tree(
    root: Path, *, skip: Callable[[str, bool], bool] = lambda rel, is_dir: False, twins: bool = False
) -> dict[str, str]:
    """rel path (NFC) -> MD5 for files, DIR for folders; `skip(rel, is_dir)` prunes. `twins`: a
    file whose NFC name is taken already (a Unicode twin) is kept under its own spelling."""
    out: dict[str, str] = {}
    if not root.is_dir():
        return out
    for folder, dirs, files in os.walk(root):
        rel_folder = Path(folder).relative_to(root).as_posix()
        prefix = "" if rel_folder == "." else nfc(rel_folder) + "/"
        for d in list(dirs):
            rel = prefix + nfc(d)
            if skip(rel, True):
                dirs.remove(d)
            else:
                out[rel] = DIR
        for f in files:
            rel = prefix + nfc(f)
            if skip(rel, False):
                continue
            if twins and rel in out:
                rel = prefix + f
            p = Path(folder, f)
            if p.is_symlink():
                continue
            try:
                out[rel] = md5_file(p)
            except (FileNotFoundError, PermissionError):
                pass
    return out


def files_only(t: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in t.items() if v != DIR}


def all_md5s(root: Path) -> set[str]:
    return {v for v in tree(root).values() if v != DIR}


def read_journal(dest: Path) -> dict[str, dict[str, Any]]:
    """path -> row (as a dict by column name) of DEST/.davsync/state.db's `placed` table."""
    db = dest / ".davsync" / "state.db"
    if not db.exists():
        return {}
    conn = sqlite3.connect(str(db), timeout=30)
    try:
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute("SELECT * FROM placed").fetchall()
        except sqlite3.OperationalError:
            return {}
        return {r["path"]: dict(r) for r in rows}
    finally:
        conn.close()


# --- runs ------------------------------------------------------------------------------------


@dataclass
class Run:
    """One finished client process: its exit status, output, --json summary and requests."""

    args: list[str]
    code: int
    stdout: str
    stderr: str
    requests: list[Exchange]
    seconds: float

    @property
    def json(self) -> dict[str, Any]:
        try:
            data = json.loads(self.stdout)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def methods(self) -> Counter[str]:
        return Counter(ex.method for ex in self.requests)

    def of(self, method: str, path: str | None = None) -> list[Exchange]:
        return [ex for ex in self.requests if ex.method == method and (path is None or ex.path == path)]

    @property
    def transfers(self) -> list[Exchange]:
        return [ex for ex in self.requests if ex.method in TRANSFER_METHODS or ex.is_bundle]

    @property
    def downloads(self) -> list[Exchange]:
        """GETs and bundle REPORTs (many small files in one answer)."""
        return [ex for ex in self.requests if ex.method == "GET" or (ex.is_bundle and ex.method == "REPORT")]

    def __repr__(self) -> str:
        return str(self)

    def __str__(self) -> str:
        reqs = "\n  ".join(map(str, self.requests[:80]))
        return (f"davsync {' '.join(self.args[:1])} exited {self.code} in {self.seconds:.1f}s\n"
                f"stdout: {self.stdout[-3000:]}\nstderr: {self.stderr[-3000:]}\nrequests:\n  {reqs}")  # fmt: skip


# --- the world: server + proxy + DEST + phone + checker ---------------------------------


class Phone:
    """A third writer with real HTTP (curl), straight to the server (not through the proxy, so
    the client's request counts stay the client's)."""

    def __init__(self, world: SyncWorld, user: str = "alice") -> None:
        self.world = world
        self.user = user
        self.exe = "curl" if brokered() else shutil.which("curl")  # the lane's broker runs it on the Linux side

    def _url(self, rel: str) -> str:
        return self.world.server_url + quote(rel)

    def _curl(self, *args: str, data: bytes | None = None) -> tuple[int, dict[str, str]]:
        if self.exe is None:
            import pytest

            pytest.skip("curl is not installed (apt-get install curl); .ci/run installs it")
        cmd = [self.exe, "-sS", "-o", "/dev/null", "-D", "-", "-w", "%{http_code}", "-u",
               f"{self.user}:{PASSWORDS[self.user]}", *args]  # fmt: skip
        if data is not None:
            cmd += ["--data-binary", "@-"]
        if brokered():
            out = linux_tool("curl", cmd[1:], data).decode("latin-1")
        else:
            out = subprocess.run(cmd, input=data, capture_output=True, timeout=60).stdout.decode("latin-1")
        headers = {}
        for line in out.splitlines()[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        code = out[-3:]
        return (int(code) if code.isdigit() else 0), headers

    def put(self, rel: str, data: bytes, *, if_match: str | None = None, if_none_match: bool = False) -> int:
        """PUT like a phone app; stored content joins the ledger (it must never be lost)."""
        extra = ["-H", "Expect:"]
        if if_match:
            extra += ["-H", f"If-Match: {if_match}"]
        if if_none_match:
            extra += ["-H", "If-None-Match: *"]
        self.world.seen.add(md5(data))  # it may be visible on the share before curl returns
        code = self._curl("-X", "PUT", *extra, self._url(rel), data=data)[0]
        if 200 <= code < 300:
            self.world.remember(md5(data))
        return code

    def delete(self, rel: str) -> int:
        return self._curl("-X", "DELETE", self._url(rel))[0]

    def move(self, src: str, dst: str, overwrite: bool = False) -> int:
        return self._curl("-X", "MOVE", "-H", f"Destination: {self._url(dst)}", "-H",
                          f"Overwrite: {'T' if overwrite else 'F'}", self._url(src))[0]  # fmt: skip

    def mkcol(self, rel: str) -> int:
        return self._curl("-X", "MKCOL", self._url(rel))[0]

    def etag(self, rel: str) -> str | None:
        code, headers = self._curl("-I", self._url(rel))
        return headers.get("etag") if code == 200 else None


class SyncWorld:
    """A share (a real davsync server on 127.0.0.1, in this process), the recording proxy in
    front of it, a DEST, a phone, and the invariant checker."""

    def __init__(self, tmp_path: Path, users_file: Path, *, root: Path | None = None, dest: Path | None = None,
                 state_dir: Path | None = None, start: bool = True, backend: str = "davsync",
                 **server_opts: Any) -> None:  # fmt: skip
        self.tmp = tmp_path
        self.users_file = users_file
        self.root = root or tmp_path / "share"
        self.root.mkdir(parents=True, exist_ok=True)
        self.dest = dest or tmp_path / "dest"
        self.state_dir = state_dir or tmp_path / "server-state"
        self.state_dirs = [self.state_dir]  # every state dir used: their versions areas count as kept
        self.server_opts = server_opts
        self.backend = backend  # "davsync", or "rclone": `rclone serve webdav` (no checksums, no changes list)
        self.keeps_versions = backend == "davsync"
        self.server: Any = None
        self.proxy: RecordingProxy | None = None
        self.ledger: set[str] = set()  # MD5s that must survive
        self.seen: set[str] = set()  # every MD5 anyone ever had: a visible file holds one of these
        self.last_seen: dict[str, list[str]] = {}  # MD5 -> where a snapshot first found it (for messages)
        self.runs: list[Run] = []
        self.phone = Phone(self)
        self.running = False  # a client process is running: local writes join the ledger
        self._procs: list[subprocess.Popen[bytes]] = []
        self.journal_before: dict[str, dict[str, Any]] = {}  # the journal when the last run started
        # Sample both sides for partial files while a client runs (off where a test itself writes
        # a file in place during a run, and for rclone serve, which writes PUTs in place).
        self.sampling = backend == "davsync"
        self.sampled_problems: list[str] = []
        self._sampler: tuple[threading.Event, threading.Thread] | None = None
        if start:
            self.start_server()

    # -- the server --

    def start_server(self, state_dir: Path | None = None) -> None:
        if self.backend == "rclone":
            self._start_rclone()
            return
        if state_dir is not None:
            self.state_dir = state_dir
            self.state_dirs.append(state_dir)
        if brokered():  # the Windows lane: a `davsync serve` on the Linux side (tests/brokered.py)
            self.server = BrokeredServer(self.root, self.state_dir, self.users_file, **self.server_opts)
        else:
            self._start_in_process()
        if self.proxy is None:
            self.proxy = RecordingProxy(self.server.port)
        else:
            self.proxy.target_port = self.server.port

    def _start_in_process(self) -> None:
        from davsync.server.app import DavServer
        from davsync.server.settings import ServeSettings
        from davsync.users import Users

        settings = ServeSettings(root=self.root, host="127.0.0.1", port=0, state_dir=self.state_dir,
                                 users=self.users_file, **self.server_opts).resolved()  # fmt: skip
        self.server = DavServer(settings, Users.load(self.users_file))
        self.server.start()
        wait_until(self.server.scan_done.is_set, 60, "the server's initial index scan")

    def _start_rclone(self) -> None:
        exe = shutil.which("rclone")
        if exe is None:
            import pytest

            pytest.skip("rclone is not installed (apt-get install rclone); .ci/run installs it")
        port = _free_port()
        proc = subprocess.Popen([exe, "serve", "webdav", str(self.root), "--addr", f"127.0.0.1:{port}", "--user", "alice",
                                 "--pass", PASSWORDS["alice"], "--config", "/dev/null", "--dir-cache-time", "0s"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        self.server = _RcloneServer(proc, port)

        def up() -> bool:
            assert proc.poll() is None, "rclone serve webdav exited"
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return True
            except OSError:
                return False

        wait_until(up, 30, "rclone serve webdav to listen")
        if self.proxy is None:
            self.proxy = RecordingProxy(port)
        else:
            self.proxy.target_port = port

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def restart_server(self, state_dir: Path | None = None) -> None:
        """Stop and start again (same root); a new state dir is a server with a new identity."""
        self.stop_server()
        if self.proxy is not None:
            self.proxy.drop_connections()
        self.start_server(state_dir)

    @property
    def url(self) -> str:
        """What the client is given: the proxy (it survives server restarts)."""
        assert self.proxy is not None
        return self.proxy.url

    @property
    def server_url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}/"

    def wait_indexed(self, timeout: float = 30) -> None:
        """Wait until the server's change journal knows what is on its disk (its watcher is asynchronous)."""
        def on_disk() -> set[str]:
            return set(self.share_tree())

        if self.backend != "davsync":
            return
        if brokered():
            wait_until(lambda: self.server.caught_up(SERVER_TEMP), timeout, "the server's index to catch up with its disk")
            return
        index = self.server.state.index

        def caught_up() -> bool:  # every path, and every file as it is now (an overwrite keeps its path)
            return ({nfc(p) for p in index.live_paths()} == on_disk()
                    and not stale_in_index(index, self.root, skip=lambda name: name.startswith(SERVER_TEMP)))  # fmt: skip

        wait_until(caught_up, timeout, "the server's index to catch up with its disk")

    def versions_dirs(self) -> list[Path]:
        if not self.keeps_versions:
            return []
        return [d / "versions" for d in self.state_dirs] + [self.root / ".~davsync-versions"]

    # -- the sides --

    def share_tree(self) -> dict[str, str]:
        return tree(self.root, skip=lambda rel, is_dir: rel.rpartition("/")[2].startswith(SERVER_TEMP))

    def dest_tree(self) -> dict[str, str]:
        return tree(self.dest, skip=lambda rel, is_dir: rel == ".davsync")

    def everywhere(self) -> set[str]:
        """Every MD5 kept anywhere: the share, DEST (with its trash), the server's versions."""
        return set(self.locations())

    def locations(self) -> dict[str, list[str]]:
        """MD5 -> where it is (share:PATH, DEST:PATH, trash:PATH, versions:PATH)."""
        out: dict[str, list[str]] = {}
        share = tree(self.root, skip=lambda rel, is_dir: rel.rpartition("/")[2].startswith(SERVER_TEMP), twins=True)
        sides = [("share", share), ("DEST", self.dest_tree()), ("trash", tree(self.dest / ".davsync" / "trash"))]
        sides += [("versions", tree(d)) for d in self.versions_dirs()]
        for label, t in sides:
            for rel, digest in t.items():
                if digest != DIR:
                    out.setdefault(digest, []).append(f"{label}:{rel}")
        return out

    def remember(self, digest: str) -> None:
        self.ledger.add(digest)
        self.seen.add(digest)

    def snapshot(self) -> None:
        """What must survive the run about to start: with a server that keeps versions, everything
        present anywhere; without one (rclone serve), the versions not yet synced, plus the trash."""
        where = self.locations()
        self.last_seen.update(where)
        present = set(where)
        self.seen |= present
        if self.keeps_versions:
            self.ledger |= present
        else:
            self.ledger = self.unsynced()

    def unsynced(self) -> set[str]:
        rows = {nfc(p): r for p, r in read_journal(self.dest).items()}
        out = all_md5s(self.dest / ".davsync" / "trash")
        for side, t in (("remote_md5", self.share_tree()), ("md5", self.dest_tree())):
            for rel, digest in t.items():
                row = rows.get(rel)
                if digest != DIR and (row is None or digest not in (row.get(side), row.get("md5"))):
                    out.add(digest)
        return out

    # writes on the PC (through DEST), by a user
    def write(self, rel: str, data: bytes | str, age: float = 30.0) -> Path:
        """Write a local file, dated `age` seconds ago (settled: not 'still being written')."""
        raw = data.encode() if isinstance(data, str) else data
        p = self.dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if self.running:
            self.remember(md5(raw))  # before it is visible: the partial sampler may look any time
        with self._user_overwrites(p):
            if self.running:
                self._save_whole(p, raw)
            else:
                p.write_bytes(raw)
        if age:
            t = time.time() - age
            os.utime(p, (t, t))
        return p

    def _save_whole(self, p: Path, raw: bytes) -> None:
        """Save as editors do, staged outside DEST and renamed in, so the sampler never sees the
        empty file an in-place write passes through (a test that writes in place turns it off)."""
        staging = self.tmp / "user-saves"
        staging.mkdir(exist_ok=True)
        staged = staging / f"{uuid.uuid4().hex}.tmp"
        staged.write_bytes(raw)
        try:
            os.replace(staged, p)
        except OSError as e:
            staged.unlink()
            if e.errno != errno.EXDEV:
                raise
            self.remember(md5(b""))  # a DEST on another volume: in place, through an empty file
            p.write_bytes(raw)

    def rm(self, rel: str) -> None:
        p = self.dest / rel
        with self._user_overwrites(p):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()

    @contextmanager
    def _user_overwrites(self, p: Path) -> Iterator[None]:
        """The user overwrites or deletes their own files between runs: a version that was the
        only copy anywhere is gone by their hand, so it leaves the ledger (not a sync's loss)."""
        if self.running or not p.exists():
            yield
            return
        old = {v for v in tree(p).values() if v != DIR} if p.is_dir() else {md5_file(p)}
        yield
        if old & self.ledger:
            self.ledger -= old - self.everywhere()

    def mv(self, src: str, dst: str) -> None:
        (self.dest / dst).parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.dest / src, self.dest / dst)

    def mkdir(self, rel: str) -> None:
        (self.dest / rel).mkdir(parents=True, exist_ok=True)

    # writes on the Pi's own disk (the initial share; not through WebDAV)
    def seed(self, files: dict[str, bytes | str], dirs: Iterable[str] = ()) -> None:
        for rel, data in files.items():
            p = self.root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            raw = data.encode() if isinstance(data, str) else data
            if self.running:
                self.remember(md5(raw))
            p.write_bytes(raw)
        for d in dirs:
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.wait_indexed()

    # writes on the share through WebDAV (their old versions are kept by the server)
    def rput(self, rel: str, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        folder = rel.rpartition("/")[0]
        if folder:
            self.rmkdir(folder)
        code = self.phone.put(rel, raw)
        assert code in (200, 201, 204), f"PUT {rel} -> {code}"

    def rmkdir(self, rel: str) -> None:
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if not (self.root / sub).is_dir():
                code = self.phone.mkcol(sub)
                assert code == 201, f"MKCOL {sub} -> {code}"

    def rrm(self, rel: str) -> None:
        code = self.phone.delete(rel)
        assert code in (200, 204), f"DELETE {rel} -> {code}"

    def rmv(self, src: str, dst: str, overwrite: bool = False) -> None:
        folder = dst.rpartition("/")[0]
        if folder:
            self.rmkdir(folder)
        code = self.phone.move(src, dst, overwrite)
        assert code in (201, 204), f"MOVE {src} -> {dst}: {code}"

    # -- the client --

    def command(self, verb: str, *args: str, user: str = "alice", json_out: bool = True) -> list[str]:
        cmd = [verb, self.url, str(self.dest), "--user", user, *args]
        if json_out and "--json" not in args:
            cmd.append("--json")
        return cmd

    def env(self, user: str = "alice") -> dict[str, str]:
        return {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS[user], "PYTHONUNBUFFERED": "1"}

    def popen(self, verb: str, *args: str, user: str = "alice", json_out: bool = True) -> subprocess.Popen[bytes]:
        """Start a client process (to kill, or to race); the ledger snapshot is taken first."""
        self.snapshot()
        self.journal_before = read_journal(self.dest)
        cmd = [sys.executable, "-m", "davsync", *self.command(verb, *args, user=user, json_out=json_out)]
        proc = subprocess.Popen(cmd, env=self.env(user), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._procs.append(proc)
        self.running = True
        if self.sampling:
            self._start_sampler()
        return proc

    def _start_sampler(self) -> None:
        """While a client runs, look at both sides over and over: a visible file must always hold
        a whole version someone wrote (never a half-written or mixed one)."""
        stop = threading.Event()

        def look() -> None:
            while not stop.wait(0.05):
                for label, t in (("share", self.share_tree()), ("DEST", self.dest_tree())):
                    for rel, digest in t.items():
                        if digest != DIR and digest not in self.seen and digest not in self.ledger:
                            self.sampled_problems.append(f"{label}/{rel} was visible holding content nobody wrote")

        thread = threading.Thread(target=look, daemon=True, name="partial-sampler")
        thread.start()
        self._sampler = (stop, thread)

    def _stop_sampler(self) -> None:
        if self._sampler is not None:
            stop, thread = self._sampler
            stop.set()
            thread.join(30)
            self._sampler = None

    def run(self, verb: str, *args: str, user: str = "alice", timeout: float = 240, json_out: bool = True) -> Run:
        """One client run to its end, with the requests it sent."""
        assert self.proxy is not None
        mark = self.proxy.mark()
        t0 = time.monotonic()
        proc = self.popen(verb, *args, user=user, json_out=json_out)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            self.running = False
            self._stop_sampler()
        r = Run([verb, *args], proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"),
                self.proxy.finished(mark), time.monotonic() - t0)  # fmt: skip
        self.runs.append(r)
        return r

    def sync(self, *args: str, **kw: Any) -> Run:
        return self.run("sync", *args, **kw)

    def push(self, *args: str, **kw: Any) -> Run:
        return self.run("push", *args, **kw)

    def pull(self, *args: str, **kw: Any) -> Run:
        return self.run("pull", *args, **kw)

    def kill(self, proc: subprocess.Popen[bytes]) -> bool:
        """kill -9 a client we started, by PID; True if it was still running."""
        alive = proc.poll() is None
        if alive:
            kill_hard(proc.pid)
        proc.communicate(timeout=30)
        self.running = False
        self._stop_sampler()
        return alive

    def close(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                kill_hard(proc.pid)
                proc.wait(10)
        if self.proxy is not None:
            self.proxy.close()
        self.stop_server()

    # -- the invariants --

    def check(
        self,
        run: Run | None = None,
        *,
        converged: bool | None = None,
        second: bool | None = None,
        journal: str = "strict",
        ignore: Callable[[str], bool] = lambda rel: False,
        verb: str = "sync",
        args: tuple[str, ...] = (),
        second_codes: tuple[int, ...] | None = None,
        user: str = "alice",
    ) -> Run | None:
        """Check every invariant after `run` (None: after a kill). Returns the second run, if made.

        converged: both trees equal (default: when the run exited 0). second: run again and
        require no transfer at all (default: when the run finished). journal: "strict" (every
        base is the version on both sides), "loose" (after a kill or a concurrent writer: a
        base whose local stat still matches names that file's MD5), or "off".
        """
        problems: list[str] = []
        finished = run is not None and run.code in (0, 3)
        if converged is None:
            converged = run is not None and run.code == 0
        if second is None:
            second = finished
        problems += self._lost()
        problems += self._partials()
        problems += sorted(set(self.sampled_problems))
        if journal != "off":
            problems += self._journal(strict=journal == "strict", pull=verb == "pull", ignore=ignore)
        if converged:
            problems += self._converged(ignore)
        if problems:
            raise AssertionError("\n".join(problems) + (f"\n{run}" if run else ""))
        if not second:
            return None
        before_share, before_dest = self.share_tree(), self.dest_tree()
        again = self.run(verb, *args, user=user)
        codes = second_codes or ((0,) if run is not None and run.code == 0 else (0, 3))
        if again.code not in codes:
            problems.append(f"the second run exited {again.code}, not {codes}")
        if again.transfers:
            problems.append("the second run still transferred: " + ", ".join(map(str, again.transfers)))
        if (self.share_tree(), self.dest_tree()) != (before_share, before_dest):
            problems.append("the second run changed a side")
        if problems:
            raise AssertionError("\n".join(problems) + f"\nfirst: {run}\nsecond: {again}")
        return again

    def _lost(self) -> list[str]:
        kept = self.everywhere()
        lost = self.ledger - kept
        return [f"content lost: {d} (was at {', '.join(self.last_seen.get(d, ['?']))})" for d in sorted(lost)]

    def _partials(self) -> list[str]:
        """Every visible file is a complete version someone wrote; no temp names anywhere visible."""
        problems = []
        known = self.ledger | self.seen
        for side, t in (("share", self.share_tree()), ("DEST", self.dest_tree())):
            for rel, digest in t.items():
                name = rel.rpartition("/")[2]
                if ".davsync-" in name or name.startswith(SERVER_TEMP) or name.endswith((".part", ".partial")):
                    problems.append(f"a temp name is visible in {side}: {rel}")
                elif digest != DIR and digest not in known:
                    problems.append(f"{side}/{rel} holds content nobody wrote (a partial or mixed file): {digest}")
        return problems

    def _journal(self, strict: bool, pull: bool, ignore: Callable[[str], bool]) -> list[str]:
        problems = []
        share, dest = self.share_tree(), self.dest_tree()
        for path, row in read_journal(self.dest).items():
            p = nfc(path)
            if ignore(p) or (pull and row.get("remote_gone")):
                continue
            if row.get("prev") and not strict:
                continue  # a placement in flight when the client was killed
            local, remote = dest.get(p), share.get(p)
            if strict and row == self.journal_before.get(path):
                # Not written by this run: a base kept while a guard holds a deletion (or a
                # read-only account cannot send one) names a path still on one side at least.
                if local is None and remote is None:
                    problems.append(f"journal: a stale base for {p}, which is on neither side")
                continue
            if row["is_dir"]:
                if strict and (local != DIR or remote != DIR):
                    problems.append(f"journal: a folder base for {p}, which is not a folder on both sides "
                                    f"(DEST: {local}, share: {remote})")  # fmt: skip
                continue
            if strict:
                if local is None or remote is None:
                    problems.append(f"journal: a base for {p}, which is not on both sides (DEST: {local}, share: {remote})")
                    continue
                if not (row["md5"] == local == remote == (row.get("remote_md5") or row["md5"])):
                    problems.append(f"journal: the base of {p} (local {row['md5']}, server {row.get('remote_md5')}) "
                                    f"is not the version on both sides (DEST {local}, share {remote})")  # fmt: skip
                st = (self.dest / p).stat()
                if (st.st_size, st.st_mtime_ns) != (row["size"], row["mtime_ns"]):
                    problems.append(f"journal: a stale stat for {p}")
            else:
                known = self.seen | self.ledger
                for side in ("md5", "remote_md5"):
                    if row.get(side) and row[side] not in known:
                        problems.append(f"journal: the base of {p} names {side} {row[side]}, a version nobody wrote")
                f = self.dest / p
                try:
                    st = f.stat()
                except FileNotFoundError:
                    continue
                if (st.st_size, st.st_mtime_ns) == (row["size"], row["mtime_ns"]) and local != row["md5"]:
                    problems.append(f"journal: the base of {p} names {row['md5']} but the unchanged file holds {local}")
        return problems

    def _converged(self, ignore: Callable[[str], bool]) -> list[str]:
        share = {k: v for k, v in self.share_tree().items() if not ignore(k)}
        dest = {k: v for k, v in self.dest_tree().items() if not ignore(k)}
        if share == dest:
            return []
        lines = ["not converged:"]
        for k in sorted(set(share) | set(dest)):
            if share.get(k) != dest.get(k):
                lines.append(f"  {k}: share {share.get(k)} DEST {dest.get(k)}")
        return lines

    # -- helpers for scenarios --

    def settle(self) -> None:
        """Bring both sides in agreement through one sync (and prove it)."""
        r = self.sync()
        assert r.code == 0, str(r)
        self.check(r, second=False)
