"""The PC's commands: pull, sync, push, status, watch, login and doctor (a thin shell over
davsync.client: options in, one library call, its report out)."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ..console import log_to as _log_to
from ..console import stop_signals
from ..exitcodes import Exit
from .common import fail, read_password, share_password

if TYPE_CHECKING:
    from ..client.engine import RunOptions
    from ..client.transport import ConnectionSettings

UrlArg = typer.Argument(
    None, metavar="URL", show_default=False,
    help="The share's URL, e.g. http://raspberrypi.local:8080/ (or set DAVSYNC_URL).",
)  # fmt: skip
DestArg = typer.Argument(
    None, metavar="DEST", show_default=False,
    help="The local folder to mirror into, created if missing (or set DAVSYNC_DEST).",
)  # fmt: skip
UserOpt = typer.Option(
    None, "--user", "-u", envvar="DAVSYNC_USER",
    help="User name (password: DAVSYNC_PASSWORD, else the one `davsync login` stored, else a prompt).",
)  # fmt: skip
LogFileOpt = typer.Option(
    None, "--log-file", help="Append all output to this file (UTF-8), e.g. for a scheduled task."
)
CaOpt = typer.Option(None, "--ca-cert", help="Trust this CA certificate (PEM) for https.")
InsecureOpt = typer.Option(False, "--insecure", help="Do not verify the server's TLS certificate.")
ExcludeOpt = typer.Option([], "--exclude", help="Skip paths matching this gitignore-style pattern (repeatable).")
JobsOpt = typer.Option(4, "--jobs", "-j", min=1, max=64, help="Parallel downloads and listings.")
RulesOpt = typer.Option(
    None, "--name-rules",
    help="Which filesystem's naming rules to enforce: posix, windows or macos. "
    "[default: this OS; always windows on Windows]",
)  # fmt: skip


def _looks_like_url(text: str) -> bool:
    return "://" in text


def _share_url(url: str | None) -> str:
    """The URL argument, or DAVSYNC_URL (for commands that take no DEST)."""
    url = url or os.environ.get("DAVSYNC_URL") or None
    if not url:
        raise fail("name the share: give its URL (e.g. http://raspberrypi.local:8080/) or set DAVSYNC_URL.", Exit.USAGE)
    return url


def _url_and_dest(first: str | None, second: str | None, command: str) -> tuple[str, Path]:
    """URL and DEST from the arguments, DAVSYNC_URL and DAVSYNC_DEST.

    `davsync pull URL DEST` always works; with DAVSYNC_URL set, `davsync pull DEST` too;
    with both variables set, `davsync pull`. A single argument is the URL if it has a
    scheme (`http://`), else DEST; two in the other order (`davsync push SRC URL`, as
    rclone and scp write it) are taken as meant.
    """
    env_url = os.environ.get("DAVSYNC_URL") or None
    env_dest = os.environ.get("DAVSYNC_DEST") or None
    given = [a for a in (first, second) if a]
    url: str | None
    dest: str | None
    if len(given) == 2:
        url, dest = given if _looks_like_url(given[0]) or not _looks_like_url(given[1]) else given[::-1]
    elif len(given) == 1 and _looks_like_url(given[0]):
        url, dest = given[0], env_dest
    elif len(given) == 1:
        url, dest = env_url, given[0]
    else:
        url, dest = env_url, env_dest
    if not url:
        raise fail(f"name the share: davsync {command} URL DEST, or set DAVSYNC_URL.", Exit.USAGE)
    if not dest:
        raise fail(f"name the local folder: davsync {command} URL DEST, or set DAVSYNC_DEST.", Exit.USAGE)
    return url, Path(dest).expanduser()


def _check_ca_cert(ca_cert: Path) -> None:
    """A --ca-cert that is not a certificate is the user's file, not the server's fault: say so first."""
    import ssl

    if not ca_cert.is_file():
        raise fail(f"the CA certificate {ca_cert} does not exist.", Exit.USAGE)
    try:
        ssl.create_default_context(cafile=str(ca_cert))
    except ssl.SSLError:
        from ..client.neterrors import ca_cert_not_pem

        raise fail(ca_cert_not_pem(ca_cert), Exit.USAGE) from None
    except OSError as e:
        raise fail(f"cannot read the CA certificate {ca_cert}: {e.strerror}.", Exit.USAGE) from None


def _canonical(url: str) -> str:
    """The share URL as every command sends it (one slash between segments, encoded once)."""
    from ..client.transport import RemoteError, normalize_base

    try:
        return normalize_base(url)
    except RemoteError as e:
        raise fail(str(e), Exit.USAGE) from None


def _connection(url: str, user: str | None, ca_cert: Path | None, insecure: bool, jobs: int):  # type: ignore[no-untyped-def]
    from ..client.transport import ConnectionSettings, env_seconds

    for name in ("DAVSYNC_TIMEOUT", "DAVSYNC_STALL_TIMEOUT"):
        try:
            env_seconds(name, 1.0)
        except ValueError as e:
            raise fail(str(e), Exit.USAGE) from None
    url = _canonical(url)
    if ca_cert is not None and insecure:
        raise fail("use either --ca-cert or --insecure, not both.", Exit.USAGE)
    if ca_cert is not None:
        _check_ca_cert(ca_cert)
    if insecure and url.startswith("https:"):
        typer.secho("davsync: warning: --insecure: the server's certificate is not checked.", err=True,
                    fg=typer.colors.YELLOW)  # fmt: skip
    password = share_password(url, user, _tls_flags(str(ca_cert) if ca_cert else None, insecure)) if user else None
    return ConnectionSettings(url, user, password, str(ca_cert) if ca_cert else None, insecure, jobs=jobs)


def _begin(
    command: str, url: str | None, dest: str | None, user: str | None, ca_cert: Path | None, insecure: bool,
    jobs: int, log_file: Path | None,
) -> tuple[ConnectionSettings, Path]:
    """A transfer command's start: its log file, its share and folder, and the connection to the share."""
    _log_to(log_file)
    share, folder = _url_and_dest(url, dest, command)
    return _connection(share, user, ca_cert, insecure, jobs), folder


