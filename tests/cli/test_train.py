"""`phitools train` through the command line: the documented invocations (scaled down), resume, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import run_phitools
from typer.testing import CliRunner

from phitools.cli import app

SMALL = ["--preset", "tiny", "--n-layer", "1", "--d-model", "32", "--n-head", "2", "--d-mlp", "64"]
ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tok(stdlib_small, tmp_path_factory):
    """ingest | tokenize through a real pipe: the token directory train reads."""
    d = tmp_path_factory.mktemp("train_cli")
    py = sys.executable
    p = subprocess.run(
        f"{py} -m phitools ingest {stdlib_small} | "
        f"{py} -m phitools tokenize --train-tokenizer --vocab-size 512 --seq-len 64 -o {d}/tok/",
        shell=True,
        capture_output=True,
    )
    assert p.returncode == 0, p.stderr.decode()
    return d / "tok"


def _invoke(*args):
    return CliRunner().invoke(app, ["train", *map(str, args)])


def _train_lines(run):
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if '"train"' in ln]


@pytest.mark.slow
def test_documented_commands_then_resume(tok, tmp_path):
    run = tmp_path / "runs" / "a"
    args = [
        "train",
        "--data",
        tok,
        *SMALL,
        "--seq-len",
        "32",
        "--batch-size",
        "4",
        "--max-steps",
        "6",
        "--save-every",
        "3",
        "--seed",
        "7",
        "-o",
        run,
    ]
    p = run_phitools(*args, env=ENV)
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout == b""  # nothing but data on stdout, and train writes no data stream
    assert sorted(x.name for x in (run / "checkpoints").iterdir()) == ["step-000003", "step-000006"]
    lines = _train_lines(run)
    assert [r["step"] for r in lines] == [1, 2, 3, 4, 5, 6]
    assert {"step", "loss", "lr", "tokens", "tokens_per_s", "grad_norm", "mfu"} <= set(lines[0]) and lines[0][
        "mfu"
    ] is None
    assert lines[-1]["tokens"] == 6 * 4 * 32

    again = _invoke(*args[1:])  # the same run again without --resume: refused, nothing touched
    assert again.exit_code == 2 and "--resume" in again.stderr and len(again.stderr.splitlines()) == 1

    longer = [a if a != "6" else "9" for a in args[1:]] + ["--resume"]
    r = _invoke(*longer)  # in-process this time: the subprocess above already covered the real entry point
    assert r.exit_code == 0, r.stderr
    assert [r["step"] for r in _train_lines(run)] == list(range(1, 10))
    man = json.loads((run / "manifest.json").read_text())
    assert man["train"]["resumed_from"].endswith("step-000006") and man["train"]["status"] == "complete"
    before = (run / "manifest.json").read_bytes()
    assert _invoke(*longer).exit_code == 0  # resuming a finished run: nothing to do, nothing rewritten
    assert (run / "manifest.json").read_bytes() == before


def test_config_file_with_flag_overrides_and_init(tok, tmp_path):
    cfgf = tmp_path / "train.toml"
    cfgf.write_text(
        "max_steps = 2\nlr = 0.003\nbatch_size = 2\nseq_len = 16\neval_batches = 1\n"
        "[model]\nn_layer = 1\nd_model = 32\nn_head = 2\nd_mlp = 64\n"
    )
    r = _invoke("--data", tok, "--config", cfgf, "--lr", "0.002", "-o", tmp_path / "a")
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "a" / "train_config.json").read_text())
    assert (rec["lr"], rec["max_steps"], rec["model"]["n_layer"]) == (0.002, 2, 1)
    man = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert man["train"]["config"]["lr"] == 0.002
    src = man["train"]["sources"]
    assert src["config_file"] == str(cfgf) and src["config_file_values"]["lr"] == 0.003 and src["flags"]["lr"] == 0.002

    r = _invoke(
        "--data",
        tok,
        "--init",
        tmp_path / "a",
        "--seq-len",
        "16",
        "--batch-size",
        "2",
        "--max-steps",
        "1",
        "-o",
        tmp_path / "b",
    )
    assert r.exit_code == 0, r.output
    from phitools.model.checkpoint import load_checkpoint

    _, _, meta = load_checkpoint(tmp_path / "b")
    assert meta["provenance"]["parent"]["path"] == str((tmp_path / "a").resolve())
    assert meta["provenance"]["parent"]["meta"]["operation"] == "train"


def test_usage_errors_exit_2(tok, tmp_path):
    r = _invoke(
        "--data", tok, *SMALL, "--seq-len", "16", "--batch-size", "6", "--micro-batch-size", "4", "-o", tmp_path / "a"
    )
    assert r.exit_code == 2 and "not divisible" in r.stderr
    r = _invoke("--data", tok, "--init", tmp_path / "x", "--n-layer", "3", "-o", tmp_path / "b")
    assert r.exit_code == 2 and "--init" in r.stderr
    r = _invoke("--data", tmp_path / "nothing", *SMALL, "-o", tmp_path / "c")
    assert r.exit_code == 1 and "not a token directory" in r.stderr
    assert not (tmp_path / "a" / "metrics.jsonl").exists()


def test_nan_weights_stop_with_a_clear_error(tok, tmp_path):
    from phitools.model.checkpoint import save_checkpoint
    from phitools.model.phi import Phi, preset_config

    model = Phi(preset_config("tiny", n_layer=1, d_model=32, n_head=2, d_mlp=64, vocab_size=512))
    with torch.no_grad():
        model.h[0].attn.q_proj.weight.fill_(float("nan"))
    save_checkpoint(tmp_path / "bad", model)
    r = _invoke(
        "--data",
        tok,
        "--init",
        tmp_path / "bad",
        "--seq-len",
        "16",
        "--batch-size",
        "2",
        "--max-steps",
        "3",
        "-o",
        tmp_path / "run",
    )
    assert r.exit_code == 1
    assert "loss is nan at step 1" in r.stderr and "weights were not updated" in r.stderr
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert man["train"]["status"] == "failed"
    assert not (tmp_path / "run" / "config.json").exists()
