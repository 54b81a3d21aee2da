"""`davsync serve`: share a folder (a thin shell over davsync.server: settings, start, banner)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ..console import stop_signals
from ..exitcodes import Exit
from ..units import plural
from .common import fail, load_users

if TYPE_CHECKING:  # the server is imported when it starts: other commands never load it
    from ..server.settings import ServeSettings
    from ..users import Users




def serve(
    root: Path | None = typer.Argument(None, help="The folder to share (or `root` in --config)."),
    # Defaults are shown with show_default (not in the help text: rich reads "[...]" as
    # markup and dropped them); the real value is None so --config can fill it in.
    host: str | None = typer.Option(None, "--host", help="Address to listen on.", show_default="0.0.0.0"),
    port: int | None = typer.Option(None, "--port", help="TCP port.", show_default="8080"),
    state_dir: Path | None = typer.Option(
        None,
        "--state-dir",
        help="Where the index, locks and properties live (outside ROOT).",
        show_default="~/.local/state/davsync/NAME-HASH",
    ),
    users: Path | None = typer.Option(
        None, "--users", help="Users file (davsync user add).", show_default="~/.config/davsync/users.json"
    ),
    anonymous: str | None = typer.Option(
        None, "--anonymous", help="Access without a login: off, read or write.", show_default="off"
    ),
    tls_cert: Path | None = typer.Option(
        None, "--tls-cert", help="TLS certificate (PEM) to serve https.", show_default="none: plain http"
    ),
    tls_key: Path | None = typer.Option(
        None, "--tls-key", help="TLS private key (PEM, unencrypted).", show_default=False
    ),
    allow_infinite_depth: bool | None = typer.Option(
        None,
        "--allow-infinite-depth/--no-allow-infinite-depth",
        help="Answer PROPFIND Depth: infinity.",
        show_default="no",
    ),
    rescan_interval: float | None = typer.Option(
        None, "--rescan-interval", help="Seconds between full rescans behind the live watcher.", show_default="600"
    ),
    qr: bool | None = typer.Option(
        None, "--qr/--no-qr", help="Print a QR code of the share URL.", show_default="only on a terminal"
    ),
    advertise: bool | None = typer.Option(
        None,
        "--advertise/--no-advertise",
        help="Announce the share on the LAN by mDNS/DNS-SD (_webdav._tcp).",
        show_default="no",
    ),
    admin: bool | None = typer.Option(
        None, "--admin/--no-admin", help="Serve the admin page at /.~davsync-admin/ to users added with --admin."
    ),
    keep_versions: str | None = typer.Option(
        None,
        "--keep-versions",
        help="Keep overwritten and deleted files this long (30d, 12h, 2w; 0: off). [default: 30d]",
    ),
    versions_max_size: str | None = typer.Option(
        None, "--versions-max-size", help="Cap on kept versions, oldest go first (10%, 20G). [default: 10% of the disk]"
    ),
    new_share: bool = typer.Option(
        False, "--new-share", help="Serve ROOT as a new share although the state dir knew another one there."
    ),
    config: Path | None = typer.Option(None, "--config", help="TOML file with the same settings as the flags."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every request."),
) -> None:
    """Share a folder over WebDAV, publishing every file's MD5."""
    from ..server.settings import ServeSettings, SettingsError, load_config

    try:
        values = load_config(config) if config else {}
        flags = {
            "root": root, "host": host, "port": port, "state_dir": state_dir, "users": users,
            "anonymous": anonymous, "tls_cert": tls_cert, "tls_key": tls_key,
            "allow_infinite_depth": allow_infinite_depth, "rescan_interval": rescan_interval,
            "qr": qr, "advertise": advertise, "admin": admin, "keep_versions": keep_versions,
            "versions_max_size": versions_max_size,
        }  # fmt: skip
        values.update({k: v for k, v in flags.items() if v is not None})
        if verbose:
            values["verbose"] = True
        if new_share:
            values["new_share"] = True
        if values.get("root") is None:
            raise SettingsError("name the folder to share: davsync serve FOLDER")
        # A QR code is for eyes: not into a pipe, a log file or the journal, unless asked for.
        values.setdefault("qr", sys.stdout.isatty())
        settings = ServeSettings(**values).resolved()
    except SettingsError as e:
        raise fail(str(e), Exit.USAGE) from None
    except TypeError as e:
        raise fail(f"bad setting in {config}: {e}", Exit.USAGE) from None
    _run_server(settings)


