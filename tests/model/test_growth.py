"""grow: function-preserving width tiling and identity depth, interpolation, embed mode, streaming to disk."""

from __future__ import annotations

import json

import pytest
import torch

from phitools.errors import UsageError
from phitools.model.checkpoint import load_checkpoint, save_checkpoint
from phitools.model.grow import compare_logits, grow_checkpoint, grow_model, interpolate_layers, plan_grow
from phitools.model.phi import Phi, preset_config


def source(qk: bool = False, **kw) -> Phi:
    """A small model with non-trivial weights everywhere (biases and LayerNorms too) and sizeable logits."""
    torch.manual_seed(0)
    cfg = dict(vocab_size=89, n_layer=3, d_model=64, n_head=4, d_mlp=128, init_std=0.08, qk_layernorm=qk)
    cfg.update(kw)
    m = Phi(preset_config("tiny", **cfg)).eval()
    with torch.no_grad():
        for _name, p in m.named_parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.2)
    return m


def assert_same_function(a: Phi, b: Phi) -> dict:
    r = compare_logits(a, b, batch=3, seq_len=40, seed=1)
    assert r["max_abs_logit"] > 1.0  # the check is not vacuous
    assert r["max_abs_diff"] <= 1e-5, r
    assert r["argmax_agree"] == 1.0, r
    return r


@pytest.mark.parametrize("qk", [False, True])
@pytest.mark.parametrize(
    "grow",
    [
        dict(d_model=128),  # x2 width, heads 4 -> 8
        dict(d_model=192, d_mlp=512),  # x3 width, x4 mlp
        dict(n_layer=5, depth="identity"),  # depth only
        dict(d_model=128, n_layer=7, depth="identity"),  # both
        dict(
            d_model=128, n_layer=4, depth="identity", noise=0.05, seed=3
        ),  # symmetry-breaking noise keeps the function
    ],
)
def test_tiling_and_identity_depth_preserve_logits(qk, grow):
    src = source(qk)
    plan = plan_grow(src.config, **grow)
    assert plan.function_preserving
    big = grow_model(src, plan)
    assert big.config.head_dim == src.config.head_dim
    assert big.num_params() > src.num_params() or grow.get("n_layer")
    assert_same_function(src, big)


def test_noise_breaks_symmetry_between_copies():
    src = source()
    plain = grow_model(src, plan_grow(src.config, d_model=128))
    noisy = grow_model(src, plan_grow(src.config, d_model=128, noise=0.1, seed=1))
    w0, w1 = plain.h[0].attn.q_proj.weight, noisy.h[0].attn.q_proj.weight
    assert torch.equal(w0[:, :64], w0[:, 64:])  # plain tiling: identical input blocks
    assert not torch.allclose(w1[:, :64], w1[:, 64:])
    torch.testing.assert_close(w1[:, :64] + w1[:, 64:], w0[:, :64] + w0[:, 64:])  # zero-sum across blocks
    again = grow_model(src, plan_grow(src.config, d_model=128, noise=0.1, seed=1))
    assert torch.equal(again.h[0].attn.q_proj.weight, w1)  # seeded
    assert not torch.equal(
        grow_model(src, plan_grow(src.config, d_model=128, noise=0.1, seed=2)).h[0].attn.q_proj.weight, w1
    )


def test_head_tiling_new_head_copies_old():
    src = source()
    big = grow_model(src, plan_grow(src.config, d_model=128))
    H, hd = 4, 16
    q = big.h[1].attn.q_proj.weight.view(2 * H, hd, 128)
    for j in range(H):
        assert torch.equal(q[j + H], q[j])
    torch.testing.assert_close(q[0][:, :64] * 2, src.h[1].attn.q_proj.weight[:hd])


def test_interpolation_rule():
    m = interpolate_layers(20, 24)
    assert m == [0, 1, 2, 3, 3, 4, 5, 6, 7, 8, 8, 9, 10, 11, 12, 13, 13, 14, 15, 16, 17, 18, 18, 19]
    assert sorted({i for i in m if m.count(i) == 2}) == [3, 8, 13, 18]
    assert interpolate_layers(24, 24) == list(range(24))
    assert interpolate_layers(2, 3) == [0, 1, 1]
    plan = plan_grow(preset_config("phi-1-small"), d_model=2048, n_layer=24, depth="identity")
    assert plan.zeroed == [4, 10, 16, 22]
    assert (plan.dst.n_layer, plan.dst.d_model, plan.dst.n_head, plan.dst.d_mlp) == (24, 2048, 32, 8192)
    assert plan.dst == preset_config("phi-1")


