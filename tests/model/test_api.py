"""grow and export from Python (`phitools.model.grow.grow`, `phitools.model.export.export`): the same checkpoints
as the commands, and the same one-line errors when the options are wrong."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from phitools.cli import app
from phitools.errors import UsageError
from phitools.model.checkpoint import save_checkpoint
from phitools.model.export import export
from phitools.model.grow import grow
from phitools.model.options import ExportOptions, GrowOptions
from phitools.model.phi import Phi, preset_config


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    torch.manual_seed(0)
    m = Phi(preset_config("tiny", vocab_size=71, n_layer=2, d_model=64, n_head=4, d_mlp=128, init_std=0.1))
    return save_checkpoint(tmp_path_factory.mktemp("api") / "src", m, extra_files={"tokenizer.json": b"{}"})


def _config(path) -> dict:
    """config.json without the moment it was written."""
    doc = json.loads((path / "config.json").read_text())
    doc["meta"].pop("created")
    return doc


def _cli(*args) -> None:
    r = CliRunner().invoke(app, [*map(str, args)])
    assert r.exit_code == 0, r.output


def test_grow_from_python_is_the_command(src, tmp_path):
    plan, report = grow(GrowOptions(src, tmp_path / "py", d_model=128, n_layer=3, depth="identity", noise=0.01,
                                    seed=2, check=True))  # fmt: skip
    _cli("grow", src, "-o", tmp_path / "cli", "--d-model", "128", "--layers", "3", "--depth", "identity",
         "--noise", "0.01", "--seed", "2", "--check", "-q")  # fmt: skip
    assert plan.zeroed == [2] and report["function_preserving"] and report["max_abs_diff"] <= 1e-5
    assert (tmp_path / "py" / "model.safetensors").read_bytes() == (tmp_path / "cli" / "model.safetensors").read_bytes()
    assert _config(tmp_path / "py") == _config(tmp_path / "cli")


def test_export_from_python_is_the_command(src, tmp_path):
    export(ExportOptions(src, tmp_path / "py", format="hf", dtype="bfloat16"))
    _cli("export", src, "-o", tmp_path / "cli", "--format", "hf", "--dtype", "bfloat16", "-q")
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    meta = [json.loads((tmp_path / d / "phitools.json").read_text()) for d in ("py", "cli")]
    assert meta[0].pop("created") and meta[1].pop("created") and meta[0] == meta[1]
    assert meta[0]["provenance"]["params"] == {"format": "hf", "from": "phitools", "dtype": "bfloat16"}


def test_options_are_checked_when_built(src, tmp_path):
    for make, msg in [
        (lambda: GrowOptions(src, tmp_path / "g", depth="stack"), "unknown depth rule 'stack'"),
        (lambda: GrowOptions(src, tmp_path / "g", width_mode="wide"), "unknown width mode"),
        (lambda: GrowOptions(src, tmp_path / "g", noise=-1.0), "--noise must be at least 0"),
        (lambda: GrowOptions(src, tmp_path / "g", d_model=0), "--d-model must be at least 1"),
        (lambda: GrowOptions(src, tmp_path / "g", n_layer=2.5), "--layers expects integer"),
        (lambda: ExportOptions(src, tmp_path / "e", format="gguf"), "--format hf or --format phitools"),
        (lambda: ExportOptions(src, tmp_path / "e", dtype="int8"), "unknown --dtype 'int8'"),
    ]:
        with pytest.raises(UsageError, match=msg):
            make()
    assert not (tmp_path / "g").exists() and not (tmp_path / "e").exists()
