"""The Windows lane's verdict, from the JUnit files of each interpreter's run.

    summary.py WORKDIR VERSION... -- FILE...

Prints, per interpreter: collected, passed, failed (and errors), skipped with their reasons, and
files that produced no report (crashed or timed out). When anything failed or crashed, the end of
each such file's pytest log follows, then the verdict once more: CI shows the tail of the output.
Exits 1 when anything failed or crashed.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

LOG_TAIL = 80  # lines of a failing file's pytest log shown


def verdict(work: Path, versions: list[str], files: list[str]) -> tuple[list[str], list[Path]]:
    """The verdict's lines, and the logs of the files that failed or left no report."""
    lines: list[str] = []
    bad_logs: list[Path] = []
    for ver in versions:
        counts: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        failed: list[str] = []
        missing: list[str] = []
        for name in files:
            report = work / f"junit-{ver}" / f"{name}.xml"
            if not report.exists():
                missing.append(name)
                bad_logs.append(report.with_suffix(".log"))
                continue
            file_failed = False
            for case in ET.parse(report).iter("testcase"):
                counts["collected"] += 1
                test = f"{name}::{case.get('name')}"
                if case.find("failure") is not None or case.find("error") is not None:
                    counts["failed"] += 1
                    failed.append(test)
                    file_failed = True
                elif (skip := case.find("skipped")) is not None:
                    counts["skipped"] += 1
                    reasons[(skip.get("message") or "").removeprefix("Skipped: ")[:150]] += 1
                else:
                    counts["passed"] += 1
            if file_failed:
                bad_logs.append(report.with_suffix(".log"))
        lines.append(f"== Windows CPython {ver}: {counts['collected']} collected, {counts['passed']} passed, "
                     f"{counts['failed']} failed, {counts['skipped']} skipped, {len(missing)} files without a report")  # fmt: skip
        lines += [f"   skipped {n}: {reason}" for reason, n in reasons.most_common()]
        lines += [f"   FAILED {test}" for test in failed]
        lines += [f"   NO REPORT {name} (crashed or timed out; see its log)" for name in missing]
    return lines, bad_logs


def main(argv: list[str]) -> int:
    work = Path(argv[0])
    sep = argv.index("--")
    versions, files = argv[1:sep], [Path(f).stem for f in argv[sep + 1 :]]
    lines, bad_logs = verdict(work, versions, files)
    print("\n".join(lines))
    if not bad_logs:
        return 0
    print("logs of failing files:")
    for log in bad_logs:
        text = log.read_text(errors="replace").splitlines() if log.exists() else ["(no log)"]
        print(f"--- {log}", *text[-LOG_TAIL:], sep="\n")
    print("== the lane's verdict (again, after the logs):", *lines, sep="\n")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