def _run_options(max_delete: str | None, exclude: list[str], name_rules: str | None, **fields: Any) -> RunOptions:
    """What pull, sync, push and watch build alike: the deletion guard, the excludes and the name
    rules as given, with the command's own `fields`."""
    from ..client.engine import RunOptions

    count, percent = _max_delete(max_delete)
    return RunOptions(max_delete=count, max_delete_percent=percent, excludes=tuple(exclude),
                      name_rules=_check_rules(name_rules), **fields)  # type: ignore[arg-type]  # fmt: skip


def _check_rules(name_rules: str | None) -> str | None:
    if name_rules is not None and name_rules not in ("posix", "windows", "macos"):
        raise fail("--name-rules must be posix, windows or macos.", Exit.USAGE)
    return name_rules


# Options that several of pull, sync, push and watch take, said once.
PullDeleteOpt = typer.Option(False, "--delete", help="Delete (to DEST/.davsync/trash) files deleted on the server.")
DryRunOpt = typer.Option(False, "--dry-run", "-n", help="Show what would happen; change nothing.")
JsonSummaryOpt = typer.Option(False, "--json", help="Print a machine-readable summary.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print only problems.")
FullOpt = typer.Option(False, "--full", help="Walk the whole share even if the server can list changes.")
MaxDeleteOpt = typer.Option(
    None, "--max-delete", metavar="N|P%", show_default="50%",
    help="Refuse a side's deletions when more files than this would go (a count, or a share of the tracked "
    "files such as 10%).",
)  # fmt: skip


