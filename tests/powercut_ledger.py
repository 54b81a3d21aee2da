"""The power-cut test's ledger: what the server acknowledged, and so what a cut may leave.

Kept apart from tests/test_powercut.py so its bookkeeping is unit-tested without a FUSE disk
(tests/test_powercut_ledger.py): a wrong ledger reads as a lost upload.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACKNOWLEDGED = ("201", "204")


def answered(code: str) -> bool:
    """Whether the server's answer reached the client: curl prints 000 when the connection
    dropped, and nothing at all when the cut killed it before it noticed (as under load)."""
    return code.isdigit() and code != "000"


@dataclass
class Acks:
    """What the server acknowledged, per path: the MD5s it may hold after a cut."""

    done: dict[str, str] = field(default_factory=dict)  # path -> last acknowledged MD5
    pending: dict[str, set[str]] = field(default_factory=dict)  # path -> sent, not (yet) acknowledged
    folders: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)  # acknowledged DELETEs and MOVEs' sources
    mtimes: dict[str, int] = field(default_factory=dict)  # path -> X-OC-Mtime of its acknowledged PUT
    leaving: set[str] = field(default_factory=set)  # a MOVE or DELETE of it was sent, not (yet) acknowledged
    sent_mtimes: dict[tuple[str, str], int] = field(default_factory=dict)  # (path, MD5) -> X-OC-Mtime sent

    def allowed(self, path: str) -> set[str | None]:
        """What the path may hold after a cut; None (absent) when a MOVE or DELETE of it was in
        flight: the server may have done it, durably, with its answer cut off."""
        held: set[str | None] = {self.done[path]} if path in self.done else set()
        return held | self.pending.get(path, set()) | ({None} if path in self.leaving else set())

    def put_sent(self, path: str, md5: str, mtime: int) -> None:
        self.pending.setdefault(path, set()).add(md5)
        self.sent_mtimes[path, md5] = mtime

    def put_answered(self, path: str, md5: str, mtime: int, code: str) -> None:
        if code in ACKNOWLEDGED:
            self.mtimes[path] = mtime
            self.gone.discard(path)
            self.pending[path].clear()  # no earlier attempt may reappear once this one is acknowledged
            self.done[path] = md5

    def removal_sent(self, old: str) -> None:
        """A MOVE (or DELETE) of `old` is about to be sent."""
        self.leaving.add(old)

    def removal_answered(self, old: str, new: str | None, code: str) -> None:
        """The answer to a MOVE of `old` to `new` (a DELETE when `new` is None)."""
        if code not in ACKNOWLEDGED:
            if answered(code):  # refused: it stays where it was (no answer: it may have gone)
                self.leaving.discard(old)
            return
        self.leaving.discard(old)
        if new is not None:
            self.done[new] = self.done[old]
            self.gone.discard(new)
            if old in self.mtimes:
                self.mtimes[new] = self.mtimes[old]
        self.mtimes.pop(old, None)
        del self.done[old]
        self.gone.add(old)

    def settle(self, on_disk: dict[str, str]) -> None:
        """After a cut has been checked: what the disk holds now (path -> MD5) is the truth. A
        PUT cut off after the server made it durable is there with the mtime that PUT sent."""
        for p, m in on_disk.items():
            if p in self.done and m != self.done[p]:
                if (p, m) in self.sent_mtimes:
                    self.mtimes[p] = self.sent_mtimes[p, m]
                else:
                    self.mtimes.pop(p, None)
        self.done = {p: m for p, m in on_disk.items() if p in self.done}
        self.sent_mtimes.clear()
        self.pending.clear()
        self.leaving.clear()
        self.gone = {p for p in self.gone if p not in on_disk}

    def unbacked_rows(self, rows: dict[str, str | None], on_disk: dict[str, str]) -> list[str]:
        """The server's index rows (path -> MD5) that describe a file the disk does not hold. A
        MOVE or DELETE cut off after its rename was durable and before its index commit leaves
        a row behind (the restart's scan forgets it): that request was never answered."""
        return sorted(
            p for p, m in rows.items()
            if not p.startswith(".") and (
                p not in self.leaving if p not in on_disk
                else m is not None and on_disk[p] != m and not self.pending.get(p)
            )
        )  # fmt: skip

    def expected(self) -> dict[str, tuple[str, int]]:
        """Path -> (MD5, mtime) for every acknowledged file whose mtime is known."""
        return {p: (m, self.mtimes[p]) for p, m in self.done.items() if p in self.mtimes}


def mtimes_lost(expected: dict[str, tuple[str, int]], disk: dict[str, tuple[str, int]]) -> list[str]:
    """Paths whose disk holds the expected content (path -> (MD5, mtime)) with another mtime. A
    path holding other content (a later PUT that landed unacknowledged) says nothing about it."""
    return sorted(p for p, (md5, mtime) in expected.items() if p in disk and disk[p][0] == md5 and disk[p][1] != mtime)
