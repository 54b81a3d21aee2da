"""`python -m davsync.client.plan [--markdown]`: print the decision table, or write it into README.md."""

from __future__ import annotations

import argparse
from pathlib import Path

from .readme import markdown, write_readme


def main() -> None:
    parser = argparse.ArgumentParser(description="Print the decision table, or write it into README.md.")
    parser.add_argument("--markdown", action="store_true", help="write the section into README.md")
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args()
    if args.markdown:
        changed = write_readme(args.readme)
        print(f"{args.readme}: {'updated' if changed else 'already up to date'}.")
    else:
        print(markdown())


if __name__ == "__main__":
    main()
