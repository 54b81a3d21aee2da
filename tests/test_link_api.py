"""`?links`: share links made, listed and revoked over HTTP by a logged-in user (the PC app's Share),
through the same LinkStore as `davsync share`; the link then works like one made on the server."""

from __future__ import annotations

from pathlib import Path

from davsync.server.links import LinkStore
from davsync.users import Users

PAGE = {"X-Davsync-Page": "1"}


def _carol(users_file: Path) -> None:
    users = Users.load(users_file)
    users.add("carol", "carol-secret", read_only=False)
    users.save(users_file)


def test_a_user_makes_lists_and_revokes_a_link(start_share, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "Photos" / "2026").mkdir(parents=True)
    (root / "Photos" / "2026" / "beach.jpg").write_bytes(b"jpeg bytes")
    share = start_share(root)
    alice = share.session("alice")

    made = alice.post(share.url + "Photos/?links", json={"mode": "read-only", "expires": "7d", "label": "for mum"},
                      headers=PAGE, timeout=10)  # fmt: skip
    assert made.status_code == 200, made.text
    link = made.json()["link"]
    assert (link["path"], link["mode"], link["owner"], link["state"]) == ("Photos", "read-only", "alice", "active")
    assert link["expires"] is not None and "token_sha256" not in link
    href = made.json()["href"]
    assert href.startswith("/s/")
    # The same store `davsync share list` reads holds it.
    assert [x.id for x in LinkStore(share.state_dir).links()] == [link["id"]]

    # The link opens the folder for anyone, without a login.
    base = share.url.rstrip("/")
    got = share.session(None).get(base + href + "2026/beach.jpg", timeout=10)
    assert got.status_code == 200 and got.content == b"jpeg bytes"

    listed = alice.get(share.url + "?links", timeout=10).json()["links"]
    assert [x["id"] for x in listed] == [link["id"]]
    assert alice.get(share.url + "Photos/2026/?links", timeout=10).json()["links"] == []  # below: none

    gone = alice.post(share.url + "?links", json={"revoke": link["id"]}, headers=PAGE, timeout=10)
    assert gone.status_code == 200 and "stops working" in gone.json()["message"]
    assert share.session(None).get(base + href + "2026/beach.jpg", timeout=10).status_code == 404
    assert alice.get(share.url + "?links", timeout=10).json()["links"][0]["state"] == "revoked"


def test_links_are_their_makers_and_writes_need_the_header(start_share, users_file: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "Music").mkdir(parents=True)
    (root / "song.txt").write_text("la la")
    _carol(users_file)
    share = start_share(root)
    alice = share.session("alice")
    carol = share.session("carol", "carol-secret")
    made = alice.post(share.url + "Music/?links", json={"mode": "drop", "expires": "never"}, headers=PAGE, timeout=10)
    link_id = made.json()["link"]["id"]

    assert carol.get(share.url + "?links", timeout=10).json()["links"] == []
    refused = carol.post(share.url + "?links", json={"revoke": link_id}, headers=PAGE, timeout=10)
    assert refused.status_code == 404 and "no share link" in refused.json()["error"]
    assert LinkStore(share.state_dir).links()[0].revoked is None

    # A cross-site form cannot send the header: nothing is made.
    assert alice.post(share.url + "?links", json={"mode": "read-only"}, timeout=10).status_code == 403
    # A read-only user writes nothing, links included.
    bob = share.session("bob")
    assert bob.post(share.url + "?links", json={"mode": "read-only"}, headers=PAGE, timeout=10).status_code == 403
    # A file is not a folder; a wrong mode or expiry says what to give.
    on_file = alice.post(share.url + "song.txt?links", json={"mode": "read-only"}, headers=PAGE, timeout=10)
    assert on_file.status_code == 409 and "open folders" in on_file.json()["error"]
    bad = alice.post(share.url + "?links", json={"mode": "everything"}, headers=PAGE, timeout=10)
    assert bad.status_code == 400 and "read-only" in bad.json()["error"]
    bad = alice.post(share.url + "?links", json={"mode": "read-only", "expires": "soon"}, headers=PAGE, timeout=10)
    assert bad.status_code == 409 and "7d" in bad.json()["error"] and "--" not in bad.json()["error"]
    assert len(LinkStore(share.state_dir).links()) == 1
