"""Strict mapping -> dataclass conversion for YAML configs.

Unknown keys, missing keys and values of the wrong type raise :class:`ConfigError` with the
dotted path of the field, so a typo in a robot file never turns into a silent default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is malformed; ``str(err)`` starts with the dotted field path."""


def from_mapping(cls: type[T], data: Any, path: str, *, complete: bool = False) -> T:
    """Build dataclass ``cls`` from ``data`` (a mapping), strictly.

    ``complete``: every field must be given, even one with a default (a file that trot itself wrote,
    such as a run's config, read back: a missing key means an older trot wrote it, and today's
    default may differ from what that run used)."""
    return _convert(cls, data, path, complete)


def _convert(tp: Any, value: Any, path: str, complete: bool = False) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__} {value!r}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ConfigError(f"{path}.{unknown[0]}: unknown key (valid keys: {sorted(fields)})")
        kwargs = {}
        for name, f in fields.items():
            if name in value:
                kwargs[name] = _convert(hints[name], value[name], f"{path}.{name}", complete)
            elif complete:
                raise ConfigError(f"{path}.{name}: missing (the file was written by an older version of trot)")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{path}.{name}: required key is missing")
        try:
            return tp(**kwargs)
        except (ValueError, TypeError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"{path}: {exc}") from exc
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        return {
            _convert(key_tp, k, f"{path}", complete): _convert(val_tp, v, f"{path}.{k}", complete)
            for k, v in value.items()
        }
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}[{i}]", complete) for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{path}: expected {len(args)} values, got {len(value)}")
        return tuple(
            _convert(a, v, f"{path}[{i}]", complete) for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(a, value, path, complete)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{path}: {value!r} is not one of {list(allowed)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{path}: expected a path, got {type(value).__name__} {value!r}")
        return Path(value)
    if tp is Any:
        return value
    raise ConfigError(f"{path}: unsupported field type {tp!r}")