def _run_server(settings: ServeSettings) -> None:
    import logging
    import sqlite3
    import ssl

    from ..server.app import DavServer
    from ..server.netinfo import bind_problem, share_urls
    from ..server.shareroot import RootRefused

    db = load_users(settings.users_file)
    if settings.anonymous == "off" and not db.users:
        raise fail(
            f"no users can log in ({settings.users_file} has none), and anonymous access is off.\n"
            f"  Add a user:        davsync user add NAME\n"
            f"  or allow guests:   davsync serve {settings.root} --anonymous read",
            Exit.USAGE,
        )
    logging.basicConfig(
        level=logging.INFO if settings.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(message)s"
    )
    problem = bind_problem(settings.host, settings.port)
    if problem:
        raise fail(problem, Exit.USAGE)
    try:
        server = DavServer(settings, db)
    except RootRefused as e:
        raise fail(str(e), Exit.USAGE) from None
    except OSError as e:
        raise fail(
            f"cannot create or open the state dir {settings.state_dir} ({e.strerror or e}); "
            "choose a writable folder with --state-dir.",
            Exit.USAGE,
        ) from None
    except sqlite3.Error as e:
        raise fail(
            f"the index in the state dir {settings.state_dir} cannot be opened ({e}); "
            "if another davsync is serving this folder, stop it, or choose another --state-dir.",
            Exit.USAGE,
        ) from None
    try:
        server.start()
    except ssl.SSLError as e:
        raise fail(f"the TLS certificate or key cannot be used ({e.reason or e.strerror}).", Exit.USAGE) from None
    except OSError as e:
        raise fail(
            f"cannot listen on {settings.host}:{settings.port} ({e.strerror or 'see above'}).", Exit.USAGE
        ) from None
    from ..concurrency import sliced_wait

    advertiser = None
    with stop_signals(interrupt=True) as stopped:
        try:
            try:
                urls = share_urls(settings.host, server.port, server.scheme)
                _print_banner(settings, server.port, server.scheme, urls, db)
                if settings.admin:
                    admins = [u.name for u in db.users.values() if u.admin] or [
                        "nobody yet: davsync user add NAME --admin"
                    ]
                    typer.echo(f"Admin page: {urls[-1].rstrip('/')}/.~davsync-admin/  (admins: {', '.join(admins)})")
                if settings.qr:
                    from ..server.discovery import qr_text

                    typer.echo(f"Scan to connect a phone ({urls[-1]}):")
                    typer.echo(qr_text(urls[-1]))
                if settings.advertise:
                    advertiser = _advertise(settings, server.port, server.scheme)
                sliced_wait(stopped)
                typer.echo("Stopping…")
            except BrokenPipeError:
                # Whoever read our output went away (`davsync serve | head`): keep serving quietly.
                _silence_stdout()
                sliced_wait(stopped)
        finally:
            if advertiser is not None:
                advertiser.stop()
            server.stop()


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so later prints and the exit-time flush cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _advertise(settings, port: int, scheme: str):  # type: ignore[no-untyped-def]
    import socket

    from ..server.discovery import Advertiser, service_info
    from ..server.netinfo import lan_addresses

    addresses = lan_addresses() if settings.host in ("0.0.0.0", "::", "") else [settings.host]
    name = f"davsync on {socket.gethostname().split('.')[0]}"
    info = service_info(name, port, addresses, tls=scheme == "https")
    advertiser = Advertiser(info, addresses)
    try:
        advertiser.start()
    except OSError as e:
        typer.secho(f"warning: could not announce the share by mDNS ({e}); it still serves.", err=True)
        return None
    typer.echo(f"Announced as {name!r} ({info.type}) on {', '.join(addresses)}.")
    return advertiser


def _print_banner(settings, port: int, scheme: str, urls: list[str], db: Users) -> None:  # type: ignore[no-untyped-def]
    from ..server.netinfo import explorer_folder

    lan = urls[-1]
    host = lan.split("//", 1)[1].rsplit(":", 1)[0]
    access = {"off": "users only", "read": "guests may read", "write": "guests may read AND WRITE"}
    typer.echo(f"davsync is sharing {settings.root}  ({access[settings.anonymous]}, {plural(len(db.users), 'user')})")
    for url in urls:
        typer.echo(f"  {url}")
    typer.echo("Connect from:")
    typer.echo(f"  a browser:         open {lan}")
    typer.echo(f"  a phone app:       WebDAV server {lan} with your davsync user")
    unc = explorer_folder(host, port, scheme)
    typer.echo(f"  Windows Explorer:  This PC > Map network drive > Folder: {unc}")
    typer.echo(f"  davsync pull:      davsync pull {lan} DEST --user NAME")
    typer.echo(f"  rclone:            --webdav-url {lan} --webdav-vendor owncloud")
    typer.echo("Press Ctrl-C to stop.")
