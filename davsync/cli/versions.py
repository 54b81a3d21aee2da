"""`davsync versions list|restore`: getting back what a WebDAV client overwrote or deleted, on the Pi.

A thin shell over davsync.server.versions. It finds the state like `serve` does
(--root, --state-dir, --config) and works while a server runs: the server's watcher
then journals the restored files; with no server running, this command journals them.
"""

from __future__ import annotations

import getpass
import json
import re
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import typer

from ..exitcodes import Exit
from ..units import human_size, local_time
from .common import ConfigOpt, RootOpt, StateOpt, fail

versions_app = typer.Typer(
    help="Previous versions of files overwritten or deleted through WebDAV (kept by `serve`).",
    no_args_is_help=True,
)



def server_settings(root: Path | None, state_dir: Path | None, config: Path | None):  # type: ignore[no-untyped-def]
    from ..server.settings import ServeSettings, SettingsError, locate_server

    try:
        values = locate_server(root, state_dir, config)
        if values.get("root") is None:
            raise SettingsError("name the shared folder: --root FOLDER (or --config FILE), as for `serve`.")
        settings = ServeSettings(**values).resolved()
    except SettingsError as e:
        raise fail(str(e)) from None
    except TypeError as e:
        raise fail(f"bad setting in {config}: {e}") from None
    assert settings.state_dir is not None  # resolved() fills it in
    if not (settings.state_dir / "index.sqlite").exists():
        raise fail(
            f"no davsync state for {settings.root} in {settings.state_dir}; "
            "pass the --state-dir (or --config) that `serve` uses."
        )
    return settings


def _store(settings):  # type: ignore[no-untyped-def]
    from ..server.versions import VersionStore

    return VersionStore(settings.root, settings.state_dir, keep_seconds=settings.keep_versions_seconds)


def _when(ns: int) -> str:
    return local_time(ns / 1e9, seconds=True)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str) -> int:
    """An ISO date/time (local unless it names a zone), or an age like 2h or 3d: nanoseconds since the epoch."""
    from ..server.settings import SettingsError, parse_duration

    text = text.strip()
    try:
        if re.fullmatch(r"\d+(\.\d+)?[smhdw]", text.lower()):
            return time.time_ns() - int(parse_duration(text, "--at") * 1e9)
        return _parse_iso(text)
    except (SettingsError, ValueError):
        raise fail(
            f"--at takes a time like 2026-11-21T14:30, '2026-11-21 14:30' or an age like 2h, not {text!r}."
        ) from None


def _parse_iso(text: str) -> int:
    dt = datetime.fromisoformat(text.strip())
    if dt.tzinfo is None:
        dt = dt.astimezone()  # the Pi's local time
    return int(dt.timestamp() * 1e9)


