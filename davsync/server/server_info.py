"""`server.json` in the state dir: where the running (or last) server listens, for `davsync share`.

`davsync share create` runs as its own process; to print a link a phone can open, it
needs the server's scheme, port and addresses, which only the server knows for sure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

INFO_FILE = "server.json"


def write_server_info(settings: Any, port: int, scheme: str) -> None:
    data = {"root": str(settings.root), "host": settings.host, "port": port, "scheme": scheme, "pid": os.getpid()}
    path = Path(settings.state_dir) / INFO_FILE
    tmp = path.with_name(INFO_FILE + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # only a convenience for `davsync share`; serving goes on


def read_server_info(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(state_dir) / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
