"""`phitools train`: train a Phi model on token shards (one CPU to many GPUs under torchrun)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from phitools.cli.common import ProgressEvery, Quiet, handle_errors, setup
from phitools.errors import UsageError

# CLI parameter -> TrainConfig key (model shape flags go into the `model` overrides)
_KEYS = {
    "data": "data",
    "output": "output",
    "preset": "preset",
    "init": "init",
    "seq_len": "seq_len",
    "batch_size": "batch_size",
    "micro_batch_size": "micro_batch_size",
    "max_steps": "max_steps",
    "lr": "lr",
    "min_lr": "min_lr",
    "warmup_steps": "warmup_steps",
    "schedule": "schedule",
    "weight_decay": "weight_decay",
    "grad_clip": "grad_clip",
    "eval_every": "eval_every",
    "eval_batches": "eval_batches",
    "eval_fraction": "eval_fraction",
    "save_every": "save_every",
    "keep_checkpoints": "keep_checkpoints",
    "log_every": "log_every",
    "seed": "seed",
    "device": "device",
    "dtype": "dtype",
    "compile": "compile",
    "parallel": "parallel",
    "peak_tflops": "peak_tflops",
}
_MODEL_FLAGS = {"n_layer": "n_layer", "d_model": "d_model", "n_head": "n_head", "d_mlp": "d_mlp"}


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


@handle_errors("train")
def train(
    ctx: typer.Context,
    data: Annotated[
        str | None,
        typer.Option("--data", help="Token directory written by `phitools tokenize -o DIR`.", show_default=False),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            help="Run directory (checkpoints, metrics.jsonl, manifest.json; the final model is a checkpoint at RUN itself).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            help="TOML or JSON file of training options (keys as the flags, with underscores; a [model] table for model fields). Flags override it.",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue the run in -o from its newest checkpoint, exactly; starts fresh if it has none."
        ),
    ] = False,
    preset: Annotated[
        str, typer.Option("--preset", help="Model preset: tiny, small, phi-1-small, phi-1, phi-1.5, phi-2.")
    ] = "tiny",
    init: Annotated[
        str | None,
        typer.Option(
            "--init",
            help="Start from this checkpoint's weights (phitools or Hugging Face Phi directory, e.g. a grown one); recorded as parent.",
            show_default=False,
        ),
    ] = None,
    n_layer: Annotated[
        int | None, typer.Option("--n-layer", help="Override the preset's number of layers.", show_default=False)
    ] = None,
    d_model: Annotated[
        int | None, typer.Option("--d-model", help="Override the preset's width.", show_default=False)
    ] = None,
    n_head: Annotated[
        int | None, typer.Option("--n-head", help="Override the preset's number of heads.", show_default=False)
    ] = None,
    d_mlp: Annotated[
        int | None, typer.Option("--d-mlp", help="Override the preset's MLP size.", show_default=False)
    ] = None,
    model_override: Annotated[
        list[str] | None,
        typer.Option(
            "--model-override",
            help="Any model config field, KEY=VALUE (repeatable), e.g. qk_layernorm=true, vocab_size=8192.",
            show_default=False,
        ),
    ] = None,
    seq_len: Annotated[
        int | None,
        typer.Option(
            "--seq-len",
            help="Tokens per training sequence (default: the model's max_seq_len). May differ from tokenize's --seq-len.",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", help="GLOBAL batch per optimizer step, in sequences, whatever the number of processes."
        ),
    ] = 8,
    micro_batch_size: Annotated[
        int | None,
        typer.Option(
            "--micro-batch-size",
            help="Sequences per device per forward; gradient accumulation = batch / (world size * micro). Default: no accumulation.",
            show_default=False,
        ),
    ] = None,
    max_steps: Annotated[
        int, typer.Option("--max-steps", help="Optimizer steps to train for (the schedule ends here).")
    ] = 200,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 1e-3,
    min_lr: Annotated[
        float | None, typer.Option("--min-lr", help="Final learning rate (default: lr / 10).", show_default=False)
    ] = None,
    warmup_steps: Annotated[
        int | None,
        typer.Option("--warmup-steps", help="Linear warmup steps (default: 5% of --max-steps).", show_default=False),
    ] = None,
    schedule: Annotated[
        str, typer.Option("--schedule", help="Decay after warmup: cosine, linear or constant.")
    ] = "cosine",
    weight_decay: Annotated[
        float, typer.Option("--weight-decay", help="AdamW weight decay (not applied to biases, norms, embeddings).")
    ] = 0.1,
    betas: Annotated[str, typer.Option("--betas", help="AdamW betas, comma-separated.")] = "0.9,0.95",
    grad_clip: Annotated[
        float, typer.Option("--grad-clip", help="Clip the global gradient norm to this (0: off).")
    ] = 1.0,
    eval_every: Annotated[
        int, typer.Option("--eval-every", help="Held-out loss every N steps (0: only at the end).")
    ] = 100,
    eval_batches: Annotated[
        int, typer.Option("--eval-batches", help="Global batches of held-out windows per eval.")
    ] = 10,
    eval_fraction: Annotated[
        float, typer.Option("--eval-fraction", help="Tail fraction of the token stream held out for eval loss.")
    ] = 0.01,
    save_every: Annotated[
        int, typer.Option("--save-every", help="Checkpoint every N steps (0: only at the end).")
    ] = 500,
    keep_checkpoints: Annotated[
        int, typer.Option("--keep-checkpoints", help="Keep only the newest N step checkpoints (0: all).")
    ] = 0,
    log_every: Annotated[int, typer.Option("--log-every", help="Write a metrics.jsonl line every N steps.")] = 1,
    seed: Annotated[
        int, typer.Option("--seed", help="Random seed: model init and data order; the same seed gives the same run.")
    ] = 0,
    device: Annotated[str, typer.Option("--device", help="auto (CUDA when available), cpu, cuda or cuda:N.")] = "auto",
    dtype: Annotated[
        str, typer.Option("--dtype", help="auto (bf16 autocast on CUDA, fp32 on CPU), bf16 or fp32.")
    ] = "auto",
    compile: Annotated[
        bool, typer.Option("--compile/--no-compile", help="torch.compile the model (opt-in; first steps are slow).")
    ] = False,
    parallel: Annotated[
        str, typer.Option("--parallel", help="Under torchrun with several processes: ddp or fsdp (FSDP2 fully_shard).")
    ] = "ddp",
    peak_tflops: Annotated[
        float | None,
        typer.Option(
            "--peak-tflops",
            help="Device peak TFLOP/s for MFU (default: known GPUs in bf16; none on CPU, mfu is null).",
            show_default=False,
        ),
    ] = None,
    quiet: Quiet = False,
    progress_every: ProgressEvery = 30.0,
) -> None:
    """Train a Phi model on token shards; RUN (-o) gets checkpoints, metrics.jsonl and manifest.json.

    --batch-size is the global batch in sequences: the same flags give the same run on one CPU or under
    torchrun on many GPUs (DDP or FSDP2). --resume continues exactly where the newest checkpoint left off.
    At the end RUN itself is a checkpoint of the final model (phitools eval RUN, phitools grow RUN).

    Examples:

        phitools ingest "$STDLIB" | phitools tokenize --train-tokenizer --vocab-size 8192 --seq-len 128 -o tok/
        phitools train --data tok/ --preset tiny --seq-len 128 --batch-size 8 --max-steps 200 --save-every 50 --seed 7 -o runs/a
        phitools train --data tok/ --preset tiny --seq-len 128 --batch-size 8 --max-steps 200 --save-every 50 --seed 7 --resume -o runs/a
        torchrun --nproc-per-node 2 -m phitools train --data tok/ --preset tiny --parallel ddp -o runs/b
    """
    setup(quiet, progress_every)
    # typer vendors its own click: compare the source's name, not the enum class
    given = {
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "") in ("COMMANDLINE", "ENVIRONMENT")
    }
    explicit = {_KEYS[k]: ctx.params[k] for k in _KEYS if k in given}
    if "betas" in given:
        explicit["betas"] = _parse_betas(betas)
    model = {key: ctx.params[k] for k, key in _MODEL_FLAGS.items() if k in given}
    model.update(_parse_overrides(model_override or []))
    if model:
        explicit["model"] = model

    from phitools.train.loop import prepare_config
    from phitools.train.loop import train as run_train

    cfg, sources = prepare_config(explicit, config, resume=resume)
    run_train(cfg, resume=resume, argv=sys.argv, sources=sources)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
