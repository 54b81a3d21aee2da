"""The access matrix: anonymous off/read/write x identity x every method, each cell written down."""

from __future__ import annotations

import uuid

import pytest
import requests
from conftest import PASSWORDS

METHODS = ["OPTIONS", "GET", "HEAD", "PROPFIND", "PROPPATCH", "PUT", "DELETE", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK",
           "REPORT"]

# fmt: off
EXPECTED = {
    # (anonymous mode, who):  OPTIONS GET HEAD PROPFIND PROPPATCH PUT DELETE MKCOL COPY MOVE LOCK UNLOCK REPORT
    ("off", "anonymous"):    [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401],
    ("off", "wrong"):        [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401],
    ("off", "bob"):          [200, 200, 200, 207, 403, 403, 403, 403, 403, 403, 403, 403, 207],
    ("off", "alice"):        [200, 200, 200, 207, 207, 201, 204, 201, 201, 201, 200, 204, 207],
    ("read", "anonymous"):   [200, 200, 200, 207, 401, 401, 401, 401, 401, 401, 401, 401, 207],
    ("read", "wrong"):       [401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401, 401],
    ("read", "bob"):         [200, 200, 200, 207, 403, 403, 403, 403, 403, 403, 403, 403, 207],
    ("read", "alice"):       [200, 200, 200, 207, 207, 201, 204, 201, 201, 201, 200, 204, 207],
    ("write", "anonymous"):  [200, 200, 200, 207, 207, 201, 204, 201, 201, 201, 200, 204, 207],
    ("write", "wrong"):      [200, 200, 200, 207, 207, 201, 204, 201, 201, 201, 200, 204, 207],
    ("write", "bob"):        [200, 200, 200, 207, 207, 201, 204, 201, 201, 201, 200, 204, 207],
    ("write", "alice"):      [200, 200, 200, 207, 207, 201, 204, 201, 201, 201, 200, 204, 207],
}
# fmt: on
LOCK_BODY = (
    '<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope>'
    "<d:locktype><d:write/></d:locktype><d:owner>test</d:owner></d:lockinfo>"
)


def auth_for(who: str) -> tuple[str, str] | None:
    return {"anonymous": None, "wrong": ("alice", "not-the-password")}.get(who, (who, PASSWORDS.get(who, "")))


def attempt(share, method: str, who: str) -> int:
    """Perform one method as `who` against a fresh target; return the status."""
    tag = uuid.uuid4().hex[:8]
    for name in (f"del-{tag}.txt", f"mv-{tag}.txt", f"lock-{tag}.txt"):
        (share.root / name).write_text(name)
    s = requests.Session()
    s.auth = auth_for(who)
    url = share.url
    headers: dict[str, str] = {}
    data: bytes | str | None = None
    target = "f.txt"
    if method == "PROPFIND":
        headers["Depth"] = "0"
    elif method == "PROPPATCH":
        data = '<d:propertyupdate xmlns:d="DAV:" xmlns:z="urn:z"><d:set><d:prop><z:x>1</z:x></d:prop></d:set></d:propertyupdate>'
    elif method == "PUT":
        target, data = f"new-{tag}.txt", b"new"
    elif method == "DELETE":
        target = f"del-{tag}.txt"
    elif method == "MKCOL":
        target = f"dir-{tag}"
    elif method == "COPY":
        headers["Destination"] = url + f"copy-{tag}.txt"
    elif method == "MOVE":
        target, headers["Destination"] = f"mv-{tag}.txt", url + f"moved-{tag}.txt"
    elif method == "LOCK":
        target, data = f"lock-{tag}.txt", LOCK_BODY
    elif method == "REPORT":
        target, headers["Depth"] = "", "0"
        data = ('<d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:sync-level>1</d:sync-level>'
                "<d:prop><d:getetag/></d:prop></d:sync-collection>")
    elif method == "UNLOCK":
        target = f"lock-{tag}.txt"
        # Lock as alice (or anonymously on an open share) and unlock as `who`.
        locker = requests.Session()
        locker.auth = None if share.settings.anonymous == "write" and who in ("anonymous", "wrong") else auth_for("alice")
        if share.settings.anonymous == "write":
            locker.auth = s.auth
        lock = locker.request("LOCK", url + target, data=LOCK_BODY, timeout=30)
        assert lock.status_code == 200, lock.text
        headers["Lock-Token"] = lock.headers["Lock-Token"]
    if who == "wrong":
        # each wrong password from its own address, as through a reverse proxy: one address's
        # wrong passwords would soon be limited (429; tests/test_serve_auth_limits.py)
        headers["X-Forwarded-For"] = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    r = s.request(method, url + target, headers=headers, data=data, timeout=30)
    return r.status_code


@pytest.mark.parametrize("mode", ["off", "read", "write"])
def test_access_matrix(start_share, tmp_path, mode: str) -> None:
    share = start_share(tmp_path / f"root-{mode}", state_dir=tmp_path / f"state-{mode}", anonymous=mode)
    (share.root / "f.txt").write_text("f")
    got, want = {}, {}
    for (m, who), row in EXPECTED.items():
        if m != mode:
            continue
        for method, expected in zip(METHODS, row, strict=True):
            got[(who, method)] = attempt(share, method, who)
            want[(who, method)] = expected
    assert got == want


def test_read_only_options_do_not_advertise_writing(share) -> None:
    bob = share.request("OPTIONS", "/", user="bob")
    alice = share.request("OPTIONS", "/", user="alice")
    assert bob.headers["DAV"].replace(" ", "") == "1"
    assert not {"PUT", "DELETE", "MKCOL", "LOCK", "MOVE", "COPY", "PROPPATCH"} & set(bob.headers["Allow"].split(", "))
    assert "2" in alice.headers["DAV"] and "LOCK" in alice.headers["Allow"]


def test_anonymous_read_without_users_answers_403(start_share, tmp_path) -> None:
    from davsync.users import Users

    empty = tmp_path / "nobody.json"
    Users({}).save(empty)
    share = start_share(anonymous="read", users=empty)
    assert requests.get(share.url, timeout=30).status_code == 200
    r = requests.put(share.url + "x.txt", data=b"x", timeout=30)
    assert r.status_code == 403


def test_digest_and_basic_both_work(share) -> None:
    from requests.auth import HTTPDigestAuth

    (share.root / "f.txt").write_text("f")
    challenge = requests.get(share.url + "f.txt", timeout=30)
    schemes = challenge.headers["WWW-Authenticate"].lower()
    assert "digest" in schemes and "basic" in schemes
    digest = requests.get(share.url + "f.txt", auth=HTTPDigestAuth("alice", PASSWORDS["alice"]), timeout=30)
    assert digest.status_code == 200 and digest.text == "f"
    bad_digest = requests.get(share.url + "f.txt", auth=HTTPDigestAuth("alice", "nope"), timeout=30)
    assert bad_digest.status_code == 401
    assert share.request("GET", "/f.txt").text == "f"


def test_malformed_basic_header_is_401_not_500(share) -> None:
    for value in ("Basic !!!notbase64", "Basic bm9jb2xvbg==", "Basic "):
        r = requests.get(share.url, headers={"Authorization": value}, timeout=30)
        assert r.status_code == 401


def test_users_file_has_no_plaintext(users_file) -> None:
    text = users_file.read_text()
    for password in PASSWORDS.values():
        assert password not in text
