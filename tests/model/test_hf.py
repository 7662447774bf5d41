"""Hugging Face interop: transformers' PhiForCausalLM (random weights) <-> phitools, logits to 1e-5."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")  # test-only dependency

from phitools.errors import CheckpointError  # noqa: E402
from phitools.model.checkpoint import load_checkpoint, open_weights  # noqa: E402
from phitools.model.export import export_checkpoint  # noqa: E402
from phitools.model.hf import config_from_hf  # noqa: E402

SHAPES = {
    "phi-1-like": dict(
        hidden_size=64, num_attention_heads=4, intermediate_size=256, partial_rotary_factor=0.5, qk_layernorm=False
    ),
    "phi-2-like": dict(
        hidden_size=160, num_attention_heads=2, intermediate_size=320, partial_rotary_factor=0.4, qk_layernorm=True
    ),
}


def hf_model(shape: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.PhiConfig(
        vocab_size=97, num_hidden_layers=2, max_position_embeddings=128, bos_token_id=5, eos_token_id=6, **SHAPES[shape]
    )
    m = transformers.PhiForCausalLM(cfg).eval()
    with torch.no_grad():  # HF init leaves biases and LayerNorms at 0/1: randomise everything so the test sees them
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.05 + (1.0 if p.dim() == 1 and torch.all(p == 1) else 0.0))
    return m


def hf_logits(m, x):
    with torch.no_grad():
        return m(x).logits


@pytest.mark.parametrize("shape", list(SHAPES))
def test_hf_to_phitools_to_hf(shape, tmp_path):
    hf = hf_model(shape)
    hf.save_pretrained(tmp_path / "hf")
    x = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(1))
    ref = hf_logits(hf, x)

    # our model on HF's weights (read straight from the HF directory) computes HF's logits
    ours, cfg, meta = load_checkpoint(tmp_path / "hf")
    assert cfg.rotary_dim == int(cfg.head_dim * SHAPES[shape]["partial_rotary_factor"])
    with torch.no_grad():
        assert (ours(x) - ref).abs().max().item() <= 1e-5
    assert meta["provenance"]["operation"] == "import"

    # HF -> phitools -> HF: tensors bit-identical, config the same, logits equal
    export_checkpoint(tmp_path / "hf", tmp_path / "pt", fmt="phitools")
    export_checkpoint(tmp_path / "pt", tmp_path / "hf2", fmt="hf")
    back = transformers.PhiForCausalLM.from_pretrained(tmp_path / "hf2").eval()
    assert (hf_logits(back, x) - ref).abs().max().item() <= 1e-5
    sd_a, sd_b = hf.state_dict(), back.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
    c1 = json.loads((tmp_path / "hf" / "config.json").read_text())
    c2 = json.loads((tmp_path / "hf2" / "config.json").read_text())
    assert c2["architectures"] == ["PhiForCausalLM"] and c2["model_type"] == "phi"
    assert (c2["bos_token_id"], c2["eos_token_id"]) == (5, 6)
    assert config_from_hf(c1) == config_from_hf(c2)
    assert (tmp_path / "hf2" / "phitools.json").is_file()


def test_sharded_hf_directory(tmp_path):
    hf = hf_model("phi-1-like")
    hf.save_pretrained(tmp_path / "hf", max_shard_size="50KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    ours, _, _ = load_checkpoint(tmp_path / "hf")
    x = torch.randint(0, 97, (1, 16))
    with torch.no_grad():
        assert (ours(x) - hf_logits(hf, x)).abs().max().item() <= 1e-5


def test_unsupported_hf_configs(tmp_path):
    base = {
        "model_type": "phi",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 1,
        "intermediate_size": 128,
    }
    with pytest.raises(CheckpointError, match="grouped-query"):
        config_from_hf({**base, "num_key_value_heads": 2})
    with pytest.raises(CheckpointError, match="old remote-code Phi"):
        config_from_hf({**base, "model_type": "phi-msft"})
    with pytest.raises(CheckpointError, match="not a Phi model"):
        config_from_hf({**base, "model_type": "llama"})
    with pytest.raises(CheckpointError, match="rope scaling"):
        config_from_hf({**base, "rope_scaling": {"type": "linear", "factor": 2.0}})
    (tmp_path / "config.json").write_text(json.dumps(base))
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        open_weights(tmp_path)
