"""davsync's own folder pages over HTTP: who gets them (browsers, by Accept), what they show to
whom (write controls only where WebDAV would allow the write), and folders as streamed zips."""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
import requests
from browserhelp import png
from conftest import PASSWORDS, wait_until
from lxml import html as lxml_html

from davsync.server.links import LinkStore

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}  # what Chromium sends


@pytest.fixture
def tree(share) -> Any:
    root = share.root
    (root / "Photos" / "2024").mkdir(parents=True)
    (root / "Photos" / "beach.jpg").write_bytes(b"sand" * 1000)
    (root / "Photos" / "2024" / "x.txt").write_text("x")
    (root / "<b>bold<i>.txt").write_text("markup in a name")
    (root / "Notes").mkdir()
    share.wait_indexed()
    return share


def link(share, path: str, mode: str) -> str:
    issued = LinkStore(share.state_dir).create(path, mode, expires_in=3600, password=None)
    return f"{share.url}s/{issued.token}/"


def page(resp: requests.Response) -> Any:
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/html")
    return lxml_html.fromstring(resp.content)


def names(doc: Any) -> list[str]:
    return [str(n) for n in doc.xpath("//table[@id='list']/tbody/tr/@data-name")]


def test_a_browser_gets_the_page_and_webdav_clients_do_not(tree) -> None:
    s = tree.session()
    doc = page(s.get(tree.url, headers=HTML))
    assert doc.xpath("//meta[@name='viewport']")
    assert names(doc) == ["Notes", "Photos", "<b>bold<i>.txt"]  # folders first
    assert not doc.xpath("//b")  # the name is text, not markup
    sizes = {row.get("data-name"): row.xpath("string(td[@class='size'])") for row in doc.xpath("//tbody/tr")}
    assert sizes == {"Notes": "", "Photos": "", "<b>bold<i>.txt": "16 B"}
    times = doc.xpath("//tbody/tr/td[@class='date']/time/@datetime")
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t) for t in times)  # ISO: the browser shows local time
    # A WebDAV client's GET of a folder (no text/html in Accept) is WsgiDAV's as before, and so is ?davmount.
    plain = s.get(tree.url)
    assert plain.status_code == 200 and 'id="list"' not in plain.text
    mount = s.get(tree.url + "?davmount", headers=HTML)
    assert mount.headers["Content-Type"].startswith("application/davmount+xml")
    listing = s.request("PROPFIND", tree.url + "Photos/", headers={"Depth": "1"})
    assert listing.status_code == 207 and b"beach.jpg" in listing.content
    # A file is the file, whatever the Accept.
    assert s.get(tree.url + "Photos/beach.jpg", headers=HTML).content == b"sand" * 1000


def test_page_has_breadcrumbs_search_and_mount_box_and_security_headers(tree) -> None:
    s = tree.session()
    moved = s.get(tree.url + "Photos/2024", headers=HTML, allow_redirects=False)
    assert moved.status_code == 301 and moved.headers["Location"] == "/Photos/2024/"
    resp = s.get(tree.url + "Photos/2024/", headers=HTML)
    doc = page(resp)
    crumbs = doc.xpath("//ol[@class='crumbs']/li")
    assert [c.text_content() for c in crumbs] == ["Home", "Photos", "2024"]
    assert doc.xpath("//ol[@class='crumbs']/li/a/@href") == ["/", "/Photos/"]
    assert doc.xpath("//input[@id='filter' and @type='search']")
    assert doc.xpath("//code[@id='dav-url']")[0].text == f"{tree.url}Photos/2024/"
    assert "\\DavWWWRoot\\Photos\\2024" in doc.xpath("//details[@id='mount']")[0].text_content()
    for r in (resp, s.get(tree.url + ".~davsync-pages/pages.js"), s.get(tree.url + "?zip")):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "Content-Security-Policy" in r.headers
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert s.get(tree.url + ".~davsync-pages/nothing.js").status_code == 404


def test_login_is_needed_for_the_page_and_its_assets(tree) -> None:
    assert requests.get(tree.url, headers=HTML, timeout=30).status_code == 401
    assert requests.get(tree.url + ".~davsync-pages/pages.js", timeout=30).status_code == 401
    assert requests.get(tree.url + "?zip", timeout=30).status_code == 401


