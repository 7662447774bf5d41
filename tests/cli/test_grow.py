"""`phitools grow` through real subprocesses: grown checkpoint, --check on stderr, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from phitools.cli import app
from phitools.model.checkpoint import load_checkpoint, save_checkpoint
from phitools.model.phi import Phi, preset_config


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    torch.manual_seed(0)
    m = Phi(preset_config("tiny", vocab_size=71, n_layer=2, d_model=64, n_head=4, d_mlp=128, init_std=0.1))
    return save_checkpoint(tmp_path_factory.mktemp("grow") / "src", m, meta={"steps": 3})


@pytest.mark.slow  # an interpreter start with torch, two model loads
def test_grow_identity_with_check(src, tmp_path, phitools):
    dst = tmp_path / "big"
    res = phitools(
        "grow",
        src,
        "-o",
        dst,
        "--d-model",
        "128",
        "--layers",
        "3",
        "--depth",
        "identity",
        "--noise",
        "0.01",
        "--seed",
        "2",
        "--check",
    )
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout == b""
    line = res.stderr.decode()
    assert (
        "grow --check: max|dlogits| = " in line and "argmax agreement 1.0000" in line and "function-preserving" in line
    )
    diff = float(line.split("max|dlogits| = ")[1].split()[0])
    assert diff <= 1e-5
    model, cfg, meta = load_checkpoint(dst)
    assert (cfg.d_model, cfg.n_head, cfg.d_mlp, cfg.n_layer) == (128, 8, 256, 3)
    assert meta["provenance"]["operation"] == "grow" and meta["provenance"]["params"]["zeroed_layers"] == [2]


@pytest.mark.slow  # an interpreter start with torch
def test_grow_errors_are_one_line(src, tmp_path, phitools):
    res = phitools("grow", src, "-o", tmp_path / "x", "--d-model", "96")
    assert res.returncode == 2 and res.stdout == b""
    err = res.stderr.decode().strip()
    assert err.count("\n") == 0 and "not an integer factor" in err and "--width-mode embed" in err
    assert not (tmp_path / "x").exists()
    # the same through typer's runner (no subprocess): existing output is refused, missing source is named
    (tmp_path / "y").mkdir()
    r = CliRunner().invoke(app, ["grow", str(src), "-o", str(tmp_path / "y"), "--d-model", "128"])
    assert r.exit_code == 1 and "already exists" in r.output
    r = CliRunner().invoke(app, ["grow", str(tmp_path / "missing"), "-o", str(tmp_path / "z"), "--layers", "3"])
    assert r.exit_code == 1 and "no such checkpoint" in r.output


def test_grow_embed_mode_and_overwrite(src, tmp_path):
    dst = tmp_path / "wide"
    r = CliRunner().invoke(
        app,
        [
            "grow",
            str(src),
            "-o",
            str(dst),
            "--d-model",
            "80",
            "--heads",
            "4",
            "--d-mlp",
            "160",
            "--width-mode",
            "embed",
            "--check",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "not function-preserving by design" in r.output
    r = CliRunner().invoke(app, ["grow", str(src), "-o", str(dst), "--layers", "3", "--overwrite"])
    assert r.exit_code == 0, r.output
    cfg = json.loads((dst / "config.json").read_text())["model"]
    assert (cfg["d_model"], cfg["n_layer"]) == (64, 3)
