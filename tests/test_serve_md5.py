"""MD5s published by `davsync serve` equal md5sum's, are never stale, and survive restarts."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from davhelp import PROPFIND_MD5, WEIRD_NAMES, checksums, md5sum_tool, parse_multistatus


def make_weird_tree(root: Path) -> list[Path]:
    files = []
    for i, name in enumerate(WEIRD_NAMES):
        p = root / "dir with space" / name if i % 2 else root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"" if name == "empty" else (name * (i + 1)).encode())
        files.append(p)
    return files


def test_checksums_equal_md5sum_for_odd_names(share) -> None:
    files = make_weird_tree(share.root)
    expected = {
        "/" + str(Path(f).relative_to(share.root)): "MD5:" + digest for f, digest in md5sum_tool(files).items()
    }
    got = {**checksums(share, "/"), **checksums(share, "/" + quote("dir with space") + "/")}
    assert got == expected


def test_same_size_edit_with_mtime_restored_is_seen(share) -> None:
    f = share.root / "photo.jpg"
    f.write_bytes(b"A" * 4096)
    before = checksums(share)["/photo.jpg"]
    st = f.stat()
    f.write_bytes(b"B" * 4096)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_mtime_ns == st.st_mtime_ns and f.stat().st_size == st.st_size
    after = checksums(share)["/photo.jpg"]
    assert before != after
    assert after == "MD5:" + md5sum_tool([f])[str(f)]


def test_restart_rereads_nothing_unchanged(start_share, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for i in range(50):
        (root / f"f{i}.bin").write_bytes(os.urandom(1000 + i))
    first = start_share(root)
    assert first.index.files_hashed == 50
    listing = checksums(first)
    first.server.stop()

    second = start_share(root)  # same state dir
    assert checksums(second) == listing
    assert second.index.files_hashed == 0
    assert second.server.scan_done.is_set()


def test_restart_rehashes_only_what_changed(start_share, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for i in range(20):
        (root / f"f{i}.bin").write_bytes(os.urandom(100))
    start_share(root).server.stop()
    (root / "f3.bin").write_bytes(b"changed while the server was down")
    second = start_share(root)
    assert second.index.files_hashed == 1
    assert checksums(second)["/f3.bin"] == "MD5:" + md5sum_tool([root / "f3.bin"])[str(root / "f3.bin")]


def test_checksums_not_in_allprop_but_in_propname(share) -> None:
    (share.root / "x.txt").write_text("x")
    allprop = share.request("PROPFIND", "/x.txt", headers={"Depth": "0"})
    assert allprop.status_code == 207 and b"checksums" not in allprop.content
    names = share.request(
        "PROPFIND", "/x.txt", headers={"Depth": "0"}, data='<d:propfind xmlns:d="DAV:"><d:propname/></d:propfind>'
    )
    assert names.status_code == 207
    props = parse_multistatus(names.content)["/x.txt"]
    assert "{http://owncloud.org/ns}checksums" in props and props["{DAV:}getcontentlength"] is None


def test_200_propstat_comes_first(share) -> None:
    """rclone 1.60 reads only the first propstat's status."""
    (share.root / "x.txt").write_text("x")
    body = (
        '<d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>'
        "<oc:permissions/><d:quota-used-bytes/><oc:checksums/><d:displayname/></d:prop></d:propfind>"
    )
    r = share.request("PROPFIND", "/x.txt", headers={"Depth": "0"}, data=body)
    statuses = [s for s in r.text.split("<D:status>")[1:]]
    assert statuses[0].startswith("HTTP/1.1 200")


def test_depth_infinity_refused_with_precondition(share) -> None:
    for headers in ({"Depth": "infinity"}, {}):
        r = share.request("PROPFIND", "/", headers=headers, data=PROPFIND_MD5)
        assert r.status_code == 403
        assert "propfind-finite-depth" in r.text


def test_depth_infinity_when_enabled(start_share) -> None:
    s = start_share(allow_infinite_depth=True)
    (s.root / "a").mkdir()
    (s.root / "a" / "b.txt").write_text("b")
    r = s.request("PROPFIND", "/", headers={"Depth": "infinity"}, data=PROPFIND_MD5)
    assert r.status_code == 207
    assert "/a/b.txt" in parse_multistatus(r.content)
