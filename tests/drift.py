"""Upstream drift: do the newest releases still keep the contracts davsync relies on?

    python -m tests.drift [--keep DIR]

Builds a throwaway virtualenv with the newest release of every dependency (ignoring both the
lock and pyproject's upper bounds), runs the tests marked `contract` there, and prints one row per
package: locked version, newest version, whether the newest is inside pyproject's range, and the
contract result. It reports; it never fails the build (exit 0 whatever the contracts say, 2 only
when it could not build the environment at all). Run it before `python -m tests.deps lock`: a
package whose contract fails on its newest release needs our code adapted first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from davsync.upstream import packages as relied_on
from tests.deps import TOP, pins

REPORT_ENV = "DAVSYNC_DRIFT_REPORT"


# --- as a pytest plugin (-p tests.drift), inside the drift environment ------------------------


_PACKAGES: dict[str, list[str]] = {}  # test id -> the packages its contract mark names


def pytest_collection_modifyitems(items: list[Any]) -> None:
    for item in items:
        _PACKAGES[item.nodeid] = sorted({p for m in item.iter_markers("contract") for p in m.args})


def pytest_runtest_logreport(report: Any) -> None:
    """Append each contract test's outcome and packages to the report file (one JSON per line)."""
    path = os.environ.get(REPORT_ENV)
    if not path or not (report.when == "call" or (report.when == "setup" and not report.passed)):
        return
    row = {"test": report.nodeid, "outcome": report.outcome, "packages": _PACKAGES.get(report.nodeid, [])}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


# --- the command ---------------------------------------------------------------------------


def _requirements() -> list[Requirement]:
    project = tomllib.loads((TOP / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    lines = project["dependencies"] + [r for extra in ("test",) for r in project["optional-dependencies"][extra]]
    return [Requirement(r) for r in lines]


def _run(command: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=TOP, text=True, capture_output=True, **kw)


def build(venv: Path) -> dict[str, str]:
    """A venv holding the newest release of each dependency, and davsync from this tree."""
    _run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    newest = [r.name + (f"; {r.marker}" if r.marker else "") for r in _requirements()]
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--upgrade"]
    _run(pip + newest, check=True)
    _run(pip + ["--no-deps", "-e", "."], check=True)
    frozen = _run([python, "-m", "pip", "list", "--format=json"], check=True).stdout
    return {re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"] for p in json.loads(frozen)}


def contracts(venv: Path, report: Path) -> int:
    command = [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-m", "contract", "-n", "0", "-p", "tests.drift"]
    env = {**os.environ, REPORT_ENV: str(report)}
    return subprocess.run(command, cwd=TOP, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def table(installed: dict[str, str], report: Path) -> tuple[list[tuple[str, ...]], list[str]]:
    """The rows (package, locked, newest, in range, contract) and the failed tests' ids. A package
    davsync/upstream.py names whose contract tests did not run is reported as such, not as fine."""
    locked = {p.name: p.version for p in pins()}
    results: dict[str, list[str]] = defaultdict(list)
    failed: list[str] = []
    lines = report.read_text(encoding="utf-8").splitlines() if report.exists() else []
    for line in lines:
        row = json.loads(line)
        for package in row["packages"]:
            results[package].append(row["outcome"])
        if row["outcome"] == "failed":
            failed.append(row["test"])
    rows: list[tuple[str, ...]] = []
    for requirement in _requirements():
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if any(r[0] == name for r in rows):
            continue  # (a runtime dependency the test extra names again)
        newest = installed.get(name, "-")
        if newest == "-":
            in_range = "not on this platform" if requirement.marker and not requirement.marker.evaluate() else "NO"
        else:
            in_range = "yes" if requirement.specifier.contains(newest, prereleases=True) else "NO"
        outcomes = results.get(name, [])
        bad = sum(o == "failed" for o in outcomes)
        if not outcomes:
            verdict = "NOT RUN (in upstream.py)" if name in relied_on() else "no contract test"
        elif all(o == "skipped" for o in outcomes):
            verdict = "skipped on this platform"
        else:
            verdict = f"FAILED {bad} of {len(outcomes)}" if bad else "ok"
        rows.append((name, locked.get(name, "-"), newest, in_range, verdict))
    return rows, failed


def main(argv: list[str]) -> int:
    keep = Path(argv[1]) if argv[:1] == ["--keep"] and len(argv) == 2 else None
    with tempfile.TemporaryDirectory(prefix="davsync-drift-") as tmp:
        where = keep or Path(tmp)
        report = where / "contracts.jsonl"
        report.unlink(missing_ok=True)
        try:
            installed = build(where / "venv")
        except subprocess.CalledProcessError as e:
            print(f"Could not build the newest environment: {(e.stderr or '').strip().splitlines()[-1:]}")
            return 2
        contracts(where / "venv", report)
        rows, failed = table(installed, report)
    header = ("package", "locked", "newest", "in range", "contract")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if failed:
        print("\nContracts failing on the newest releases (adapt davsync before refreshing the lock):")
        print("\n".join(f"  {t}" for t in failed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
