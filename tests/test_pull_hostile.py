"""An untrusted server: wrong bodies, short bodies, traversal hrefs, XML bombs. Nothing escapes DEST."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from cheroot import wsgi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from davsync.client.davxml import parse_multistatus
from davsync.client.engine import RunOptions, run_once
from davsync.client.paths import UnsafeHref, filter_names, href_to_relpath, name_problem
from davsync.client.results import RunResult
from davsync.client.transport import ConnectionSettings, RemoteError

GOOD = b"the real content\n"


def response(href: str, *, is_dir: bool = False, size: int | None = None, md5: str | None = None) -> str:
    rt = "<d:collection/>" if is_dir else ""
    extra = ""
    if not is_dir:
        extra += f"<d:getcontentlength>{size}</d:getcontentlength><d:getetag>\"e-{href}\"</d:getetag>"
        extra += "<d:getlastmodified>Mon, 01 Jan 2024 00:00:00 GMT</d:getlastmodified>"
        if md5:
            extra += f"<oc:checksums><oc:checksum>MD5:{md5}</oc:checksum></oc:checksums>"
    return (
        f"<d:response><d:href>{href}</d:href><d:propstat><d:prop><d:resourcetype>{rt}</d:resourcetype>{extra}"
        "</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>"
    )


def multistatus(*responses: str) -> bytes:
    body = "".join(responses)
    return (
        '<?xml version="1.0"?><d:multistatus xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns">'
        f"{body}</d:multistatus>"
    ).encode()


Handler = Callable[[dict], tuple[str, list[tuple[str, str]], bytes | Iterable[bytes]]]


@pytest.fixture
def hostile() -> Iterator[Callable[[Handler], str]]:
    servers: list[wsgi.Server] = []

    def start(handler: Handler) -> str:
        def app(environ: dict, start_response: Callable) -> list[bytes]:
            status, headers, body = handler(environ)
            start_response(status, headers)
            return [body] if isinstance(body, bytes) else body  # (an iterable: streamed, or cut by raising)

        server = wsgi.Server(("127.0.0.1", 0), app, numthreads=4)
        server.prepare()
        threading.Thread(target=server.serve, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.bind_addr[1]}/share/"

    yield start
    for s in servers:
        s.stop()


def listing_server(listing: bytes, files: dict[str, bytes], lie: Callable[[bytes], bytes] = lambda b: b) -> Handler:
    def handler(environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
        if environ["REQUEST_METHOD"] == "PROPFIND":
            return "207 Multi-Status", [("Content-Type", "application/xml")], listing
        path = environ["PATH_INFO"]
        if path in files:
            body = lie(files[path])
            return "200 OK", [("Content-Type", "application/octet-stream"), ("ETag", '"e"')], body
        return "404 Not Found", [], b""

    return handler


def test_wrong_body_is_not_placed(hostile, tmp_path: Path) -> None:
    md5 = hashlib.md5(GOOD).hexdigest()
    listing = multistatus(response("/share/", is_dir=True), response("/share/f.txt", size=len(GOOD), md5=md5))
    url = hostile(listing_server(listing, {"/share/f.txt": GOOD}, lie=lambda b: b.upper()))
    dest = tmp_path / "m"
    dest.mkdir()
    result = run_once(ConnectionSettings(url), dest, RunOptions())
    assert result.exit_code == 3 and "MD5 mismatch" in result.errors[0].error
    assert not (dest / "f.txt").exists()
    assert not list((dest / ".davsync" / "partial").glob("*"))


def test_wrong_body_keeps_the_old_file(hostile, tmp_path: Path) -> None:
    """A previously placed file survives a later corrupt download."""
    md5 = hashlib.md5(GOOD).hexdigest()
    listing1 = multistatus(response("/share/", is_dir=True), response("/share/f.txt", size=len(GOOD), md5=md5))
    url = hostile(listing_server(listing1, {"/share/f.txt": GOOD}))
    dest = tmp_path / "m"
    assert run_once(ConnectionSettings(url), dest, RunOptions()).exit_code == 0
    new = b"version two, same!\n"
    listing2 = multistatus(
        response("/share/", is_dir=True), response("/share/f.txt", size=len(new), md5=hashlib.md5(new).hexdigest())
    ).replace(b'"e-/share/f.txt"', b'"e2"')
    url2 = hostile(listing_server(listing2, {"/share/f.txt": new}, lie=lambda b: b[::-1]))
    result = run_once(ConnectionSettings(url2), dest, RunOptions())
    assert result.exit_code == 3
    assert (dest / "f.txt").read_bytes() == GOOD


def test_short_body_is_not_placed(hostile, tmp_path: Path) -> None:
    listing = multistatus(response("/share/", is_dir=True), response("/share/f.txt", size=len(GOOD) + 100))
    url = hostile(listing_server(listing, {"/share/f.txt": GOOD}))  # no MD5 published: length decides
    dest = tmp_path / "m"
    result = run_once(ConnectionSettings(url), dest, RunOptions())
    assert result.exit_code == 3 and not (dest / "f.txt").exists()


TRAVERSAL_HREFS = [
    "/share/../escaped.txt",
    "/share/%2e%2e/escaped.txt",
    "/share/sub%2f..%2f..%2fescaped.txt",
    "/share/..%5cescaped.txt",
    "/escaped.txt",
    "http://evil.invalid/share/escaped.txt",
    "/share/a%00b.txt",
    "/share/deep/notmine.txt",
    "/share/.davsync/state.db",
]


def test_traversal_hrefs_are_refused(hostile, tmp_path: Path) -> None:
    responses = [response("/share/", is_dir=True), response("/share/ok.txt", size=len(GOOD))]
    responses += [response(h, size=len(GOOD)) for h in TRAVERSAL_HREFS]
    files = {"/share/ok.txt": GOOD, "/escaped.txt": b"pwned", "/share/.davsync/state.db": b"pwned"}
    url = hostile(listing_server(multistatus(*responses), files))
    dest = tmp_path / "deep" / "m"
    result = run_once(ConnectionSettings(url), dest, RunOptions())
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert all(w.startswith("deep/m/") for w in written), written
    assert (dest / "ok.txt").read_bytes() == GOOD
    assert not any(b"pwned" in (tmp_path / w).read_bytes() for w in written)
    assert len(result.skipped) == len(TRAVERSAL_HREFS)


def test_xml_bomb_is_refused(hostile, tmp_path: Path, no_backoff: list[float]) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">'
        b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        b'<d:multistatus xmlns:d="DAV:"><d:response><d:href>/share/&lol3;</d:href></d:response></d:multistatus>'
    )
    url = hostile(listing_server(bomb, {}))
    result = run_once(ConnectionSettings(url), tmp_path / "m", RunOptions())
    assert result.exit_code == 4 and "DTD" in (result.fatal or "")
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<d:multistatus xmlns:d="DAV:"><d:response><d:href>/share/&e;</d:href></d:response></d:multistatus>'
    )
    url = hostile(listing_server(xxe, {}))
    assert run_once(ConnectionSettings(url), tmp_path / "m2", RunOptions()).exit_code == 4
    assert no_backoff == []  # refused for what it is, never asked for again


def test_malformed_xml_is_a_clear_error(hostile, tmp_path: Path) -> None:
    url = hostile(listing_server(b"<d:multistatus xmlns:d='DAV:'><d:response><d:href>", {}))
    result = run_once(ConnectionSettings(url), tmp_path / "m", RunOptions())
    assert result.exit_code == 4 and "malformed XML" in (result.fatal or "")


# --- unit-level: hrefs, names, the parser ------------------------------------

BASE = "http://h:1/share/"


@pytest.mark.parametrize("href", TRAVERSAL_HREFS[:7] + ["/share/a\\b", "/share/%ff.txt", "/share//x", "/share/./x"])
def test_unsafe_hrefs(href: str) -> None:
    with pytest.raises(UnsafeHref):
        href_to_relpath(href, BASE, BASE)


@pytest.mark.parametrize(
    "href,expected",
    [
        ("/share/a%20b/c%23d.txt", "a b/c#d.txt"),
        ("http://h:1/share/x/", "x"),
        ("/share/", ""),
        ("/share/cafe%CC%81", "café"),  # NFD in, NFC out
        ("/share/100%25", "100%"),
    ],
)
def test_safe_hrefs(href: str, expected: str) -> None:
    assert href_to_relpath(href, BASE, BASE) == expected


def test_windows_rules() -> None:
    for bad in ("CON", "nul.txt", "COM1.log", "a:b", "what?", "trailing.", "trailing ", "tab\there"):
        assert name_problem(bad, "windows"), bad
    assert name_problem("normal name.txt", "windows") is None
    kept, skipped = filter_names(["Readme", "README", "docs", "docs/a", "Docs", "Docs/b", "ok"], "windows")
    assert kept == {"ok"}
    assert {s.path for s in skipped} == {"Readme", "README", "docs", "docs/a", "Docs", "Docs/b"}
    kept, _ = filter_names(["Readme", "README"], "posix")
    assert kept == {"Readme", "README"}


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=0, max_size=60))
def test_href_fuzz_never_escapes(text: str) -> None:
    try:
        rel = href_to_relpath(text, BASE, BASE)
    except (UnsafeHref, ValueError):
        return
    parts = rel.split("/") if rel else []
    assert all(p not in ("", ".", "..") and "\\" not in p and "\x00" not in p for p in parts)
    resolved = (Path("/dest") / rel).resolve() if rel else Path("/dest")
    assert resolved == Path("/dest") or Path("/dest") in resolved.parents


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 64))
def test_multistatus_parser_fuzz(data: bytes, chunk: int) -> None:
    """Arbitrary bytes either parse or raise RemoteError: never another exception, never a hang."""
    chunks = iter([data[i : i + chunk] for i in range(0, len(data), chunk)])
    try:
        list(parse_multistatus(chunks))
    except RemoteError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=20), st.booleans()), max_size=8))
def test_multistatus_parser_structured_fuzz(items: list[tuple[str, bool]]) -> None:
    from xml.sax.saxutils import escape

    body = multistatus(*[response("/share/" + escape(n), is_dir=d, size=1) for n, d in items])
    try:
        parsed = list(parse_multistatus(iter([body])))
    except RemoteError:
        return
    assert len(parsed) <= len(items)


def test_a_large_body_compressed_against_our_wish_is_decoded_not_written_as_is(hostile, tmp_path: Path) -> None:
    """We ask for `Accept-Encoding: identity`; a server (or proxy) that gzips anyway must not
    get its compressed bytes placed, nor a perfectly good file refused as cut short."""
    import gzip

    data = (b"davsync " * 1024 + bytes(range(256))) * 700  # above the one-piece size: the streamed path
    packed = gzip.compress(data)
    listing = multistatus(response("/share/", is_dir=True),
                          response("/share/big.bin", size=len(data), md5=hashlib.md5(data).hexdigest()))  # fmt: skip

    def handler(environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
        if environ["REQUEST_METHOD"] == "PROPFIND":
            return "207 Multi-Status", [("Content-Type", "application/xml")], listing
        return "200 OK", [("Content-Type", "application/octet-stream"), ("ETag", '"e"'),
                          ("Content-Encoding", "gzip")], packed  # fmt: skip

    dest = tmp_path / "m"
    result = run_once(ConnectionSettings(hostile(handler)), dest, RunOptions())
    assert result.exit_code == 0, result.as_json()
    assert (dest / "big.bin").read_bytes() == data


def _pull_from_an_endless_body(listing: bytes, dest: Path) -> tuple[RunResult, int]:
    """Pull from a server that lists `listing` and answers every GET with 256 MiB of body
    (streamed, so it costs only what the client reads); returns the result and the bytes sent."""
    sent = [0]

    def endless() -> Iterator[bytes]:
        chunk = b"x" * (1 << 20)
        for _ in range(256):
            sent[0] += len(chunk)
            yield chunk

    def app(environ: dict, start_response: Callable) -> Iterator[bytes] | list[bytes]:
        if environ["REQUEST_METHOD"] == "PROPFIND":
            start_response("207 Multi-Status", [("Content-Type", "application/xml")])
            return [listing]
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("ETag", '"e"')])
        return endless()

    server = wsgi.Server(("127.0.0.1", 0), app, numthreads=4)
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    try:
        result = run_once(ConnectionSettings(f"http://127.0.0.1:{server.bind_addr[1]}/share/"), dest, RunOptions())
    finally:
        server.stop()
    return result, sent[0]


def test_a_body_longer_than_listed_is_not_written_past_the_listed_size(tmp_path: Path) -> None:
    """A server that keeps sending (a listed 6 MiB file, a body without end) must not fill the
    disk: the download stops once the body is longer than the listing said."""
    size = 6 * 1024 * 1024
    listing = multistatus(response("/share/", is_dir=True), response("/share/big.bin", size=size))
    result, sent = _pull_from_an_endless_body(listing, tmp_path / "m")
    assert result.exit_code != 0 and not (tmp_path / "m" / "big.bin").exists()
    assert "more" in result.errors[0].error, result.errors
    assert sent < 64 * 1024 * 1024, f"{sent} bytes were taken for a file listed as {size}"
    assert not list((tmp_path / "m" / ".davsync" / "partial").glob("*.part")), "the over-long partial was kept"


def test_a_complete_partial_of_a_file_listed_without_size_is_fetched_again_not_refused_forever(
    hostile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill after the whole body arrived leaves a complete partial file; a server that lists
    no size answers its resume (a range past the end) with 416. That must not fail the file on
    every run from then on."""
    from davsync.client import sides

    data = bytes(range(256)) * (5 * 4096)  # 5 MiB: above the one-piece size, so resumable
    listing = multistatus(response("/share/", is_dir=True), response("/share/big.bin"))

    def handler(environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
        if environ["REQUEST_METHOD"] == "PROPFIND":
            return "207 Multi-Status", [("Content-Type", "application/xml")], listing
        start = environ.get("HTTP_RANGE", "bytes=0-")[len("bytes="):].split("-")[0]
        if int(start) >= len(data):
            return "416 Range Not Satisfiable", [("Content-Range", f"bytes */{len(data)}")], b""
        status = "206 Partial Content" if int(start) else "200 OK"
        headers = [("Content-Type", "application/octet-stream"), ("ETag", '"e-/share/big.bin"')]
        if int(start):
            headers.append(("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"))
        return status, headers, data[int(start):]

    url = hostile(handler)
    dest = tmp_path / "m"

    class Killed(BaseException):
        pass

    def killed(*args: object, **kw: object) -> None:
        raise Killed

    place = sides.Disk.place  # (the executor places through its LocalSide, client/sides.py)
    monkeypatch.setattr(sides.Disk, "place", staticmethod(killed))
    with pytest.raises(Killed):
        run_once(ConnectionSettings(url), dest, RunOptions())
    monkeypatch.setattr(sides.Disk, "place", staticmethod(place))
    result = run_once(ConnectionSettings(url), dest, RunOptions())
    assert result.exit_code == 0, result.errors
    assert (dest / "big.bin").read_bytes() == data


def test_a_small_file_with_an_endless_body_is_not_read_into_memory(tmp_path: Path) -> None:
    """A file listed as 100 bytes (fetched in one piece, in memory) whose body has no end: the
    client stops reading past the listed size instead of holding everything the server sends."""
    listing = multistatus(response("/share/", is_dir=True), response("/share/small.bin", size=100))
    result, sent = _pull_from_an_endless_body(listing, tmp_path / "m")
    assert result.exit_code != 0 and not (tmp_path / "m" / "small.bin").exists()
    assert sent < 64 * 1024 * 1024, f"{sent} bytes were taken for a file listed as 100"


def test_a_resume_answered_from_the_wrong_byte_starts_over_instead_of_failing_every_run(
    hostile, tmp_path: Path, no_backoff: list[float]
) -> None:
    """A server (or a proxy before it) that answers a resume's Range with a 206 from another
    byte than asked: the partial cannot be continued with it. Dropped, the download starts over
    and lands; kept, the same resume would fail that file on every run."""
    data = bytes(range(256)) * (5 * 4096)  # 5 MiB: above the one-piece size, so resumable
    listing = multistatus(response("/share/", is_dir=True),
                          response("/share/big.bin", size=len(data), md5=hashlib.md5(data).hexdigest()))  # fmt: skip
    whole_gets = [0]

    def cut_halfway() -> Iterator[bytes]:
        yield data[: len(data) // 2]
        raise ConnectionResetError("cut")  # cheroot drops the connection: the client keeps the half

    def handler(environ: dict) -> tuple[str, list[tuple[str, str]], bytes | Iterable[bytes]]:
        if environ["REQUEST_METHOD"] == "PROPFIND":
            return "207 Multi-Status", [("Content-Type", "application/xml")], listing
        if environ["REQUEST_METHOD"] != "GET":
            return "405 Method Not Allowed", [], b""
        headers = [("Content-Type", "application/octet-stream"), ("ETag", '"e-/share/big.bin"'),
                   ("Content-Length", str(len(data)))]  # fmt: skip
        if "HTTP_RANGE" in environ:  # whatever was asked: from byte 0
            return "206 Partial Content", [*headers, ("Content-Range", f"bytes 0-{len(data) - 1}/{len(data)}")], data
        whole_gets[0] += 1
        return "200 OK", headers, cut_halfway() if whole_gets[0] == 1 else data

    dest = tmp_path / "m"
    result = run_once(ConnectionSettings(hostile(handler)), dest, RunOptions())
    assert result.exit_code == 0, result.errors
    assert (dest / "big.bin").read_bytes() == data
    assert whole_gets[0] == 2
