"""Delta push: the server assembles a new version from the current one plus new bytes
(deltapush.py), and `davsync sync` sends an edit of a big file that way."""

from __future__ import annotations

import hashlib
import random

from synchelp import SyncWorld

from davsync.client.delta import MIN_SIZE
from davsync.server.names import SHARE_MARKER

KiB, MiB = 1024, 1024 * 1024
BASE = random.Random(11).randbytes(3 * MiB + 500)


def copy(start: int, n: int) -> bytes:
    return b"C" + start.to_bytes(8, "big") + n.to_bytes(8, "big")


def data(raw: bytes) -> bytes:
    return b"D" + len(raw).to_bytes(8, "big") + raw


def post(share, body: bytes, new: bytes, **headers: str):
    base = {"Content-Type": "application/x-davsync-delta", "OC-Checksum": f"MD5:{hashlib.md5(new).hexdigest()}",
            "Upload-Length": str(len(new))}  # fmt: skip
    return share.request("POST", "/big.bin", data=body, headers={**base, **headers})


def setup(share) -> str:
    assert share.request("PUT", "/big.bin", data=BASE).status_code == 201
    return share.request("HEAD", "/big.bin").headers["ETag"]


def test_options_advertise_delta_push_to_writers(share) -> None:
    assert "X-Davsync-Delta-Push" in share.request("OPTIONS", "/").headers
    assert "X-Davsync-Delta-Push" not in share.request("OPTIONS", "/", user="bob").headers


def test_the_server_assembles_checks_and_keeps_the_previous_version(share) -> None:
    etag = setup(share)
    new = BASE[:MiB] + b"new bytes" + BASE[MiB + 9 :] + b"appended"
    body = copy(0, MiB) + data(b"new bytes") + copy(MiB + 9, len(BASE) - MiB - 9) + data(b"appended")
    resp = post(share, body, new, **{"If-Match": etag, "X-OC-Mtime": "1600000000"})
    assert resp.status_code == 204, resp.text
    assert (share.root / "big.bin").read_bytes() == new
    assert resp.headers["OC-Checksum"] == f"MD5:{hashlib.md5(new).hexdigest()}"
    kept = share.server.state.versions.files("big.bin")
    assert [v.md5 for v in kept] == [hashlib.md5(BASE).hexdigest()]
    answer = share.request("GET", "/big.bin?blocks").json()  # the block list came with the assembly
    assert answer["md5"] == hashlib.md5(new).hexdigest()


def test_a_changed_base_a_bad_body_or_md5_places_nothing(share) -> None:
    etag = setup(share)
    good = copy(0, len(BASE))
    assert post(share, good, BASE, **{"If-Match": '"not-the-etag"'}).status_code == 412
    assert post(share, good, BASE).status_code == 428  # no If-Match: no base to apply it to
    assert post(share, copy(len(BASE) - 10, 11), BASE[-10:] + b"x", **{"If-Match": etag}).status_code == 400
    assert post(share, copy(0, 100), BASE[:99], **{"If-Match": etag}).status_code == 400  # longer than said
    wrong = post(share, good, BASE, **{"If-Match": etag, "OC-Checksum": "MD5:" + "0" * 32})
    assert wrong.status_code == 400
    assert post(share, b"X" + good, BASE, **{"If-Match": etag}).status_code == 400
    assert (share.root / "big.bin").read_bytes() == BASE
    assert share.request("HEAD", "/big.bin").headers["ETag"] == etag
    assert not [p for p in share.root.iterdir() if p.name.startswith(".~davsync-") and p.name != SHARE_MARKER]


def test_sync_sends_an_edit_of_a_big_file_as_its_changed_blocks(world: SyncWorld) -> None:
    world.sampling = False
    rng = random.Random(12)
    old = rng.randbytes(3 * MIN_SIZE + 999)
    world.write("big.bin", old)
    assert world.sync().code == 0
    new = old[: 5 * MiB] + rng.randbytes(200 * KiB) + old[5 * MiB + 200 * KiB :]
    world.write("big.bin", new)
    run = world.sync()
    assert run.code == 0, run
    assert (world.root / "big.bin").read_bytes() == new
    posts = run.of("POST", "big.bin")
    assert len(posts) == 1 and posts[0].status == 204, run
    assert posts[0].body_sent <= 200 * KiB + 2 * 128 * KiB + 1000, run  # two or three blocks, not 12 MB
    assert not run.of("PUT", "big.bin") and not run.of("PATCH"), run
    assert world.server.state.versions.files("big.bin")[0].md5 == hashlib.md5(old).hexdigest()
    world.check(run)


def test_the_block_list_after_a_delta_is_the_new_files_own(share) -> None:
    """Copied whole blocks keep the base's hashes, moved ones too; the rest is hashed: every
    block hash the server then lists is the SHA-256 of that block of the placed file."""
    etag = setup(share)
    block = share.request("GET", "/big.bin?blocks").json()["block_size"]
    new = BASE[:block] + BASE[3 * block : 5 * block] + BASE[block : 3 * block] + b"x" * 100 + BASE[5 * block :]
    new += BASE[: block + 7]
    body = (copy(0, block) + copy(3 * block, 2 * block) + copy(block, 2 * block) + data(b"x" * 100)
            + copy(5 * block, len(BASE) - 5 * block) + copy(0, block + 7))  # fmt: skip
    assert post(share, body, new, **{"If-Match": etag}).status_code == 204
    placed = (share.root / "big.bin").read_bytes()
    assert placed == new
    answer = share.request("GET", "/big.bin?blocks=stored").json()
    assert answer["blocks"] == [hashlib.sha256(placed[i : i + block]).hexdigest() for i in range(0, len(placed), block)]
