"""AdamW parameter groups and the learning-rate schedule."""

from __future__ import annotations

import math

import pytest

from phitools.errors import UsageError
from phitools.model.phi import Phi, preset_config
from phitools.train.optim import Schedule, build_optimizer, param_groups


def test_no_decay_on_biases_norms_embeddings():
    model = Phi(preset_config("tiny", n_layer=2, vocab_size=300, qk_layernorm=True))
    decay, no_decay = param_groups(model, 0.1)
    dn, nn_ = set(decay["names"]), set(no_decay["names"])
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert "wte.weight" in nn_
    assert {
        "h.0.ln.weight",
        "h.0.ln.bias",
        "ln_f.weight",
        "h.1.attn.q_ln.weight",
        "lm_head.bias",
        "h.0.mlp.fc1.bias",
    } <= nn_
    assert {"h.0.attn.q_proj.weight", "h.1.mlp.fc2.weight", "h.0.attn.dense.weight", "lm_head.weight"} <= dn
    names = [n for n, _ in model.named_parameters()]
    assert sorted(dn | nn_) == sorted(names) and not (dn & nn_)  # every parameter exactly once
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


def test_warmup_then_cosine_to_min_lr():
    s = Schedule(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=100, kind="cosine")
    lrs = [s(i) for i in range(100)]
    assert lrs[0] == pytest.approx(1e-4)  # (0 + 1) / 10 of the peak: never a step at lr 0
    assert lrs[9] == pytest.approx(1e-3)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert s(55) == pytest.approx(1e-4 + 0.5 * 9e-4 * (1 + math.cos(math.pi * 0.5)))
    assert s(100) == pytest.approx(1e-4) and s(500) == pytest.approx(1e-4)


def test_linear_and_constant():
    lin = Schedule(lr=1.0, min_lr=0.0, warmup_steps=0, max_steps=10, kind="linear")
    assert [lin(i) for i in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])
    const = Schedule(lr=0.5, min_lr=0.0, warmup_steps=2, max_steps=10, kind="constant")
    assert [const(i) for i in (0, 1, 2, 9)] == pytest.approx([0.25, 0.5, 0.5, 0.5])


def test_bad_schedule_is_a_usage_error():
    with pytest.raises(UsageError):
        Schedule(lr=1.0, min_lr=0.0, warmup_steps=0, max_steps=10, kind="exp")
    with pytest.raises(UsageError):
        Schedule(lr=1.0, min_lr=2.0, warmup_steps=0, max_steps=10)
