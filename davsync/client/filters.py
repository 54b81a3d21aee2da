"""What not to sync: --exclude patterns and DEST/.davsyncignore, in gitignore syntax."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import IGNORE_FILE_NAME as IGNORE_FILE
from .paths import own_name


@dataclass(frozen=True)
class Filter:
    spec: Any  # pathspec.GitIgnoreSpec, imported only when there are patterns

    @classmethod
    def load(cls, dest: Path, excludes: tuple[str, ...] | list[str] = ()) -> Filter:
        lines = list(excludes)
        try:
            lines += (dest / IGNORE_FILE).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            pass
        if not lines:
            return cls(None)
        import pathspec

        return cls(pathspec.GitIgnoreSpec.from_lines(lines))

    def excluded(self, path: str, is_dir: bool) -> bool:
        if "/" not in path and own_name(path) == IGNORE_FILE:
            return True  # the local ignore file is never touched by a pull (in any case spelling)
        if self.spec is None:
            return False
        return self.spec.match_file(path + "/" if is_dir else path)
