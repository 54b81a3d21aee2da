"""How sizes and counts are shown to people, the same everywhere (CLI, reports, the app)."""

from __future__ import annotations


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
