"""The Windows lane's counts, from the JUnit files of each interpreter's run.

    summary.py WORKDIR VERSION... -- FILE...

Prints, per interpreter: collected, passed, failed (and errors), skipped with their reasons, and
files that produced no report (crashed or timed out). Exits 1 when anything failed or crashed.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path


def main(argv: list[str]) -> int:
    work = Path(argv[0])
    sep = argv.index("--")
    versions, files = argv[1:sep], [Path(f).stem for f in argv[sep + 1 :]]
    bad = False
    for ver in versions:
        counts: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        failed: list[str] = []
        missing: list[str] = []
        for name in files:
            report = work / f"junit-{ver}" / f"{name}.xml"
            if not report.exists():
                missing.append(name)
                continue
            for case in ET.parse(report).iter("testcase"):
                counts["collected"] += 1
                test = f"{name}::{case.get('name')}"
                if case.find("failure") is not None or case.find("error") is not None:
                    counts["failed"] += 1
                    failed.append(test)
                elif (skip := case.find("skipped")) is not None:
                    counts["skipped"] += 1
                    reasons[(skip.get("message") or "").removeprefix("Skipped: ")[:150]] += 1
                else:
                    counts["passed"] += 1
        print(f"== Windows CPython {ver}: {counts['collected']} collected, {counts['passed']} passed, "
              f"{counts['failed']} failed, {counts['skipped']} skipped, {len(missing)} files without a report")
        for reason, n in reasons.most_common():
            print(f"   skipped {n}: {reason}")
        for test in failed:
            print(f"   FAILED {test}")
        for name in missing:
            print(f"   NO REPORT {name} (crashed or timed out; see its log)")
        bad = bad or bool(failed or missing)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
