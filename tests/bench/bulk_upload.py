"""Upload a folder's files to a davsync share with bulk_upload (the API sync/push use).

    python -m tests.bench.bulk_upload URL FOLDER   (user `bench`, password from DAVSYNC_PASSWORD)

Folders are made with MKCOL first (a bulk upload does not create them), then every file is
sent with `If-None-Match: *` semantics. Exits 1 unless every file was created.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import quote

from davsync.client.bulk import BulkItem, bulk_upload
from davsync.client.remote import ConnectionSettings, Remote


def main() -> int:
    url, folder = sys.argv[1], Path(sys.argv[2])
    remote = Remote(ConnectionSettings(url, "bench", os.environ["DAVSYNC_PASSWORD"]))
    items: list[BulkItem] = []
    folders: list[str] = []
    for top, dirs, names in os.walk(folder):
        rel = Path(top).relative_to(folder).as_posix()
        for d in sorted(dirs):
            folders.append(f"{rel}/{d}" if rel != "." else d)
        for name in sorted(names):
            path = f"{rel}/{name}" if rel != "." else name
            items.append(BulkItem(path, Path(top) / name, if_none_match=True))
    try:
        for f in folders:
            resp = remote.request("MKCOL", remote.base_url + quote(f) + "/")
            resp.close()
        results = bulk_upload(remote, items, jobs=2)
    finally:
        remote.close()
    failed = [r for r in results if not r.ok]
    for r in failed[:10]:
        print(f"{r.path}: {r.status} {r.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
