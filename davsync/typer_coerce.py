"""Command-line values converted without pydantic: typer 0.29 imports it for every command.

typer 0.29 turns each parameter's text into its Python type through a pydantic TypeAdapter:
importing pydantic and building the adapters costs about 0.15 s on every run, more than a
no-op `davsync pull` spends on its own work. Our parameters are plain str, int, float, bool
and Path (optional or not, numbers with a min/max), so we convert those the way typer's
adapters do, with the same messages, and leave any other annotation to typer.
`install()` swaps typer's builder (typer.core.build_runtime_param); the contract test
(tests/test_upstream_contract.py, entries in davsync/upstream.py) fails if typer changes
what we replace.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from typer import core as typer_core
from typer._click import Context
from typer._click.exceptions import BadParameter
from typer._coercion import RuntimeParam, TypeDescriptor
from typer._param_types import coerce_cli_path

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


@dataclass(frozen=True)
class PlainRuntimeParam(RuntimeParam):
    """Coercion by a plain function; ValueError becomes typer's BadParameter with its message."""

    convert: Callable[[Any, Any, Context], Any]

    def _coerce_value(self, value: Any, param: Any, ctx: Context) -> Any:
        try:
            return self.convert(value, param, ctx)
        except ValueError as e:
            raise BadParameter(str(e), ctx=ctx, param=param) from None


def _to_str(value: Any, param: Any, ctx: Context) -> str:
    if isinstance(value, bytes):
        return value.decode(sys.getfilesystemencoding(), "replace")
    return str(value)


def _to_bool(value: Any, param: Any, ctx: Context) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "" or text in _FALSE:
        return False
    if text in _TRUE:
        return True
    raise ValueError("Input should be a valid boolean, unable to interpret input")


def _number(kind: type[int] | type[float], lo: float | None, hi: float | None, clamp: bool) -> Callable[..., Any]:
    what = ("a valid integer, unable to parse string as an integer" if kind is int
            else "a valid number, unable to parse string as a number")  # fmt: skip

    def convert(value: Any, param: Any, ctx: Context) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"Input should be {what}")
        try:
            number = kind(value.strip()) if isinstance(value, str) else kind(value)
        except ValueError:
            raise ValueError(f"Input should be {what}") from None
        if lo is not None and not number >= lo:  # (NaN fails, as in pydantic)
            if clamp:
                return kind(lo)
            raise ValueError(f"Input should be greater than or equal to {lo}")
        if hi is not None and not number <= hi:
            if clamp:
                return kind(hi)
            raise ValueError(f"Input should be less than or equal to {hi}")
        return number

    return convert


def _path(info: Any) -> Callable[..., Any]:
    def convert(value: Any, param: Any, ctx: Context) -> Any:
        if not isinstance(value, Path):
            value = Path(os.fsdecode(value))  # what pydantic's Path adapter does with text
        return coerce_cli_path(value, info, path_type=Path, param=param, ctx=ctx)  # typer's own checks

    return convert


def _converter(annotation: Any, info: Any) -> Callable[..., Any] | None:
    if annotation is str:
        return _to_str
    if annotation is bool:
        return _to_bool
    if annotation is int or annotation is float:
        return _number(annotation, info.min, info.max, bool(info.clamp))
    if annotation is Path and getattr(info, "path_type", None) is None:
        return _path(info)
    if get_origin(annotation) is list and len(get_args(annotation)) == 1:  # a repeatable option
        item = _converter(get_args(annotation)[0], info)
        if item is not None:
            return lambda value, param, ctx: [
                item(v, param, ctx) for v in (value if isinstance(value, list | tuple) else [value])
            ]
    return None


def plain_runtime_param(descriptor: TypeDescriptor) -> RuntimeParam | None:
    """Our converter for a simple annotation, or None for typer to handle."""
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None or getattr(info, "parser", None) is not None:
        return None
    convert = _converter(descriptor.annotation, info)
    if convert is None:
        return None
    return PlainRuntimeParam(parameter_info=info, annotation=descriptor.annotation, convert=convert)


_typer_builder = typer_core.build_runtime_param


def _build(descriptor: TypeDescriptor) -> RuntimeParam:
    return plain_runtime_param(descriptor) or _typer_builder(descriptor)


def install() -> None:
    """Have typer use our converters (idempotent)."""
    typer_core.build_runtime_param = _build


__all__ = ["install", "plain_runtime_param"]
