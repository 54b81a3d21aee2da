"""Shared fixtures: real davsync servers on 127.0.0.1 with ephemeral ports, real files on disk."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from brokered import BrokeredServer, brokered

from davsync.server.names import TEMP_PREFIX, TEMP_SUFFIX, is_internal_name
from davsync.users import Users

if TYPE_CHECKING:
    from davsync.server.settings import ServeSettings

PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret"}
READ_ONLY = {"bob"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--full", action="store_true", help="also run the slow, exhaustive tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--full"):
        return
    skip = pytest.mark.skip(reason="slow: run with --full")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def quick_server_stop() -> Iterator[None]:
    """cheroot's stop() waits for its select loop to notice, which polls every `expiration_interval`
    (0.5 s on Linux): half a second at the end of every test that starts a share. 0.05 s makes a
    stop prompt; it only changes how often idle connections are checked for expiry (timeout=60)."""
    from cheroot.server import HTTPServer

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(HTTPServer, "expiration_interval", 0.05)
        yield


@pytest.fixture(scope="session", autouse=True)
def private_user_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The user's config, state, data and cache folders (users file, server state, logs, the file
    keyring) point into this session's temp dir: nothing touches the real home, and parallel
    workers (pytest-xdist) never share one. Tests that need their own still set them."""
    base = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
            (base / var.lower()).mkdir()
            mp.setenv(var, str(base / var.lower()))
        yield


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {name}); .ci/run installs it")
    return path


# How a process ended by kill_hard exits: -SIGKILL on POSIX, the code TerminateProcess was given on Windows.
KILLED = 0xDEAD if sys.platform == "win32" else -9


def kill_hard(pid: int) -> None:
    """kill -9, on every platform: SIGKILL, or TerminateProcess (Windows' kill -9: no cleanup runs)."""
    if sys.platform == "win32":
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x0001, False, pid)  # PROCESS_TERMINATE
        if handle:  # else it has ended already
            try:
                kernel32.TerminateProcess(handle, KILLED)
            finally:
                kernel32.CloseHandle(handle)
        return
    import signal

    os.kill(pid, signal.SIGKILL)


def under_wine() -> bool:
    """Windows CPython under wine (the Windows lane)."""
    if sys.platform != "win32":
        return False
    import ctypes

    return hasattr(ctypes.windll.ntdll, "wine_get_version")


def wine_312() -> bool:
    """Windows CPython 3.12 under wine (the Windows lane), where wine itself has failed in ways
    Windows does not: each test that skips on it names how."""
    return sys.version_info >= (3, 12) and under_wine()


WINE_SPAWN_FAILED = 1359  # ERROR_INTERNAL_ERROR


def spawn_again_when_wine_fails(create: Callable[..., Any], tries: int = 3) -> Callable[..., Any]:
    """`create` (`_winapi.CreateProcess`), tried again when it fails with ERROR_INTERNAL_ERROR.

    wine 8.0 now and then fails CreateProcess so ("[WinError 1359] Internal error"): in a cold
    lane, a plain `davsync pull` started by test_client_on_windows got it, where Windows does not.
    Any other failure, and the last try's, is raised as it came."""

    def create_process(*args: Any) -> Any:
        for attempt in range(1, tries + 1):
            try:
                return create(*args)
            except OSError as exc:
                if getattr(exc, "winerror", None) != WINE_SPAWN_FAILED or attempt == tries:
                    raise
                time.sleep(0.2 * attempt)  # a backoff between tries, not a wait for a condition
        raise AssertionError("unreachable")

    return create_process


