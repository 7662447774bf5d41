"""Training from Python (`phitools.train`): the same run as the command for the same seed, and the same checks
(config-file types, ranges, resume rules) as one-line errors from Python and from the command line."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest

from phitools.errors import ConfigError, UsageError
from phitools.train import TrainConfig, load_config_file, resolve_config, run
from phitools.train.loop import read_metrics

SMALL = {"n_layer": 1, "d_model": 32, "n_head": 2, "d_mlp": 64}
SHAPE_FLAGS = ["--n-layer", "1", "--d-model", "32", "--n-head", "2", "--d-mlp", "64"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PHITOOLS_NO_PROGRESS": "1"}
# what differs between two runs of the same training besides the numbers: where, when, how it was started
VOLATILE = {"argv", "created", "wall_s", "elapsed_s", "output", "final", "run", "sources", "tokens_per_s", "mfu"}


def _phitools(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "phitools", *map(str, args)], env=ENV, capture_output=True, text=True, timeout=600
    )


def _stable(obj):
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in VOLATILE}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def _config(token_dir, out, **kw) -> TrainConfig:
    base = dict(
        data=token_dir,  # a Path: Python callers need not convert
        output=out,
        model=dict(SMALL),
        seq_len=16,
        batch_size=4,
        max_steps=4,
        save_every=2,
        eval_every=2,
        eval_batches=1,
        betas=(0.85, 0.95),
        seed=5,
    )
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.slow  # one interpreter start with torch
def test_python_run_is_the_command_run(token_dir, tmp_path):
    cli, py = tmp_path / "cli", tmp_path / "py"
    p = _phitools(
        "train", "--data", token_dir, *SHAPE_FLAGS, "--seq-len", "16", "--batch-size", "4", "--max-steps", "4",
        "--save-every", "2", "--eval-every", "2", "--eval-batches", "1", "--betas", "0.85,0.95", "--seed", "5",
        "-o", cli, "-q",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    summary = run(_config(token_dir, py), argv=["python"])
    assert summary["step"] == 4 and summary["tokens"] == 4 * 4 * 16

    for name in ("model.safetensors", "state.safetensors", "tokenizer.json"):
        assert (py / name).read_bytes() == (cli / name).read_bytes(), name
    keep = ("type", "step", "loss", "lr", "tokens", "grad_norm", "eval_loss")
    for kind in ("train", "eval"):
        a, b = read_metrics(py / "metrics.jsonl", kind), read_metrics(cli / "metrics.jsonl", kind)
        assert [{k: r.get(k) for k in keep} for r in a] == [{k: r.get(k) for k in keep} for r in b] and a
    recorded = [json.loads((d / "train_config.json").read_text()) for d in (py, cli)]
    assert recorded[0]["betas"] == [0.85, 0.95] and _stable(recorded[0]) == _stable(recorded[1])
    man = [json.loads((d / "manifest.json").read_text()) for d in (py, cli)]
    assert man[0]["train"]["status"] == "complete" and _stable(man[0]) == _stable(man[1])
    assert man[1]["train"]["sources"]["flags"]["betas"] == [0.85, 0.95]


def test_resume_rules_hold_from_python(token_dir, tmp_path):
    cfg = _config(token_dir, tmp_path / "r", max_steps=2)
    run(cfg, argv=["python"])
    with pytest.raises(UsageError, match="already holds a training run"):
        run(cfg, argv=["python"])  # nothing is overwritten without resume
    with pytest.raises(UsageError, match=r"--resume with different settings: seed: run has 5, now 6"):
        run(dataclasses.replace(cfg, seed=6, max_steps=4), resume=True)
    assert run(dataclasses.replace(cfg, max_steps=3), resume=True, argv=["python"])["step"] == 3
    assert [r["step"] for r in read_metrics(tmp_path / "r" / "metrics.jsonl")] == [1, 2, 3]


def test_options_are_checked_when_built():
    for kw, msg in [
        ({"batch_size": 0}, "--batch-size must be at least 1, got 0"),
        ({"max_steps": 1.5}, "--max-steps expects integer, got 1.5"),
        ({"weight_decay": "0.1"}, "--weight-decay expects number, got '0.1'"),
        ({"dtype": "fp16"}, "--dtype must be one of auto, bf16, fp32, got 'fp16'"),
        ({"schedule": "step"}, "--schedule must be one of cosine, linear, constant"),
        ({"betas": [0.9]}, r"--betas must be two numbers in \[0, 1\)"),
        ({"init": "ckpt", "model": {"n_layer": 2}}, "cannot be combined with --init"),
    ]:
        with pytest.raises(UsageError, match=msg):
            TrainConfig(data="d", output="o", **kw)
    with pytest.raises(UsageError, match="--data is required"):
        run(TrainConfig(output="o"))


BAD_VALUES = [
    ('weight_decay = "0.1"\n', "weight_decay = '0.1' should be number"),
    ("max_steps = 1.5\n", "max_steps = 1.5 should be integer"),
    ('[model]\nn_layer = "4"\n', "[model]: n_layer = '4' should be integer"),
]


@pytest.mark.parametrize("text,msg", BAD_VALUES)
def test_config_values_of_the_wrong_type_are_one_line_errors(tmp_path, text, msg):
    f = tmp_path / "train.toml"
    f.write_text("lr = 0.002\n" + text)
    with pytest.raises(ConfigError) as e:
        load_config_file(f)
    assert str(e.value).startswith(f"{f}") and msg in str(e.value)
    with pytest.raises(ConfigError, match="should be"):
        resolve_config({"data": "d", "output": str(tmp_path / "o")}, f)
    p = _phitools("train", "--data", tmp_path, "--config", f, "-o", tmp_path / "run")
    err = p.stderr.strip()
    assert p.returncode == 2 and p.stdout == "" and "\n" not in err and "Traceback" not in err
    assert err.startswith(f"phitools train: error: {f}") and msg in err
    assert not (tmp_path / "run").exists()


def test_config_values_outside_their_range_name_the_file(tmp_path):
    f = tmp_path / "train.json"
    f.write_text(json.dumps({"batch_size": 0}))
    with pytest.raises(ConfigError, match=f"^{re.escape(str(f))}: --batch-size must be at least 1"):
        load_config_file(f)
    f.write_text(json.dumps({"model": {"n_layers": 4}}))
    with pytest.raises(ConfigError, match=r"\[model\]: unknown key 'n_layers'"):
        load_config_file(f)
