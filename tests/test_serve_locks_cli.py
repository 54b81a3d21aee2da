"""`davsync locks`: an admin lists and breaks WebDAV locks (issue 23 item 7: no lock may exist
that nobody can see or remove)."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from davsync.cli import app

LOCK_BODY = (
    '<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
    "<D:locktype><D:write/></D:locktype><D:owner>Anna's laptop</D:owner></D:lockinfo>"
)


def locks(share, *args: str) -> Any:
    return CliRunner().invoke(app, ["locks", *args, "--root", str(share.root), "--state-dir", str(share.state_dir)],
                              catch_exceptions=False)  # fmt: skip


def test_locks_are_listed_and_broken_by_path_or_token(start_share, tmp_path) -> None:
    share = start_share()
    for name in ("doc.txt", "other.txt"):
        (share.root / name).write_text(name)
    share.wait_indexed()
    for name in ("doc.txt", "other.txt"):
        r = share.request("LOCK", name, data=LOCK_BODY, headers={"Timeout": "Second-3600"})
        assert r.status_code == 200, r.text
    running = locks(share, "list")
    assert running.exit_code != 0 and "server is running" in running.output and "Traceback" not in running.output
    share.server.stop()

    listed = locks(share, "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert sorted(r["path"] for r in rows) == ["/doc.txt", "/other.txt"]
    assert all(r["user"] == "alice" and "Anna's laptop" in r["owner"] for r in rows)
    text = locks(share, "list").output
    assert "/doc.txt" in text and "alice" in text

    assert locks(share, "break", "/doc.txt").exit_code == 0
    token = next(r["token"] for r in rows if r["path"] == "/other.txt")
    assert locks(share, "break", token).exit_code == 0
    assert json.loads(locks(share, "list", "--json").output) == []
    nothing = locks(share, "break", "/doc.txt")
    assert nothing.exit_code != 0 and "no lock" in nothing.output

    again = start_share(share.root, state_dir=share.state_dir)
    for name in ("doc.txt", "other.txt"):
        assert again.request("PUT", name, data=b"edited").status_code in (200, 201, 204)
