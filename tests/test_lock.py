"""requirements.lock agrees with pyproject.toml, and its per-platform view is installable as is."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement

from tests.deps import TOP, for_platform, pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((TOP / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def test_every_declared_dependency_is_locked_inside_its_range() -> None:
    """A range changed in pyproject.toml without `python -m tests.deps lock` fails here."""
    locked = {p.name: p.version for p in pins()}
    for requirement in _declared():
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in locked, f"{name} is declared but not locked: run python -m tests.deps lock"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{name} {locked[name]} is outside {requirement.specifier}: run python -m tests.deps lock"
        )


def test_a_platforms_pins_carry_no_markers() -> None:
    """pip evaluates markers for the machine it runs on, even under `pip download --platform`:
    a Windows-only pin left with its marker is silently skipped on Linux."""
    windows = for_platform("win_amd64", "3.11")
    names = {p.name for p in windows}
    assert {"colorama", "pywin32-ctypes", "pystray"} <= names
    assert all(";" not in p.text.splitlines()[0] for p in windows)
    assert "jeepney" not in names  # Linux-only (secretstorage's), left out for Windows
