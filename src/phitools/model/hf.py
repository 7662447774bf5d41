"""Hugging Face Phi interop: parameter names and config.json, both ways, without loss.

A Hugging Face Phi directory is `config.json` (model_type "phi", architectures ["PhiForCausalLM"]) and
`model.safetensors` (or sharded `model-0000k-of-0000n.safetensors` + `model.safetensors.index.json`).
Our module has the same maths and tensor shapes, so conversion renames keys and maps config fields:

    model.embed_tokens.weight                  <-> wte.weight
    model.layers.{i}.input_layernorm.*         <-> h.{i}.ln.*
    model.layers.{i}.self_attn.{q,k,v}_proj.*  <-> h.{i}.attn.{q,k,v}_proj.*
    model.layers.{i}.self_attn.dense.*         <-> h.{i}.attn.dense.*
    model.layers.{i}.self_attn.{q,k}_layernorm.* <-> h.{i}.attn.{q,k}_ln.*
    model.layers.{i}.mlp.fc{1,2}.*             <-> h.{i}.mlp.fc{1,2}.*
    model.final_layernorm.*                    <-> ln_f.*
    lm_head.*                                  <-> lm_head.*

HF config fields we do not model (bos/eos ids, torch_dtype, ...) are kept in the checkpoint's metadata
(`meta.hf_config`) on import and written back on export, so HF -> phitools -> HF gives the same config.
Reading HF directories is model/checkpoint.py's; writing them, model/export.py's.
"""

from __future__ import annotations

import re
from typing import Any

from phitools.errors import CheckpointError, ConfigError
from phitools.model.phi import PhiConfig

_TO_HF = [
    (r"^wte\.", "model.embed_tokens."),
    (r"^h\.(\d+)\.ln\.", r"model.layers.\1.input_layernorm."),
    (r"^h\.(\d+)\.attn\.q_ln\.", r"model.layers.\1.self_attn.q_layernorm."),
    (r"^h\.(\d+)\.attn\.k_ln\.", r"model.layers.\1.self_attn.k_layernorm."),
    (r"^h\.(\d+)\.attn\.", r"model.layers.\1.self_attn."),
    (r"^h\.(\d+)\.mlp\.", r"model.layers.\1.mlp."),
    (r"^ln_f\.", "model.final_layernorm."),
    (r"^lm_head\.", "lm_head."),
]
_FROM_HF = [
    (r"^model\.embed_tokens\.", "wte."),
    (r"^model\.layers\.(\d+)\.input_layernorm\.", r"h.\1.ln."),
    (r"^model\.layers\.(\d+)\.self_attn\.q_layernorm\.", r"h.\1.attn.q_ln."),
    (r"^model\.layers\.(\d+)\.self_attn\.k_layernorm\.", r"h.\1.attn.k_ln."),
    (r"^model\.layers\.(\d+)\.self_attn\.", r"h.\1.attn."),
    (r"^model\.layers\.(\d+)\.mlp\.", r"h.\1.mlp."),
    (r"^model\.final_layernorm\.", "ln_f."),
    (r"^lm_head\.", "lm_head."),
]
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # the same function (tanh approximation)

# HF config keys that our config owns (everything else passes through meta.hf_config)
_OWNED = {
    "model_type",
    "architectures",
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "resid_pdrop",
    "embd_pdrop",
    "attention_dropout",
    "hidden_act",
    "max_position_embeddings",
    "initializer_range",
    "layer_norm_eps",
    "tie_word_embeddings",
    "rope_theta",
    "partial_rotary_factor",
    "rope_parameters",
    "rope_scaling",
    "qk_layernorm",
}


def _rename(name: str, rules) -> str | None:
    for pat, rep in rules:
        new, n = re.subn(pat, rep, name)
        if n:
            return new
    return None


def to_hf_name(name: str) -> str:
    """phitools parameter name -> HF PhiForCausalLM name."""
    new = _rename(name, _TO_HF)
    if new is None:
        raise CheckpointError(f"no Hugging Face name for parameter {name!r}")
    return new


def from_hf_name(name: str) -> str | None:
    """HF PhiForCausalLM name -> phitools name; None for tensors we do not use (e.g. rotary inv_freq buffers)."""
    if name.endswith("rotary_emb.inv_freq"):
        return None
    return _rename(name, _FROM_HF)


def is_hf_phi_config(d: dict) -> bool:
    return d.get("model_type") == "phi"


