"""Folder pairs: which share goes into which local folder, how. Kept in the user's config as TOML.

The file is meant to be edited by hand too, so it is plain TOML with one `[[pair]]` table per
folder pair, and a bad entry gets a one-line error naming the file and the pair, not a traceback.
Passwords are never in it: they live in the OS credential store (davsync.client.credentials).
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs

from ..client.transport import RemoteError, normalize_base

DEFAULT_INTERVAL = 30.0
MIN_INTERVAL = 0.2
KNOWN_MODES = ("pull", "sync")


class ConfigError(Exception):
    """The config file or a folder pair is not usable; the message says what to change."""


def default_config_file() -> Path:
    return Path(platformdirs.user_config_dir("davsync", appauthor=False)) / "app.toml"


def default_state_dir() -> Path:
    return Path(platformdirs.user_state_dir("davsync", appauthor=False)) / "app"


@dataclass(frozen=True)
class FolderPair:
    """One share URL mirrored into one local folder. `mode` names a sync mode (see runner.MODES)."""

    url: str
    local: str
    user: str = ""
    mode: str = "pull"
    interval: float = DEFAULT_INTERVAL
    delete: bool = False
    excludes: tuple[str, ...] = ()
    paused: bool = False
    ca_cert: str = ""
    insecure: bool = False
    jobs: int = 4
    id: str = ""

    def with_id(self) -> FolderPair:
        if self.id:
            return self
        key = f"{self.url}\n{self.local}".encode("utf-8", "surrogateescape")
        name = "".join(c if c.isalnum() else "-" for c in Path(self.local).name)[:24] or "pair"
        return replace(self, id=f"{name}-{hashlib.sha256(key).hexdigest()[:8]}")

    @property
    def dest(self) -> Path:
        return Path(self.local).expanduser()

    def validated(self) -> FolderPair:
        """Normalise and check; raises ConfigError with what to fix."""
        try:
            url = normalize_base(self.url.strip())
        except RemoteError as e:
            raise ConfigError(f"the server URL is not usable: {e}") from None
        local = self.local.strip()
        if not local:
            raise ConfigError("choose the local folder to mirror into.")
        if not Path(local).expanduser().is_absolute():
            raise ConfigError(f"the local folder {local!r} must be a full path, e.g. {Path.home() / 'PiMirror'}.")
        try:
            interval = float(self.interval)
        except (TypeError, ValueError):
            raise ConfigError(f"the check interval {self.interval!r} is not a number of seconds.") from None
        if interval < MIN_INTERVAL:
            raise ConfigError(f"the check interval must be at least {MIN_INTERVAL:g} seconds.")
        if self.mode not in KNOWN_MODES:
            raise ConfigError(f"unknown mode {self.mode!r}: use 'pull' (mirror the server here) or 'sync' (two-way).")
        if not isinstance(self.jobs, int) or not 1 <= self.jobs <= 64:
            raise ConfigError("jobs must be a whole number from 1 to 64.")
        excludes = tuple(str(x).strip() for x in self.excludes if str(x).strip())
        return replace(
            self, url=url, local=local, interval=interval, excludes=excludes, user=self.user.strip()
        ).with_id()

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["excludes"] = list(self.excludes)
        return d


_FIELDS = {f.name for f in fields(FolderPair)}


def pair_from_dict(raw: dict[str, Any], where: str) -> FolderPair:
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_FIELDS))}."
        )
    for key in ("url", "local"):
        if not isinstance(raw.get(key), str):
            raise ConfigError(f"{where}: `{key}` is missing or not a string.")
    values = dict(raw)
    if "excludes" in values:
        if not isinstance(values["excludes"], list):
            raise ConfigError(f"{where}: `excludes` must be a list of patterns, e.g. [\"*.tmp\"].")
        values["excludes"] = tuple(values["excludes"])
    for key in ("delete", "paused", "insecure"):
        if key in values and not isinstance(values[key], bool):
            raise ConfigError(f"{where}: `{key}` must be true or false.")
    try:
        return FolderPair(**values).validated()
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


@dataclass
class AppConfig:
    path: Path
    pairs: list[FolderPair] = field(default_factory=list)
    stamp: tuple[int, int] | None = None  # (mtime_ns, size) when last read or written by us

    def file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def changed_on_disk(self) -> bool:
        """Edited by hand (or another program) since we last read or wrote it."""
        return self.file_stamp() != self.stamp

    @classmethod
    def load(cls, path: Path) -> AppConfig:
        if not path.exists():
            return cls(path)
        stamp = cls(path).file_stamp()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path} is not valid TOML ({e}); fix or remove it.") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {e}.") from None
        raw_pairs = data.get("pair", [])
        if not isinstance(raw_pairs, list):
            raise ConfigError(f"{path}: folder pairs are written as [[pair]] tables.")
        pairs = [pair_from_dict(raw, f"{path}, pair {i + 1}") for i, raw in enumerate(raw_pairs)]
        seen: set[str] = set()
        for p in pairs:
            if p.id in seen:
                raise ConfigError(f"{path}: two folder pairs have the id {p.id!r}; give one another id.")
            seen.add(p.id)
        return cls(path, pairs, stamp)

    def get(self, pair_id: str) -> FolderPair | None:
        return next((p for p in self.pairs if p.id == pair_id), None)

    def clash(self, pair: FolderPair) -> str | None:
        """Why `pair`'s folder cannot be used beside the other pairs (one folder, one pair: nested
        folders would sync each other's files and state), or None."""
        mine = _folder_key(pair.dest)
        for other in self.pairs:
            if other.id == pair.id:
                continue
            theirs = _folder_key(other.dest)
            if mine == theirs:
                return f"{pair.local} is already synced with {other.url}; choose another folder."
            if theirs in mine.parents:
                return (f"{pair.local} is inside {other.local}, which is already synced with {other.url}; "
                        "choose a folder outside it.")  # fmt: skip
            if mine in theirs.parents:
                return (f"{other.local} (already synced with {other.url}) is inside {pair.local}; "
                        "choose a folder that does not contain it.")  # fmt: skip
        return None

    def upsert(self, pair: FolderPair) -> None:
        pair = pair.validated()
        clash = self.clash(pair)
        if clash:
            raise ConfigError(clash)
        before = self.pairs
        self.pairs = [pair if p.id == pair.id else p for p in self.pairs]
        if self.get(pair.id) is None:
            self.pairs.append(pair)
        try:
            self.save()
        except OSError:
            self.pairs = before  # not saved: the pairs stay what the file says
            raise

    def remove(self, pair_id: str) -> FolderPair | None:
        pair = self.get(pair_id)
        if pair is not None:
            before = self.pairs
            self.pairs = [p for p in self.pairs if p.id != pair_id]
            try:
                self.save()
            except OSError:
                self.pairs = before  # not saved: the pairs stay what the file says
                raise
        return pair

    def save(self) -> None:
        """Write atomically (temp file + rename) so a crash never leaves half a config."""
        lines = [
            "# davsync app: folder pairs. Edit by hand or in the dashboard; passwords are in the OS credential store.",
            "",
        ]
        defaults = FolderPair(url="", local="")
        for p in self.pairs:
            lines.append("[[pair]]")
            for key, value in p.as_dict().items():
                if key not in ("url", "local", "id") and value == getattr(defaults, key, None) or (
                    key == "excludes" and not value
                ):
                    continue
                lines.append(f"{key} = {_toml_value(value)}")
            lines.append("")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("\n".join(lines), encoding="utf-8")
        os.replace(tmp, self.path)
        self.stamp = self.file_stamp()


def _toml_value(value: Any) -> str:
    # A JSON string is a valid TOML basic string (same escapes), so json.dumps quotes safely.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _folder_key(p: Path) -> Path:
    """The folder as the file system names it (resolved; letter case folded where Windows ignores it)."""
    try:
        p = p.resolve()
    except OSError:
        pass
    return Path(os.path.normcase(p))


def _same_folder(a: Path, b: Path) -> bool:
    return _folder_key(a) == _folder_key(b)
