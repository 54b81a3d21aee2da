"""Names the server keeps to itself, on a case-insensitive volume (issue 23 item 2).

On exFAT or FAT (a Pi's USB disk), the versions area `.~davsync-versions` is reached by any
spelling the volume folds to it: `.~DAVSYNC-versions` must be refused exactly like the real
name, by every way a request can name a path.
"""

from __future__ import annotations

import io
import os
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_bundle_server import bundle_body
from test_client_volumes import Volume, exfat  # noqa: F401  (the real exFAT volume fixture)

from davsync.paxstream import PaxReader
from davsync.server.links import LinkStore
from davsync.server.names import is_internal_name, is_internal_path
from davsync.server.version_keeper import IN_SHARE_NAME

SPELLINGS = [IN_SHARE_NAME.upper(), ".~DavSync-Versions", ".~davſync-versions",  # ſ folds to s
             unicodedata.normalize("NFD", ".~DAVSYNC-versions")]  # fmt: skip


@pytest.mark.parametrize("name", [*SPELLINGS, ".~DAVSYNC-x.part", ".~davsync-admin"])
def test_reserved_names_are_recognised_in_any_case_and_normal_form(name: str) -> None:
    assert is_internal_name(name) and is_internal_path(f"a/{name}/b")


@pytest.mark.parametrize("name", ["davsync-versions", ".davsync", "~davsync-x", "x.~davsync-y", "Photos"])
def test_ordinary_names_are_not_reserved(name: str) -> None:
    assert not is_internal_name(name)


@pytest.fixture
def exfat_share(start_share, exfat: Volume, tmp_path: Path) -> Iterator:  # noqa: F811
    root = exfat.mnt / "share"
    root.mkdir()
    (root / "a.txt").write_bytes(b"first")
    share = start_share(root, state_dir=tmp_path / "state")  # on another filesystem: versions live in the share
    assert share.request("PUT", "a.txt", data=b"second").status_code == 204
    versions = root / IN_SHARE_NAME
    assert versions.is_dir() and any(versions.rglob("*")), "no version was kept; the test proves nothing"
    assert (root / IN_SHARE_NAME.upper()).is_dir(), "this volume is case-sensitive; the test proves nothing"
    yield share


def test_exfat_versions_area_is_unreachable_by_any_spelling(exfat_share) -> None:
    share = exfat_share
    root = share.root
    kept = sorted(p.relative_to(root / IN_SHARE_NAME).as_posix() for p in (root / IN_SHARE_NAME).rglob("*"))
    token = LinkStore(share.state_dir).create("", "read-write", expires_in=3600, password=None).token
    for spelling in SPELLINGS:
        if not (root / spelling).exists():
            continue  # this volume does not fold that spelling to the real name
        for user in ("alice", "bob"):
            for rel in ["", *kept]:
                path = f"{spelling}/{rel}"
                for method in ("GET", "HEAD", "PROPFIND"):
                    r = share.request(method, path, user=user, headers={"Depth": "1"} if method == "PROPFIND" else {})
                    assert r.status_code in (403, 404), (user, method, path, r.status_code, r.text[r.text.find("<p>"):][:200])
        via_link = share.request("GET", f"s/{token}/{spelling}/", user=None)
        assert via_link.status_code in (403, 404), (spelling, via_link.status_code)
        assert share.request("PUT", f"{spelling}/new.txt", data=b"x").status_code in (403, 404, 409)
        assert share.request("MKCOL", f"{spelling}/sub").status_code in (403, 404, 409)
        for method in ("MOVE", "COPY"):
            r = share.request(method, "a.txt", headers={"Destination": share.url + spelling + "/a.txt"})
            assert r.status_code in (400, 403, 404, 409), (method, spelling, r.status_code)
            r = share.request(method, f"{spelling}/{kept[-1]}", headers={"Destination": share.url + "out.txt"})
            assert r.status_code in (400, 403, 404, 409), (method, spelling, r.status_code)
        assert share.request("DELETE", spelling).status_code in (403, 404)
        assert share.request("DELETE", f"s/{token}/{spelling}", user=None).status_code in (403, 404)
        r = share.request("REPORT", "", data=bundle_body(*[f"{spelling}/{k}" for k in kept]))
        if r.status_code == 200:
            reader = PaxReader(io.BytesIO(r.content).read)
            while (m := reader.next()) is not None:
                assert m.status != 200 and not reader.data(m, 1 << 20), (spelling, m.path)
        else:
            assert r.status_code in (400, 403, 404), r.status_code
    # nothing was added, moved or removed there, and nothing of it is listed
    assert sorted(p.relative_to(root / IN_SHARE_NAME).as_posix() for p in (root / IN_SHARE_NAME).rglob("*")) == kept
    assert not (root / "out.txt").exists()
    listing = share.request("PROPFIND", "", headers={"Depth": "1"})
    assert listing.status_code == 207 and b"davsync-versions" not in listing.content.lower()
    link_share = LinkStore(share.state_dir).create(SPELLINGS[0], "read-only", expires_in=3600, password=None).token
    assert share.request("GET", f"s/{link_share}/", user=None).status_code == 404
    assert os.path.exists(root / "a.txt") and (root / "a.txt").read_bytes() == b"second"


def test_restoring_a_version_onto_a_reserved_name_is_refused(share) -> None:
    from davsync.server.version_keeper import VersionError, Who

    (share.root / "a.txt").write_bytes(b"first")
    share.wait_indexed()
    assert share.request("PUT", "a.txt", data=b"second").status_code == 204
    for to in (".~DAVSYNC-versions/a.txt", "sub/.~DavSync-x.part"):
        with pytest.raises(VersionError, match="not a path inside the share"):
            share.server.state.versions.restore("a.txt", Who("alice", "test"), to=to)
    assert not (share.root / "sub").exists()
