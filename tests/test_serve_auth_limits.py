"""Wrong passwords (issue 23 items 5 and 6): one per-address limiter for every way to log in,
password checks that never queue behind each other, and no timing hint of which users exist.

Clients here are told apart by the X-Forwarded-For a reverse proxy on the same machine adds
(how the README's recommended setup reaches davsync); the user who must not be locked out
connects without one.
"""

from __future__ import annotations

import threading

import pytest
import requests
from conftest import PASSWORDS, wait_until
from requests.auth import HTTPDigestAuth

from davsync.server.limiter import MAX_FAILURES, client_address
from davsync.server.links import LinkStore


def via(addr: str) -> dict[str, str]:
    return {"X-Forwarded-For": f"198.51.100.99, {addr}"}  # the proxy appends the client last


@pytest.fixture
def admin_share(start_share):  # type: ignore[no-untyped-def]
    share = start_share(admin=True)
    (share.root / "a.txt").write_text("a")
    return share


def test_every_login_path_is_limited_per_address(admin_share) -> None:
    share = admin_share
    (share.root / "Photos").mkdir()
    token = LinkStore(share.state_dir).create("Photos", "read-only", expires_in=3600, password="link-pass-1").token
    paths = {
        "basic": lambda h: requests.get(share.url + "a.txt", auth=("alice", "wrong"), headers=h, timeout=30),
        "unknown user": lambda h: requests.get(share.url + "a.txt", auth=("mallory", "x"), headers=h, timeout=30),
        "digest": lambda h: requests.get(share.url + "a.txt", auth=HTTPDigestAuth("alice", "wrong"), headers=h,
                                         timeout=30),  # fmt: skip
        "link": lambda h: requests.get(f"{share.url}s/{token}/", auth=("any", "wrong"), headers=h, timeout=30),
        "admin": lambda h: requests.get(share.url + ".~davsync-admin/", auth=("alice", "wrong"), headers=h, timeout=30),
    }
    for i, (what, attempt) in enumerate(paths.items()):
        addr = f"203.0.113.{10 + i}"
        for _ in range(MAX_FAILURES):
            assert attempt(via(addr)).status_code == 401, what
        blocked = attempt(via(addr))
        assert blocked.status_code == 429, (what, blocked.status_code)
        assert int(blocked.headers["Retry-After"]) > 0 and "try again in" in blocked.text
        # even the right password waits, from that address; everyone else is unaffected
        right = requests.get(share.url + "a.txt", auth=("alice", PASSWORDS["alice"]), headers=via(addr), timeout=30)
        assert right.status_code == 429, what
        assert share.request("GET", "a.txt").status_code == 200
        other = requests.get(share.url + "a.txt", auth=("alice", PASSWORDS["alice"]), headers=via("192.0.2.1"),
                             timeout=30)  # fmt: skip
        assert other.status_code == 200
    # one limiter: failures on the share count for a link's password too
    for _ in range(MAX_FAILURES):
        requests.get(share.url + "a.txt", auth=("bob", "wrong"), headers=via("203.0.113.99"), timeout=30)
    assert paths["link"](via("203.0.113.99")).status_code == 429


def test_client_address_trusts_forwarded_for_only_from_this_machine() -> None:
    assert client_address({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "10.9.9.9, 203.0.113.5"}) == "203.0.113.5"
    assert client_address({"REMOTE_ADDR": "::1", "HTTP_X_FORWARDED_FOR": "2001:db8::7"}) == "2001:db8::7"
    assert client_address({"REMOTE_ADDR": "192.0.2.4", "HTTP_X_FORWARDED_FOR": "203.0.113.5"}) == "192.0.2.4"
    assert client_address({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "not an address"}) == "127.0.0.1"
    assert client_address({"REMOTE_ADDR": "127.0.0.1"}) == "127.0.0.1"


def test_an_unknown_user_costs_the_same_password_check(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Answering an unknown name without the KDF would tell an attacker which names exist."""
    from conftest import make_users

    from davsync import users as users_module

    users = make_users(tmp_path / "users.json")
    checked: list[str] = []
    real = users_module.check_password
    monkeypatch.setattr(users_module, "check_password", lambda stored, pw: checked.append(pw) or real(stored, pw))
    assert users.check_basic("mallory", "guess") is None
    assert users.check_basic("alice", "guess") is None
    assert checked == ["guess", "guess"]


def test_password_checks_do_not_queue_behind_one_another(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """A slow check (an attacker's, or a cold one) must not hold every other login."""
    from conftest import make_users

    from davsync import users as users_module

    users = make_users(tmp_path / "users.json")
    release, entered = threading.Event(), threading.Event()
    real = users_module.check_password

    def slow_for_bob(stored: str, password: str) -> bool:
        if password == "bob-slow":
            entered.set()
            release.wait(30)
        return real(stored, password)

    monkeypatch.setattr(users_module, "check_password", slow_for_bob)
    stuck = threading.Thread(target=users.check_basic, args=("bob", "bob-slow"))
    stuck.start()
    try:
        assert entered.wait(10)
        done: list[object] = []
        other = threading.Thread(target=lambda: done.append(users.check_basic("alice", PASSWORDS["alice"])))
        other.start()
        wait_until(lambda: done, 20, "alice's check to finish while bob's is still running")
        assert done[0] is not None
    finally:
        release.set()
        stuck.join(30)
