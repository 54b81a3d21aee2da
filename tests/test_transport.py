"""The transport's one error mapping and the one retry rule: the requests path and the urllib3
fast path (small GETs) say the same sentence for the same failure."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from conftest import free_port

from davsync.client import retry
from davsync.client.refusals import PreconditionFailed
from davsync.client.remote import Remote
from davsync.client.transport import ConnectionSettings, RemoteError


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def both_paths(url: str, timeout: float = 5.0) -> list[RemoteError]:
    remote = Remote(ConnectionSettings(url, timeout=timeout))
    errors: list[RemoteError] = []
    try:
        for attempt in (lambda: remote.get_small("f.txt"), lambda: remote.request("GET", remote.url_for("f.txt"))):
            with pytest.raises(RemoteError) as caught:
                attempt()
            errors.append(caught.value)
    finally:
        remote.close()
    return errors


def test_a_refused_port_reads_the_same_on_both_paths() -> None:
    fast, plain = both_paths(f"http://127.0.0.1:{free_port()}/")
    assert str(fast) == f"GET 'f.txt' failed: {plain}"
    assert "nothing is listening there" in str(plain) and not plain.fatal and plain.status is None
    assert retry.transient(plain)


def test_a_silent_server_is_a_timeout_on_both_paths(silent_port: int) -> None:
    fast, plain = both_paths(f"http://127.0.0.1:{silent_port}/", timeout=0.3)
    assert str(fast) == f"GET 'f.txt' failed: {plain}"
    assert "did not answer within 0.3s" in str(plain) and retry.transient(plain)


def test_https_to_a_plain_http_server_is_fatal_on_both_paths(share) -> None:  # type: ignore[no-untyped-def]
    fast, plain = both_paths(share.url.replace("http://", "https://"))
    assert str(fast) == str(plain) and plain.fatal and not retry.transient(plain)
    assert "speaks plain http, not https" in str(plain)


def flaky(errors: list[RemoteError]) -> tuple[Callable[[], str], list[int]]:
    calls: list[int] = []

    def once() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "done"

    return once, calls


def test_one_rule_for_what_is_retried(no_backoff: list[float]) -> None:
    once, calls = flaky([RemoteError("reset"), RemoteError("HTTP 503", status=503), RemoteError("HTTP 500", status=500)])
    assert retry.call(once, retry.TRANSFER) == "done" and len(calls) == 4 and no_backoff == [0.5, 1.0, 2.0]
    for answer in (RemoteError("login", fatal=True, status=401), PreconditionFailed("412", status=412),
                   RemoteError("HTTP 404", status=404)):  # fmt: skip
        once, calls = flaky([answer])
        with pytest.raises(RemoteError):
            retry.call(once, retry.LISTING)
        assert len(calls) == 1
    once, calls = flaky([RemoteError("reset")])
    with pytest.raises(RemoteError):
        retry.call(once, None)  # not safe to repeat (an unconditional PUT): once only
    assert len(calls) == 1 and no_backoff == [0.5, 1.0, 2.0]
