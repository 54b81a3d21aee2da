"""How sizes, counts and times are shown to people, the same everywhere (CLI, reports, the app)."""

from __future__ import annotations

from datetime import datetime


def human_size(n: float) -> str:
    """SI decimal units, as file managers show them (and the README writes them): 999 B, 1.2 kB, 3.4 MB."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 file`, `2 files`: a count a person reads, never `file(s)`."""
    return f"{n} {word if n == 1 else many or word + 's'}"



def local_time(ts: float, *, seconds: bool = False) -> str:
    """`2026-12-07 14:03 (UTC+09:00)`: this machine's local time, with the zone that says which
    (version IDs and --json are UTC; a time without its zone was read wrong by a new user)."""
    dt = datetime.fromtimestamp(ts).astimezone()
    return f"{dt.strftime('%Y-%m-%d %H:%M:%S' if seconds else '%Y-%m-%d %H:%M')} ({local_zone(ts)})"


def local_zone(ts: float | None = None) -> str:
    """This machine's offset from UTC at `ts` (now if None), as `UTC+09:00`, or `UTC`."""
    delta = (datetime.now() if ts is None else datetime.fromtimestamp(ts)).astimezone().utcoffset()
    minutes = int(delta.total_seconds()) // 60 if delta is not None else 0
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02}:{abs(minutes) % 60:02}" if minutes else "UTC"