@versions_app.command("list")
def versions_list(
    path: str = typer.Argument("", help="Only versions at or below this path in the share."),
    json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    root: Path | None = RootOpt,
    state_dir: Path | None = StateOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """List kept versions, newest first per path (reads only the index, never the files)."""
    settings = server_settings(root, state_dir, config)
    store = _store(settings)
    rel = path.strip("/")
    folders = store.folders(rel)
    files = store.files(rel)
    count, total = store.usage()
    store.close()
    if json_out:
        typer.echo(json.dumps({
            "versions": [{"id": v.id, "path": v.path, "size": v.size, "mtime": v.mtime_ns // 1_000_000_000,
                          "md5": v.md5, "user": v.user, "method": v.method, "time": _iso(v.time_ns),
                          "folder": v.folder} for v in files],
            "folders": [{"id": f.id, "path": f.path, "files": f.files, "bytes": f.bytes, "user": f.user,
                         "method": f.method, "time": _iso(f.time_ns)} for f in folders],
            "kept": count, "bytes": total,
        }, indent=2))  # fmt: skip
        return
    # A deleted folder is one line; its files are listed when PATH is at or inside it.
    inside = {f.path for f in folders if rel and (rel == f.path or rel.startswith(f.path + "/"))}
    shown = [v for v in files if v.folder is None or v.folder in inside]
    if not shown and not folders:
        typer.echo(f"No versions kept{' of ' + rel if rel else ''}.")
        return
    rows = [(f"{f.path}/  (folder, {_files(f.files)})", _when(f.time_ns), human_size(f.bytes), f.user, f.method, f.id)
            for f in folders]  # fmt: skip
    rows += [(v.path, _when(v.time_ns), human_size(v.size), v.user, v.method, v.id) for v in shown]
    header = ("PATH", "SET ASIDE", "SIZE", "BY", "METHOD", "ID")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    where = " in the whole share" if rel else ""  # the total is the share's, not PATH's: say so
    kept = f"{count} {'version' if count == 1 else 'versions'} kept{where}, {human_size(total)}."
    typer.echo(f"{kept} Restore one: davsync versions restore PATH [--id ID | --at TIME]")


@versions_app.command("restore")
def versions_restore(
    path: str = typer.Argument(..., help="The file or folder to bring back (its path in the share)."),
    at: str | None = typer.Option(None, "--at", help="The version that was there at this time (or this long ago: 2h)."),
    vid: str | None = typer.Option(None, "--id", help="This version (from `versions list`)."),
    to: str | None = typer.Option(None, "--to", help="Restore to this path instead."),
    root: Path | None = RootOpt,
    state_dir: Path | None = StateOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Put a version back (the newest unless --at or --id). Whatever is there now is kept as a version first;
    clients see the restore as an ordinary change."""
    from ..server.runlock import release, try_exclusive
    from ..server.versions import VersionError, Who

    if at is not None and vid is not None:
        raise fail("use either --at or --id, not both.")
    at_ns = parse_time(at) if at is not None else None
    settings = server_settings(root, state_dir, config)
    lock = try_exclusive(settings.state_dir)
    server_running = lock is None
    store = _store(settings)
    try:
        if not server_running:
            store.recover()
        between = (lambda rel: _wait_forgotten(settings.state_dir, rel)) if server_running else None
        result = store.restore(path.strip("/"), Who(getpass.getuser(), "RESTORE"), at_ns=at_ns, vid=vid, to=to,
                               between=between)  # fmt: skip
        if not server_running:
            _journal(settings, result)
    except VersionError as e:
        raise fail(str(e)) from None
    except OSError as e:
        raise fail(f"could not restore {path}: {e.strerror or e}; nothing was lost.", Exit.LOCAL) from None
    finally:
        store.close()
        if lock is not None:
            release(lock)
    what = _files(len(result.files))
    typer.echo(f"Restored {path.strip('/')} ({what}, version {result.version_id}) to {result.target}.")
    if result.replaced_id:
        typer.echo(f"What was at {result.target} is kept as version {result.replaced_id}.")


def _journal(settings, result) -> None:  # type: ignore[no-untyped-def]
    """No server is running: record the restored files in the change journal ourselves."""
    import os

    from ..server.index import HashIndex

    index = HashIndex(settings.state_dir / "index.sqlite")
    try:
        if result.replaced_id:
            index.forget(result.target)
        for folder in result.folders:
            index.record_dir(folder)
        with index.batch():
            for rel, size, mtime_ns, md5 in result.files:
                try:
                    st = os.stat(os.path.join(settings.root, *rel.split("/")))
                except OSError:
                    continue
                same = (st.st_size, st.st_mtime_ns) == (size, mtime_ns)
                index.record_file(rel, st, md5 if same else None)
    finally:
        index.close()


def _wait_forgotten(state_dir: Path, rel: str, timeout: float = 5.0) -> None:
    """A server is running: let its watcher see the old folder leave before the restored one arrives,
    so the change journal lists every restored file (a folder moved in whole is walked only if new)."""
    db = state_dir / "index.sqlite"
    deadline = time.monotonic() + timeout
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error:
        return
    try:
        while time.monotonic() < deadline:
            row = con.execute("SELECT 1 FROM entries WHERE path=? AND deleted=0", (rel,)).fetchone()
            if row is None:
                return
            time.sleep(0.05)
    finally:
        con.close()


def _files(n: int) -> str:
    return "1 file" if n == 1 else f"{n} files"
