"""`phitools export` through real subprocesses: phitools -> HF (loads in transformers) -> phitools."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from phitools.cli import app
from phitools.model.checkpoint import load_checkpoint, open_weights, save_checkpoint
from phitools.model.phi import Phi, preset_config


@pytest.mark.slow  # three interpreter starts with torch + transformers
def test_export_round_trip(tmp_path, phitools):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    m = Phi(
        preset_config("tiny", vocab_size=71, n_layer=2, d_model=64, n_head=4, d_mlp=128, partial_rotary_factor=0.25)
    ).eval()
    src = save_checkpoint(tmp_path / "src", m, meta={"steps": 9}, extra_files={"tokenizer.json": b'{"t": 1}'})

    res = phitools("export", src, "-o", tmp_path / "hf", "--format", "hf")
    assert res.returncode == 0 and res.stdout == b"", res.stderr.decode()
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (
        cfg["model_type"] == "phi"
        and cfg["architectures"] == ["PhiForCausalLM"]
        and cfg["partial_rotary_factor"] == 0.25
    )
    assert (tmp_path / "hf" / "tokenizer.json").read_bytes() == b'{"t": 1}'
    hf = transformers.PhiForCausalLM.from_pretrained(tmp_path / "hf").eval()
    x = torch.randint(0, 71, (2, 16))
    with torch.no_grad():
        assert (hf(x).logits - m(x)).abs().max().item() <= 1e-5

    res = phitools("export", tmp_path / "hf", "-o", tmp_path / "back", "--format", "phitools", "--dtype", "bfloat16")
    assert res.returncode == 0, res.stderr.decode()
    w = open_weights(tmp_path / "back")
    assert {s.dtype for s in w.specs.values()} == {torch.bfloat16}
    back, _, meta = load_checkpoint(tmp_path / "back")
    assert torch.equal(back.lm_head.weight, m.lm_head.weight.to(torch.bfloat16).float())
    assert meta["provenance"]["operation"] == "export" and meta["provenance"]["parent"]["kind"] == "hf"
    assert meta["steps"] == 9  # carried through the HF directory (phitools.json)


def test_export_usage_errors(tmp_path):
    r = CliRunner().invoke(app, ["export", str(tmp_path), "-o", str(tmp_path / "x"), "--format", "gguf"])
    assert r.exit_code == 2 and "--format hf or --format phitools" in r.output
    r = CliRunner().invoke(app, ["export", str(tmp_path), "-o", str(tmp_path / "x"), "--dtype", "int8"])
    assert r.exit_code == 2 and "unknown --dtype" in r.output
    r = CliRunner().invoke(app, ["export", str(tmp_path), "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "config.json: missing" in r.output
