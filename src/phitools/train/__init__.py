"""Training a Phi model on token shards: what `phitools train` does, from Python.

    from phitools.train import TrainConfig, resolve_config, run

    summary = run(TrainConfig(data="tok/", output="runs/a", model={"n_layer": 4}, max_steps=200, seed=7))
    summary = run(TrainConfig(data="tok/", output="runs/a", model={"n_layer": 4}, max_steps=400, seed=7), resume=True)

    # the command's precedence (defaults < the run's record with resume < a config file < explicit values):
    cfg, sources = resolve_config({"data": "tok/", "output": "runs/b"}, "train.toml")
    run(cfg, sources=sources)

`TrainConfig` (config.py) holds every knob; `run` is loop.py's `train`: the run directory, its manifest and
status, checkpoints, `resume`. The rest: token data (data.py), optimizer and schedule (optim.py), the Trainer
(loop.py), training checkpoints (checkpoint.py), torchrun/DDP/FSDP2 (parallel.py). Importing this package does
not import torch; `run` does.
"""

from __future__ import annotations

from typing import Any

from phitools.train.config import TrainConfig, load_config_file, resolve_config


def run(
    config: TrainConfig,
    *,
    resume: bool = False,
    argv: list[str] | None = None,
    sources: dict[str, Any] | None = None,
    dist: Any = None,
) -> dict[str, Any]:
    """Train (or with `resume`, continue) the run `config` describes; returns the summary (steps, tokens, final
    eval loss, ...). See `phitools.train.loop.train`."""
    from phitools.train.loop import train

    return train(config, resume=resume, argv=argv, sources=sources, dist=dist)


__all__ = ["TrainConfig", "load_config_file", "resolve_config", "run"]
