"""The power-cut test's ledger: what the server acknowledged, and so what a cut may leave.

Kept apart from tests/test_powercut.py so its bookkeeping is unit-tested without a FUSE disk
(tests/test_powercut_ledger.py): a wrong ledger reads as a lost upload.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACKNOWLEDGED = ("201", "204")


@dataclass
class Acks:
    """What the server acknowledged, per path: the MD5s it may hold after a cut."""

    done: dict[str, str] = field(default_factory=dict)  # path -> last acknowledged MD5
    pending: dict[str, set[str]] = field(default_factory=dict)  # path -> sent, not (yet) acknowledged
    folders: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)  # acknowledged DELETEs and MOVEs' sources
    mtimes: dict[str, int] = field(default_factory=dict)  # path -> X-OC-Mtime of its acknowledged PUT
    leaving: set[str] = field(default_factory=set)  # a MOVE or DELETE of it was sent, not (yet) acknowledged

    def allowed(self, path: str) -> set[str | None]:
        """What the path may hold after a cut; None (absent) when a MOVE or DELETE of it was in
        flight: the server may have done it, durably, with its answer cut off."""
        held: set[str | None] = {self.done[path]} if path in self.done else set()
        return held | self.pending.get(path, set()) | ({None} if path in self.leaving else set())

    def put_sent(self, path: str, md5: str, mtime: int) -> None:
        self.pending.setdefault(path, set()).add(md5)

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
            if code != "000":  # refused: it stays where it was (000: cut off, it may have gone)
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
        """After a cut has been checked: what the disk holds now (path -> MD5) is the truth."""
        self.done = {p: m for p, m in on_disk.items() if p in self.done}
        self.pending.clear()
        self.leaving.clear()
        self.gone = {p for p in self.gone if p not in on_disk}
