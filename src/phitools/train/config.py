"""The training configuration: defaults < recorded run (on --resume) < config file < command-line flags.

One flat table of knobs (`TrainConfig`); model shape overrides live in its `model` dict (a `[model]` table in
a TOML file). The resolved config is written to RUN/train_config.json and into every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phitools.errors import ConfigError, UsageError


@dataclass
class TrainConfig:
    """Every knob of a training run. None means "derive it" (see the field comments and docs/train.md)."""

    data: str = ""  # token directory (phitools tokenize -o DIR)
    output: str = ""  # run directory
    preset: str = "tiny"  # model preset (ignored with init)
    model: dict = field(default_factory=dict)  # model config overrides, e.g. {"n_layer": 4}
    init: str | None = None  # start from this checkpoint (phitools or Hugging Face Phi dir)
    seq_len: int | None = None  # None: the model's max_seq_len
    batch_size: int = 8  # GLOBAL batch, in sequences, per optimizer step
    micro_batch_size: int | None = None  # per-device sequences per forward; None: batch_size / world_size
    max_steps: int = 200
    lr: float = 1e-3
    min_lr: float | None = None  # None: lr / 10
    warmup_steps: int | None = None  # None: 5% of max_steps
    schedule: str = "cosine"  # cosine | linear | constant
    weight_decay: float = 0.1
    betas: list = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0: no clipping (the norm is still logged)
    eval_every: int = 100  # 0: only at the end
    eval_batches: int = 10  # global batches of held-out windows per eval
    eval_fraction: float = 0.01  # tail of the token stream held out for eval
    save_every: int = 500  # 0: only at the end
    keep_checkpoints: int = 0  # keep only the newest N step checkpoints; 0 keeps all
    log_every: int = 1
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    compile: bool = False
    parallel: str = "ddp"  # how to use several processes under torchrun: ddp | fsdp
    peak_tflops: float | None = None  # device peak for MFU; None: known GPUs only (CPU: mfu null)

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
    unknown = sorted(set(d) - FIELDS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown option(s) {', '.join(unknown)}", hint=f"valid options: {', '.join(sorted(FIELDS))}"
        )
    if "model" in d and not isinstance(d["model"], dict):
        raise ConfigError(f"{path}: 'model' must be a table of model config overrides, e.g. [model] n_layer = 4")
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
        changed = [k for k in TRAJECTORY_KEYS if _norm(merged.get(k)) != _norm(recorded.get(k))]
        if changed:
            diffs = "; ".join(f"{k}: run has {recorded.get(k)!r}, now {merged.get(k)!r}" for k in changed)
            raise UsageError(
                f"--resume with different settings: {diffs}",
                hint="resume with the original settings, or start a new run (-o NEWDIR) with --init RUN/latest",
            )
    cfg = TrainConfig(**merged)
    check(cfg)
    return cfg


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v)) if v is not None else None


def check(cfg: TrainConfig) -> None:
    """Raise UsageError for values that can never work (shape checks needing the world size come later)."""
    if not cfg.data:
        raise UsageError("--data is required: a token directory from phitools tokenize -o DIR")
    if not cfg.output:
        raise UsageError("-o/--output is required: the run directory")
    for k in ("batch_size", "max_steps", "eval_batches", "log_every"):
        if int(getattr(cfg, k)) < 1:
            raise UsageError(f"--{k.replace('_', '-')} must be >= 1, got {getattr(cfg, k)}")
    for k in ("eval_every", "save_every", "keep_checkpoints"):
        if int(getattr(cfg, k)) < 0:
            raise UsageError(f"--{k.replace('_', '-')} must be >= 0, got {getattr(cfg, k)}")
    if cfg.micro_batch_size is not None and cfg.micro_batch_size < 1:
        raise UsageError(f"--micro-batch-size must be >= 1, got {cfg.micro_batch_size}")
    if cfg.seq_len is not None and cfg.seq_len < 1:
        raise UsageError(f"--seq-len must be >= 1, got {cfg.seq_len}")
    if not (
        isinstance(cfg.betas, (list, tuple)) and len(cfg.betas) == 2 and all(0.0 <= float(b) < 1.0 for b in cfg.betas)
    ):
        raise UsageError(f"--betas must be two numbers in [0, 1), got {cfg.betas!r}")
    if cfg.weight_decay < 0 or cfg.grad_clip < 0:
        raise UsageError("--weight-decay and --grad-clip must be >= 0")
    if cfg.dtype not in ("auto", "bf16", "fp32"):
        raise UsageError(f"--dtype must be auto, bf16 or fp32, got {cfg.dtype!r}")
    if cfg.init and cfg.model:
        raise UsageError(
            "model overrides cannot be combined with --init: the shape comes from the checkpoint",
            hint="grow the checkpoint first (phitools grow) to change its shape",
        )
