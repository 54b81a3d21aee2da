"""How sizes are shown to people, the same everywhere (CLI, reports, the app)."""

from __future__ import annotations


def human_size(n: float) -> str:
    """Decimal units, as file managers show them: 999 B, 1.2 KB, 3.4 MB."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