def pull(
    url: str | None = UrlArg,
    dest: str | None = DestArg,
    user: str | None = UserOpt,
    jobs: int = JobsOpt,
    delete: bool = PullDeleteOpt,
    max_delete: str | None = MaxDeleteOpt,
    dry_run: bool = DryRunOpt,
    exclude: list[str] = ExcludeOpt,
    json_out: bool = JsonSummaryOpt,
    quiet: bool = QuietOpt,
    verify: bool = typer.Option(False, "--verify", help="Re-hash every local file to repair the state."),
    full: bool = FullOpt,
    ca_cert: Path | None = CaOpt,
    insecure: bool = InsecureOpt,
    name_rules: str | None = RulesOpt,
    log_file: Path | None = LogFileOpt,
) -> None:
    """Mirror a share into DEST: download what changed, verify it, never lose a local edit."""

    conn, folder = _begin("pull", url, dest, user, ca_cert, insecure, jobs, log_file)
    options = _run_options(max_delete, exclude, name_rules, delete=delete, dry_run=dry_run, jobs=jobs, verify=verify,
                           full=full)  # fmt: skip
    _run_and_report(conn, folder, options, json_out=json_out, quiet=quiet, what="pull")


def _run_and_report(conn, folder: Path, options, *, json_out: bool, quiet: bool, what: str) -> None:  # type: ignore[no-untyped-def]
    """One run of pull, sync or push, reported as asked; exits with the run's status."""
    import json

    from ..client.deadline import WATCHDOG, ctrl_c_cuts_connections
    from ..client.engine import run_once
    from ..client.report import PlainReporter, RichReporter, plan_lines, problem_lines, summary_lines, trash_lines

    reporter = None
    if not (json_out or quiet or options.dry_run):
        reporter = RichReporter(command=what) if sys.stdout.isatty() else PlainReporter(command=what)
    try:
        with stop_signals(also=WATCHDOG.interrupt) as stop, ctrl_c_cuts_connections():
            result = run_once(conn, folder, options, reporter, stop=stop)
    except KeyboardInterrupt:
        raise fail(f"interrupted; run the {what} again to resume.", Exit.INTERRUPTED) from None
    if result.interrupted:
        raise fail(f"interrupted; run the {what} again to resume.", Exit.INTERRUPTED)
    if json_out:
        typer.echo(json.dumps(result.as_json(), indent=2))
    elif result.fatal is None:
        rerun = _rerun(conn, folder)  # for the fixes a problem line suggests
        if quiet:
            lines = trash_lines(result, folder=_arg(str(folder))) + problem_lines(result, **rerun)
        elif options.dry_run:
            lines = plan_lines(result.plan, two_way=what != "pull") + problem_lines(result, **rerun)
            lines = lines or [f"Nothing to do: {'the mirror is' if what == 'pull' else 'both sides are'} in sync."]
            lines.append(DRY_RUN)
        else:
            lines = summary_lines(result, list_paths=True, **rerun)
        if lines:
            typer.echo("\n".join(lines))
    elif result.errors or result.conflicts:  # what went wrong before the run had to stop
        typer.echo("\n".join(problem_lines(result)))
    if result.fatal is not None:
        raise fail(result.fatal, result.exit_code)
    raise typer.Exit(int(result.exit_code))


DRY_RUN = "Dry run: nothing was changed."


def _arg(text: str) -> str:
    """A URL or folder as it can be pasted into a command line (quoted if it has spaces)."""
    return f'"{text}"' if any(c.isspace() for c in text) else text


def _rerun(conn: ConnectionSettings, folder: Path) -> dict[str, str]:
    """URL, folder and the connection options the user gave, for a command a message suggests:
    it must run as printed (a `davsync sync URL DEST` without --user asks no password, and fails)."""
    connect = (f" --user {_arg(conn.user)}" if conn.user else "") + _tls_flags(conn.ca_cert, conn.insecure)
    return {"url": _arg(conn.url), "folder": _arg(str(folder)), "connect": connect}


def _tls_flags(ca_cert: str | None, insecure: bool) -> str:
    """The TLS options as given, for a suggested command (" --ca-cert FILE", " --insecure")."""
    return f" --ca-cert {_arg(ca_cert)}" if ca_cert else " --insecure" if insecure else ""