def test_interpolate_depth_copies_layers():
    src = source()
    big = grow_model(src, plan_grow(src.config, n_layer=5))  # map [0, 1, 1, 2, 2]
    assert torch.equal(big.h[2].mlp.fc2.weight, src.h[1].mlp.fc2.weight)
    assert torch.equal(big.h[4].attn.dense.bias, src.h[2].attn.dense.bias)
    ident = grow_model(src, plan_grow(src.config, n_layer=5, depth="identity"))
    assert torch.count_nonzero(ident.h[2].mlp.fc2.weight) == 0 and torch.count_nonzero(ident.h[2].attn.dense.bias) == 0
    assert torch.equal(ident.h[2].mlp.fc1.weight, src.h[1].mlp.fc1.weight)


def test_embed_mode_non_integer_width():
    src = source(qk=True)
    with pytest.raises(UsageError, match="not an integer factor"):
        plan_grow(src.config, d_model=80)
    plan = plan_grow(src.config, d_model=80, n_head=4, d_mlp=160, width_mode="embed", seed=1)  # head_dim 16 -> 20
    assert not plan.function_preserving
    assert plan.dst.rotary_dim == src.config.rotary_dim == 8 and plan.dst.head_dim == 20
    big = grow_model(src, plan)
    assert torch.equal(big.wte.weight[:, :64], src.wte.weight)
    assert torch.equal(big.h[0].mlp.fc1.weight[:128, :64], src.h[0].mlp.fc1.weight)
    q_new = big.h[0].attn.q_proj.weight.view(4, 20, 80)
    q_old = src.h[0].attn.q_proj.weight.view(4, 16, 64)
    assert torch.equal(q_new[:, :16, :64], q_old)  # head by head
    assert torch.all(big.h[0].attn.q_proj.bias.view(4, 20)[:, 16:] == 0)
    assert torch.all(big.ln_f.weight[64:] == 1)
    assert big.h[0].mlp.fc1.weight[128:].std() > 0  # random init outside the copied block
    r = compare_logits(src, big)
    assert r["max_abs_diff"] > 1e-3  # documented: not function-preserving


def test_plan_errors():
    c = source().config
    with pytest.raises(UsageError, match="needs 8 heads, not 6"):
        plan_grow(c, d_model=128, n_head=6)
    with pytest.raises(UsageError, match="grow only grows"):
        plan_grow(c, d_model=32)
    with pytest.raises(UsageError, match="grow only grows"):
        plan_grow(c, n_layer=2)
    with pytest.raises(UsageError, match="integer factor"):
        plan_grow(c, d_model=128, d_mlp=192)
    with pytest.raises(UsageError, match="--noise applies"):
        plan_grow(c, d_model=80, n_head=4, width_mode="embed", noise=0.1)
    with pytest.raises(UsageError, match="depth"):
        plan_grow(c, n_layer=4, depth="stack")


def test_grow_checkpoint_streams_records_provenance_and_checks(tmp_path):
    src = source()
    save_checkpoint(
        tmp_path / "src",
        src,
        meta={"steps": 100, "tokens_seen": 51200, "data": {"tokenizer_sha256": "abc"}},
        extra_files={"tokenizer.json": b"{}"},
    )
    plan, report = grow_checkpoint(
        tmp_path / "src", tmp_path / "big", d_model=128, n_layer=4, depth="identity", noise=0.01, seed=4, check=True
    )
    assert report["max_abs_diff"] <= 1e-5 and report["function_preserving"]
    big, cfg, meta = load_checkpoint(tmp_path / "big")
    assert (cfg.d_model, cfg.n_layer, cfg.n_head) == (128, 4, 8)
    prov = meta["provenance"]
    assert (
        prov["operation"] == "grow" and prov["params"]["noise"] == 0.01 and prov["params"]["layer_map"] == [0, 1, 2, 2]
    )
    assert prov["parent"]["path"] == str((tmp_path / "src").resolve()) and prov["parent"]["meta"]["steps"] == 100
    assert (
        prov["parent"]["model_sha256"]
        == json.loads((tmp_path / "src" / "config.json").read_text())["files"]["model.safetensors"]["sha256"]
    )
    assert meta["data"] == {"tokenizer_sha256": "abc"} and meta["parent_tokens_seen"] == 51200
    assert (tmp_path / "big" / "tokenizer.json").read_bytes() == b"{}"
    assert_same_function(src, big)


def test_grow_from_hf_directory(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.PhiForCausalLM(
        transformers.PhiConfig(
            vocab_size=89,
            hidden_size=64,
            num_attention_heads=4,
            intermediate_size=128,
            num_hidden_layers=2,
            initializer_range=0.1,
        )
    ).eval()
    hf.save_pretrained(tmp_path / "hf")
    plan, report = grow_checkpoint(
        tmp_path / "hf", tmp_path / "big", d_model=128, n_layer=3, depth="identity", check=True
    )
    assert report["max_abs_diff"] <= 1e-5
    x = torch.randint(0, 89, (2, 12))
    big, _, meta = load_checkpoint(tmp_path / "big")
    with torch.no_grad():
        assert (big(x) - hf(x).logits).abs().max().item() <= 1e-5
    assert meta["provenance"]["parent"]["kind"] == "hf"
