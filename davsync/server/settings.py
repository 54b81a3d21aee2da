"""Serve settings: defaults, the TOML config file, and checks that fail early with a clear message."""

from __future__ import annotations

import hashlib
import re
import shutil
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

ANONYMOUS_MODES = ("off", "read", "write")


class SettingsError(Exception):
    pass


def default_users_file() -> Path:
    """~/.config/davsync/users.json on Linux (XDG_CONFIG_HOME honoured), the platform's own
    place elsewhere (%LOCALAPPDATA%\\davsync, ~/Library/Application Support/davsync)."""
    import platformdirs

    return Path(platformdirs.user_config_dir("davsync", appauthor=False)) / "users.json"


def default_state_dir(root: Path) -> Path:
    """One state dir per served folder, outside it."""
    real = root.resolve()
    tag = hashlib.sha256(str(real).encode("utf-8", "surrogateescape")).hexdigest()[:10]
    import platformdirs

    state = Path(platformdirs.user_state_dir("davsync", appauthor=False))
    return state / f"{real.name or 'root'}-{tag}"


@dataclass(frozen=True)
class ServeSettings:
    root: Path
    host: str = "0.0.0.0"
    port: int = 8080
    state_dir: Path | None = None  # `resolved()` fills it in
    users: Path | None = None
    anonymous: str = "off"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allow_infinite_depth: bool = False
    threads: int = 40
    verbose: bool = False
    rescan_interval: float = 600.0
    qr: bool = True
    advertise: bool = False
    admin: bool = False  # the admin page at ADMIN_PREFIX, for users with the admin flag
    keep_versions: str = "30d"
    versions_max_size: str = "10%"
    new_share: bool = False  # mark ROOT as a new share even though the state dir knew another (shareroot.py)

    @property
    def keep_versions_seconds(self) -> float:
        return parse_duration(str(self.keep_versions), "--keep-versions")

    def versions_max_bytes(self) -> int:
        """The size cap in bytes (a percentage is of the share's filesystem)."""
        return parse_size(str(self.versions_max_size), shutil.disk_usage(self.root).total, "--versions-max-size")

    @property
    def users_file(self) -> Path:
        return self.users or default_users_file()

    def resolved(self) -> ServeSettings:
        """Fill defaults and validate; raises SettingsError with what to do."""
        root = self.root.expanduser()
        if not root.is_dir():
            raise SettingsError(f"The folder to serve, {root}, does not exist or is not a folder.")
        root = root.resolve()
        state = (self.state_dir or default_state_dir(root)).expanduser().resolve()
        if state == root or root in state.parents:
            raise SettingsError(
                f"The state dir {state} is inside the served folder; choose one outside it with --state-dir."
            )
        if self.anonymous not in ANONYMOUS_MODES:
            raise SettingsError(f"--anonymous must be one of {', '.join(ANONYMOUS_MODES)}, not {self.anonymous!r}.")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SettingsError("TLS needs both --tls-cert and --tls-key.")
        for f in (self.tls_cert, self.tls_key):
            if f is not None and not f.expanduser().is_file():
                raise SettingsError(f"The TLS file {f} does not exist.")
        if self.tls_cert and self.tls_key:
            from .tls import TLSFilesError, check_tls_files

            try:
                check_tls_files(self.tls_cert.expanduser(), self.tls_key.expanduser())
            except TLSFilesError as e:
                raise SettingsError(str(e)) from None
        if not (0 <= self.port < 65536):
            raise SettingsError(f"--port must be 0-65535, not {self.port}.")
        if self.rescan_interval < 1:
            raise SettingsError("rescan-interval must be at least 1 second.")
        parse_duration(str(self.keep_versions), "--keep-versions")
        parse_size(str(self.versions_max_size), 100, "--versions-max-size")
        if self.threads < 30:
            raise SettingsError("Use at least 30 threads: Windows Explorer opens many connections at once.")
        return replace(self, root=root, state_dir=state, users=self.users_file.expanduser())


_UNITS = {"": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_duration(text: str, flag: str) -> float:
    """'30d', '12h', '90m', '2w', '45s'; a bare number is days; 0 means off."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not m:
        raise SettingsError(f"{flag} takes a duration like 30d, 12h or 2w (0 turns it off), not {text!r}.")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_size(text: str, whole: int, flag: str) -> int:
    """'10%' (of `whole`), '5G', '500M', '1T', or bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%|[kmgt]?)i?b?\s*", text.lower())
    if not m:
        raise SettingsError(f"{flag} takes a size like 10%, 500M or 20G, not {text!r}.")
    value = float(m.group(1))
    if m.group(2) == "%":
        if value > 100:
            raise SettingsError(f"{flag} cannot be more than 100% of the disk.")
        return int(whole * value / 100)
    return int(value * _SIZES[m.group(2)])


ONE_OFF = {"new_share"}  # flags for one start, never a standing setting: each start would be a new share


def load_config(path: Path) -> dict[str, Any]:
    """The TOML file's settings, with keys spelled like the flags (dashes or underscores)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"The config file {path} does not exist.") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SettingsError(f"The config file {path} could not be read: {e}") from None
    known = {f.name for f in fields(ServeSettings)} - ONE_OFF
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in known:
            raise SettingsError(f"Unknown setting {key!r} in {path}; known: {', '.join(sorted(known))}.")
        if name in ("root", "state_dir", "users", "tls_cert", "tls_key"):
            value = (path.parent / Path(value).expanduser()) if value else None
        out[name] = value
    return out


def locate_server(root: Path | None, state_dir: Path | None, config: Path | None) -> dict[str, Any]:
    """A server's settings found as `serve` finds them, for commands run beside it (share, versions).

    Flags win over the config file; a root that neither names is read from the state dir's
    server.json (written by the running or last server), so `--state-dir` alone is enough.
    """
    from .server_info import read_server_info

    values = load_config(config) if config else {}
    values.update({k: v for k, v in {"root": root, "state_dir": state_dir}.items() if v is not None})
    if values.get("state_dir") is None and values.get("root") is not None:
        values["state_dir"] = default_state_dir(Path(values["root"]).expanduser())
    if values.get("root") is None and values.get("state_dir") is not None:
        info = read_server_info(Path(values["state_dir"]).expanduser()) or {}
        if info.get("root"):
            values["root"] = Path(info["root"])
    return values
