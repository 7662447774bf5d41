"""The training configuration: defaults < recorded run (on --resume) < config file < command-line flags.

`TrainConfig` is the options dataclass of `phitools train`: every field is declared once here with its default,
its checks and its `--help` text, and the command's flags are made from it (cli/train.py). Model shape
overrides live in its `model` dict (a `[model]` table in a TOML file). The resolved config is written to
RUN/train_config.json and into every checkpoint.

From Python (see docs/python-api.md):

    from phitools.train import TrainConfig, resolve_config, run

    summary = run(TrainConfig(data="tok/", output="runs/a", model={"n_layer": 4}, max_steps=200, seed=7))
    cfg, sources = resolve_config({"output": "runs/b"}, config_file="train.toml")  # the command's precedence
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from phitools.errors import ConfigError, UsageError
from phitools.options import check, check_mapping, from_mapping, fspaths, option

SCHEDULES = ("cosine", "linear", "constant")
DTYPES = ("auto", "bf16", "fp32")
PARALLEL = ("ddp", "fsdp")


@dataclass
class TrainConfig:
    """Every knob of a training run. None means "derive it" (see the help texts and docs/train.md)."""

    data: str = option("", "--data", show_default=False, help="Token directory written by `phitools tokenize -o DIR`.")
    output: str = option(
        "",
        "-o",
        "--output",
        show_default=False,
        help="Run directory (checkpoints, metrics.jsonl, manifest.json; the final model is a checkpoint at RUN "
        "itself).",
    )
    preset: str = option("tiny", "--preset", help="Model preset: tiny, small, phi-1-small, phi-1, phi-1.5, phi-2.")
    model: dict = option(
        factory=dict, cli=False, help="Model config overrides, e.g. {'n_layer': 4} (a [model] table in a file)."
    )
    init: str | None = option(
        None,
        "--init",
        show_default=False,
        help="Start from this checkpoint's weights (phitools or Hugging Face Phi directory, e.g. a grown one); "
        "recorded as parent.",
    )
    seq_len: int | None = option(
        None,
        "--seq-len",
        min=1,
        show_default=False,
        help="Tokens per training sequence (default: the model's max_seq_len). May differ from tokenize's --seq-len.",
    )
    batch_size: int = option(
        8,
        "--batch-size",
        min=1,
        help="GLOBAL batch per optimizer step, in sequences, whatever the number of processes.",
    )
    micro_batch_size: int | None = option(
        None,
        "--micro-batch-size",
        min=1,
        show_default=False,
        help="Sequences per device per forward; gradient accumulation = batch / (world size * micro). Default: no "
        "accumulation.",
    )
    max_steps: int = option(200, "--max-steps", min=1, help="Optimizer steps to train for (the schedule ends here).")
    lr: float = option(1e-3, "--lr", help="Peak learning rate.")
    min_lr: float | None = option(None, "--min-lr", show_default=False, help="Final learning rate (default: lr / 10).")
    warmup_steps: int | None = option(
        None, "--warmup-steps", show_default=False, help="Linear warmup steps (default: 5% of --max-steps)."
    )
    schedule: str = option(
        "cosine", "--schedule", choices=SCHEDULES, help="Decay after warmup: cosine, linear or constant."
    )
    weight_decay: float = option(
        0.1, "--weight-decay", min=0, help="AdamW weight decay (not applied to biases, norms, embeddings)."
    )
    betas: list[float] = option(factory=lambda: [0.9, 0.95], cli=False, help="AdamW betas: two numbers in [0, 1).")
    eps: float = option(1e-8, cli=False, help="AdamW epsilon.")
    grad_clip: float = option(1.0, "--grad-clip", min=0, help="Clip the global gradient norm to this (0: off).")
    eval_every: int = option(100, "--eval-every", min=0, help="Held-out loss every N steps (0: only at the end).")
    eval_batches: int = option(10, "--eval-batches", min=1, help="Global batches of held-out windows per eval.")
    eval_fraction: float = option(
        0.01, "--eval-fraction", help="Tail fraction of the token stream held out for eval loss."
    )
    save_every: int = option(500, "--save-every", min=0, help="Checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = option(
        0, "--keep-checkpoints", min=0, help="Keep only the newest N step checkpoints (0: all)."
    )
    log_every: int = option(1, "--log-every", min=1, help="Write a metrics.jsonl line every N steps.")
    seed: int = option(0, "--seed", help="Random seed: model init and data order; the same seed gives the same run.")
    device: str = option("auto", "--device", help="auto (CUDA when available), cpu, cuda or cuda:N.")
    dtype: str = option(
        "auto", "--dtype", choices=DTYPES, help="auto (bf16 autocast on CUDA, fp32 on CPU), bf16 or fp32."
    )
    compile: bool = option(
        False, "--compile/--no-compile", help="torch.compile the model (opt-in; first steps are slow)."
    )
    parallel: str = option(
        "ddp",
        "--parallel",
        choices=PARALLEL,
        help="Under torchrun with several processes: ddp or fsdp (FSDP2 fully_shard).",
    )
    peak_tflops: float | None = option(
        None,
        "--peak-tflops",
        show_default=False,
        help="Device peak TFLOP/s for MFU (default: known GPUs in bf16; none on CPU, mfu is null).",
    )

    def __post_init__(self) -> None:
        fspaths(self, "data", "output", "init")
        if isinstance(self.betas, tuple):
            self.betas = list(self.betas)
        check(self)
        if not (len(self.betas) == 2 and all(0.0 <= float(b) < 1.0 for b in self.betas)):
            raise UsageError(f"--betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.init and self.model:
            raise UsageError(
                "model overrides cannot be combined with --init: the shape comes from the checkpoint",
                hint="grow the checkpoint first (phitools grow) to change its shape",
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}

# Changing these on --resume would make the continuation a different run than the one checkpointed.
TRAJECTORY_KEYS = ("preset", "model", "init", "seq_len", "batch_size", "seed", "eval_fraction")


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A TOML (.toml) or JSON file of TrainConfig keys; a `[model]` table holds model overrides."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config file ({e.strerror})", hint=f"check --config {path}") from None
    try:
        if p.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                try:
                    import tomli as tomllib  # type: ignore[no-redef]
                except ImportError:
                    raise ConfigError(
                        "reading TOML needs Python 3.11+ or the tomli package",
                        hint="pip install tomli, or use a .json config",
                    ) from None
            d = tomllib.loads(raw.decode("utf-8"))
        elif p.suffix.lower() == ".json":
            d = json.loads(raw)
        else:
            raise ConfigError(f"{path}: config files must end in .toml or .json")
    except (ValueError, UnicodeDecodeError) as e:  # tomllib.TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ConfigError(f"{path}: invalid {p.suffix.lstrip('.').upper()}: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: the top level must be a table/object of training options")
    d = {k.replace("-", "_"): v for k, v in d.items()}
    try:  # unknown keys and wrong types name the key, the value and the file; then ranges, choices, rules
        from_mapping(TrainConfig, d, source=str(path))
    except UsageError as e:
        raise ConfigError(f"{path}: {e.message}", hint=e.hint) from None
    if d.get("model"):
        from phitools.model.phi import PhiConfig

        check_mapping(PhiConfig, d["model"], source=f"{path} [model]")
    return d


def resolve(
    explicit: dict[str, Any], file_values: dict[str, Any] | None = None, recorded: dict[str, Any] | None = None
) -> TrainConfig:
    """Merge defaults < recorded (resume) < file < explicit flags into a checked TrainConfig.

    `model` dicts merge key by key in the same order. On resume, a change to a key in TRAJECTORY_KEYS is a
    UsageError: the continuation would not be the run that was checkpointed.
    """
    merged: dict[str, Any] = TrainConfig().to_dict()
    model: dict[str, Any] = {}
    for layer in (recorded or {}, file_values or {}, explicit):
        for k, v in layer.items():
            if k not in FIELDS:
                raise UsageError(f"unknown training option {k!r}")
            if k == "model":
                model.update(v or {})
            else:
                merged[k] = v
    merged["model"] = model
    if recorded:
        check_same_trajectory(merged, recorded)
    cfg = TrainConfig(**merged)
    require(cfg)
    return cfg


def check_same_trajectory(config: dict[str, Any], recorded: dict[str, Any]) -> None:
    """UsageError unless `config` continues the run whose recorded config is `recorded` (TRAJECTORY_KEYS)."""
    changed = [k for k in TRAJECTORY_KEYS if _norm(config.get(k)) != _norm(recorded.get(k))]
    if changed:
        diffs = "; ".join(f"{k}: run has {recorded.get(k)!r}, now {config.get(k)!r}" for k in changed)
        raise UsageError(
            f"--resume with different settings: {diffs}",
            hint="resume with the original settings, or start a new run (-o NEWDIR) with --init RUN/latest",
        )


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v)) if v is not None else None


def require(cfg: TrainConfig) -> None:
    """UsageError unless the config names its token data and its run directory."""
    if not cfg.data:
        raise UsageError("--data is required: a token directory from phitools tokenize -o DIR")
    if not cfg.output:
        raise UsageError("-o/--output is required: the run directory")


def resolve_config(
    explicit: dict[str, Any], config_file: str | os.PathLike | None = None, *, resume: bool = False
) -> tuple[TrainConfig, dict[str, Any]]:
    """The run's TrainConfig as `phitools train` resolves it: defaults < the run's own record (with `resume`,
    from its newest checkpoint) < `config_file` < `explicit` (the flags given; `model` merges key by key).

    Returns (config, sources): what the flags, the file and the record contributed, for the run's manifest.
    """
    file_values = load_config_file(config_file) if config_file else {}
    recorded = None
    if resume:
        output = explicit.get("output") or file_values.get("output")
        if not output:
            raise UsageError("-o/--output is required: the run directory")
        from phitools.train import checkpoint as ckpt

        last = ckpt.latest(Path(output))
        if last is not None:
            recorded = ckpt.read_state(last).get("train_config")
    sources = {
        "flags": explicit,
        "config_file": str(config_file) if config_file else None,
        "config_file_values": file_values,
        "resumed_config": recorded is not None,
    }
    return resolve(explicit, file_values, recorded), sources