def _max_delete(text: str | None) -> tuple[int | None, float | None]:
    from ..client.plan import parse_max_delete

    if text is None:
        return None, None
    try:
        return parse_max_delete(text)
    except ValueError as e:
        raise fail(str(e), Exit.USAGE) from None


SyncDestArg = typer.Argument(
    None, metavar="DEST", show_default=False,
    help="The local folder kept in sync with the share, created if missing (or set DAVSYNC_DEST).",
)  # fmt: skip


def sync(
    url: str | None = UrlArg,
    dest: str | None = SyncDestArg,
    user: str | None = UserOpt,
    jobs: int = JobsOpt,
    dry_run: bool = DryRunOpt,
    json_out: bool = JsonSummaryOpt,
    quiet: bool = QuietOpt,
    exclude: list[str] = ExcludeOpt,
    max_delete: str | None = MaxDeleteOpt,
    name_rules: str | None = RulesOpt,
    ca_cert: Path | None = CaOpt,
    insecure: bool = InsecureOpt,
    watch: bool = typer.Option(False, "--watch", help="Keep syncing until Ctrl-C: local writes go up within seconds."),
    interval: float = typer.Option(2.0, "--interval", min=0.2, help="With --watch: seconds between asking the server."),
    full: bool = FullOpt,
    log_file: Path | None = LogFileOpt,
) -> None:
    """Two-way sync of a share and DEST: edits, new files, renames and deletions go both ways.

    Both changed differently: the server's version keeps the name, yours is kept (and uploaded) as
    NAME.sync-conflict-DATE-TIME.EXT, exit status 3. Deleted files go to DEST/.davsync/trash/ here;
    the server keeps versions of what sync overwrites or deletes there."""
    from ..client.plan import Mode

    conn, folder = _begin("sync", url, dest, user, ca_cert, insecure, jobs, log_file)
    options = _run_options(max_delete, exclude, name_rules, mode=Mode.SYNC, dry_run=dry_run, jobs=jobs, full=full)
    if watch:
        if dry_run or json_out:
            raise fail("--watch runs until stopped: it cannot be combined with --dry-run or --json.", Exit.USAGE)
        from ..client.watch import watch_loop

        raise typer.Exit(int(watch_loop(conn, folder, options, interval=interval, quiet=quiet)))
    _run_and_report(conn, folder, options, json_out=json_out, quiet=quiet, what="sync")


def push(
    url: str | None = UrlArg,
    src: str | None = typer.Argument(
        None, metavar="SRC", show_default=False, help="The local folder the share follows (or set DAVSYNC_DEST)."
    ),
    user: str | None = UserOpt,
    jobs: int = JobsOpt,
    delete: bool = typer.Option(False, "--delete", help="Delete on the server what was deleted here."),
    max_delete: str | None = MaxDeleteOpt,
    dry_run: bool = DryRunOpt,
    json_out: bool = JsonSummaryOpt,
    quiet: bool = QuietOpt,
    exclude: list[str] = ExcludeOpt,
    name_rules: str | None = RulesOpt,
    ca_cert: Path | None = CaOpt,
    insecure: bool = InsecureOpt,
    log_file: Path | None = LogFileOpt,
) -> None:
    """Make the share follow SRC: upload new and changed files (and with --delete, delete there).

    A server file that changed since the last push is never overwritten: it is reported, exit status 3."""
    from ..client.plan import Mode

    conn, folder = _begin("push", url, src, user, ca_cert, insecure, jobs, log_file)
    options = _run_options(max_delete, exclude, name_rules, mode=Mode.PUSH, delete=delete, dry_run=dry_run, jobs=jobs)
    _run_and_report(conn, folder, options, json_out=json_out, quiet=quiet, what="push")


