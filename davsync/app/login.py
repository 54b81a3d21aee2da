"""How a browser gets into the dashboard without the long-lived secret ever reaching a command line.

A browser is launched with a URL, and any local user can read a process's command line (/proc on
Linux, Task Manager on Windows). So that URL carries only a one-time code: good for one visit,
within CODE_TTL seconds, traded for the session cookie. The secret itself lives in memory and in
a file only this user can read (the state dir), which `davsync app --open` uses to ask the
running app for a fresh code.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import threading
import time
from pathlib import Path

import requests

CODE_TTL = 60.0  # seconds a launched link stays good; a browser opens it at once
HANDLE = "dashboard-login.json"
AGAIN = "open the dashboard again from the tray (Open dashboard) or run `davsync app --open`"


class AppNotRunning(Exception):
    """No running `davsync app` answers for this state dir."""


class OneTimeCodes:
    """Codes that each open one browser session, once, before they expire."""

    def __init__(self, ttl: float = CODE_TTL) -> None:
        self.ttl = ttl
        self._codes: dict[str, float] = {}
        self._lock = threading.Lock()

    def mint(self) -> str:
        code = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._codes = {c: exp for c, exp in self._codes.items() if exp > now}  # forget stale ones
            self._codes[code] = now + self.ttl
        return code

    def redeem(self, code: str) -> bool:
        """True once for a live code; a used, expired or unknown code is False."""
        with self._lock:
            for known in list(self._codes):
                if hmac.compare_digest(known, code):
                    return self._codes.pop(known) > time.monotonic()
        return False


def write_handle(state_dir: Path, port: int, token: str) -> Path:
    """Leave the port and secret where only this user can read them (mode 0600; on Windows the
    per-user state dir's ACL does the same)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    target = state_dir / HANDLE
    tmp = target.with_name(target.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"port": port, "token": token, "pid": os.getpid()}, f)
    os.replace(tmp, target)
    return target


def remove_handle(state_dir: Path, token: str) -> None:
    """Remove the handle if it is still this app's (a second app may have replaced it)."""
    path = state_dir / HANDLE
    try:
        if json.loads(path.read_text(encoding="utf-8")).get("token") == token:
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def request_login_url(state_dir: Path) -> str:
    """Ask the app running with this state dir for a fresh one-time link."""
    try:
        data = json.loads((state_dir / HANDLE).read_text(encoding="utf-8"))
        port, token = int(data["port"]), str(data["token"])
    except (OSError, ValueError, KeyError, TypeError):
        raise AppNotRunning(f"davsync app is not running for {state_dir}: start it with `davsync app`.") from None
    try:
        r = requests.post(f"http://127.0.0.1:{port}/api/login-code", headers={"Authorization": f"Bearer {token}"},
                          timeout=10)  # fmt: skip
        r.raise_for_status()
        return str(r.json()["url"])
    except (requests.RequestException, ValueError, KeyError, TypeError):
        raise AppNotRunning(f"davsync app is not running (nothing answers on 127.0.0.1:{port}): "
                            "start it with `davsync app`.") from None  # fmt: skip
