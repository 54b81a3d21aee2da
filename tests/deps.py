"""The locked test environment: `requirements.lock`, and what reads or rewrites it.

    python -m tests.deps lock                       # refresh the lock (needs uv: pip install uv)
    python -m tests.deps for-platform win_amd64 3.11  # the lock's lines for one wheel platform
    python -m tests.deps wheels win_amd64 3.11 DIR    # those, as wheels in DIR (hashes checked)

The lock is made by `uv pip compile --universal --generate-hashes`: one file, resolved once for
every platform and Python version from 3.11 on, each pin with its markers and the sha256 of every
file PyPI has for it. pip installs it as it is (`pip install --require-hashes -r requirements.lock`);
uv is needed only to refresh it. pip-tools was the other candidate, but it resolves for the
running platform only, so it cannot pin the Windows and macOS dependencies from Linux.

`for-platform` evaluates the markers for another platform (pip evaluates them for the one it runs
on, even under `pip download --platform`), so CI and the Windows lane fetch exactly the locked
wheels, hashes checked, for Windows and macOS. `wheels` also proves that installing there needs no
compiler: a locked package that PyPI has only as an sdist (wsgidav 4.4.0) is built here, and must
give a pure-Python (`none-any`) wheel.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.markers import Marker

TOP = Path(__file__).resolve().parent.parent
LOCK = TOP / "requirements.lock"
EXTRAS = ("test",)

# Marker environments of the wheel platforms davsync ships to (PEP 508 names).
PLATFORMS: dict[str, dict[str, str]] = {
    "win_amd64": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": "AMD64"},
    "win_arm64": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": "ARM64"},
    "macosx_11_0_arm64": {
        "sys_platform": "darwin",
        "platform_system": "Darwin",
        "os_name": "posix",
        "platform_machine": "arm64",
    },
    "manylinux_2_17_x86_64": {
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "platform_machine": "x86_64",
    },
}


@dataclass(frozen=True)
class Pin:
    """One locked requirement: its name, version, marker (or None) and the lines that say it."""

    name: str
    version: str
    marker: str | None
    text: str


def pins(lock: Path = LOCK) -> list[Pin]:
    """The lock's requirements, each with its hash lines (comments dropped)."""
    out: list[Pin] = []
    block: list[str] = []

    def close() -> None:
        if not block:
            return
        head = block[0].rstrip(" \\")
        requirement, _, marker = head.partition(";")
        name, _, version = requirement.strip().partition("==")
        out.append(Pin(_normalise(name), version.strip(), marker.strip() or None, "\n".join(block)))
        block.clear()

    for line in lock.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            close()
        block.append(line.rstrip())
    close()
    return out


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def for_platform(platform: str, python: str, lock: Path = LOCK) -> list[Pin]:
    """The pins that a machine of `platform` running CPython `python` (e.g. "3.11") installs."""
    env = {
        **PLATFORMS[platform],
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    chosen = [p for p in pins(lock) if p.marker is None or Marker(p.marker).evaluate(env)]
    # the markers are decided: drop them, or pip (evaluating them for the machine it runs on, even
    # under `pip download --platform`) would skip every Windows-only pin on Linux
    return [replace(p, marker=None, text=re.sub(r"^(\S+==\S+)\s*;[^\\\n]*", r"\1 ", p.text)) for p in chosen]


def wheels(platform: str, python: str, into: Path) -> list[Path]:
    """Every locked file for `platform` as a wheel in `into`; raises if one would need a compiler."""
    into.mkdir(parents=True, exist_ok=True)
    requirements = into / "requirements.txt"
    requirements.write_text("\n".join(p.text for p in for_platform(platform, python)) + "\n", encoding="utf-8")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        pip + ["download", "--no-deps", "--require-hashes", "--implementation", "cp", "--platform", platform,
               "--python-version", python, "-d", str(into), "-r", str(requirements)],
        check=True,
    )  # fmt: skip
    for sdist in sorted(into.glob("*.tar.gz")):
        subprocess.run(pip + ["wheel", "--no-deps", "-w", str(into), str(sdist)], check=True)
        built = sorted(into.glob(_normalise(sdist.name.rsplit("-", 1)[0]).replace("-", "_") + "-*.whl"))
        if not built or not all(w.name.endswith("-none-any.whl") for w in built):
            raise SystemExit(f"{sdist.name} has no {platform} wheel and does not build to a pure-Python one")
        sdist.unlink()
    return sorted(into.glob("*.whl"))


def refresh() -> int:
    """Rewrite the lock from pyproject.toml's ranges: the newest versions that satisfy them."""
    command = [
        sys.executable, "-m", "uv", "pip", "compile", "pyproject.toml", "--universal", "--python-version", "3.11",
        "--generate-hashes", "--quiet", "--custom-compile-command", "python -m tests.deps lock", "-o", str(LOCK),
    ] + [f"--extra={e}" for e in EXTRAS]  # fmt: skip
    return subprocess.run(command, cwd=TOP).returncode


def main(argv: list[str]) -> int:
    if argv[:1] == ["lock"] and len(argv) == 1:
        if subprocess.run([sys.executable, "-c", "import uv"], capture_output=True).returncode:
            print("uv is not installed in this environment: run 'pip install uv', then this again.", file=sys.stderr)
            return 2
        return refresh()
    if argv[:1] == ["for-platform"] and len(argv) == 3 and argv[1] in PLATFORMS:
        print("\n".join(p.text for p in for_platform(argv[1], argv[2])))
        return 0
    if argv[:1] == ["wheels"] and len(argv) == 4 and argv[1] in PLATFORMS:
        found = wheels(argv[1], argv[2], Path(argv[3]))
        print(f"wheels for {argv[1]} (Python {argv[2]}): {len(found)} from the lock, none to compile")
        return 0
    targets = "{" + ",".join(PLATFORMS) + "}"
    print(f"usage: python -m tests.deps lock | for-platform {targets} PYTHON | wheels {targets} PYTHON DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