def status(
    url: str | None = UrlArg,
    dest: str | None = DestArg,
    user: str | None = UserOpt,
    exclude: list[str] = ExcludeOpt,
    json_out: bool = typer.Option(False, "--json", help="Print a machine-readable plan."),
    as_mode: str | None = typer.Option(
        None, "--as", metavar="pull|sync|push",
        help="Judge DEST as this command would. [default: the command last run on DEST, else pull]",
    ),
    ca_cert: Path | None = CaOpt,
    insecure: bool = InsecureOpt,
    name_rules: str | None = RulesOpt,
    log_file: Path | None = LogFileOpt,
    excluded: bool = typer.Option(
        False, "--excluded",
        help="List what in DEST is never synced (default excludes, --exclude, .davsyncignore), and why.",
    ),
) -> None:
    """What the command last run on DEST (pull, sync or push, with --delete if it had it) would do:
    to download, to upload, conflicts, deletions. Exit status 0 when it would change nothing, 1 when
    it would transfer or delete something, 3 when it would leave files out of sync (conflicts,
    skipped names, errors, server changes push would not overwrite)."""  # fmt: skip
    import json

    from ..client.dest import last_delete, last_mode
    from ..client.engine import RunOptions, run_once
    from ..client.plan import Mode
    from ..client.report import plan_lines, problem_lines

    _log_to(log_file)
    share, folder = _url_and_dest(url, dest, "status")
    if excluded:
        _print_excluded(folder, tuple(exclude), json_out)
        return
    if as_mode is not None and as_mode not in ("pull", "sync", "push"):
        raise fail("--as must be pull, sync or push.", Exit.USAGE)
    mode = Mode(as_mode) if as_mode else last_mode(folder)
    conn = _connection(share, user, ca_cert, insecure, 4)
    options = RunOptions(  # as that command last ran here: with --delete if it had it
        mode=mode, delete=last_delete(folder, mode), dry_run=True, excludes=tuple(exclude),
        name_rules=_check_rules(name_rules), settle_s=0.0,  # type: ignore[arg-type]
    )  # fmt: skip
    result = run_once(conn, folder, options)
    if result.fatal is not None:
        raise fail(result.fatal, result.exit_code)
    if result.exit_code == Exit.PARTIAL:
        code = Exit.PARTIAL
    else:
        code = Exit.OUT_OF_SYNC if result.plan.changes else Exit.OK
    if json_out:
        data = result.as_json()
        data["exit_code"] = int(code)
        data["in_sync"] = code == Exit.OK
        typer.echo(json.dumps(data, indent=2))
    else:
        lines = plan_lines(result.plan, two_way=mode != Mode.PULL)
        lines += problem_lines(result, **_rerun(conn, folder))
        if code == Exit.OK:
            what = "a pull" if mode == Mode.PULL else f"a {mode.value}"
            lines.append("In sync." if result.plan.in_sync else f"In sync: {what} would change no file.")
        typer.echo("\n".join(lines))
    raise typer.Exit(int(code))


def _print_excluded(folder: Path, exclude: tuple[str, ...], json_out: bool) -> None:
    """`status --excluded`: local only (the server is not asked), one line per excluded path."""
    import json

    from ..client.filters import Filter

    if not folder.is_dir():
        raise fail(f"{folder} is not a folder.", Exit.USAGE)
    found = Filter.load(folder, exclude).excluded_in(folder)
    if json_out:
        typer.echo(json.dumps({"excluded": [{"path": p, "why": why} for p, why in found]}, indent=2))
        return
    lines = [f"{path}: {why}" for path, why in found]
    typer.echo("\n".join(lines) if lines else "Nothing in this folder is excluded from syncing.")


