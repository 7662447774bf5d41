"""Options: typed dataclasses, the single source of every tool's defaults, validation and help text.

A tool's options are a dataclass whose fields are declared with `option(...)`:

    @dataclass
    class LabelOptions:
        rubric: str = option("code", help="code, web, or a template FILE containing {text}.")
        votes: int = option(1, min=1, help="Samples per record and per --model.")

Python callers build the dataclass and the library checks it (`check(opts)`: types, ranges, choices; a
tool's `__post_init__` adds its own rules and raises `UsageError`). The command line declares its flags from
the same fields (`phitools.cli.declare`), so a default or a help text is written once. `from_mapping` builds
options from a TOML/JSON table: a wrong key or type is a one-line `ConfigError` naming the key, the value and
the file.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from phitools.errors import ConfigError, UsageError

T = TypeVar("T")


def option(
    default: Any = dataclasses.MISSING,
    *flags: str,
    help: str = "",  # noqa: A002 - the word every CLI library uses
    factory: Any = dataclasses.MISSING,
    min: float | None = None,  # noqa: A002
    max: float | None = None,  # noqa: A002
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    panel: str | None = None,
    argument: bool = False,
    show_default: bool | str = True,
    envvar: str | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field with what the command line needs to declare it as a flag.

    `flags` are the flag names (default: `--field-name`); `argument` makes it positional; `cli=False` keeps
    it out of the command line (set from Python or by the command itself). `min`/`max`/`choices` are
    checked by `check` for Python callers as well as shown in `--help`.
    """
    meta = {
        "help": help,
        "flags": flags,
        "min": min,
        "max": max,
        "choices": choices,
        "metavar": metavar,
        "panel": panel,
        "argument": argument,
        "show_default": show_default,
        "envvar": envvar,
        "cli": cli,
    }
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def option_like(cls: type, name: str, **changes: Any) -> Any:
    """A field declared like `cls`'s field `name` (flags, help, checks, panel), with `changes` to its
    `option(...)` arguments (e.g. `default=3`, `cli=False`): a tool that shares a flag with another options
    class, or changes only its default, reuses the declaration instead of repeating it."""
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        raise TypeError(f"{cls.__name__} has no option {name!r}")
    kw = {k: v for k, v in f.metadata.items() if k != "flags"}
    if "default" not in changes and "factory" not in changes:
        if f.default_factory is not dataclasses.MISSING:
            kw["factory"] = f.default_factory
        else:
            kw["default"] = f.default
    kw.update(changes)
    default = kw.pop("default", dataclasses.MISSING)
    return option(default, *f.metadata.get("flags", ()), **kw)


def hints(cls: type) -> dict[str, Any]:
    """The resolved type of every field of an options dataclass."""
    return typing.get_type_hints(cls)


def flag_name(f: dataclasses.Field) -> str:
    """The main command-line spelling of a field (`--max-chars` for `max_chars`)."""
    flags = f.metadata.get("flags") or ()
    longs = [x for x in flags if x.startswith("--")]
    return (longs or list(flags) or ["--" + f.name.replace("_", "-")])[0]


# ---- type checking ------------------------------------------------------------------------------------
def _is_optional(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def type_name(tp: Any) -> str:
    """A short human name of a type: `int`, `list of str`, `one of 'a', 'b'`, `number or none`."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        names = [type_name(a) for a in get_args(tp) if a is not type(None)]
        return " or ".join(names) + (" or none" if _is_optional(tp) else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return "list" + (f" of {type_name(args[0])}" if args else "")
    if origin is dict or tp is dict:
        return "table"
    if tp is float:
        return "number"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "integer"
    if tp is str:
        return "string"
    return getattr(tp, "__name__", str(tp))


def conforms(tp: Any, value: Any) -> bool:
    """Whether `value` is of type `tp` (ints count as floats; bools are not numbers)."""
    if tp is Any:
        return True
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(conforms(a, value) for a in get_args(tp))
    if tp is type(None):
        return value is None
    if origin is Literal:
        return value in get_args(tp)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return not args or all(conforms(args[0], v) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def check(opts: Any) -> None:
    """Check an options dataclass: every field's type, `min`/`max` and `choices`. Raises `UsageError`."""
    types_ = hints(type(opts))
    for f in dataclasses.fields(opts):
        value = getattr(opts, f.name)
        where = flag_name(f) if f.metadata.get("cli", True) else f.name
        if not conforms(types_[f.name], value):
            raise UsageError(f"{where} expects {type_name(types_[f.name])}, got {value!r}")
        if value is None or isinstance(value, bool):
            continue
        lo, hi, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
        if lo is not None and isinstance(value, (int, float)) and value < lo:
            raise UsageError(f"{where} must be at least {lo:g}, got {value!r}")
        if hi is not None and isinstance(value, (int, float)) and value > hi:
            raise UsageError(f"{where} must be at most {hi:g}, got {value!r}")
        if choices and value not in choices:
            raise UsageError(f"{where} must be one of {', '.join(choices)}, got {value!r}")


def check_mapping(cls: type, values: dict, *, source: str) -> None:
    """Check a TOML/JSON table against the fields of dataclass `cls` without building it: an unknown key or a
    value of the wrong type is a one-line `ConfigError` naming the key, the value and `source`."""
    types_ = hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"{source}: unknown key {key!r}", hint="known keys: " + ", ".join(names))
        if not conforms(types_[key], value):
            raise ConfigError(
                f"{source}: {key} = {value!r} should be {type_name(types_[key])}",
                hint="fix the value's type in the file (TOML: quotes make a string)",
            )


def from_mapping(cls: type[T], values: dict, *, source: str, base: T | None = None) -> T:
    """Options of `cls` from a TOML/JSON table (keys are field names): unknown keys and values of the wrong
    type are a one-line `ConfigError` naming the key, the value and `source`. Fields not in `values` come
    from `base` (or the defaults)."""
    check_mapping(cls, values, source=source)
    if base is not None:
        return dataclasses.replace(base, **values)
    return cls(**values)


def fspaths(opts: Any, *names: str) -> None:
    """Let Python callers pass `pathlib.Path`s: the named fields become strings, as the command line gives them
    (call it from `__post_init__` before `check`)."""
    for name in names:
        value = getattr(opts, name)
        if isinstance(value, os.PathLike):
            setattr(opts, name, os.fspath(value))


__all__ = [
    "option",
    "option_like",
    "check",
    "check_mapping",
    "conforms",
    "from_mapping",
    "fspaths",
    "hints",
    "flag_name",
    "type_name",
]