def config_from_hf(d: dict, *, source: str = "config.json") -> PhiConfig:
    """PhiConfig from a HF Phi config.json dict; CheckpointError for what our model cannot represent."""
    mt = d.get("model_type")
    if mt != "phi":
        hint = (
            "this is the old remote-code Phi format; download a current revision (HF transformers >= 4.37 layout)"
            if mt in ("phi-msft", "mixformer-sequential")
            else "only Phi (model_type 'phi', PhiForCausalLM) is supported"
        )
        raise CheckpointError(f"{source}: model_type {mt!r} is not a Phi model", hint=hint)
    heads = d.get("num_attention_heads", 32)
    hidden = d.get("hidden_size", 2048)
    kv = d.get("num_key_value_heads")
    if kv not in (None, heads):
        raise CheckpointError(
            f"{source}: grouped-query attention (num_key_value_heads={kv} != {heads}) is not supported"
        )
    if d.get("head_dim") not in (None, hidden // heads):
        raise CheckpointError(
            f"{source}: head_dim {d['head_dim']} != hidden_size / num_attention_heads is not supported"
        )
    act = d.get("hidden_act", "gelu_new")
    if act not in _TANH_GELUS:
        raise CheckpointError(f"{source}: hidden_act {act!r} is not supported (Phi uses gelu_new)")
    if d.get("tie_word_embeddings"):
        raise CheckpointError(f"{source}: tied embeddings are not supported (Phi's lm_head is untied)")
    rope = dict(d.get("rope_parameters") or {})
    scaling = d.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default" or (scaling and scaling.get("rope_type", scaling.get("type")) not in (None, "default")):
        raise CheckpointError(
            f"{source}: rope scaling ({rope_type if rope_type != 'default' else scaling}) is not supported"
        )
    fields = dict(
        vocab_size=d.get("vocab_size", 51200),
        n_layer=d.get("num_hidden_layers", 24),
        d_model=hidden,
        n_head=heads,
        d_mlp=d.get("intermediate_size", 8192),
        partial_rotary_factor=rope.get("partial_rotary_factor", d.get("partial_rotary_factor", 0.5)),
        rope_theta=rope.get("rope_theta", d.get("rope_theta", 10000.0)),
        max_seq_len=d.get("max_position_embeddings", 2048),
        layer_norm_eps=d.get("layer_norm_eps", 1e-5),
        qk_layernorm=bool(d.get("qk_layernorm", False)),
        resid_pdrop=d.get("resid_pdrop", 0.0),
        embd_pdrop=d.get("embd_pdrop", 0.0),
        attn_pdrop=d.get("attention_dropout") or 0.0,
        init_std=d.get("initializer_range", 0.02),
    )
    try:
        return PhiConfig.from_dict(fields)
    except ConfigError as e:
        raise CheckpointError(f"{source}: {e}") from None


def config_to_hf(cfg: PhiConfig, *, extra: dict | None = None, dtype: str = "float32") -> dict[str, Any]:
    """A HF Phi config.json dict for cfg. `extra`: other HF keys to keep (from meta.hf_config on import)."""
    out: dict[str, Any] = {"architectures": ["PhiForCausalLM"], "model_type": "phi"}
    out.update({k: v for k, v in (extra or {}).items() if k not in _OWNED and k not in ("dtype", "torch_dtype")})
    out.update(
        {
            "vocab_size": cfg.vocab_size,
            "hidden_size": cfg.d_model,
            "intermediate_size": cfg.d_mlp,
            "num_hidden_layers": cfg.n_layer,
            "num_attention_heads": cfg.n_head,
            "num_key_value_heads": cfg.n_head,
            "hidden_act": "gelu_new",
            "max_position_embeddings": cfg.max_seq_len,
            "initializer_range": cfg.init_std,
            "layer_norm_eps": cfg.layer_norm_eps,
            "resid_pdrop": cfg.resid_pdrop,
            "embd_pdrop": cfg.embd_pdrop,
            "attention_dropout": cfg.attn_pdrop,
            "qk_layernorm": cfg.qk_layernorm,
            "tie_word_embeddings": False,
            # transformers >= 5 reads rope_parameters; 4.x reads the two top-level keys: write both
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": cfg.rope_theta,
                "partial_rotary_factor": cfg.partial_rotary_factor,
            },
            "rope_theta": cfg.rope_theta,
            "partial_rotary_factor": cfg.partial_rotary_factor,
            "dtype": dtype,
            "torch_dtype": dtype,
        }
    )
    out.setdefault("bos_token_id", None)
    out.setdefault("eos_token_id", None)
    return out


def hf_extra(d: dict) -> dict[str, Any]:
    """The HF config keys we do not model, kept in meta so export restores them."""
    return {
        k: v
        for k, v in d.items()
        if k not in _OWNED and not k.startswith("_") and k not in ("dtype", "torch_dtype", "transformers_version")
    }


META_FILE = "phitools.json"  # our metadata inside an exported HF directory (HF tools ignore it)