def test_write_controls_only_for_sessions_that_may_write(tree) -> None:
    writer = page(tree.session("alice").get(tree.url, headers=HTML))
    assert writer.xpath("//button[@id='mkdir']") and writer.xpath("//input[@id='files']")
    assert writer.xpath("//button[@class='delete']") and writer.xpath("//button[@class='rename']")
    assert "versions" in writer.xpath("//p[@id='undo-note']")[0].text_content()
    reader = page(tree.session("bob").get(tree.url, headers=HTML))  # bob is read-only
    assert names(reader) == names(writer)
    assert not reader.xpath("//button[@id='mkdir'] | //input[@type='file'] | //button[@class='delete']")
    assert reader.xpath("//body/@data-write") == ["0"]


def test_links_get_the_page_inside_their_scope(tree) -> None:
    ro = link(tree, "Photos", "read-only")
    token = ro.rstrip("/").rsplit("/", 1)[1]
    resp = requests.get(ro, headers=HTML, timeout=30)
    doc = page(resp)
    assert names(doc) == ["2024", "beach.jpg"]
    assert token not in doc.xpath("//title")[0].text and "Photos" in doc.xpath("//title")[0].text
    assert not doc.xpath("//button[@id='mkdir'] | //input[@type='file'] | //button[@class='delete']")
    assert doc.xpath("//ol[@class='crumbs']/li")[0].text_content() == "Photos"
    assert doc.xpath("//link[@rel='stylesheet']/@href")[0].startswith(f"/s/{token}/")
    assert requests.get(ro + ".~davsync-pages/pages.css", timeout=30).status_code == 200
    sub = page(requests.get(ro + "2024/", headers=HTML, timeout=30))
    assert names(sub) == ["x.txt"]
    with zipfile.ZipFile(io.BytesIO(requests.get(ro + "?zip", timeout=30).content)) as zf:
        assert sorted(zf.namelist()) == ["2024/", "2024/x.txt", "beach.jpg"]
    rw = page(requests.get(link(tree, "Photos", "read-write"), headers=HTML, timeout=30))
    assert rw.xpath("//button[@id='mkdir']") and rw.xpath("//button[@class='delete']")


def test_a_drop_link_shows_only_its_upload_page(tree) -> None:
    drop = link(tree, "Photos", "drop")
    resp = requests.get(drop, headers=HTML, timeout=30)
    assert resp.status_code == 200 and "beach.jpg" not in resp.text and '<input id="files" type="file"' in resp.text
    for target in (drop + "?zip", drop + "2024/"):
        r = requests.get(target, timeout=30)
        assert r.status_code == 403 and b"beach" not in r.content and b"PK" not in r.content[:2]


def test_zip_of_a_folder_has_every_file_and_folder(tree) -> None:
    (tree.root / "Photos" / "2024" / "empty").mkdir()
    (tree.root / "Photos" / "ünïcode naïve.bin").write_bytes(os.urandom(3_000_000))
    s = tree.session("bob")  # reading is enough
    resp = s.get(tree.url + "Photos/?zip", stream=True)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/zip"
    assert "Content-Length" not in resp.headers  # streamed while it is built
    assert "filename*=UTF-8''Photos.zip" in resp.headers["Content-Disposition"]
    data = resp.raw.read()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        assert sorted(zf.namelist()) == ["2024/", "2024/empty/", "2024/x.txt", "beach.jpg", "ünïcode naïve.bin"]
        for name in ("beach.jpg", "ünïcode naïve.bin", "2024/x.txt"):
            assert zf.read(name) == (tree.root / "Photos" / name).read_bytes()


