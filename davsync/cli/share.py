"""`davsync share`: links to one folder or file for a phone or a friend (a thin shell over server.links)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import typer

from ..exitcodes import Exit
from ..units import local_time
from .common import ConfigOpt, RootOpt, StateOpt, fail, listed_in_full, read_password

share_app = typer.Typer(
    help="Share a folder or a file by link, for a phone or a friend: read-only, read-write or drop-only (uploads).",
    no_args_is_help=True,
)

BaseOpt = typer.Option(None, "--base-url", help="Print links on this address, e.g. https://files.example.org/ .")
QrOpt = typer.Option(True, "--qr/--no-qr", help="Print a QR code of the link.")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")


class _Where:
    """The server's state, found as `serve` finds it: --root, --state-dir or --config."""

    def __init__(self, root: Path | None, state_dir: Path | None, config: Path | None) -> None:
        from ..server.server_info import read_server_info
        from ..server.settings import SettingsError, locate_server

        given = (("--root", root), ("--state-dir", state_dir), ("--config", config))
        # how the user named the server, for the commands we suggest (they need it too)
        self.flags = " ".join(f"{flag} {shlex.quote(str(value))}" for flag, value in given if value is not None)
        try:
            self.values: dict[str, Any] = locate_server(root, state_dir, config)
        except SettingsError as e:
            raise fail(str(e)) from None
        root, state_dir = self.values.get("root"), self.values.get("state_dir")
        if state_dir is None:
            raise fail(
                "say which server: --root FOLDER (as given to `davsync serve`), --state-dir DIR or --config FILE."
            )
        if root is not None and not Path(root).expanduser().is_dir():
            raise fail(f"the shared folder {root} does not exist or is not a folder.")
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.info = read_server_info(self.state_dir) or {}
        self.root = Path(root).expanduser().resolve() if root is not None else None

    def store(self) -> Any:
        from ..server.links import LinkStore

        return LinkStore(self.state_dir)

    def base_url(self, override: str | None) -> str:
        from ..server.netinfo import share_urls

        if override:
            if not override.startswith(("http://", "https://")):
                raise fail(f"--base-url must start with http:// or https://, not {override!r}.")
            return override.rstrip("/")
        if self.info.get("port"):
            host, port, scheme = (
                self.info.get("host", "0.0.0.0"),
                int(self.info["port"]),
                self.info.get("scheme", "http"),
            )
        else:
            host = self.values.get("host", "0.0.0.0")
            port = int(self.values.get("port", 8080))
            scheme = "https" if self.values.get("tls_cert") else "http"
        return share_urls(host, port, scheme)[-1].rstrip("/")


def _relative_target(where: _Where, path: Path) -> tuple[str, str]:
    """PATH (absolute, or relative to the shared root) as a '/'-path inside the root, and whether
    it is a "folder" or a "file"."""
    if where.root is None:
        raise fail("give --root FOLDER (or --config) so the folder to share can be found and checked.")
    target = path.expanduser()
    if not target.is_absolute():
        target = where.root / target
    real = Path(os.path.realpath(target))
    if not real.is_dir() and not real.is_file():
        raise fail(f"{target} does not exist; give a folder or a file inside the shared folder.")
    try:
        rel = real.relative_to(where.root)
    except ValueError:
        through = f" through a symlink (to {real})" if real != Path(os.path.abspath(target)) else ""
        raise fail(
            f"{target} is outside the shared folder {where.root}{through}; "
            "only folders and files inside it can be shared."
        ) from None
    from ..server.names import is_internal_path  # (here: a pull must not import the server)

    if is_internal_path(rel.as_posix()):
        raise fail(f"{target} is davsync's own folder (kept versions, uploads in progress); it cannot be shared.")
    return (rel.as_posix() if rel.parts else ""), ("folder" if real.is_dir() else "file")


def _shown(link: Any) -> str:
    return f"the file /{link.path}" if link.kind == "file" else f"/{link.path}"


def _when(ts: float | None) -> str:
    return "never" if ts is None else local_time(ts)


def _show_issued(where: _Where, issued: Any, base_url: str | None, qr: bool, json_out: bool) -> None:
    link = issued.link
    from ..server.netinfo import explorer_folder

    url = f"{where.base_url(base_url)}/s/{issued.token}/"
    scheme, _, hostport = url.partition("://")
    hostport = hostport.split("/", 1)[0]
    host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    port = port or ("443" if scheme == "https" else "80")
    # Explorer cannot write without locks, which a drop link does not offer: no address for it
    unc = None if link.mode == "drop" else explorer_folder(host, port, scheme, f"/s/{issued.token}", in_link=True)
    if json_out:
        typer.echo(json.dumps({**link.as_json(), "url": url, "explorer": unc, "token": issued.token}, indent=2))
        return
    where_to = _shown(link) if link.path else "the whole share"
    extra = "; password required" if link.password else ""
    typer.echo(f"Share link {link.id}: {link.mode} access to {where_to} (expires {_when(link.expires)}{extra})")
    if link.label:
        typer.echo(f"  Label:             {link.label}")
    typer.echo(f"  Link:              {url}")
    if unc is not None:
        typer.echo(f"  Windows Explorer:  {unc}")
    if link.password:
        typer.echo('  Logging in:        any user name with the password (Windows Explorer: user name "share")')
    if qr:
        from ..server.discovery import qr_text

        typer.echo("Scan it with a phone's WebDAV app:")
        typer.echo(qr_text(url))
    typer.echo(
        "The link is shown only this once (davsync keeps only a hash). "
        f"Lost it? davsync share reissue {link.id} {where.flags}".rstrip()
    )


