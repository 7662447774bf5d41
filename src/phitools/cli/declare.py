"""Commands declared from options dataclasses: a flag is written once, in the library's options.

    @command("decontam")
    def decontam(io: IOOptions, opts: DecontamOptions, run: RunOptions) -> None:
        '''Flag (or --drop) records that overlap a benchmark ... (the docstring is the --help)'''
        stats = pipeline.run(Decontam(opts), io, progress=console.progress)

Every parameter whose annotation is an options dataclass becomes that dataclass's fields as typer flags (in
order, named and documented by each field's `option(...)` metadata); the command receives the built dataclass
instances. Other parameters (a `typer.Context`, an extra flag declared the typer way) pass through. Building a
dataclass runs its validation, so a bad value is the same one-line usage error from Python and from the CLI.
`RunOptions` (--quiet, --progress-every) is applied before the body runs. Errors become one-line messages in
`handle_errors`, as for every command.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from phitools.cli.common import handle_errors, setup
from phitools.options import hints, option
from phitools.runtime.progress import DEFAULT_EVERY


@dataclass
class RunOptions:
    """How a command talks on stderr."""

    quiet: bool = option(False, "--quiet", "-q", help="No progress or info on stderr (errors still print).")
    progress_every: float = option(
        DEFAULT_EVERY,
        "--progress-every",
        metavar="SECONDS",
        envvar="PHITOOLS_PROGRESS_EVERY",
        min=0,
        help="When stderr is not a terminal (Slurm, nohup, a log file): one progress line every SECONDS (timestamp, "
        "counts, rate, ETA); 0 for none. On a terminal a progress bar shows instead.",
    )


def typer_parameter(f: dataclasses.Field, tp: Any) -> inspect.Parameter:
    """The typer parameter declaring one options field."""
    m = f.metadata
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:
        default = f.default_factory()
    else:
        default = inspect.Parameter.empty
    common: dict[str, Any] = {"help": m.get("help") or None, "show_default": m.get("show_default", True)}
    if m.get("metavar"):
        common["metavar"] = m["metavar"]
    if m.get("panel"):
        common["rich_help_panel"] = m["panel"]
    if m.get("argument"):
        info = typer.Argument(**common)
    else:
        flags = m.get("flags") or ("--" + f.name.replace("_", "-"),)
        for key in ("min", "max", "envvar"):
            if m.get(key) is not None:
                common[key] = m[key]
        info = typer.Option(*flags, **common)
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[tp, info])


def _groups(fn: Callable) -> tuple[list[inspect.Parameter], dict[str, type]]:
    sig = inspect.signature(fn)
    resolved = typing.get_type_hints(fn, include_extras=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, type] = {}
    seen: dict[str, str] = {}
    for p in sig.parameters.values():
        tp = resolved.get(p.name, p.annotation)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            groups[p.name] = tp
            types_ = hints(tp)
            for f in dataclasses.fields(tp):
                if not f.metadata.get("cli", True):
                    continue
                if f.name in seen:
                    raise TypeError(f"{fn.__name__}: option {f.name!r} is declared by {seen[f.name]} and {tp.__name__}")
                seen[f.name] = tp.__name__
                params.append(typer_parameter(f, types_[f.name]))
        else:
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=tp))
    return params, groups


def command(tool: str) -> Callable[[Callable], Callable]:
    """Declare a command from its options dataclasses (see the module docstring); `tool` names it in errors."""

    def deco(fn: Callable) -> Callable:
        params, groups = _groups(fn)
        # typer requires no defaultless parameter after one with a default: positional arguments come first
        params.sort(key=lambda p: p.default is not inspect.Parameter.empty)

        @functools.wraps(fn)
        def wrapper(**kwargs: Any) -> Any:
            built = {}
            for name, cls in groups.items():
                kw = {
                    f.name: kwargs.pop(f.name)
                    for f in dataclasses.fields(cls)
                    if f.name in kwargs and f.metadata.get("cli", True)  # cli=False: not a flag of this dataclass
                }
                built[name] = cls(**kw)
            run = next((v for v in built.values() if isinstance(v, RunOptions)), None)
            if run is not None:
                setup(run.quiet, run.progress_every)
            return fn(**built, **kwargs)

        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # typer must read the declared signature, not the body's
        return handle_errors(tool)(wrapper)

    return deco


__all__ = ["command", "RunOptions", "typer_parameter"]