def test_zip_leaves_out_symlinks_and_davsync_names(tree, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not in the share")
    os.symlink(outside, tree.root / "Photos" / "link.txt")
    (tree.root / "Photos" / ".~davsync-upload.part").write_bytes(b"in flight")
    with zipfile.ZipFile(io.BytesIO(tree.session().get(tree.url + "Photos/?zip").content)) as zf:
        assert "link.txt" not in zf.namelist() and not any("davsync" in n for n in zf.namelist())


# --- the viewer: ?view pages and their ?inline bytes ------------------------------------------


def test_previewable_files_link_to_their_page_and_others_to_the_file(tree) -> None:
    (tree.root / "clip.mp4").write_bytes(bytes(range(256)) * 40)
    (tree.root / "data.bin").write_bytes(b"\0" * 10)
    s = tree.session()
    doc = page(s.get(tree.url, headers=HTML))
    links = {row.get("data-name"): row.xpath("string(td[@class='name']/a/@href)") for row in doc.xpath("//tbody/tr")}
    assert links["clip.mp4"] == "/clip.mp4?view" and links["data.bin"] == "/data.bin"
    assert links["<b>bold<i>.txt"] == "/%3Cb%3Ebold%3Ci%3E.txt?view"
    viewer = page(s.get(tree.url + "clip.mp4?view"))
    assert viewer.xpath("//video/@src") == ["/clip.mp4?inline"]
    assert viewer.xpath("//a[@id='download']/@href") == ["/clip.mp4"]
    assert viewer.xpath("//a[@id='back']/@href") == ["/"]
    photo = page(s.get(tree.url + "Photos/beach.jpg?view"))
    assert photo.xpath("//img/@src") == ["/Photos/beach.jpg?inline"]
    assert [c.text_content() for c in photo.xpath("//ol[@class='crumbs']/li")] == ["Home", "Photos", "beach.jpg"]
    text = page(s.get(tree.url + "%3Cb%3Ebold%3Ci%3E.txt?view"))
    frame = text.xpath("//iframe")[0]
    assert frame.get("src") == "/%3Cb%3Ebold%3Ci%3E.txt?inline" and frame.get("sandbox") == ""
    # video seeks: ?inline answers a range like the file itself
    part = s.get(tree.url + "clip.mp4?inline", headers={"Range": "bytes=300-309"})
    assert part.status_code == 206 and part.content == (bytes(range(256)) * 40)[300:310]


def test_inline_bytes_are_sandboxed_and_text_is_never_rendered(tree) -> None:
    (tree.root / "evil.html").write_text("<script>parent.document.title='owned'</script>")
    (tree.root / "evil.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    s = tree.session()
    for name, ctype in (("evil.html", "text/plain; charset=utf-8"), ("evil.svg", "image/svg+xml")):
        r = s.get(tree.url + name + "?inline")
        assert r.status_code == 200 and r.headers["Content-Type"] == ctype, r.headers
        assert r.headers["Content-Security-Policy"].startswith("sandbox")
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert requests.get(tree.url + "evil.html?inline", timeout=30).status_code == 401
    assert requests.get(tree.url + "evil.html?view", timeout=30).status_code == 401


def test_viewer_through_a_read_only_link(tree) -> None:
    ro = link(tree, "Photos", "read-only")
    token = ro.rstrip("/").rsplit("/", 1)[1]
    viewer = page(requests.get(ro + "beach.jpg?view", timeout=30))
    assert viewer.xpath("//img/@src") == [f"/s/{token}/beach.jpg?inline"]
    assert requests.get(ro + "beach.jpg?inline", timeout=30).content == b"sand" * 1000


# --- thumbnails (only with Pillow, which is not a runtime dependency on Linux) ---------------


def test_thumbnails_are_made_once_and_kept_in_the_state_dir(tree) -> None:
    image = pytest.importorskip("PIL.Image", reason="thumbnails need Pillow (in the test extra)")
    photo = tree.root / "Photos" / "big photo.jpg"
    image.new("RGB", (1200, 800), (200, 30, 30)).save(photo, "JPEG")
    s = tree.session("bob")  # reading is enough
    doc = page(s.get(tree.url + "Photos/", headers=HTML))
    thumbs = doc.xpath("//img[@class='thumb']/@src")
    assert sorted(thumbs) == ["/Photos/beach.jpg?thumb", "/Photos/big%20photo.jpg?thumb"]
    r = s.get(tree.url + "Photos/big%20photo.jpg?thumb")
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    with image.open(io.BytesIO(r.content)) as im:
        assert im.size == (160, 107)
    cache = tree.state_dir / "thumbnails"
    kept = list(cache.glob("*.jpg"))
    assert len(kept) == 1
    assert s.get(tree.url + "Photos/big%20photo.jpg?thumb").content == r.content
    assert list(cache.glob("*.jpg")) == kept  # served from the cache
    image.new("RGB", (100, 400), (0, 0, 200)).save(photo, "JPEG")  # edited: a new thumbnail
    with image.open(io.BytesIO(s.get(tree.url + "Photos/big%20photo.jpg?thumb").content)) as im:
        assert im.size == (40, 160)
    # not an image after all (beach.jpg is "sand"...), or a folder: no thumbnail, the page shows an icon
    assert s.get(tree.url + "Photos/beach.jpg?thumb").status_code == 404
    assert "image" not in s.get(tree.url + "Photos/2024?thumb").headers["Content-Type"]
    assert requests.get(tree.url + "Photos/big%20photo.jpg?thumb", timeout=30).status_code == 401


def test_a_decompression_bomb_gets_no_thumbnail(tree) -> None:
    pytest.importorskip("PIL.Image", reason="thumbnails need Pillow (in the test extra)")
    bomb = png(100_000, 100_000, pixels=b"\0" * 1000)  # claims 10 gigapixels, holds nothing
    (tree.root / "bomb.png").write_bytes(bomb)
    assert tree.session().get(tree.url + "bomb.png?thumb").status_code == 404
    assert tree.session().get(tree.url, headers=HTML).status_code == 200  # the server is fine


def test_thumbnail_cache_is_bounded(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image", reason="thumbnails need Pillow (in the test extra)")
    from davsync.server.pages.thumbs import Thumbnails

    thumbs = Thumbnails(tmp_path / "cache")
    made = []
    for i in range(12):
        p = tmp_path / f"p{i}.png"
        image.effect_noise((300, 300), 60).convert("RGB").save(p)  # noise: thumbnails of about the same size
        made.append(thumbs.get(str(p), p.stat()))
        if i == 0:
            thumbs.max_bytes = int(len(made[0] or b"") * 3.5)  # room for three
    sizes = [f.stat().st_size for f in (tmp_path / "cache").glob("*.jpg")]
    assert all(made) and 0 < sum(sizes) <= thumbs.max_bytes and len(sizes) == 3


def test_zip_of_a_large_folder_keeps_server_memory_bounded(serve_process, tmp_path: Path) -> None:
    """1 GiB (sparse files: no disk used) zipped by a real `davsync serve` process: its peak
    resident memory grows by a bounded amount, far below the folder's size (the streaming
    sink holds one read block); `python -m tests.bench.zip_download` reports the figures."""
    root = tmp_path / "big"
    (root / "videos").mkdir(parents=True)
    for i in range(4):
        with open(root / "videos" / f"clip{i}.mp4", "wb") as f:
            f.truncate(256 * 1024 * 1024)
    sp = serve_process(root)
    auth = ("alice", PASSWORDS["alice"])
    wait_until(lambda: requests.request("PROPFIND", sp.url, auth=auth, headers={"Depth": "0"}, timeout=30).status_code
               == 207, 120, "the first scan")  # fmt: skip

    def vm(key: str) -> int:
        line = next(x for x in Path(f"/proc/{sp.proc.pid}/status").read_text().splitlines() if x.startswith(key + ":"))
        return int(line.split()[1]) * 1024

    before = vm("VmRSS")
    total = 0
    with requests.get(sp.url + "?zip", auth=auth, stream=True, timeout=120) as resp:
        assert resp.status_code == 200
        for block in resp.iter_content(1024 * 1024):
            total += len(block)
    assert total > 4 * 256 * 1024 * 1024  # every byte went out
    growth = vm("VmHWM") - before
    assert growth < 64 * 1024 * 1024, f"server peak grew by {growth / 2**20:.0f} MiB while zipping 1 GiB"


def test_guests_of_a_read_only_share_see_the_page_without_write_controls(start_share) -> None:
    share = start_share(anonymous="read")
    (share.root / "readme.txt").write_text("hello")
    doc = page(requests.get(share.url, headers=HTML, timeout=30))
    assert names(doc) == ["readme.txt"] and doc.xpath("//body/@data-write") == ["0"]
    assert not doc.xpath("//button[@id='mkdir'] | //input[@type='file'] | //button[@class='delete']")
    logged_in = page(share.session("alice").get(share.url, headers=HTML))
    assert logged_in.xpath("//button[@id='mkdir']")


def test_under_admin_the_file_page_keeps_its_own_csp(start_share) -> None:
    """`serve --admin` sandboxes HTML answers for file paths (a user's HTML file must not act as an
    admin); davsync's own file page must keep its script (local times, links) all the same."""
    share = start_share(admin=True)
    (share.root / "song.mp3").write_bytes(b"ID3")
    (share.root / "page.html").write_text("<script>alert(1)</script>")
    s = share.session()
    r = s.get(share.url + "song.mp3?view")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert (
        "sandbox" not in r.headers["Content-Security-Policy"]
        and "script-src 'self'" in r.headers["Content-Security-Policy"]
    )
    assert "sandbox" in s.get(share.url + "page.html").headers["Content-Security-Policy"]  # a user's HTML still is


# --- recently deleted: listed and restored from the folder page --------------------------------


def test_recently_deleted_files_and_folders_are_listed_and_restored(tree) -> None:
    s = tree.session("alice")
    assert s.delete(tree.url + "Photos/beach.jpg").status_code == 204
    assert s.delete(tree.url + "Photos/2024/").status_code == 204
    assert page(s.get(tree.url + "Photos/", headers=HTML)).xpath("//details[@id='deleted']")
    listed = s.get(tree.url + "Photos/?deleted").json()
    assert {(r["name"], r["is_dir"]) for r in listed} == {("beach.jpg", False), ("2024", True)}
    by_name = {r["name"]: r for r in listed}
    headers = {"X-Davsync-Page": "1"}
    beach = {"id": by_name["beach.jpg"]["id"], "name": "beach.jpg"}
    assert s.post(tree.url + "Photos/?restore", json=beach).status_code == 403  # no page header: not from our page
    bob = tree.session("bob")
    assert bob.post(tree.url + "Photos/?restore", json=beach, headers=headers).status_code == 403
    assert bob.get(tree.url + "Photos/?deleted").status_code == 403
    assert not page(bob.get(tree.url + "Photos/", headers=HTML)).xpath("//details[@id='deleted']")
    wrong = {"id": by_name["2024"]["id"], "name": "beach.jpg"}  # a version of another path
    assert s.post(tree.url + "Photos/?restore", json=wrong, headers=headers).status_code == 409
    assert not (tree.root / "Photos" / "beach.jpg").exists()
    r = s.post(tree.url + "Photos/?restore", json=beach, headers=headers)
    assert r.status_code == 200 and "beach.jpg" in r.json()["message"]
    assert (tree.root / "Photos" / "beach.jpg").read_bytes() == b"sand" * 1000
    folder = {"id": by_name["2024"]["id"], "name": "2024"}
    assert s.post(tree.url + "Photos/?restore", json=folder, headers=headers).status_code == 200
    assert (tree.root / "Photos" / "2024" / "x.txt").read_text() == "x"
    assert s.get(tree.url + "Photos/?deleted").json() == []
    # the index knows them again: a WebDAV listing shows them with their MD5
    listing = s.request("PROPFIND", tree.url + "Photos/", headers={"Depth": "1"})
    assert b"beach.jpg" in listing.content and b"2024" in listing.content


def test_links_do_not_offer_restores(tree) -> None:
    rw = link(tree, "Photos", "read-write")
    assert not page(requests.get(rw, headers=HTML, timeout=30)).xpath("//details[@id='deleted']")
    assert requests.get(rw + "?deleted", timeout=30).status_code == 403


def test_a_file_page_lists_earlier_versions_and_restores_one(tree) -> None:
    s = tree.session("alice")
    assert s.put(tree.url + "report.txt", data=b"first draft").status_code == 201
    assert s.put(tree.url + "report.txt", data=b"second draft").status_code == 204
    assert page(s.get(tree.url + "report.txt?view")).xpath("//details[@id='versions']")
    assert not page(tree.session("bob").get(tree.url + "report.txt?view")).xpath("//details[@id='versions']")
    assert tree.session("bob").get(tree.url + "report.txt?versions").status_code == 403
    kept = s.get(tree.url + "report.txt?versions").json()
    assert len(kept) == 1 and kept[0]["size"] == "11 B"
    r = s.post(tree.url + "?restore", json={"id": kept[0]["id"], "name": "report.txt"}, headers={"X-Davsync-Page": "1"})
    assert r.status_code == 200
    assert (tree.root / "report.txt").read_bytes() == b"first draft"
    now = s.get(tree.url + "report.txt?versions").json()  # the restored one left the store; the second draft is kept
    assert [v["size"] for v in now] == ["12 B"] and now[0]["id"] != kept[0]["id"]
