"""The command line starts light: no pydantic (typer's converters replaced by ours, with the same
results), no server modules for client commands, no client modules for `serve`."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from conftest import PASSWORDS, Share
from typer._click.exceptions import BadParameter
from typer.main import get_command

from davsync import typer_coerce
from davsync.cli import app

SAMPLES: dict[Any, list[Any]] = {
    str: ["abc", "", "é", b"bytes"],
    bool: ["true", "no", "1", "", "maybe", " Yes ", True, False],
    int: ["5", " 7 ", "0", "65", "-1", "abc", "1.5", "1_000", "", 3, "+4"],
    float: ["0.5", "0.1", "x", "2", " 3 ", "1e3", "inf", "nan", ""],
    Path: ["some/path", "", "/", "/nonexistent/x"],
    list[str]: [("a", "b"), (), ["x"]],
}


def _outcome(runtime: Any, value: Any, param: Any, ctx: Any) -> tuple[str, Any]:
    try:
        got = runtime.coerce(value, param=param, ctx=ctx)
    except BadParameter as e:
        return "refused", e.message
    return "ok", "NaN" if isinstance(got, float) and math.isnan(got) else got


def _params(command: Any) -> Any:
    ctx = typer._click.Context(command)
    for param in getattr(command, "params", []):
        if getattr(param, "type_descriptor", None) is not None:
            yield command.name, param, ctx
    for sub in getattr(command, "commands", {}).values():
        yield from _params(sub)


def test_our_converters_cover_every_parameter_and_agree_with_typers() -> None:
    """Same value or same message as typer's pydantic adapters, for every parameter of every
    command (their min/max included), on ordinary and odd input."""
    compared = 0
    for command, param, ctx in _params(get_command(app)):
        descriptor = param.type_descriptor
        ours = typer_coerce.plain_runtime_param(descriptor)
        assert ours is not None, f"{command} {param.name}: {descriptor.annotation} would load pydantic"
        theirs = typer_coerce._typer_builder(descriptor)
        for value in SAMPLES[descriptor.annotation]:
            assert _outcome(ours, value, param, ctx) == _outcome(theirs, value, param, ctx), (command, param.name, value)
            compared += 1
    assert compared > 200


def _imported_by(args: list[str], env: dict[str, str]) -> set[str]:
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "davsync", *args], capture_output=True, text=True,
                         env=env, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return {line.rpartition("|")[2].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}


def test_a_pull_imports_neither_pydantic_nor_the_server(share: Share, tmp_path: Path) -> None:
    (share.root / "a.txt").write_bytes(b"a")
    share.wait_indexed()
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    modules = _imported_by(["pull", share.url, str(tmp_path / "m"), "--user", "alice", "--quiet"], env)
    assert (tmp_path / "m" / "a.txt").read_bytes() == b"a"
    assert "davsync.client.transfer" in modules  # (it did run the client)
    unwanted = {m for m in modules if m.split(".")[0] in ("pydantic", "wsgidav", "cheroot", "watchdog", "rich")}
    unwanted |= {m for m in modules if m.startswith("davsync.server") or m == "davsync.users"}
    assert not unwanted


TRANSFER_ONLY = ("bundle", "bulk", "delta", "resume")


@pytest.mark.parametrize("command", ["pull", "sync"])
def test_a_no_op_run_imports_no_transfer_machinery(share: Share, tmp_path: Path, command: str) -> None:
    """A run that finds nothing to do lists and compares: the bundle, bulk-upload, delta and
    resumable-upload code (and the archive reader under it) is imported only when a transfer needs it."""
    (share.root / "a.txt").write_bytes(b"a")
    share.wait_indexed()
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    args = [command, share.url, str(tmp_path / "m"), "--user", "alice", "--quiet"]
    first = _imported_by(args, env)
    assert (tmp_path / "m" / "a.txt").read_bytes() == b"a"
    assert "davsync.client.bundle" in first  # (a download does load it)
    _imported_by(args, env)  # settles what the first run learnt
    modules = _imported_by(args, env)
    assert "davsync.client.engine" in modules  # (it did run the client)
    loaded = {m for m in modules if m.removeprefix("davsync.client.") in TRANSFER_ONLY or m == "davsync.paxstream"}
    assert not loaded, f"a no-op {command} imported {sorted(loaded)}"
    others = {m for m in modules if m in OTHER_COMMANDS or m.startswith("davsync.app")}
    assert not others, f"a {command} imported the modules of other commands: {sorted(others)}"


# The modules of the commands a pull or sync does not run (typer builds and imports only the one run).
OTHER_COMMANDS = {f"davsync.cli.{m}" for m in ("serve", "share", "users", "versions", "locks")}


def test_the_command_line_builds_only_the_command_it_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """`davsync pull` builds `pull` alone; `davsync --help` still lists every command with its help."""
    from davsync.cli import command

    root = command()
    assert root.main(["pull", "--help"], prog_name="davsync", standalone_mode=False) == 0
    assert "Mirror a share into DEST" in capsys.readouterr().out
    assert list(root.commands.built()) == ["pull"]  # type: ignore[attr-defined]
    root = command()
    assert root.main(["--help"], prog_name="davsync", standalone_mode=False) == 0
    listed = capsys.readouterr().out
    everything = get_command(app)
    assert len(everything.commands) == 13  # type: ignore[attr-defined]
    for name, sub in everything.commands.items():  # type: ignore[attr-defined]
        assert f" {name} " in listed and sub.get_short_help_str(200)[:30] in " ".join(listed.split()), name


@pytest.mark.parametrize("args", [["--version"], ["user", "list", "--users", "{users}"]])
def test_small_commands_import_no_client_or_server(args: list[str], users_file: Path) -> None:
    modules = _imported_by([a.format(users=users_file) for a in args], dict(os.environ))
    heavy = {m for m in modules if m.split(".")[0] in ("pydantic", "requests", "wsgidav", "cheroot", "lxml", "rich")}
    assert not heavy


@pytest.mark.contract("typer")
def test_typer_still_builds_converters_the_way_typer_coerce_replaces() -> None:
    """typer_coerce swaps typer.core.build_runtime_param, which _TyperParameter.get_runtime_param
    calls by its global name, and subclasses RuntimeParam through _coerce_value; coerce_cli_path
    takes a Path without pydantic. (Fingerprints of these are in davsync/upstream.py.)"""
    from typer import _coercion, _param_types, core

    assert "build_runtime_param" in core._TyperParameter.get_runtime_param.__code__.co_names
    assert core.build_runtime_param is typer_coerce._build  # installed
    assert "_coerce_value" in _coercion.RuntimeParam.__abstractmethods__
    assert _param_types.coerce_cli_path(Path("x"), typer.models.OptionInfo(), path_type=Path) == Path("x")


@pytest.mark.contract("typer")
def test_lazy_commands_are_built_as_typer_builds_registered_ones() -> None:
    """cli/lazy.py builds each command with typer.main's get_command_from_info/get_group_from_info
    as `app.command(name)` and `app.add_typer(obj, name=name)` lead to, and typer's group finds,
    lists and suggests its commands through its `commands` mapping: the same command tree either way."""
    from importlib import import_module

    from davsync.cli.lazy import plain_flags
    from davsync.cli.main import COMMANDS

    eager = typer.Typer(pretty_exceptions_enable=False)
    eager.callback()(lambda: None)
    for name, target in COMMANDS.items():
        module, _, attribute = target.partition(":")
        obj = getattr(import_module(module), attribute)
        if isinstance(obj, typer.Typer):
            eager.add_typer(obj, name=name)
        else:
            eager.command(name)(obj)
    theirs, ours = plain_flags(get_command(eager)), get_command(app)
    assert list(ours.commands) == list(theirs.commands) == list(COMMANDS)  # type: ignore[attr-defined]

    def described(cmd: Any) -> Any:
        subs = getattr(cmd, "commands", {})
        params = [(p.name, p.opts, p.default, p.required, getattr(p, "help", None), p.metavar) for p in cmd.params]
        return cmd.name, cmd.help, params, {n: described(c) for n, c in subs.items()}

    for name in COMMANDS:
        assert described(ours.commands[name]) == described(theirs.commands[name]), name  # type: ignore[attr-defined]
    ctx = typer.Context(ours)
    assert ours.list_commands(ctx) == list(COMMANDS) and ours.get_command(ctx, "pull") is ours.commands["pull"]  # type: ignore[attr-defined]


def test_the_exit_does_not_collect_what_the_imports_made(tmp_path: Path) -> None:
    """The interpreter's last garbage collections walk every object the imports made (about 0.03 s
    CPU, a seventh of a no-op pull): `davsync` freezes them as it ends. What it writes still arrives."""
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count(), file=sys.__stderr__))\n"
        "sys.argv = ['davsync', '--version', *sys.argv[1:]]\n"
        "from davsync.cli import run\n"
        "run()\n"
    )
    log = tmp_path / "log.txt"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("davsync "), out.stderr
    frozen = int(out.stderr.split("frozen ")[1].split()[0])
    assert frozen > 10_000, f"only {frozen} objects frozen at exit"
    out = subprocess.run([sys.executable, "-m", "davsync", "doctor", "--log-file", str(log)], capture_output=True,
                         text=True, timeout=120, env={k: v for k, v in os.environ.items() if k != "DAVSYNC_URL"})  # fmt: skip
    assert out.returncode == 2 and "name the share" in log.read_text()  # the log file got its last line
