"""Delta pulls: multi-range GETs on the server, and a client fetching only changed blocks.

A real server with the recording proxy in front counting response-body bytes, and real
`davsync pull` processes.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import random

from synchelp import Exchange, SyncWorld

from davsync.client.delta import MIN_SIZE

MiB = 1024 * 1024
BLOCK = 128 * 1024
SIZE = 3 * MIN_SIZE + 4321


def _parts(resp) -> list[tuple[str, bytes]]:
    """(Content-Range, payload) of each part, read by the standard library's MIME parser."""
    head = f"Content-Type: {resp.headers['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser().parsebytes(head + resp.content)
    assert message.is_multipart()
    return [(part["Content-Range"], part.get_payload(decode=True)) for part in message.get_payload()]


def test_several_ranges_are_answered_as_multipart_byteranges(share) -> None:
    data = random.Random(1).randbytes(300_000)
    (share.root / "f.bin").write_bytes(data)
    resp = share.request("GET", "/f.bin", headers={"Range": "bytes=0-9,100-199,299990-"})
    assert resp.status_code == 206
    assert resp.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    assert _parts(resp) == [
        ("bytes 0-9/300000", data[:10]), ("bytes 100-199/300000", data[100:200]),
        ("bytes 299990-299999/300000", data[299990:]),
    ]  # fmt: skip
    etag = resp.headers["ETag"]
    again = share.request("GET", "/f.bin", headers={"Range": "bytes=0-9,20-29", "If-Range": etag})
    assert again.status_code == 206 and [p for _, p in _parts(again)] == [data[:10], data[20:30]]
    stale = share.request("GET", "/f.bin", headers={"Range": "bytes=0-9,20-29", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == data  # changed since: the whole file


def _received(exchanges: list[Exchange]) -> int:
    return sum(ex.body_received for ex in exchanges if ex.method == "GET")


def _edit(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new) :]


def test_a_pull_of_an_edited_big_file_fetches_only_the_changed_blocks(world: SyncWorld) -> None:
    world.sampling = False
    rng = random.Random(2)
    data = rng.randbytes(SIZE)
    world.seed({"big.bin": data})
    first = world.pull()
    assert first.code == 0 and (world.dest / "big.bin").read_bytes() == data
    assert _received(first.requests) >= SIZE  # nothing to reuse yet: the whole file

    edited = _edit(data, 5 * MiB + 1000, rng.randbytes(300_000))  # spans 3-4 blocks
    world.rput("big.bin", edited)
    world.wait_indexed()
    run = world.pull()
    assert run.code == 0, run
    assert (world.dest / "big.bin").read_bytes() == edited
    listed = [ex for ex in run.of("GET", "big.bin") if ex.target.endswith("?blocks")]
    assert len(listed) == 1, run
    ranged = [ex for ex in run.of("GET", "big.bin") if "range" in ex.headers]
    assert ranged and all(ex.status == 206 for ex in ranged), run
    blocks_bytes = sum(ex.body_received for ex in ranged)
    assert 300_000 <= blocks_bytes <= 4 * BLOCK, run
    assert _received(run.requests) < SIZE // 10, run  # the block list and 4 blocks, not 12 MB
    world.check(run, verb="pull")


def test_blocks_shifted_by_an_insertion_of_whole_blocks_are_found_again(world: SyncWorld) -> None:
    """Blocks are matched by hash wherever they sit in the local file: an insertion of whole
    blocks (1 MiB at the middle of a file with 1 MiB blocks or smaller) fetches about what was
    inserted, not the shifted rest."""
    world.sampling = False
    rng = random.Random(4)
    data = rng.randbytes(SIZE)
    world.seed({"big.bin": data})
    assert world.pull().code == 0
    middle = (SIZE // 2) // BLOCK * BLOCK
    inserted = data[:middle] + rng.randbytes(2 * BLOCK) + data[middle:]
    world.rput("big.bin", inserted)
    world.wait_indexed()
    run = world.pull()
    assert run.code == 0 and (world.dest / "big.bin").read_bytes() == inserted
    ranged = [ex for ex in run.of("GET", "big.bin") if "range" in ex.headers]
    assert ranged and sum(ex.body_received for ex in ranged) <= 3 * BLOCK, run  # the 2 new blocks and the tail's
    world.check(run, verb="pull")


def test_delta_falls_back_to_the_whole_file_when_most_of_it_changed(world: SyncWorld) -> None:
    world.sampling = False
    rng = random.Random(3)
    data = rng.randbytes(SIZE)
    world.seed({"big.bin": data})
    assert world.pull().code == 0
    edited = _edit(data, 0, rng.randbytes(SIZE * 6 // 10))
    world.rput("big.bin", edited)
    world.wait_indexed()
    run = world.pull()
    assert run.code == 0 and (world.dest / "big.bin").read_bytes() == edited
    assert not [ex for ex in run.of("GET", "big.bin") if "range" in ex.headers], run
    assert _received(run.requests) >= SIZE
    world.check(run, verb="pull")


def test_random_edits_pull_byte_exact(world: SyncWorld) -> None:
    """In-place edits, an insertion, an append and a truncation: each pull ends byte-exact and
    MD5-verified, by delta or by the whole file."""
    world.sampling = False
    rng = random.Random(4)
    data = rng.randbytes(SIZE)
    world.seed({"big.bin": data})
    assert world.pull().code == 0
    edits = [
        lambda d: _edit(d, rng.randrange(len(d) - 1000), rng.randbytes(rng.randint(1, 1000))),
        lambda d: d[: len(d) // 3] + rng.randbytes(5000) + d[len(d) // 3 :],
        lambda d: d + rng.randbytes(rng.randint(1, 3 * BLOCK)),
        lambda d: d[: len(d) - rng.randint(1, 3 * BLOCK)],
        lambda d: _edit(d, rng.randrange(len(d) - BLOCK * 2), rng.randbytes(BLOCK * 2)),
    ]
    for edit in edits:
        data = edit(data)
        world.rput("big.bin", data)
        world.wait_indexed()
        run = world.pull()
        assert run.code == 0, run
        got = (world.dest / "big.bin").read_bytes()
        assert hashlib.md5(got).hexdigest() == hashlib.md5(data).hexdigest(), run
    world.check(run, verb="pull")


def test_a_server_without_block_lists_gets_plain_whole_file_gets(sync_world) -> None:
    world = sync_world(backend="rclone")  # `rclone serve webdav`: no davsync extensions
    world.sampling = False
    rng = random.Random(5)
    data = rng.randbytes(SIZE)
    world.seed({"big.bin": data})
    assert world.pull().code == 0
    edited = _edit(data, MiB, b"changed")
    world.rput("big.bin", edited)
    run = world.pull()
    assert run.code == 0, run
    assert (world.dest / "big.bin").read_bytes() == edited
    assert not [ex for ex in run.requests if "?blocks" in ex.target or "range" in ex.headers], run
    assert _received(run.requests) >= SIZE


def test_the_local_block_list_is_kept_and_a_wrong_one_costs_only_a_whole_download(world: SyncWorld) -> None:
    world.sampling = False
    rng = random.Random(6)
    data = rng.randbytes(SIZE)
    world.rput("big.bin", data)  # uploaded: the server keeps its block list, and the pull keeps it too
    world.wait_indexed()
    assert world.pull().code == 0
    kept = list((world.dest / ".davsync" / "blocks").glob("*.json"))
    assert len(kept) == 1
    record = json.loads(kept[0].read_text())
    st = (world.dest / "big.bin").stat()
    assert (record["size"], record["mtime_ns"], record["ino"]) == (st.st_size, st.st_mtime_ns, st.st_ino)
    assert record["blocks"] == [hashlib.sha256(data[i : i + BLOCK]).hexdigest() for i in range(0, SIZE, BLOCK)]

    b = record["blocks"]  # a lie (two blocks swapped): the delta would copy the wrong bytes; its MD5 tells
    b[3], b[4] = b[4], b[3]
    kept[0].write_text(json.dumps(record))
    edited = _edit(data, 2 * MiB, b"edited")
    world.rput("big.bin", edited)
    world.wait_indexed()
    run = world.pull()
    assert run.code == 0, run
    assert (world.dest / "big.bin").read_bytes() == edited
    assert _received(run.requests) >= SIZE  # the delta failed its MD5 check: the whole file came

    again = _edit(edited, 9 * MiB, b"again")  # the list kept after that whole download is right
    world.rput("big.bin", again)
    world.wait_indexed()
    run = world.pull()
    assert run.code == 0 and (world.dest / "big.bin").read_bytes() == again
    assert _received(run.requests) < SIZE // 10, run
    world.check(run, verb="pull")


def test_a_killed_delta_s_side_files_are_swept_at_the_next_run(world: SyncWorld) -> None:
    """A client killed mid-delta leaves its assembled file (as big as the file) and its fetched
    ranges in DEST/.davsync/partial; nothing resumes them, so the next run removes them, and
    keeps a whole-file download's resumable .part."""
    world.seed({"a.txt": "a"})
    assert world.pull().code == 0
    partial = world.dest / ".davsync" / "partial"
    partial.mkdir(parents=True, exist_ok=True)
    left = [partial / "0123abcd.delta", partial / "0123abcd.ranges"]
    for p in left:
        p.write_bytes(b"x" * 1000)
    resumable = partial / "4567ef01.part"
    resumable.write_bytes(b"y" * 1000)
    run = world.pull()
    assert run.code == 0, run
    assert [p.name for p in left if p.exists()] == [], run
    assert resumable.exists()
