"""The two-way sync harness (tests/synchelp.py) proves what it claims: its proxy records every
request and acts at the exact moment asked, and its invariant checker fails on each kind of
breakage. Checked with `pull`, which needs no sync engine."""

from __future__ import annotations

import os
import sqlite3
import subprocess

import pytest
import requests
from conftest import PASSWORDS, require_tool, wait_until
from synchelp import DIR, Run, SyncWorld, _Framer, conflict_copies, is_conflict_copy, md5

ALICE = ("alice", PASSWORDS["alice"])


def test_framer_splits_pipelined_chunked_and_bodiless_messages() -> None:
    req = _Framer(True)
    stream = (b"PUT /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
              b"PUT /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n"
              b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")  # fmt: skip
    events = []
    for i in range(0, len(stream), 7):  # fed in awkward pieces
        events += list(req.feed(stream[i : i + 7]))
    heads = [v[0] for k, v in events if k == "head"]
    assert heads == ["PUT /a HTTP/1.1", "PUT /b HTTP/1.1", "GET /c HTTP/1.1"]
    assert [k for k, _ in events].count("end") == 3
    assert b"".join(v for k, v in events if k in ("data", "headdata")) == stream

    methods = ["HEAD", "GET", "GET"]
    resp = _Framer(False, lambda: methods[0])
    answers = (b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"  # HEAD: no body despite the length
               b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nxyz"
               b"HTTP/1.1 200 OK\r\n\r\nuntil the end")  # fmt: skip
    events = []
    for kind, value in resp.feed(answers):
        events.append((kind, value))
        if kind == "head" and not value[0].startswith("HTTP/1.1 1"):
            methods.pop(0)  # as the proxy does: the answer's request is settled at its head
    assert [v[0] for k, v in events if k == "head"] == ["HTTP/1.1 200 OK", "HTTP/1.1 100 Continue", "HTTP/1.1 200 OK", "HTTP/1.1 200 OK"]
    assert b"".join(v for k, v in events if k == "data") == b"xyzuntil the end"


def test_proxy_records_methods_paths_and_statuses(world: SyncWorld) -> None:
    assert world.proxy is not None
    s = requests.Session()
    s.auth = ALICE
    mark = world.proxy.mark()
    assert s.put(world.url + "caf%C3%A9.txt", data=b"x" * 100_000, timeout=30).status_code == 201
    assert s.request("MKCOL", world.url + "folder", timeout=30).status_code == 201
    assert s.request("MOVE", world.url + "caf%C3%A9.txt", headers={"Destination": world.url + "folder/c.txt"}, timeout=30).status_code == 201
    assert s.get(world.url + "folder/c.txt", timeout=30).content == b"x" * 100_000
    assert s.head(world.url + "folder/c.txt", timeout=30).status_code == 200
    assert s.put(world.url + "folder/c.txt", data=b"abcd", headers={"If-Match": '"nope"'}, timeout=30).status_code == 412
    assert s.delete(world.url + "folder", timeout=30).status_code == 204
    got = [str(ex) for ex in world.proxy.since(mark)]
    assert got == ["PUT /café.txt [201]", "MKCOL /folder [201]", "MOVE /café.txt -> folder/c.txt [201]",
                   "GET /folder/c.txt [200]", "HEAD /folder/c.txt [200]", "PUT /folder/c.txt [412]", "DELETE /folder [204]"]  # fmt: skip
    assert world.proxy.since(mark)[0].body_sent == 100_000
    assert world.proxy.since(mark)[3].body_received == 100_000


def test_triggers_act_before_forwarding_and_cut_where_asked(world: SyncWorld) -> None:
    assert world.proxy is not None
    s = requests.Session()
    s.auth = ALICE
    seen: list[bool] = []
    # "request": the server has not seen the request yet when the action runs.
    world.proxy.on("PUT", "a.txt", action=lambda ex: seen.append((world.root / "a.txt").exists()))
    assert s.put(world.url + "a.txt", data=b"one", timeout=30).status_code == 201
    assert seen == [False]
    # "response" + cut: the server did it, the client never hears (a lost response).
    world.proxy.on("PUT", "a.txt", phase="response", cut=True)
    with pytest.raises(requests.ConnectionError):
        s.put(world.url + "a.txt", data=b"two", timeout=30)
    assert (world.root / "a.txt").read_bytes() == b"two"
    # "body" + cut after 1000 bytes: the server never gets the whole body; the old file stays.
    world.proxy.on("PUT", "a.txt", phase="body", after=1000, cut=True)
    with pytest.raises(requests.ConnectionError):
        s.put(world.url + "a.txt", data=b"3" * 500_000, timeout=30)
    assert (world.root / "a.txt").read_bytes() == b"two"
    # "response-body" + cut after 10 bytes: the client gets a short body.
    world.proxy.on("GET", "a.txt", phase="response-body", after=10, cut=True, nth=2)
    assert s.get(world.url + "a.txt", timeout=30).content == b"two"  # the first GET is not the nth
    world.seed({"big.bin": os.urandom(300_000)})
    world.proxy.on("GET", "big.bin", phase="response-body", after=10, cut=True)
    with pytest.raises(requests.exceptions.RequestException):
        s.get(world.url + "big.bin", timeout=30).content  # noqa: B018
    assert all(t.fired for t in world.proxy.triggers[:3])


def test_phone_writes_with_real_http_and_preconditions(world: SyncWorld) -> None:
    require_tool("curl")
    assert world.phone.put("p.txt", b"from the phone", if_none_match=True) == 201
    assert world.phone.put("p.txt", b"again", if_none_match=True) == 412
    etag = world.phone.etag("p.txt")
    assert etag
    assert world.phone.put("p.txt", b"edited", if_match='"stale"') == 412
    assert world.phone.put("p.txt", b"edited", if_match=etag) == 204
    assert world.phone.move("p.txt", "q.txt") == 201
    assert world.phone.delete("q.txt") == 204
    assert (world.root / "p.txt").exists() is False
    assert {md5(b"from the phone"), md5(b"edited")} <= world.ledger
    assert md5(b"again") not in world.ledger  # refused: it never existed on the share
    # Deleted and overwritten versions are in the server's versions area, which the checker counts.
    assert {md5(b"from the phone"), md5(b"edited")} <= world.everywhere()


def _seed_tree(world: SyncWorld) -> dict[str, bytes]:
    files = {f"d{i % 3}/f{i}.txt": os.urandom(200 + i) for i in range(12)}
    files["naïve café.txt"] = b"accents"
    world.seed(files, dirs=["empty folder"])
    return files


def test_pull_passes_the_checker_and_its_second_run_is_counted_as_a_no_op(world: SyncWorld) -> None:
    files = _seed_tree(world)
    r = world.pull()
    assert r.code == 0, r
    assert r.of("GET") or r.downloads, r  # the counter sees the downloads (GETs, or bundles of small files)
    assert len(r.of("GET")) == len(files) or any(ex.is_bundle for ex in r.downloads), r
    again = world.check(r, verb="pull")
    assert again is not None and not again.transfers and again.code == 0
    assert world.dest_tree()["empty folder"] == DIR


def test_checker_catches_lost_content(world: SyncWorld) -> None:
    _seed_tree(world)
    r = world.pull()
    world.check(r, verb="pull", second=False)
    (world.root / "d0" / "f0.txt").unlink()  # gone from the share behind everyone's back...
    (world.dest / "d0" / "f0.txt").unlink()  # ...and from DEST: nowhere left
    with pytest.raises(AssertionError, match="content lost"):
        world.check(r, verb="pull", second=False, journal="off")


@pytest.mark.slow
def test_checker_catches_a_partial_file_and_a_temp_name(world: SyncWorld) -> None:
    _seed_tree(world)
    r = world.pull()
    with open(world.dest / "d1" / "f1.txt", "r+b") as f:
        f.truncate(50)  # what an unsafe writer leaves
    with pytest.raises(AssertionError, match="nobody wrote"):
        world.check(r, verb="pull", second=False, journal="off")
    world.seed({"d1/f1.txt": b""})  # (put back a known content: the empty file is now in the share)
    world.ledger.add(md5(b""))
    (world.dest / "d1" / "f1.txt").write_bytes(b"")
    (world.dest / "d1" / "x.davsync-case-123").write_bytes(b"")
    with pytest.raises(AssertionError, match="temp name"):
        world.check(r, verb="pull", second=False, journal="off", converged=False)


def test_checker_catches_a_base_not_on_both_sides(world: SyncWorld) -> None:
    _seed_tree(world)
    r = world.pull()
    db = sqlite3.connect(world.dest / ".davsync" / "state.db")
    db.execute("INSERT INTO placed (path, is_dir, size, mtime_ns, md5, remote_md5) VALUES ('ghost.txt', 0, 1, 1, 'a', 'a')")
    db.commit()
    db.close()
    with pytest.raises(AssertionError, match="not on both sides"):
        world.check(r, verb="pull", second=False)


@pytest.mark.slow
def test_checker_catches_divergence_and_a_busy_second_run(world: SyncWorld) -> None:
    _seed_tree(world)
    r = world.pull()
    world.rput("late.txt", b"arrived after the pull")
    with pytest.raises(AssertionError, match="not converged"):
        world.check(r, verb="pull", second=False)
    with pytest.raises(AssertionError, match="second run still transferred"):
        world.check(r, verb="pull", converged=False)


def test_a_kill_at_an_exact_moment_leaves_the_checker_satisfied(world: SyncWorld) -> None:
    """SIGKILL from a trigger: the pull dies while the 5th download's body is streaming."""
    world.seed({f"f{i}.bin": os.urandom(1_100_000) for i in range(10)})  # above the bundle size: one GET each
    assert world.proxy is not None
    procs: list[subprocess.Popen[bytes]] = []
    world.proxy.on("GET", phase="response-body", after=70_000, nth=5,
                   action=lambda ex: os.kill(procs[0].pid, 9))  # fmt: skip
    procs.append(world.popen("pull", "--jobs", "1"))
    wait_until(lambda: procs[0].poll() is not None, 60, "the pull to be killed")
    assert procs[0].returncode == -9
    world.kill(procs[0])
    world.check(None, verb="pull", journal="loose")
    r = world.pull()
    assert r.code == 0, r
    world.check(r, verb="pull")


@pytest.mark.slow
def test_the_world_restarts_its_server_behind_the_same_url(world: SyncWorld) -> None:
    world.seed({"a.txt": b"a"})
    url = world.url
    r = world.pull()
    world.restart_server()
    assert world.url == url
    world.rput("b.txt", b"b")
    r = world.pull()
    assert r.code == 0, r
    world.check(r, verb="pull")


def test_conflict_names_are_recognised() -> None:
    assert is_conflict_copy("a/report.sync-conflict-20261122-013000.txt")
    assert is_conflict_copy("Makefile.sync-conflict-20261122-013000")
    assert is_conflict_copy("x.sync-conflict-20261122-013000-2.tar")
    assert not is_conflict_copy("report.txt")
    tree = {"a/r.sync-conflict-20261122-013000.txt": "1", "a/r.txt": "2", "b.sync-conflict-20261122-013000": "3"}
    assert conflict_copies(tree, "a/r.txt") == {"a/r.sync-conflict-20261122-013000.txt": "1"}
    assert len(conflict_copies(tree)) == 2
    _ = Run  # (re-exported for scenario tests)


def test_a_canned_answer_replaces_the_server(world: SyncWorld) -> None:
    from synchelp import canned

    assert world.proxy is not None
    world.seed({"d/x.txt": b"x"})
    world.proxy.on("PROPFIND", "d", respond=canned(503, "Service Unavailable"), times=2)
    s = requests.Session()
    s.auth = ALICE
    assert s.request("PROPFIND", world.url + "d/", headers={"Depth": "1"}, timeout=30).status_code == 503
    assert s.request("PROPFIND", world.url + "d/", headers={"Depth": "1"}, timeout=30).status_code == 503
    assert s.request("PROPFIND", world.url + "d/", headers={"Depth": "1"}, timeout=30).status_code == 207
    assert [ex.status for ex in world.proxy.log] == [503, 503, 207]


@pytest.mark.slow
def test_an_rclone_world_serves_pull_and_checks_unsynced_content(sync_world) -> None:  # type: ignore[no-untyped-def]
    require_tool("rclone")
    world = sync_world(backend="rclone")
    world.seed({"a.txt": b"a", "d/b.txt": b"b"})
    r = world.pull()
    assert r.code == 0, r
    world.check(r, verb="pull")
    world.rput("a.txt", b"a2")  # no versions area: the synced "a" may go once superseded
    r = world.pull()
    assert r.code == 0, r
    assert md5(b"a") not in world.ledger and md5(b"a2") in world.ledger
    world.check(r, verb="pull")


def test_the_sampler_sees_a_partial_file_that_is_gone_by_the_end(world: SyncWorld) -> None:
    """A half-written file visible for a moment during a run is caught, even if it is whole later."""
    world.seed({"a.bin": os.urandom(200_000), "b.bin": os.urandom(200_000)})
    assert world.proxy is not None

    def flash(ex: object) -> None:
        p = world.dest / "flash.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half of something")
        wait_until(lambda: world.sampled_problems, 10, "the sampler to see the partial file")
        p.unlink()

    world.proxy.on("GET", action=flash)
    r = world.pull()
    assert r.code == 0, r
    with pytest.raises(AssertionError, match="flash.txt was visible holding content nobody wrote"):
        world.check(r, verb="pull", second=False)
