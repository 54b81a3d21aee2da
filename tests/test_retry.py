"""The one retry policy: the same backoff for listing and transfers, and a sleep tests can replace."""

from __future__ import annotations

import pytest

from davsync.client import retry
from davsync.client.transport import RemoteError
from davsync.client.walk import list_with_retries


def test_delays_double_up_to_the_cap() -> None:
    b = retry.Backoff(retries=6, base=0.5, cap=8.0)
    assert [b.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


class FlakyRemote:
    """Answers like a server that fails `failures` times with `status`, then lists."""

    def __init__(self, failures: int, status: int | None) -> None:
        self.failures, self.status, self.calls = failures, status, 0

    def list_folder(self, folder: str, href: str = "") -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise RemoteError(f"HTTP {self.status}", status=self.status)
        return "listing"


def test_listing_retries_transient_errors_with_the_injected_sleep(no_backoff: list[float]) -> None:
    remote = FlakyRemote(failures=3, status=503)
    assert list_with_retries(remote, "a") == "listing"  # type: ignore[arg-type]
    assert remote.calls == 4 and no_backoff == [0.25, 0.5, 1.0]


def test_listing_gives_up_after_the_policy_s_retries(no_backoff: list[float]) -> None:
    remote = FlakyRemote(failures=99, status=None)  # connection reset
    with pytest.raises(RemoteError):
        list_with_retries(remote, "a")  # type: ignore[arg-type]
    assert remote.calls == retry.LISTING.retries + 1 and len(no_backoff) == retry.LISTING.retries


def test_a_client_error_is_not_retried(no_backoff: list[float]) -> None:
    remote = FlakyRemote(failures=1, status=404)
    with pytest.raises(RemoteError):
        list_with_retries(remote, "a")  # type: ignore[arg-type]
    assert remote.calls == 1 and no_backoff == []


def test_one_request_without_answer_gives_up_alone(no_backoff: list[float]) -> None:
    outage = retry.Outage("pi:8080")
    with pytest.raises(RemoteError) as e:
        retry.call(lambda: _raise(outage, "GET a"), retry.TRANSFER, outage)
    assert not isinstance(e.value, retry.ServerGone)  # one file's trouble is that file's error
    assert len(no_backoff) == retry.TRANSFER.retries


def test_the_backoff_budget_is_the_run_s_not_each_file_s(no_backoff: list[float]) -> None:
    """Files in turn against a server that answers none: the second file already finds the run's
    budget spent, and the run ends (ServerGone) instead of waiting it out again per file."""
    outage = retry.Outage("pi:8080")
    with pytest.raises(RemoteError):
        retry.call(lambda: _raise(outage, "GET f0"), retry.TRANSFER, outage)
    with pytest.raises(retry.ServerGone) as gone:
        retry.call(lambda: _raise(outage, "GET f1"), retry.TRANSFER, outage)
    assert len(no_backoff) == retry.TRANSFER.retries  # not 5 per file
    with pytest.raises(retry.ServerGone):  # and every other request of the run hears it at once
        retry.call(lambda: _raise(outage, "GET f2"), retry.TRANSFER, outage)
    assert str(gone.value) == ("the server at pi:8080 stopped answering (connections refused); what was done so "
                               "far is kept: run again when it is back.")  # fmt: skip
    assert gone.value.fatal


def test_an_answer_in_between_keeps_each_file_on_its_own_budget(no_backoff: list[float]) -> None:
    outage = retry.Outage("pi:8080")
    for i in range(3):
        with pytest.raises(RemoteError) as e:
            retry.call(lambda i=i: _raise(outage, f"GET f{i}", answered=True), retry.TRANSFER, outage)
        assert not isinstance(e.value, retry.ServerGone)
    assert len(no_backoff) == 3 * retry.TRANSFER.retries


def _raise(outage: retry.Outage, key: str, *, answered: bool = False) -> None:
    outage.no_answer(key, "connections refused")
    if answered:
        outage.answered()  # other requests got through meanwhile: the server is there
    raise RemoteError("cannot reach the server")


def test_one_request_out_of_retries_asks_the_server_something_else_before_blaming_the_file(
    no_backoff: list[float],
) -> None:
    """One big download and the server gone (issue 24, item 10): the probe gets no answer
    either, so the run ends as 'stopped answering' (exit 4), not as that file's error."""
    probes: list[str] = []

    def dead() -> None:
        probes.append("OPTIONS")
        _raise(outage, "OPTIONS /")

    outage = retry.Outage("pi:8080", probe=dead)
    with pytest.raises(retry.ServerGone):
        retry.call(lambda: _raise(outage, "GET big"), retry.TRANSFER, outage)
    assert probes == ["OPTIONS"]

    def alive() -> None:
        outage.answered()

    outage = retry.Outage("pi:8080", probe=alive)  # the server answers: this one file is the trouble
    with pytest.raises(RemoteError) as e:
        retry.call(lambda: _raise(outage, "GET big"), retry.TRANSFER, outage)
    assert not isinstance(e.value, retry.ServerGone)
