"""Commands built when they are run, not at every start.

typer turns every registered function into a click command, reading its signature and options,
each time `davsync` starts, so the modules of all 13 commands are imported and all are built to
run one: a no-op pull paid for `serve`, `share` and the app. The root group here knows its
commands by name (`module:attribute`) and builds one on first use: running it, its help, or
`davsync --help`, which lists them all. Each is built by the same typer functions, with the same
settings, that `app.command()` and `app.add_typer(name=...)` lead to (contract:
tests/test_cli_startup.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from importlib import import_module
from typing import Any

import typer
from typer.main import get_command_from_info, get_group_from_info
from typer.models import CommandInfo, TyperInfo

Build = Callable[[], Any]  # -> a click command (typer's bundled click)


class LazyCommands(MutableMapping[str, Any]):
    """A group's commands: every name listed, each built on first lookup."""

    def __init__(self, sources: dict[str, Build]) -> None:
        self._sources = dict(sources)
        self._built: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            self._built[name] = self._sources[name]()  # KeyError for an unknown name, as a dict
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._sources.setdefault(name, lambda: command)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._sources[name]
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._sources)

    def __len__(self) -> int:
        return len(self._sources)

    def built(self) -> list[str]:
        """The commands built so far (what a start paid for)."""
        return list(self._built)


def plain_flags(command: Any) -> Any:
    """Help that reads as a user expects: an on/off flag shows no `<bool>` value, since it takes
    none. Applied to a command and the sub-commands it has built (never builds more)."""
    stack = [command]
    while stack:
        c = stack.pop()
        subs = getattr(c, "commands", {})
        if not isinstance(subs, LazyCommands):
            stack.extend(subs.values())
        help_option = c.get_help_option(typer.Context(c))  # built once and cached by the command
        for param in [*c.params, *([help_option] if help_option else [])]:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
    return command


def lazy_sources(app: typer.Typer, where: dict[str, str]) -> dict[str, Build]:
    """Builders for `where` (command name -> "module:attribute", in the order help lists them): a
    function becomes a command as `app.command(name)` makes it, a Typer app a group as
    `app.add_typer(it, name=name)` does, with `app`'s settings."""

    def builder(name: str, target: str) -> Build:
        def build() -> Any:
            module, _, attribute = target.partition(":")
            obj = getattr(import_module(module), attribute)
            cmd: Any
            if isinstance(obj, typer.Typer):
                cmd = get_group_from_info(
                    TyperInfo(obj, name=name), pretty_exceptions_short=app.pretty_exceptions_short,
                    rich_markup_mode=app.rich_markup_mode, suggest_commands=app.suggest_commands,
                )  # fmt: skip
            else:
                cmd = get_command_from_info(
                    CommandInfo(name=name, callback=obj), pretty_exceptions_short=app.pretty_exceptions_short,
                    rich_markup_mode=app.rich_markup_mode,
                )  # fmt: skip
            return plain_flags(cmd)

        return build

    return {name: builder(name, target) for name, target in where.items()}


class LazyGroup(typer.core.TyperGroup):
    """The root group: its `commands` are a LazyCommands of `sources` (set by a subclass)."""

    sources: dict[str, Build] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        commands = LazyCommands(self.sources)
        for name, cmd in self.commands.items():  # any registered the usual way
            commands[name] = cmd
        self.commands = commands
