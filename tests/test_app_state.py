"""The dashboard's state model, pure: one precedence order, computed from facts with their age.

error > offline > needs attention > syncing > paused > up to date. Every state is checked with 1, 2
and 3 folder pairs in mixed states, asserting the state, the colour and the words; then the four
false greens the issue found (after "Keep mine", a file still being written, a second pair on a
server another pair found down, offline behind needs attention) each get a test of their own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from davsync.app.status import COLOURS, ORDER, PairStatus, Progress, overall, pair_state, pair_words, server_of

NOW = 1_800_000_000.0
URL = "http://pi.local:8080/photos/"


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t))


def fine(pid: str, url: str = URL, **kw: object) -> PairStatus:
    p = PairStatus(id=pid, url=url, interval=30, last_check=NOW - 5, last_result="Nothing changed.")
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def progress() -> Progress:
    g = Progress(files_total=3, files_done=1, bytes_total=3000)
    g.add_bytes(0, 100.0)
    g.add_bytes(1000, 101.0)
    return g


# One factory per state, each on a server of its own (so sharing reachability does not mix them).
MAKERS: dict[str, Callable[[str], PairStatus]] = {
    "error": lambda pid: fine(pid, f"http://e{pid}/", fatal={"error": "the server refused the login.",
                                                            "fix": "Enter the right password."}),
    "offline": lambda pid: fine(pid, f"http://o{pid}/", offline_since=NOW - 100, next_retry=NOW + 20,
                                last_run_failed=True, conflicts=[{"path": "x", "local_copy": "x.c"}]),
    "attention": lambda pid: fine(pid, f"http://a{pid}/", conflicts=[{"path": "x", "local_copy": "x.c"}]),
    "syncing": lambda pid: fine(pid, f"http://s{pid}/", progress=progress(), running=True),
    "checking": lambda pid: fine(pid, f"http://c{pid}/", last_check=None, running=True),
    "stale": lambda pid: fine(pid, f"http://t{pid}/", last_check=NOW - 3600),
    "paused": lambda pid: fine(pid, f"http://p{pid}/", paused=True, pair_paused=True),
    "ok": lambda pid: fine(pid, f"http://k{pid}/"),
}
MAIN = [s for s in ORDER if s in MAKERS]
WORDS = {
    "error": r"^Syncing stopped$",
    "offline": rf"^Offline since {_clock(NOW - 100)}$",
    "attention": r"^Needs attention \(\d+\)$",
    "syncing": r"^Syncing 1 of 3 files$",
    "checking": r"^Checking…$",
    "stale": rf"^Not checked since {_clock(NOW - 3600)}$",
    "paused": r"^Paused$",
    "ok": r"^Up to date$",
}


def test_the_order_is_the_one_the_issue_names() -> None:
    assert [s for s in MAIN if s not in ("checking", "stale")] == ["error", "offline", "attention", "syncing", "paused", "ok"]
    assert MAIN == list(ORDER)  # every state is in the matrix
    assert [s for s, c in COLOURS.items() if c == "green"] == ["ok"]


@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("state", list(MAKERS))
def test_state_matrix(state: str, count: int) -> None:
    """The pair in `state` plus count-1 pairs in states below it (or above it: then they win)."""
    lower = MAIN[MAIN.index(state) + 1 :] or ["ok"]
    pairs = [MAKERS[state]("p0")] + [MAKERS[lower[i % len(lower)]](f"p{i}") for i in range(1, count)]
    states = [pair_state(p, NOW) for p in pairs]
    assert states[0] == state
    o = overall(pairs, NOW, False)
    assert o["state"] == state, (states, o)
    assert o["colour"] == COLOURS[state]
    assert re.match(WORDS[state], o["label"]), o["label"]
    assert (o["colour"] == "green") == (state == "ok")
    assert o["pairs"] == count
    # the words on each pair's card say what its state is, in a sentence
    for p, s in zip(pairs, states, strict=True):
        words = pair_words(p, s, NOW)
        assert words and words[0].isupper() and words.endswith("."), words
    # one pair above it always wins, whatever the count
    if MAIN.index(state) > 0:
        higher = MAIN[MAIN.index(state) - 1]
        o2 = overall([*pairs, MAKERS[higher]("hi")], NOW, False)
        assert o2["state"] == higher and o2["colour"] == COLOURS[higher]


def test_every_state_has_a_colour_and_only_up_to_date_is_green() -> None:
    assert set(COLOURS) >= set(ORDER)
    assert overall([], NOW, False)["colour"] != "green"


def test_up_to_date_only_with_a_recent_contact() -> None:
    assert overall([fine("a", last_check=NOW - 59)], NOW, False)["state"] == "ok"  # interval 30: 2 x 30
    o = overall([fine("a", last_check=NOW - 61)], NOW, False)
    assert o["state"] == "stale" and o["colour"] != "green" and o["label"] == f"Not checked since {_clock(NOW - 61)}"
    assert overall([fine("a", last_check=NOW - 61, running=True)], NOW, False)["state"] == "checking"
    assert overall([fine("a", last_check=None)], NOW, False)["state"] == "checking"


# --- the four false greens ------------------------------------------------------------------


def test_offline_is_never_hidden_behind_needs_attention() -> None:
    off = fine("a", offline_since=NOW - 100, next_retry=NOW + 20, last_run_failed=True,
               errors=[{"path": "x", "error": "e", "fix": "f"}])  # fmt: skip
    o = overall([off, fine("b", "http://other/", conflicts=[{"path": "y", "local_copy": "y.c"}])], NOW, False)
    assert o["state"] == "offline" and o["attention"] == 2
    assert "2 need attention" in o["detail"] and f"tries again at {_clock(NOW + 20)}" in o["detail"]


def test_a_choice_on_a_conflict_is_uploading_until_the_server_confirmed() -> None:
    p = fine("a", mode="sync", uploading=[{"path": "report.txt", "since": NOW - 1}])
    assert pair_state(p, NOW) == "syncing"
    o = overall([p], NOW, False)
    assert o["state"] == "syncing" and o["label"] == "Uploading 1 file" and "report.txt" in o["detail"]
    assert "Uploading" in pair_words(p, "syncing", NOW)


def test_a_file_still_being_written_is_not_up_to_date() -> None:
    p = fine("a", mode="sync", deferred=["video.mp4"])
    o = overall([p], NOW, False)
    assert o["state"] == "syncing" and o["label"] == "Waiting for 1 file still being written"
    assert "video.mp4" in o["detail"]
    # paused: nothing moves, so it says paused, and that something waits
    q = fine("a", mode="sync", deferred=["video.mp4"], paused=True, pair_paused=True)
    assert pair_state(q, NOW) == "paused" and "1 change waits" in pair_words(q, "paused", NOW)


def test_a_server_found_down_is_down_for_every_pair_on_it() -> None:
    a = fine("a", "http://pi.local:8080/photos/", offline_since=NOW - 10, next_retry=NOW + 20, last_run_failed=True)
    b = fine("b", "http://PI.local:8080/music/", last_check=NOW - 25, interval=600)  # own next check: far off
    c = fine("c", "http://pi.local:9090/", last_check=NOW - 25)  # another server
    assert server_of(a.url) == server_of(b.url) != server_of(c.url)
    assert [pair_state(p, NOW, {server_of(a.url): NOW - 10}) for p in (a, b, c)] == ["offline", "offline", "ok"]
    o = overall([a, b, c], NOW, False)
    assert o["state"] == "offline" and o["offline_pairs"] == 2
    # b reached the server after a found it down (it is back): b is fine again
    b.last_check = NOW - 2
    assert overall([a, b], NOW, False)["offline_pairs"] == 1


def test_paused_with_the_others_says_so() -> None:
    o = overall([fine("a", paused=True), fine("b", paused=True)], NOW, True)
    assert o["state"] == "paused" and o["detail"] == "Nothing is synced until you resume."
