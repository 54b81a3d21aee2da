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
    assert [ex.headers.get("upload-offset") for ex in patches] == [str(CUT), str(SIZE)], again  # the rest, the commit
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
    assert [ex.headers.get("upload-offset") for ex in again.of("PATCH")] == [str(CUT), str(SIZE)], again
    assert (world.root / "big.bin").read_bytes() == data
    world.check(again, verb="push")


def test_a_connection_cut_in_the_run_resumes_in_the_same_run(world: SyncWorld) -> None:
    world.sampling = False
    data = os.urandom(SIZE)
    world.write("big.bin", data)
    world.proxy.on("PATCH", phase="body", after=CUT, cut=True)
    run = world.push()
    assert run.code == 0, run
    assert [ex.headers.get("upload-offset") for ex in run.of("PATCH")] == ["0", str(CUT), str(SIZE)], run
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
            world.proxy.on("PATCH", phase="response", header=("upload-complete", "?1"),
                           action=lambda ex: world.kill(procs[0]), cut=True)  # fmt: skip
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


_READS = '''
import atexit, os

def _report() -> None:
    with open("/proc/self/io") as f:
        rchar = next(int(line.split()[1]) for line in f if line.startswith("rchar:"))
    with open(os.environ["DAVSYNC_TEST_READS_TO"], "w") as out:
        out.write(str(rchar))

atexit.register(_report)
'''


def test_a_fresh_upload_reads_the_file_once(world: SyncWorld, tmp_path, monkeypatch) -> None:
    """The MD5 is taken as the body is sent (and given with the last, empty part), not in a pass
    before it: the client process reads about the file's size in all (/proc/self/io rchar: every
    byte read by read(), the file, Python's own modules and the answers alike)."""
    if not os.path.exists("/proc/self/io"):
        import pytest

        pytest.skip("needs Linux's /proc/self/io")
    world.sampling = False
    size = 8 * MIN_SIZE  # 64 MiB: a second read would be 64 MiB more
    data = os.urandom(size)
    world.write("big.bin", data)
    site, reads = tmp_path / "site", tmp_path / "reads.txt"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_READS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("DAVSYNC_TEST_READS_TO", str(reads))
    run = world.push()
    assert run.code == 0, run
    assert (world.root / "big.bin").read_bytes() == data
    read = int(reads.read_text())
    assert size <= read < size + size // 2, f"the client read {read / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB file"
    patches = run.of("PATCH")
    assert [ex.headers.get("upload-complete") for ex in patches] == ["?0", "?1"], run
    assert patches[-1].headers.get("oc-checksum") == f"MD5:{hashlib.md5(data).hexdigest()}", run
    world.check(run, verb="push")


def test_a_file_changed_while_it_is_sent_is_not_committed(world: SyncWorld) -> None:
    """Edited in place (same size) while its body streams: the client sees the stat move after
    the send and cancels the session; the server never places the mixed bytes. The next run
    sends the new version."""
    world.sampling = False
    data = os.urandom(SIZE)
    world.write("big.bin", data)
    edited = bytearray(data)
    edited[:4096] = os.urandom(4096)  # the part already sent: the body holds the old bytes there

    def edit(_ex: Exchange) -> None:
        with open(world.dest / "big.bin", "r+b") as f:
            f.write(edited[:4096])

    world.proxy.on("PATCH", phase="body", after=CUT, action=edit)
    first = world.push()
    world.proxy.clear_triggers()
    assert not (world.root / "big.bin").exists(), first
    assert not list((world.state_dir / "uploads").glob("*.data")), "the cancelled session's bytes stay"
    assert [ex.method for ex in first.requests if ex.method == "DELETE"] == ["DELETE"], first
    assert not any(ex.headers.get("upload-complete") == "?1" for ex in first.of("PATCH")), first
    world.ledger.discard(hashlib.md5(data).hexdigest())  # the user's own edit replaced that version
    world.write("big.bin", bytes(edited))  # (dated back: not "still being written")
    again = world.push()
    assert again.code == 0, again
    assert (world.root / "big.bin").read_bytes() == bytes(edited)
    world.check(again, verb="push")
