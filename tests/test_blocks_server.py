"""Block hashes of big files on the server (blocks.py): sizes, one-pass hashing, the GET endpoint."""

from __future__ import annotations

import hashlib
import os
import random

from davsync.server.blocks import MIN_SIZE, FileDigest, block_size_for

KiB, MiB, GiB = 1024, 1024**2, 1024**3
DATA = random.Random(7).randbytes(3 * MiB + 1000)


def expected_blocks(data: bytes, block: int) -> list[str]:
    return [hashlib.sha256(data[i : i + block]).hexdigest() for i in range(0, len(data), block)]


def test_block_sizes_follow_syncthing() -> None:
    assert block_size_for(0) == 128 * KiB
    assert block_size_for(250 * MiB - 1) == 128 * KiB
    assert block_size_for(250 * MiB) == 256 * KiB
    assert block_size_for(1 * GiB) == 1 * MiB
    assert block_size_for(16 * GiB) == 16 * MiB
    assert block_size_for(4096 * GiB) == 16 * MiB
    for size in (1, 10 * MiB, 300 * MiB, 3 * GiB, 20 * GiB):
        assert -(-size // block_size_for(size)) < 2000 or block_size_for(size) == 16 * MiB


def test_one_pass_gives_the_md5_and_the_block_hashes_however_the_data_is_cut() -> None:
    rng = random.Random(3)
    for _ in range(20):
        digest = FileDigest(len(DATA))
        pos = 0
        while pos < len(DATA):
            n = rng.choice([1, 777, 128 * KiB, 200_000, MiB])
            digest.update(DATA[pos : pos + n])
            pos += n
        assert digest.hexdigest() == hashlib.md5(DATA).hexdigest()
        hashes = digest.blocks()
        assert hashes is not None
        assert [hashes[i : i + 32].hex() for i in range(0, len(hashes), 32)] == expected_blocks(DATA, 128 * KiB)
    short = FileDigest(len(DATA))
    short.update(DATA[:-1])
    assert short.blocks() is None  # not the size announced: no block list


def test_a_put_stores_the_block_list_and_get_blocks_serves_it(share) -> None:
    assert "X-Davsync-Blocks" in share.request("OPTIONS", "/").headers
    assert share.request("PUT", "/big.bin", data=DATA).status_code == 201
    st = (share.root / "big.bin").stat()
    assert share.server.state.provider.blocks.get("big.bin", st) is not None  # from the upload's own read
    resp = share.request("GET", "/big.bin?blocks")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/json"
    answer = resp.json()
    assert answer["md5"] == hashlib.md5(DATA).hexdigest() and answer["size"] == len(DATA)
    assert answer["block_size"] == 128 * KiB and answer["algorithm"] == "sha256"
    assert answer["blocks"] == expected_blocks(DATA, 128 * KiB)
    assert answer["etag"] == share.request("HEAD", "/big.bin").headers["ETag"].strip('"')
    assert share.request("GET", "/big.bin").content == DATA  # a plain GET is the file


def test_a_file_changed_on_the_servers_disk_gets_fresh_blocks_and_md5(share) -> None:
    assert share.request("PUT", "/big.bin", data=DATA).status_code == 201
    changed = bytearray(DATA)
    changed[MiB : MiB + 10] = b"0123456789"
    with open(share.root / "big.bin", "r+b") as f:  # in place, same size
        f.seek(MiB)
        f.write(b"0123456789")
    answer = share.request("GET", "/big.bin?blocks").json()
    assert answer["blocks"] == expected_blocks(bytes(changed), 128 * KiB)
    assert answer["md5"] == hashlib.md5(changed).hexdigest()
    st = (share.root / "big.bin").stat()
    assert share.index.fresh_md5("big.bin", st) == answer["md5"]  # recorded from the same read


def test_small_files_and_folders_have_no_block_list(share) -> None:
    assert share.request("PUT", "/small.bin", data=os.urandom(MIN_SIZE - 1)).status_code == 201
    assert share.request("GET", "/small.bin?blocks").status_code == 404
    assert share.request("GET", "/nothing.bin?blocks").status_code == 404
    assert share.request("MKCOL", "/dir").status_code == 201
    assert share.request("GET", "/dir?blocks").status_code == 409


def test_a_resumable_upload_stores_the_block_list(share) -> None:
    md5 = hashlib.md5(DATA).hexdigest()
    created = share.request("POST", "/r.bin", data=b"", headers={
        "Upload-Complete": "?0", "Upload-Length": str(len(DATA)), "OC-Checksum": f"MD5:{md5}"})  # fmt: skip
    location = created.headers["Location"]
    headers = {"Content-Type": "application/partial-upload", "Upload-Complete": "?0", "Upload-Offset": "0"}
    assert share.request("PATCH", location, headers=headers, data=DATA[:MiB]).status_code == 204
    headers.update({"Upload-Complete": "?1", "Upload-Offset": str(MiB)})
    assert share.request("PATCH", location, headers=headers, data=DATA[MiB:]).status_code == 201
    st = (share.root / "r.bin").stat()
    stored = share.server.state.provider.blocks.get("r.bin", st)
    assert stored is not None
    assert stored[1].hex() == "".join(expected_blocks(DATA, 128 * KiB))


def test_blocks_stored_answers_only_a_kept_list(share) -> None:
    (share.root / "disk.bin").write_bytes(DATA)  # written on the server's disk: no list kept yet
    share.wait_indexed()
    assert share.request("GET", "/disk.bin?blocks=stored").status_code == 404
    assert share.request("GET", "/disk.bin?blocks").status_code == 200  # made now, with the MD5
    assert share.request("GET", "/disk.bin?blocks=stored").json()["blocks"] == expected_blocks(DATA, 128 * KiB)


def test_a_digest_continued_from_kept_md5_states_equals_one_taken_from_the_start() -> None:
    """A delta push leaving a file's first blocks as they were continues the MD5 from the state
    kept after them (server/deltapush.py): the same MD5, block hashes and states as a full read."""
    rng = random.Random(5)
    old = rng.randbytes(5 * 1024 * 1024 + 777)
    new = old[: 3 * 1024 * 1024 + 5] + rng.randbytes(4096) + old[3 * 1024 * 1024 + 4101 :] + b"tail"
    kept = FileDigest(len(old))
    kept.update(old)
    hashes = kept.blocks()
    assert hashes is not None
    full = FileDigest(len(new))
    full.update(new)
    bs = full.block_size
    head = (3 * 1024 * 1024 + 5) // bs
    continued = FileDigest(len(new))
    assert continued.continue_from(head, hashes, kept.states)
    continued.update(new[head * bs :])
    assert continued.hexdigest() == hashlib.md5(new).hexdigest()
    assert continued.blocks() == full.blocks()
    assert [s.hexdigest() for s in continued.states] == [s.hexdigest() for s in full.states]
    assert not FileDigest(len(new)).continue_from(len(kept.states) + 1, hashes, kept.states)  # more than is known
