"""Process plumbing for the benchmarks: servers on 127.0.0.1, timing, peak RSS, core pinning."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PASSWORD = "bench-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


@dataclass
class Pinning:
    """`--cores 1`: server on CPU 0, client on CPU 1 (taskset), approximating a Pi."""

    enabled: bool = False

    def server(self, cmd: Sequence[str]) -> list[str]:
        return ["taskset", "-c", "0", *cmd] if self.enabled else list(cmd)

    def client(self, cmd: Sequence[str]) -> list[str]:
        return ["taskset", "-c", "1", *cmd] if self.enabled else list(cmd)


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen
    port: int

    def peak_rss_mb(self) -> float | None:
        return vm_hwm_mb(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Runs:
    """Repeated timings of one measure: median, min and max."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def as_dict(self) -> dict:
        return {"median": self.median, "min": min(self.values), "max": max(self.values), "n": len(self.values)}


def timed(fn: Callable[[], object], repeat: int, before: Callable[[], object] = lambda: None) -> Runs:
    runs = Runs()
    for _ in range(repeat):
        before()
        t0 = time.perf_counter()
        fn()
        runs.values.append(time.perf_counter() - t0)
    return runs


def cpu_timed(fn: Callable[[], object], repeat: int, before: Callable[[], object] = lambda: None) -> tuple[Runs, Runs]:
    """Like `timed`, plus the CPU seconds (user + system) the commands run by `fn` used: on a
    shared machine this shows whether a measure was short of time or short of a free core."""
    wall, cpu = Runs(), Runs()
    for _ in range(repeat):
        before()
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        fn()
        wall.values.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.values.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
    return wall, cpu


def interleaved(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, tuple[Runs, Runs]]:
    """`cpu_timed` for several measures at once, one run of each per round (the order rotating
    each round), so a shared machine's load hits davsync and its peer alike: label -> (wall, CPU)."""
    out = {label: (Runs(), Runs()) for label in fns}
    labels = list(fns)
    for i in range(repeat):
        for label in labels[i % len(labels) :] + labels[: i % len(labels)]:
            wall, cpu = cpu_timed(fns[label], 1)
            out[label][0].values.extend(wall.values)
            out[label][1].values.extend(cpu.values)
    return out


def run(cmd: Sequence[str], *, env: dict | None = None, check: bool = True, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}… exited {result.returncode}: {result.stderr[-2000:]}")
    return result


def vm_hwm_mb(pid: int) -> float | None:
    """A running process's peak RSS so far (VmHWM), or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Measured:
    seconds: float
    rss_mb: float  # peak
    cpu_s: float  # user + system
    stdout: str


def run_measured(cmd: Sequence[str], *, env: dict | None = None) -> Measured:
    """One command that must succeed, with its wall time, and its peak RSS and CPU as GNU time
    reports them: a child's own rusage would not do, as Linux carries the forking process's RSS
    high-water mark into the child's maxrss (the bench's, when the bench is the bigger)."""
    import tempfile

    with tempfile.NamedTemporaryFile("r") as usage:
        t0 = time.perf_counter()
        result = run(["/usr/bin/time", "-o", usage.name, "-f", "%M %U %S", *cmd], env=env, check=False)
        elapsed = time.perf_counter() - t0
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])}… exited {result.returncode}: {result.stdout[-2000:]}{result.stderr[-2000:]}")
        rss_kib, user, system = usage.read().split()[-3:]
    return Measured(elapsed, int(rss_kib) / 1024, float(user) + float(system), result.stdout)


def run_peak_rss(cmd: Sequence[str], *, env: dict | None = None) -> tuple[float, float]:
    """(seconds, peak RSS MB) of one command, measured by GNU time."""
    m = run_measured(cmd, env=env)
    return m.seconds, m.rss_mb


def need(tool: str) -> str | None:
    return shutil.which(tool)


# The interpreter (and its options) davsync's commands and the bare-start yardstick run with: this
# one, or the user-like install main() sets up (user_install).
PYTHON = [sys.executable]


def davsync_cmd(*args: str) -> list[str]:
    return [*PYTHON, "-m", "davsync", *args]


def user_install(work: Path) -> list[str]:
    """A Python that runs davsync as `pip install .` leaves it, and the checkout's venv does not:
    compiled at install, and no editable-install finder imported by every process (about 15 ms
    of CPU per start here, `python -c pass` included). A venv without pip whose site-packages holds
    davsync built from this checkout and one path line to this interpreter's site-packages for the
    locked dependencies (whose .pth files, the editable finder's among them, are not run). Run with
    -P: a `davsync` script does not put the current folder (the checkout, here) first on sys.path."""
    import sysconfig

    venv = work / "user-install"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "locked-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    repo, src = Path(__file__).resolve().parents[2], work / "user-install-src"  # (a build leaves build/ behind)
    shutil.copytree(repo / "davsync", src / "davsync", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repo / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(src)],
                   check=True, capture_output=True)  # fmt: skip
    python = [str(venv / "bin" / "python"), "-P"]
    found = subprocess.run([*python, "-c", "import davsync, sys; print(davsync.__file__, any('editable' in m for m in sys.modules))"],
                           check=True, capture_output=True, text=True).stdout.split()  # fmt: skip
    assert found[0].startswith(str(site)) and found[1] == "False", found
    return python


def env_with_password() -> dict:
    return {**os.environ, "DAVSYNC_PASSWORD": PASSWORD}


def rclone_cmd(url: str, *args: str) -> list[str]:
    """rclone with a command line remote for the davsync share at `url` (`:webdav:` names it), as the bench user."""
    obscured = run(["rclone", "obscure", PASSWORD]).stdout.strip()
    return ["rclone", *args, "--webdav-url", url, "--webdav-user", "bench", "--webdav-pass", obscured,
            "--webdav-vendor", "owncloud", "--config", "/dev/null"]  # fmt: skip


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