@share_app.command("create")
def create(
    path: Path = typer.Argument(
        ..., help="The folder or file to share: inside the served root, absolute or relative to it ('.' for all)."
    ),
    read_only: bool = typer.Option(False, "--read-only", help="Browse and download only."),
    read_write: bool = typer.Option(
        False, "--read-write", help="Also upload, rename and delete (a file: replace it, nothing else)."
    ),
    drop: bool = typer.Option(
        False, "--drop", help="Upload only into a folder: nothing is listed, nothing is overwritten."
    ),
    expires: str = typer.Option("7d", "--expires", help="Lifetime: 30m, 12h, 7d, 2w, or 'never'."),
    password: bool = typer.Option(False, "--password", help="Ask for a password (or take DAVSYNC_PASSWORD)."),
    label: str = typer.Option("", "--label", help="A note for `share list`, shown on the login page."),
    root: Path | None = RootOpt,
    state_dir: Path | None = StateOpt,
    config: Path | None = ConfigOpt,
    base_url: str | None = BaseOpt,
    qr: bool = QrOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Make a link to a folder or a file and print it, with a QR code and the Windows Explorer form."""
    from ..server.links import DROP_FILE, LinkError, parse_duration

    modes = [m for m, on in (("read-only", read_only), ("read-write", read_write), ("drop", drop)) if on]
    if len(modes) != 1:
        raise fail("choose exactly one of --read-only, --read-write or --drop.")
    where = _Where(root, state_dir, config)
    rel, kind = _relative_target(where, path)
    try:
        if kind == "file" and modes[0] == "drop":
            raise LinkError(DROP_FILE)  # (before asking for a password)
        lifetime = parse_duration(expires)
        secret = read_password("Password for the link", confirm=True) if password else None
        issued = where.store().create(rel, modes[0], expires_in=lifetime, password=secret, label=label, kind=kind)
    except LinkError as e:
        raise fail(str(e)) from None
    except OSError as e:
        raise fail(f"could not write the shares file in {where.state_dir}: {e.strerror or e}.", Exit.LOCAL) from None
    _show_issued(where, issued, base_url, qr, json_out)


@share_app.command("list")
def list_links(
    root: Path | None = RootOpt,
    state_dir: Path | None = StateOpt,
    config: Path | None = ConfigOpt,
    json_out: bool = JsonOpt,
) -> None:
    """List the links: ID, mode, state, expiry, password, folder or file and label (never the tokens)."""
    from ..server.links import LinkError

    where = _Where(root, state_dir, config)
    try:
        links = where.store().links()
    except LinkError as e:
        raise fail(str(e)) from None
    if listed_in_full([link.as_json() for link in links], json_out,
                      "No share links. Make one with: davsync share create FOLDER --read-only"):  # fmt: skip
        return
    shared = [f"/{link.path}{' (file)' if link.kind == 'file' else ''}" for link in links]
    width = max(len("SHARED"), *map(len, shared))
    rows = [("ID", "MODE", "STATE", "EXPIRES", "PASSWORD", "TOKEN", "SHARED", "LABEL")]
    rows += [(link.id, link.mode, link.state(), _when(link.expires), "yes" if link.password else "no",
              link.token_hint, what, link.label) for link, what in zip(links, shared, strict=True)]  # fmt: skip
    for row in rows:
        typer.echo(f"{row[0]:<7} {row[1]:<10} {row[2]:<8} {row[3]:<28} {row[4]:<8} {row[5]:<7} {row[6]:<{width}}  "
                   f"{row[7]}".rstrip())  # fmt: skip


@share_app.command("revoke")
def revoke(
    link_id: str = typer.Argument(..., metavar="ID", help="The link's ID (see `davsync share list`)."),
    root: Path | None = RootOpt,
    state_dir: Path | None = StateOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Withdraw a link: a running server answers 404 to it from the next request on."""
    from ..server.links import LinkError

    where = _Where(root, state_dir, config)
    store = where.store()
    try:
        before = next((link for link in store.links() if link.id == link_id), None)
        link = store.revoke(link_id)
    except LinkError as e:
        raise fail(str(e)) from None
    if before is not None and before.revoked is not None:
        typer.echo(f"Link {link.id} ({link.mode}, {_shown(link)}) was already revoked on {_when(link.revoked)}.")
        return
    typer.echo(f"Revoked link {link.id} ({link.mode}, {_shown(link)}); it stops working at once.")


@share_app.command("reissue")
def reissue(
    link_id: str = typer.Argument(..., metavar="ID", help="The link's ID (see `davsync share list`)."),
    expires: str | None = typer.Option(
        None, "--expires", help="A new lifetime (30m, 12h, 7d, 'never'); default: keep."
    ),
    root: Path | None = RootOpt,
    state_dir: Path | None = StateOpt,
    config: Path | None = ConfigOpt,
    base_url: str | None = BaseOpt,
    qr: bool = QrOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Give a link a new token (the old one stops working at once) and print it."""
    from ..server.links import LinkError, parse_duration

    where = _Where(root, state_dir, config)
    try:
        lifetime: Any = False if expires is None else parse_duration(expires)
        issued = where.store().reissue(link_id, expires_in=lifetime)
    except LinkError as e:
        raise fail(str(e)) from None
    _show_issued(where, issued, base_url, qr, json_out)
