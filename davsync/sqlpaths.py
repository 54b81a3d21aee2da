"""SQL for "this path and everything below it", where paths are stored as 'a/b/c' ('' is the root).

LIKE treats '%' and '_' as wildcards, and names may contain both: the pattern escapes them,
so a folder named `a_b` never matches the files of `axb`.
"""

from __future__ import annotations


def like_below(path: str) -> str:
    """A LIKE pattern (with ESCAPE '\\') for every path strictly below `path` ('' is everything)."""
    if not path:
        return "%"
    return path.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"


def at_or_below(column: str, path: str) -> tuple[str, tuple[str, ...]]:
    """A WHERE condition and its arguments: `column` is `path` or lies below it."""
    if not path:
        return "1=1", ()
    return f"({column}=? OR {column} LIKE ? ESCAPE '\\')", (path, like_below(path))
