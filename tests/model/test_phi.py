"""The Phi module: shapes, presets, param counts, KV-cache decoding and padding masks."""

from __future__ import annotations

import pytest
import torch

from phitools.errors import ConfigError, UsageError
from phitools.model.phi import PRESETS, Phi, PhiConfig, param_shapes, preset_config


def tiny(**kw) -> Phi:
    torch.manual_seed(0)
    return Phi(preset_config("tiny", vocab_size=101, **kw)).eval()


def test_forward_shapes_and_dtype():
    m = tiny()
    x = torch.randint(0, 101, (3, 17))
    logits, h = m(x, return_hidden=True)
    assert logits.shape == (3, 17, 101) and logits.dtype == torch.float32
    assert h.shape == (3, 17, 128)
    assert torch.equal(m.hidden_states(x), h)
    assert m(x, last_only=True).shape == (3, 1, 101)
    torch.testing.assert_close(m(x, last_only=True)[:, 0], logits[:, -1])


def test_causal():
    m = tiny()
    x = torch.randint(0, 101, (1, 12))
    y = x.clone()
    y[0, 8:] = (y[0, 8:] + 1) % 101
    torch.testing.assert_close(m(x)[:, :8], m(y)[:, :8])


def test_presets_published_shapes():
    assert set(PRESETS) >= {"tiny", "small", "phi-1-small", "phi-1", "phi-1.5", "phi-2"}
    c = preset_config("phi-1")
    assert (c.n_layer, c.d_model, c.n_head, c.d_mlp, c.vocab_size, c.head_dim, c.rotary_dim) == (
        24,
        2048,
        32,
        8192,
        51200,
        64,
        32,
    )
    c = preset_config("phi-2")
    assert (c.n_layer, c.d_model, c.n_head, c.d_mlp, c.head_dim, c.rotary_dim) == (32, 2560, 32, 10240, 80, 32)
    c = preset_config("phi-1-small")
    assert (c.n_layer, c.d_model, c.n_head, c.d_mlp) == (20, 1024, 16, 4096)

    # parameter counts from shapes alone (no allocation): phi-1 is 1.42B, phi-1-small ~357M with both embeddings
    def n(cfg):
        return sum(torch.Size(s).numel() for s in param_shapes(cfg).values())

    assert 1.40e9 < n(preset_config("phi-1")) < 1.43e9
    assert 0.34e9 < n(preset_config("phi-1-small")) < 0.37e9
    assert 2.7e9 < n(preset_config("phi-2")) < 2.8e9


def test_overrides_and_errors():
    c = preset_config("tiny", n_layer="3", qk_layernorm="true", init_std=0.01)
    assert c.n_layer == 3 and c.qk_layernorm is True and c.init_std == 0.01
    with pytest.raises(UsageError, match="valid presets: tiny"):
        preset_config("phi-9")
    with pytest.raises(UsageError, match="valid fields"):
        preset_config("tiny", n_layers=3)
    with pytest.raises(ConfigError, match="not divisible"):
        preset_config("tiny", n_head=5)
    with pytest.raises(ConfigError, match="expects int"):
        preset_config("tiny", n_layer="two")
    assert PhiConfig.from_dict(c.to_dict()) == c


def test_param_count_and_flops():
    m = tiny(qk_layernorm=True)
    shapes = param_shapes(m.config)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == shapes
    assert m.num_params() == sum(p.numel() for p in m.parameters())
    assert m.num_params() - m.num_params(exclude_embeddings=True) == 101 * 128
    c = m.config
    assert m.flops_per_token(64) == 6 * m.num_params(True) + 12 * c.n_layer * c.n_head * c.head_dim * 64


def test_init():
    m = tiny()
    assert torch.all(m.h[0].attn.q_proj.bias == 0) and torch.all(m.ln_f.weight == 1)
    assert abs(m.h[0].mlp.fc1.weight.std().item() - 0.02) < 0.002


@pytest.mark.parametrize("qk", [False, True])
def test_kv_cache_greedy_equals_full_forward(qk):
    m = tiny(qk_layernorm=qk)
    x = torch.randint(0, 101, (2, 7))
    cache = m.new_kv_cache(2, 20)
    with torch.no_grad():
        logits = m(x, kv_cache=cache)
        seq = x
        for _ in range(6):
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], 1)
            logits = m(nxt, kv_cache=cache)
            torch.testing.assert_close(logits[:, -1], m(seq)[:, -1], atol=1e-5, rtol=1e-5)
        # a chunked prefill (several tokens at an offset) equals the full forward too
        cache.reset()
        m(seq[:, :5], kv_cache=cache)
        torch.testing.assert_close(m(seq[:, 5:], kv_cache=cache), m(seq)[:, 5:], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="KV cache full"):
        m(torch.zeros(2, 30, dtype=torch.long), kv_cache=cache)


def test_left_padded_batch_matches_unpadded_rows():
    m = tiny()
    a = torch.randint(1, 101, (1, 9))
    b = torch.randint(1, 101, (1, 5))
    batch = torch.cat([a, torch.cat([torch.zeros(1, 4, dtype=torch.long), b], 1)])
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :4] = 0
    with torch.no_grad():
        full = m(batch, attention_mask=mask)
        torch.testing.assert_close(full[1, 4:], m(b)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(full[0], m(a)[0], atol=1e-5, rtol=1e-5)
        # the same through the cache, then 3 decoding steps
        cache = m.new_kv_cache(2, 16)
        out = m(batch, kv_cache=cache, attention_mask=mask)
        torch.testing.assert_close(out[1, -1], m(b)[0, -1], atol=1e-5, rtol=1e-5)
        sa, sb = a, b
        for _ in range(3):
            nxt = out[:, -1].argmax(-1, keepdim=True)
            sa, sb = torch.cat([sa, nxt[:1]], 1), torch.cat([sb, nxt[1:]], 1)
            out = m(nxt, kv_cache=cache)
            torch.testing.assert_close(out[0, -1], m(sa)[0, -1], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out[1, -1], m(sb)[0, -1], atol=1e-5, rtol=1e-5)
    assert not torch.isnan(full).any()


def test_dropout_only_in_training():
    m = tiny(resid_pdrop=0.5, embd_pdrop=0.5, attn_pdrop=0.5)
    x = torch.randint(0, 101, (2, 8))
    torch.testing.assert_close(m(x), m(x))
    m.train()
    assert not torch.allclose(m(x), m(x))