if sys.platform == "win32" and under_wine():
    import _winapi

    _winapi.CreateProcess = spawn_again_when_wine_fails(_winapi.CreateProcess)  # subprocess looks it up per spawn


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll a condition; fail with a message instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Share:
    server: Any  # DavServer, or on the Windows lane a BrokeredServer (tests/brokered.py)
    root: Path
    state_dir: Path
    users_file: Path
    settings: ServeSettings | None  # None on the Windows lane
    sessions: list[requests.Session] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.server.scheme}://127.0.0.1:{self.server.port}/"

    @property
    def index(self) -> Any:
        return self.server.state.index

    def session(self, user: str | None = "alice", password: str | None = None) -> requests.Session:
        s = requests.Session()
        if user is not None:
            s.auth = (user, password if password is not None else PASSWORDS[user])
        self.sessions.append(s)
        return s

    def wait_indexed(self, timeout: float = 20) -> None:
        """Wait until the change journal knows every path on disk, and every file as it is now
        (the watcher is asynchronous; a file overwritten in place keeps its path)."""

        def on_disk() -> set[str]:
            return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                    if not p.is_symlink() and not is_internal_name(p.name)}  # fmt: skip

        def caught_up() -> bool:
            return set(self.index.live_paths()) == on_disk() and not stale_in_index(self.index, self.root)

        if brokered():
            wait_until(self.server.caught_up, timeout, "the index to catch up with the disk")
            return
        wait_until(caught_up, timeout, "the index to catch up with the disk")

    def request(self, method: str, path: str, user: str | None = "alice", **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 30)
        return self.session(user).request(method, self.url + path.lstrip("/"), **kw)


def shown(folder: Path) -> list[str]:
    """Names in a folder of a share that clients see: not the server's own (upload temp files,
    the share's marker, the in-share versions area)."""
    return [name for name in os.listdir(folder) if not is_internal_name(name)]


def upload_temps(root: Path) -> list[Path]:
    """The server's in-flight (or left-behind) upload files anywhere in a share."""
    return [p for p in root.rglob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}")]


def stale_in_index(index: Any, root: Path, skip: Callable[[str], bool] = lambda name: False) -> list[str]:
    """Files on the server's disk whose index row does not describe their current content (not
    hashed yet since the last write). `skip(name)` leaves out a folder or file by its name."""
    stale = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not skip(d)]
        for name in names:
            path = os.path.join(folder, name)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue  # gone meanwhile: the caller's comparison of paths sees it
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            if stat.S_ISREG(st.st_mode) and not skip(name) and not is_internal_name(name) and index.fresh_md5(rel, st) is None:
                stale.append(rel)
    return stale


_USERS_TEMPLATE: list[Path] = []


def make_users(path: Path) -> Users:
    """Write the test users (alice, read-only bob) to `path`. Their scrypt hashes cost about a
    quarter of a second each, so they are made once per process and the file is copied."""
    if not _USERS_TEMPLATE:
        users = Users({})
        for name, password in PASSWORDS.items():
            users.add(name, password, read_only=name in READ_ONLY)
        folder = tempfile.mkdtemp(prefix="davsync-test-users-")
        atexit.register(shutil.rmtree, folder, True)
        template = Path(folder) / "users.json"
        users.save(template)
        _USERS_TEMPLATE.append(template)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_USERS_TEMPLATE[0], path)
    os.chmod(path, 0o600)
    return Users.load(path)


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    make_users(path)
    return path


@pytest.fixture
def start_share(tmp_path: Path, users_file: Path) -> Iterator[Callable[..., Share]]:
    """Start a davsync server in this process (cheroot on a thread); stopped at teardown. On the
    Windows lane the server is a `davsync serve` on the Linux side, started by the lane's broker."""
    started: list[Share] = []

    def start(
        root: Path | None = None,
        *,
        state_dir: Path | None = None,
        wait_scan: bool = True,
        users: Path | None = None,
        **opts: Any,
    ) -> Share:
        users = users or users_file
        root = root or tmp_path / "root"
        root.mkdir(parents=True, exist_ok=True)
        state_dir = state_dir or tmp_path / "state"
        if brokered():
            share = Share(BrokeredServer(root, state_dir, users, **opts), root, state_dir, users, None)
            started.append(share)
            return share
        from davsync.server.app import DavServer
        from davsync.server.settings import ServeSettings

        settings = ServeSettings(
            root=root, host="127.0.0.1", port=0, state_dir=state_dir, users=users, **opts
        ).resolved()
        server = DavServer(settings, Users.load(users))
        server.start()
        share = Share(server, settings.root, state_dir, users, settings)
        started.append(share)
        if wait_scan:
            wait_until(server.scan_done.is_set, 60, "initial index scan")
        return share

    yield start
    for share in started:
        for s in share.sessions:
            s.close()
        share.server.stop()


