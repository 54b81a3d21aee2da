"""Resumable uploads end to end: a client process killed mid-body, a new process resumes.

A real server (in this process), the recording proxy in front of it counting request-body
bytes on the wire, and real `davsync` client processes.
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess

from conftest import wait_until
from synchelp import Exchange, SyncWorld, is_conflict_copy

from davsync.client.resume import MIN_SIZE

SIZE = MIN_SIZE * 3 + 12345
CUT = MIN_SIZE + 777  # body bytes the first process gets to the server before it dies
BLOCK = 128 * 1024  # the smallest block of the block-hash scheme: what "one block resent" means


def _body_bytes(exchanges: list[Exchange]) -> int:
    return sum(ex.body_sent for ex in exchanges if ex.method in ("PUT", "PATCH", "POST"))


def _killed_mid_body(world: SyncWorld, verb: str) -> list[Exchange]:
    """Start `verb`, SIGKILL the client when CUT bytes of its upload body have reached the
    server (and cut the connection there); returns what it sent."""
    procs: list[subprocess.Popen[bytes]] = []
    mark = world.proxy.mark()
    world.proxy.on("PATCH", phase="body", after=CUT, cut=True, action=lambda ex: world.kill(procs[0]))
    procs.append(world.popen(verb))
    wait_until(lambda: procs[0].poll() is not None, 120, "the client to be killed mid-upload")
    world.proxy.clear_triggers()
    uploads = world.state_dir / "uploads"
    wait_until(lambda: [p.stat().st_size for p in uploads.glob("*.data")] == [CUT], 30, "the server to keep the cut part")
    return world.proxy.finished(mark)


def test_killed_upload_resumes_in_a_new_process(world: SyncWorld) -> None:
    world.sampling = False  # (hashing 25 MB over and over would only slow the run down)
    data = os.urandom(SIZE)
    world.write("big.bin", data)
    first = _killed_mid_body(world, "push")
    # The proxy forwarded exactly CUT body bytes (the cut chunk is not in its count) and the
    # server kept them all.
    assert _body_bytes(first) <= CUT
    assert not (world.root / "big.bin").exists()

    again = world.run("push", json_out=False)
    assert again.code == 0, again
    assert "resuming 'big.bin' at 8.4 MB of 25.2 MB" in again.stdout, again
    assert (world.root / "big.bin").read_bytes() == data
    patches = again.of("PATCH")
    assert [ex.headers.get("upload-offset") for ex in patches] == [str(CUT)], again
    assert not again.of("PUT", "big.bin"), again
    resent = CUT + _body_bytes(again.requests) - SIZE
    assert 0 <= resent <= BLOCK, f"{resent} bytes sent twice"
    assert world.server.state.index.fresh_md5("big.bin", (world.root / "big.bin").stat()) == hashlib.md5(data).hexdigest()
    assert not list((world.state_dir / "uploads").glob("*.data"))
    world.check(again, verb="push")


def test_a_third_writer_during_the_resumed_upload_wins_and_ours_is_a_conflict_copy(world: SyncWorld) -> None:
    world.sampling = False
    world.seed({"big.bin": b"the base version"})
    assert world.sync().code == 0
    ours = os.urandom(SIZE)
    world.write("big.bin", ours)
    _killed_mid_body(world, "sync")

    phone = b"the phone's version, written while ours was resuming"
    world.proxy.on("PATCH", phase="body", after=MIN_SIZE, action=lambda ex: world.rput("big.bin", phone))
    again = world.sync()
    assert (world.root / "big.bin").read_bytes() == phone, again  # never overwritten
    assert (world.dest / "big.bin").read_bytes() == phone
    copies = [p for p in world.root.iterdir() if is_conflict_copy(p.name)]
    assert len(copies) == 1 and copies[0].read_bytes() == ours, again
    assert any(ex.status == 412 for ex in again.of("PATCH")), again
    world.check(again, journal="loose")


def test_the_upload_resumes_across_a_server_restart(world: SyncWorld) -> None:
    world.sampling = False
    data = os.urandom(SIZE)
    world.write("big.bin", data)
    _killed_mid_body(world, "push")
    world.restart_server()  # the session is on disk; the MD5 so far is read back from its part
    again = world.push()
    assert again.code == 0, again
    assert [ex.headers.get("upload-offset") for ex in again.of("PATCH")] == [str(CUT)], again
    assert (world.root / "big.bin").read_bytes() == data
    world.check(again, verb="push")


def test_a_connection_cut_in_the_run_resumes_in_the_same_run(world: SyncWorld) -> None:
    world.sampling = False
    data = os.urandom(SIZE)
    world.write("big.bin", data)
    world.proxy.on("PATCH", phase="body", after=CUT, cut=True)
    run = world.push()
    assert run.code == 0, run
    assert [ex.headers.get("upload-offset") for ex in run.of("PATCH")] == ["0", str(CUT)], run
    assert CUT + run.of("PATCH")[1].body_sent == SIZE
    assert (world.root / "big.bin").read_bytes() == data
    world.check(run, verb="push")


def test_killed_again_and_again_at_random_points_the_upload_still_lands_whole(world: SyncWorld) -> None:
    """Ten SIGKILLs at random moments (in the creation, early or late in the body, after the
    commit), each run a new process, a new version whenever the last one landed; then one run
    to the end. The server only ever holds whole versions, and ends with the last."""
    world.sampling = False
    rng = random.Random(27)
    versions: set[bytes] = set()
    data = b""
    kills = 0
    for _ in range(10):
        if not data or (world.root / "big.bin").exists() and (world.root / "big.bin").read_bytes() == data:
            data = os.urandom(SIZE)
            versions.add(data)
            world.write("big.bin", data)
        procs: list[subprocess.Popen[bytes]] = []
        where = rng.choice(["create", "body", "body", "answer"])
        if where == "create":
            world.proxy.on("POST", phase="request", action=lambda ex: world.kill(procs[0]), cut=True)
        elif where == "body":
            world.proxy.on("PATCH", phase="body", after=rng.randrange(1, SIZE // 2),
                           action=lambda ex: world.kill(procs[0]), cut=True)  # fmt: skip
        else:  # the commit happened; the answer never reaches the client
            world.proxy.on("PATCH", phase="response", action=lambda ex: world.kill(procs[0]), cut=True)
        procs.append(world.popen("push"))
        wait_until(lambda: procs[0].poll() is not None, 120, "the client to be killed or to finish")
        world.proxy.clear_triggers()
        kills += procs[0].returncode == -9
        if (world.root / "big.bin").exists():
            assert (world.root / "big.bin").read_bytes() in versions  # never a part, never a mix
    assert kills >= 8, kills
    run = world.push()
    assert run.code == 0, run
    assert (world.root / "big.bin").read_bytes() == data
    assert not list((world.state_dir / "uploads").glob("*.data"))  # sessions resumed or cancelled, none left
    world.check(run, verb="push")