def watch(
    url: str | None = UrlArg,
    dest: str | None = DestArg,
    user: str | None = UserOpt,
    interval: float = typer.Option(2.0, "--interval", min=0.2, help="Seconds between asking for changes."),
    jobs: int = JobsOpt,
    delete: bool = PullDeleteOpt,
    max_delete: str | None = MaxDeleteOpt,
    exclude: list[str] = ExcludeOpt,
    quiet: bool = QuietOpt,
    ca_cert: Path | None = CaOpt,
    insecure: bool = InsecureOpt,
    name_rules: str | None = RulesOpt,
    log_file: Path | None = LogFileOpt,
) -> None:
    """Keep DEST current: pull what changed every --interval seconds until Ctrl-C or SIGTERM."""
    from ..client.watch import watch_loop

    conn, folder = _begin("watch", url, dest, user, ca_cert, insecure, jobs, log_file)

    options = _run_options(max_delete, exclude, name_rules, delete=delete, jobs=jobs)
    code = watch_loop(conn, folder, options, interval=interval, quiet=quiet)
    raise typer.Exit(int(code))


def login(
    url: str | None = UrlArg,
    user: str = typer.Option(..., "--user", "-u", envvar="DAVSYNC_USER", help="User name on the share."),
    forget: bool = typer.Option(False, "--forget", help="Remove the stored password instead."),
    ca_cert: Path | None = CaOpt,
    insecure: bool = InsecureOpt,
) -> None:
    """Check a password with the server and keep it in the OS credential store.

    Windows Credential Manager, macOS Keychain or the Secret Service: pull, status, watch
    and doctor then need neither a prompt nor DAVSYNC_PASSWORD."""
    from ..client.credentials import (
        NO_STORE,
        CredentialStoreError,
        NoCredentialStore,
        delete_password,
        save_password,
        store_available,
    )
    from ..client.refusals import NotAShare
    from ..client.remote import Remote
    from ..client.transport import RemoteError

    url = _canonical(_share_url(url))  # the key pull and sync look the password up by
    if forget:
        try:
            removed = store_available() and delete_password(url, user)
        except CredentialStoreError as e:
            raise fail(str(e), Exit.LOCAL) from None
        typer.echo(
            f"Forgot the password for {user} on {url}." if removed else f"No password was stored for {user} on {url}."
        )
        return
    if not store_available():  # said before the password is asked for, not after the server checked it
        raise fail(NO_STORE, Exit.USAGE)
    conn = _connection(url, None, ca_cert, insecure, 1)
    password = read_password(f"Password for {user} on {url}", confirm=False)
    remote = Remote(replace(conn, user=user, password=password))
    try:
        remote.check_root()
    except RemoteError as e:
        code = Exit.USAGE if isinstance(e, NotAShare) else Exit.CONNECTION
        raise fail(f"{e} Nothing was stored.", code) from None
    finally:
        remote.close()
    try:
        save_password(url, user, password)
    except NoCredentialStore as e:
        raise fail(str(e), Exit.USAGE) from None
    except CredentialStoreError as e:
        raise fail(str(e), Exit.LOCAL) from None
    typer.echo(f"Logged in: the password for {user} on {url} is in the system's credential store.")


def doctor(
    url: str | None = UrlArg,
    user: str | None = UserOpt,
    ca_cert: Path | None = CaOpt,
    insecure: bool = InsecureOpt,
    log_file: Path | None = LogFileOpt,
) -> None:
    """Check a share: reachability and TLS, login, access, DAV class, checksums, sync-collection,
    clock skew, and Windows Explorer readiness. Exit status 0 only when every check passes."""
    from ..client.doctor import reachability, run_checks

    _log_to(log_file)
    share = _share_url(url)
    first = reachability(_connection(share, None, ca_cert, insecure, 1))  # before any password is asked
    if not first.ok:
        checks = [first]
    else:
        checks = run_checks(_connection(share, user, ca_cert, insecure, 1))
    for c in checks:
        mark = typer.style("PASS", fg=typer.colors.GREEN) if c.ok else typer.style("FAIL", fg=typer.colors.RED)
        typer.echo(f"{mark}  {c.name}: {c.detail}")
    failed = [c for c in checks if not c.ok]
    if failed:
        raise typer.Exit(int(Exit.CONNECTION if any(c.blocking for c in failed) else Exit.PARTIAL))
    typer.echo("All checks passed.")
