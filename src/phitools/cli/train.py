"""`phitools train`: train a Phi model on token shards (one CPU to many GPUs under torchrun)."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

import typer

from phitools import train as training
from phitools.cli.declare import RunOptions, command
from phitools.errors import UsageError
from phitools.options import option
from phitools.train import TrainConfig


@dataclass
class ModelShape:
    """Flags that override the preset's shape: they go into TrainConfig.model."""

    n_layer: int | None = option(None, "--n-layer", show_default=False, help="Override the preset's number of layers.")
    d_model: int | None = option(None, "--d-model", show_default=False, help="Override the preset's width.")
    n_head: int | None = option(None, "--n-head", show_default=False, help="Override the preset's number of heads.")
    d_mlp: int | None = option(None, "--d-mlp", show_default=False, help="Override the preset's MLP size.")


@dataclass
class TrainFlags:
    """The command line's own flags: where settings come from, and text spellings of TrainConfig fields."""

    model_override: list[str] | None = option(
        None,
        "--model-override",
        show_default=False,
        help="Any model config field, KEY=VALUE (repeatable), e.g. qk_layernorm=true, vocab_size=8192.",
    )
    betas: str = option("0.9,0.95", "--betas", help="AdamW betas, comma-separated.")
    config: str | None = option(
        None,
        "--config",
        show_default=False,
        help="TOML or JSON file of training options (keys as the flags, with underscores; a [model] table for "
        "model fields). Flags override it.",
    )
    resume: bool = option(
        False,
        "--resume",
        help="Continue the run in -o from its newest checkpoint, exactly; starts fresh if it has none.",
    )


def _parse_overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(
                f"--model-override expects KEY=VALUE, got {item!r}", hint="e.g. --model-override qk_layernorm=true"
            )
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _parse_betas(text: str) -> list[float]:
    try:
        b = [float(x) for x in text.split(",")]
    except ValueError:
        b = []
    if len(b) != 2:
        raise UsageError(f"--betas expects two comma-separated numbers, got {text!r}", hint="e.g. --betas 0.9,0.95")
    return b


def _given(ctx: typer.Context) -> set[str]:
    """The parameters set on the command line (or from the environment), not left at their defaults."""
    # typer vendors its own click: compare the source's name, not the enum class
    return {n for n in ctx.params if getattr(ctx.get_parameter_source(n), "name", "") in ("COMMANDLINE", "ENVIRONMENT")}


@command("train")
def train(ctx: typer.Context, cfg: TrainConfig, shape: ModelShape, flags: TrainFlags, run: RunOptions) -> None:
    """Train a Phi model on token shards; RUN (-o) gets checkpoints, metrics.jsonl and manifest.json.

    --batch-size is the global batch in sequences: the same flags give the same run on one CPU or under
    torchrun on many GPUs (DDP or FSDP2). --resume continues exactly where the newest checkpoint left off.
    At the end RUN itself is a checkpoint of the final model (phitools eval RUN, phitools grow RUN).

    Examples:

        phitools ingest "$STDLIB" | phitools tokenize --train-tokenizer --vocab-size 8192 --seq-len 128 -o tok/
        phitools train --data tok/ --preset tiny --seq-len 128 --batch-size 8 --max-steps 200 --save-every 50 --seed 7 -o runs/a
        phitools train --data tok/ --preset tiny --seq-len 128 --batch-size 8 --max-steps 200 --save-every 50 --seed 7 --resume -o runs/a
        torchrun --nproc-per-node 2 -m phitools train --data tok/ --preset tiny --parallel ddp -o runs/b
    """  # noqa: E501 - examples are shown as written
    # Only the flags given count: they override the config file and, with --resume, the run's own record.
    given = _given(ctx)
    explicit = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in given}
    if "betas" in given:
        explicit["betas"] = _parse_betas(flags.betas)
    model = {f.name: getattr(shape, f.name) for f in dataclasses.fields(shape) if f.name in given}
    model.update(_parse_overrides(flags.model_override or []))
    if model:
        explicit["model"] = model
    resolved, sources = training.resolve_config(explicit, flags.config, resume=flags.resume)
    training.run(resolved, resume=flags.resume, argv=sys.argv, sources=sources)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