@pytest.fixture
def share(start_share: Callable[..., Share]) -> Share:
    return start_share()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServeProcess:
    proc: subprocess.Popen
    url: str
    root: Path
    state_dir: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def serve_process(tmp_path: Path, users_file: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Run `davsync serve` as its own process, as a user would; killed by PID at teardown."""
    procs: list[ServeProcess] = []

    def start(
        root: Path, *args: str, state_dir: Path | None = None, port: int | None = None, preexec: Any = None,
        wait_scan: bool = True,
    ) -> ServeProcess:
        port = port or free_port()
        state_dir = state_dir or tmp_path / "serve-state"
        cmd = [sys.executable, "-m", "davsync", "serve", str(root), "--host", "127.0.0.1", "--port", str(port),
               "--state-dir", str(state_dir), "--users", str(users_file), *args]  # fmt: skip
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ}, preexec_fn=preexec
        )
        sp = ServeProcess(proc, f"http://127.0.0.1:{port}/", root, state_dir)
        procs.append(sp)

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"davsync serve exited: {proc.stdout.read().decode() if proc.stdout else ''}")
            if not (state_dir / "server.json").exists():  # written right after the socket listens
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    pass
            except OSError:
                return False
            if not wait_scan:
                return True
            # Listings answer 503 until the first scan is complete (shareroot.py): wait for it too.
            try:
                probe = requests.request("PROPFIND", sp.url, headers={"Depth": "1"}, timeout=10)
            except requests.RequestException:
                return True  # (https, or a test's own protocol: as before, listening is enough)
            return probe.status_code != 503

        wait_until(up, 60, "davsync serve to listen and finish its first scan")
        return sp

    yield start
    for sp in procs:
        sp.stop()


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture
def rclone_webdav() -> Iterator[Callable[[Path], str]]:
    """`rclone serve webdav FOLDER` on 127.0.0.1: a real server without checksums or sync-collection."""
    procs: list[subprocess.Popen] = []

    def start(folder: Path) -> str:
        exe = require_tool("rclone")
        port = free_port()
        proc = subprocess.Popen([exe, "serve", "webdav", str(folder), "--addr", f"127.0.0.1:{port}",
                                 "--config", "/dev/null", "--dir-cache-time", "0s"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        procs.append(proc)
        wait_until(lambda: port_open(port), 30, "rclone serve webdav")
        return f"http://127.0.0.1:{port}/"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """In-process pulls retry without waiting; returns the delays the policy asked for."""
    from dataclasses import replace as _replace

    from davsync.client import retry

    asked: list[float] = []
    monkeypatch.setattr(retry, "LISTING", _replace(retry.LISTING, sleep=asked.append))
    monkeypatch.setattr(retry, "TRANSFER", _replace(retry.TRANSFER, sleep=asked.append))
    return asked


@pytest.fixture
def sync_world(tmp_path: Path, users_file: Path) -> Iterator[Callable[..., Any]]:
    """Make synchelp.SyncWorlds (server + recording proxy + DEST + phone + invariant checker);
    each is stopped at teardown."""
    from synchelp import SyncWorld

    made: list[SyncWorld] = []

    def make(**kw: Any) -> SyncWorld:
        world = SyncWorld(kw.pop("tmp", tmp_path), users_file, **kw)
        made.append(world)
        return world

    yield make
    for world in made:
        world.close()


@pytest.fixture
def world(sync_world: Callable[..., Any]) -> Any:
    """One SyncWorld with default settings."""
    return sync_world()
