"""Share links to a single file, on a real server: the link opens as a folder holding just that
file; nothing else in the file's folder is reachable, whatever the path or method; read-write
replaces only that file (versions kept); drop is refused; expiry, revocation and passwords work
as for folders."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import wait_until
from lxml import etree
from test_share_links import LOCK_BODY, SYNC_BODY, hrefs, raw

from davsync.server.links import LinkError, LinkStore
from davsync.units import human_size

REPORT = b"the quarterly report\n" * 50
SIBLINGS = {"salaries.txt": b"top secret salaries", "notes.md": b"private notes"}


@pytest.fixture
def docs(share) -> Any:
    folder = share.root / "Docs"
    (folder / "Sub").mkdir(parents=True)
    (folder / "report.txt").write_bytes(REPORT)
    for name, data in SIBLINGS.items():
        (folder / name).write_bytes(data)
    (folder / "Sub" / "deep.txt").write_bytes(b"deep secret")
    (share.root / "outside.txt").write_bytes(b"outside secret")
    share.wait_indexed()
    return share


def file_link(share, path: str = "Docs/report.txt", mode: str = "read-only", **kw: Any) -> tuple[str, str]:
    kw.setdefault("expires_in", 3600)
    kw.setdefault("password", None)
    issued = LinkStore(share.state_dir).create(path, mode, kind="file", **kw)
    return f"{share.url}s/{issued.token}/", issued.token


SECRETS = (b"top secret salaries", b"private notes", b"deep secret", b"outside secret")


def no_secret(body: bytes) -> bool:
    return not any(s in body for s in SECRETS) and b"salaries" not in body and b"notes.md" not in body


def test_a_file_link_serves_that_file_and_lists_only_it(docs) -> None:
    url, token = file_link(docs)
    prefix = f"/s/{token}/"
    got = requests.get(url + "report.txt", timeout=10)
    assert got.status_code == 200 and got.content == REPORT
    head = requests.head(url + "report.txt", timeout=10)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(REPORT)
    for depth in ("0", "1"):
        on_file = requests.request("PROPFIND", url + "report.txt", headers={"Depth": depth}, timeout=10)
        assert on_file.status_code == 207 and hrefs(on_file.content) == [prefix + "report.txt"]
    root0 = requests.request("PROPFIND", url, headers={"Depth": "0"}, timeout=10)
    assert root0.status_code == 207 and hrefs(root0.content) == [prefix]
    root1 = requests.request("PROPFIND", url, headers={"Depth": "1"}, timeout=10)
    assert root1.status_code == 207 and sorted(hrefs(root1.content)) == [prefix, prefix + "report.txt"]
    assert no_secret(root1.content) and b"Docs" not in root1.content  # not even the folder's name
    assert f"MD5:{hashlib.md5(REPORT).hexdigest()}".encode() in requests.request(
        "PROPFIND", url, headers={"Depth": "1"}, timeout=10,
        data=b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>'
             b"<oc:checksums/></d:prop></d:propfind>").content  # fmt: skip
    # the link itself, fetched by a plain client (curl -L, wget), leads to the file
    plain = requests.get(url, timeout=10)
    assert plain.status_code == 200 and plain.content == REPORT


def test_nothing_else_in_the_folder_is_reachable(docs) -> None:
    url, token = file_link(docs, mode="read-write")
    p = f"/s/{token}"
    hostile = [
        f"{p}/salaries.txt", f"{p}/notes.md", f"{p}/Sub/", f"{p}/Sub/deep.txt", f"{p}/../outside.txt",
        f"{p}/%2e%2e/outside.txt", f"{p}/%2E%2e/Docs/salaries.txt", f"{p}/report.txt/../salaries.txt",
        f"{p}/report.txt/", f"{p}/report.txt//", f"{p}//report.txt/..%2fsalaries.txt", f"{p}/report.txt%2f..%2fnotes.md",
        f"{p}/..%5csalaries.txt", f"{p}/./salaries.txt", f"{p}/REPORT.TXT", f"{p}/report.txt%00", f"{p}/Sub",
        f"{p}/report.txt/x", f"{p}/%73alaries.txt",
    ]  # fmt: skip
    for target in hostile:
        for method, headers in (("GET", {}), ("HEAD", {}), ("PROPFIND", {"Depth": "1"}), ("PROPFIND", {"Depth": "0"}),
                                ("PUT", {}), ("DELETE", {}), ("MKCOL", {}), ("LOCK", {}), ("OPTIONS", {})):  # fmt: skip
            body = LOCK_BODY if method == "LOCK" else b"x" if method == "PUT" else None
            r = raw(docs, method, target, headers, body=body)
            assert r.status in (400, 403, 404, 405), (method, target, r.status)
    # what the hostile requests tried to change is unchanged, and nothing new landed
    assert sorted(p.name for p in (docs.root / "Docs").iterdir() if not p.name.startswith(".")) == [
        "Sub", "notes.md", "report.txt", "salaries.txt"]  # fmt: skip
    for name, data in SIBLINGS.items():
        assert (docs.root / "Docs" / name).read_bytes() == data
    # the change feed and a bundle request name only the file
    first = requests.request("REPORT", url, data=SYNC_BODY.format(""), headers={"Depth": "0"}, timeout=10)
    assert first.status_code == 207 and set(hrefs(first.content)) == {p + "/report.txt"}
    token_el = etree.fromstring(first.content).findtext(".//{DAV:}sync-token")
    (docs.root / "Docs" / "new sibling.txt").write_bytes(b"salaries again")
    (docs.root / "Docs" / "notes.md").unlink()
    docs.wait_indexed()
    later = requests.request("REPORT", url, data=SYNC_BODY.format(token_el), headers={"Depth": "0"}, timeout=10)
    assert later.status_code == 207 and hrefs(later.content) == [], later.content
    bundle = requests.request("REPORT", url, timeout=10, data=(
        b'<?xml version="1.0" encoding="utf-8"?>\n<ds:bundle xmlns:ds="urn:davsync:">'
        b"<ds:file>salaries.txt</ds:file><ds:file>report.txt</ds:file></ds:bundle>"))  # fmt: skip
    assert bundle.status_code in (403, 404) and no_secret(bundle.content)
    blocks = requests.get(url + "salaries.txt?blocks", timeout=10)
    assert blocks.status_code in (403, 404) and no_secret(blocks.content)
    assert "X-Davsync-Bundle" not in requests.options(url, timeout=10).headers


def test_read_only_file_link_refuses_every_change(docs) -> None:
    url, _ = file_link(docs)
    for method, target in (("PUT", "report.txt"), ("DELETE", "report.txt"), ("MKCOL", "new/"),
                           ("PROPPATCH", "report.txt"), ("LOCK", "report.txt"), ("PUT", "other.txt")):  # fmt: skip
        r = requests.request(method, url + target, data=b"changed", timeout=10)
        assert r.status_code in (403, 404, 405), (method, target, r.status_code)
    assert (docs.root / "Docs" / "report.txt").read_bytes() == REPORT


def test_read_write_file_link_replaces_only_that_file_and_keeps_its_version(docs) -> None:
    url, token = file_link(docs, mode="read-write")
    put = requests.put(url + "report.txt", data=b"the corrected report\n", timeout=10)
    assert put.status_code in (200, 204), put.text
    assert (docs.root / "Docs" / "report.txt").read_bytes() == b"the corrected report\n"
    kept = [v for v in docs.server.state.versions.files("Docs/report.txt") if v.path == "Docs/report.txt"]
    assert len(kept) == 1 and kept[0].size == len(REPORT)
    # a lock is taken on the file (an editor's), never on the folder around it
    locked = requests.request("LOCK", url + "report.txt", data=LOCK_BODY, headers={"Timeout": "Second-60"}, timeout=10)
    assert locked.status_code == 200
    root_lock = requests.request("LOCK", url, data=LOCK_BODY, headers={"Timeout": "Second-60"}, timeout=10)
    assert root_lock.status_code in (403, 405)
    assert docs.request("PUT", "Docs/salaries.txt", data=b"still writable by the share").status_code in (200, 204)
    for method, target, headers in (
        ("DELETE", "report.txt", {}), ("MOVE", "report.txt", {"Destination": url + "moved.txt"}),
        ("COPY", "report.txt", {"Destination": url + "copy.txt"}), ("MKCOL", "new/", {}),
        ("PUT", "brand-new.txt", {}), ("PUT", "salaries.txt", {}), ("PROPPATCH", "", {}),
    ):  # fmt: skip
        r = requests.request(method, url + target, headers=headers, data=b"x", timeout=10)
        assert r.status_code in (403, 404, 405), (method, target, r.status_code)
    assert sorted(p.name for p in (docs.root / "Docs").iterdir() if not p.name.startswith(".")) == [
        "Sub", "notes.md", "report.txt", "salaries.txt"]  # fmt: skip


def test_drop_is_refused_for_a_file_with_a_sentence(docs) -> None:
    with pytest.raises(LinkError) as e:
        LinkStore(docs.state_dir).create("Docs/report.txt", "drop", kind="file", expires_in=None, password=None)
    message = str(e.value)
    assert "drop" in message and "folder" in message and message.endswith(".")
    assert LinkStore(docs.state_dir).links() == []


def test_expiry_revocation_and_a_missing_or_swapped_file(docs) -> None:
    store = LinkStore(docs.state_dir)
    url, _ = file_link(docs, expires_in=0.5)
    wait_until(lambda: requests.get(url + "report.txt", timeout=10).status_code == 410, 10, "the link to expire")
    url, _ = file_link(docs)
    assert requests.get(url + "report.txt", timeout=10).status_code == 200
    store.revoke(store.links()[-1].id)
    assert requests.get(url + "report.txt", timeout=10).status_code == 404
    url, _ = file_link(docs)
    os.rename(docs.root / "Docs" / "report.txt", docs.root / "Docs" / "report-old.txt")
    gone = requests.request("PROPFIND", url, headers={"Depth": "1"}, timeout=10)
    assert gone.status_code == 404 and no_secret(gone.content)
    os.symlink(docs.root / "Docs" / "salaries.txt", docs.root / "Docs" / "report.txt")
    swapped = requests.get(url + "report.txt", timeout=10)
    assert swapped.status_code == 404 and no_secret(swapped.content)
    os.unlink(docs.root / "Docs" / "report.txt")
    (docs.root / "Docs" / "report.txt").mkdir()  # a folder of that name is not the file
    (docs.root / "Docs" / "report.txt" / "inner.txt").write_bytes(b"inner")
    assert requests.request("PROPFIND", url, headers={"Depth": "1"}, timeout=10).status_code == 404


def test_the_friends_page_shows_the_file_with_a_download_button(docs) -> None:
    from lxml import html

    url, token = file_link(docs, password="pw", label="The report")
    page = requests.get(url, headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 401 and b"shared file" in page.content  # the login form, for a file
    s = requests.Session()
    login = s.post(url, data={"password": "pw"}, allow_redirects=False, timeout=10)
    assert login.status_code == 303
    shown = s.get(url, headers={"Accept": "text/html"}, timeout=10)
    assert shown.status_code == 200 and no_secret(shown.content)
    doc = html.fromstring(shown.content)
    assert doc.findtext(".//h1") == "report.txt"
    assert human_size(len(REPORT)) in doc.text_content()  # its size (and time) shown
    download = doc.get_element_by_id("download")
    assert download.get("href") == f"/s/{token}/report.txt"
    assert s.get(docs.url.rstrip("/") + download.get("href"), timeout=10).content == REPORT
    assert not doc.xpath('//*[@id="back"]')  # no folder to go back to
    inline = s.get(url + "report.txt?inline", timeout=10)
    assert inline.status_code == 200 and inline.content == REPORT and "sandbox" in inline.headers["Content-Security-Policy"]


def test_pull_of_a_file_link_brings_just_that_file(docs, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from davsync.cli import app

    url, _ = file_link(docs)
    dest = tmp_path / "got"
    result = CliRunner().invoke(app, ["pull", url, str(dest)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in dest.iterdir() if p.name != ".davsync") == ["report.txt"]
    assert (dest / "report.txt").read_bytes() == REPORT


def test_rclone_sees_just_the_file_with_its_md5_and_copies_it(docs, tmp_path: Path) -> None:
    import subprocess

    from conftest import require_tool

    exe = require_tool("rclone")
    url, _ = file_link(docs)
    remote = [":webdav:", "--webdav-url", url, "--webdav-vendor", "owncloud", "--config", "/dev/null"]
    listed = subprocess.run([exe, "md5sum", *remote, "--max-depth", "5"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [f"{hashlib.md5(REPORT).hexdigest()}  report.txt"]
    copied = subprocess.run([exe, "copy", *remote[:1], str(tmp_path / "got"), *remote[1:]], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert copied.returncode == 0, copied.stderr
    assert sorted(p.name for p in (tmp_path / "got").iterdir()) == ["report.txt"]
    assert (tmp_path / "got" / "report.txt").read_bytes() == REPORT


def test_doctor_through_a_file_link(docs) -> None:
    from davsync.client.doctor import run_checks
    from davsync.client.transport import ConnectionSettings

    url, _ = file_link(docs)
    checks = {c.name: c for c in run_checks(ConnectionSettings(url))}
    assert checks["share link"].ok and "read-only" in checks["share link"].detail
    assert checks["sync-collection (RFC 6578)"].ok and checks["checksums (oc:checksums)"].ok, checks


def test_a_file_at_the_top_of_the_share(docs) -> None:
    url, token = file_link(docs, path="outside.txt")
    assert requests.get(url + "outside.txt", timeout=10).content == b"outside secret"
    listing = requests.request("PROPFIND", url, headers={"Depth": "1"}, timeout=10)
    assert sorted(hrefs(listing.content)) == [f"/s/{token}/", f"/s/{token}/outside.txt"]
    for beside in ("Docs/", "Docs/report.txt", "Docs"):
        assert requests.get(url + beside, timeout=10).status_code == 404, beside


def test_doctor_says_a_read_write_file_link_only_replaces_its_file(docs) -> None:
    from davsync.client.doctor import run_checks
    from davsync.client.transport import ConnectionSettings

    url, _ = file_link(docs, mode="read-write")
    detail = {c.name: c for c in run_checks(ConnectionSettings(url))}["share link"].detail
    assert "read or replace" in detail and "report.txt" not in detail, detail
    assert not any(word in detail for word in ("upload", "rename", "delete")), detail


PROPS = b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:supportedlock/></d:prop></d:propfind>'


def allowed(url: str) -> set[str]:
    r = requests.options(url, timeout=10)
    assert r.status_code == 200, (url, r.status_code)
    return {m.strip() for m in r.headers["Allow"].split(",")}


def lock_entries(url: str) -> int:
    r = requests.request("PROPFIND", url, data=PROPS, headers={"Depth": "0"}, timeout=10)
    assert r.status_code == 207, (url, r.status_code)
    return len(etree.fromstring(r.content).findall(".//{DAV:}lockentry"))


def test_options_and_supportedlock_offer_only_what_a_link_allows(docs) -> None:
    rw, _ = file_link(docs, mode="read-write")
    assert allowed(rw + "report.txt") == {"OPTIONS", "HEAD", "GET", "PROPFIND", "PUT", "LOCK", "UNLOCK"}
    assert allowed(rw) == {"OPTIONS", "HEAD", "GET", "PROPFIND", "REPORT"}  # no lock, no upload on the folder
    assert lock_entries(rw + "report.txt") > 0 and lock_entries(rw) == 0
    for method in allowed(rw + "report.txt") - {"LOCK", "UNLOCK", "PUT"}:  # what it offers, it does
        assert requests.request(method, rw + "report.txt", timeout=10).status_code < 400, method
    ro, _ = file_link(docs)
    assert allowed(ro + "report.txt") == {"OPTIONS", "HEAD", "GET", "PROPFIND"}
    assert requests.options(ro + "report.txt", timeout=10).headers["DAV"] == "1"
    assert lock_entries(ro + "report.txt") == 0 and lock_entries(ro) == 0
    folder = LinkStore(docs.state_dir).create("Docs", "read-only", expires_in=3600, password=None)
    ro_folder = f"{docs.url}s/{folder.token}/"
    assert allowed(ro_folder + "report.txt") <= {"OPTIONS", "HEAD", "GET", "PROPFIND", "REPORT"}
    assert requests.options(ro_folder, timeout=10).headers["DAV"] == "1"
    assert lock_entries(ro_folder + "report.txt") == 0 and lock_entries(ro_folder) == 0


def test_links_publish_no_disk_quota(docs) -> None:
    quota = (b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:quota-used-bytes/>'
             b"<d:quota-available-bytes/></d:prop></d:propfind>")  # fmt: skip
    folder = LinkStore(docs.state_dir).create("Docs", "read-write", expires_in=3600, password=None)
    for url in (file_link(docs)[0], f"{docs.url}s/{folder.token}/"):
        for body in (quota, b""):  # named, and allprop
            r = requests.request("PROPFIND", url, data=body, headers={"Depth": "1"}, timeout=10)
            assert r.status_code == 207
            found = [ps for ps in etree.fromstring(r.content).iter("{DAV:}propstat")
                     if "200" in ps.findtext("{DAV:}status", "") and b"quota" in etree.tostring(ps)]  # fmt: skip
            assert found == [], r.content
    own = docs.request("PROPFIND", "Docs/", data=quota, headers={"Depth": "0"})
    assert b"quota-available-bytes>" in own.content  # the share's users still see the disk's


def test_sync_of_a_read_write_file_link_replaces_the_file_and_reports_new_files_without_failing(docs, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from davsync.cli import app

    url, _ = file_link(docs, mode="read-write")
    dest = tmp_path / "mine"
    first = CliRunner().invoke(app, ["sync", url, str(dest)])
    assert first.exit_code == 0, first.output
    (dest / "extra.txt").write_bytes(b"a new local file")
    (dest / "report.txt").write_bytes(b"edited here\n")
    for _ in range(2):  # the new file is reported, not an error that fails every run
        again = CliRunner().invoke(app, ["sync", url, str(dest)])
        assert again.exit_code == 0, again.output
        assert "shares one file" in again.output and "does not exist" not in again.output, again.output
    assert (docs.root / "Docs" / "report.txt").read_bytes() == b"edited here\n"  # its one file is replaced
    assert not (docs.root / "Docs" / "extra.txt").exists() and (dest / "extra.txt").exists()


def test_sync_of_a_read_write_file_link_restores_the_file_deleted_or_renamed_here(docs, tmp_path: Path) -> None:
    """The link may not delete or rename its file: a local deletion fetches it back, and a local
    rename keeps the new name here (new, not uploaded) and fetches the shared file back; said, exit 0."""
    from typer.testing import CliRunner

    from davsync.cli import app

    url, _ = file_link(docs, mode="read-write")
    dest = tmp_path / "mine"
    assert CliRunner().invoke(app, ["sync", url, str(dest)]).exit_code == 0
    (dest / "report.txt").unlink()
    deleted = CliRunner().invoke(app, ["sync", url, str(dest)])
    assert deleted.exit_code == 0, deleted.output
    assert "may not delete" in deleted.output and "403" not in deleted.output, deleted.output
    assert (dest / "report.txt").read_bytes() == REPORT and (docs.root / "Docs" / "report.txt").read_bytes() == REPORT
    (dest / "report.txt").rename(dest / "renamed.txt")
    renamed = CliRunner().invoke(app, ["sync", url, str(dest)])
    assert renamed.exit_code == 0, renamed.output
    assert "403" not in renamed.output and "may not rename" in renamed.output, renamed.output
    assert "renamed.txt stays here" in renamed.output and "new here, not uploaded" in renamed.output, renamed.output
    assert (dest / "report.txt").read_bytes() == REPORT and (dest / "renamed.txt").read_bytes() == REPORT
    assert sorted(p.name for p in (docs.root / "Docs").iterdir()) == sorted(["report.txt", "Sub", *SIBLINGS])
    quiet = CliRunner().invoke(app, ["sync", url, str(dest)])  # said once: the next run has nothing to restore
    assert quiet.exit_code == 0 and "may not delete" not in quiet.output, quiet.output
