"""Helpers for the `davsync app` tests: a credential store, a running app, an API client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keyring
import keyring.backend
import pytest
import requests

from davsync.app.config import AppConfig, FolderPair
from davsync.app.core import App
from davsync.app.discover import LanServers
from davsync.app.web import Dashboard


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A real keyring backend (the same API Windows Credential Manager is reached through), in memory.

    This machine has no Secret Service running, so tests install this one; the app code goes
    through keyring exactly as it does on a desktop."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.store.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError("not stored")


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    before = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(before)


@dataclass
class RunningApp:
    app: App
    dash: Dashboard
    config_file: Path
    sessions: list[requests.Session] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.dash.port}"

    def client(self) -> ApiClient:
        s = requests.Session()
        self.sessions.append(s)
        r = s.get(self.dash.login_url(), timeout=10)  # trades the token for the cookie
        assert r.status_code == 200, r.text
        return ApiClient(self, s, s.get(self.base + "/api/state", timeout=10).json()["csrf"])

    def state(self) -> dict[str, Any]:
        return self.app.hub.snapshot()

    def pair(self, index: int = 0) -> dict[str, Any]:
        return self.state()["pairs"][index]


@dataclass
class ApiClient:
    running: RunningApp
    session: requests.Session
    csrf: str

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.running.base + path, timeout=30)

    def post(self, path: str, body: dict[str, Any] | None = None) -> requests.Response:
        return self.session.post(self.running.base + path, json=body or {}, headers={"X-CSRF-Token": self.csrf},
                                 timeout=60)  # fmt: skip


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., RunningApp]]:
    """Start the app (runners + dashboard) in this process; stopped at teardown."""
    started: list[RunningApp] = []

    def start(pairs: list[FolderPair] | None = None, config_text: str | None = None) -> RunningApp:
        config_file = tmp_path / "config" / "app.toml"
        config_file.parent.mkdir(exist_ok=True)
        if config_text is not None:
            config_file.write_text(config_text)
        config = AppConfig.load(config_file)
        for p in pairs or []:
            config.upsert(p)
        app = App(config, tmp_path / "app-state")
        app.lan = LanServers(interfaces=["127.0.0.1"])  # the Add form's LAN browse stays on this machine
        dash = Dashboard(app, 0)
        app.start()
        dash.start()
        running = RunningApp(app, dash, config_file)
        started.append(running)
        return running

    yield start
    for r in started:
        for s in r.sessions:
            s.close()
        r.app.stop()
        r.dash.stop()
