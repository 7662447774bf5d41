"""The Phi model (phi-1, phi-1.5, phi-2): config, presets and one single-device PyTorch module.

The maths and parameter layout are those of Hugging Face's `PhiForCausalLM`, so weights convert both ways
without loss (model/hf.py renames keys, nothing else):

    x = wte(idx)                                         # (B, T, C)
    for each layer:  u = ln(x);  x = x + attn(u) + mlp(u)  # one LayerNorm, parallel branches
    logits = lm_head(ln_f(x))                            # untied, with bias

Attention: q/k/v/dense with biases, optional LayerNorm on q and k (over head_dim), rotary position
embeddings on the first `rotary_dim = int(head_dim * partial_rotary_factor)` dims of each head
(rotate-half pairing, as HF), `F.scaled_dot_product_attention`. MLP: fc1 -> gelu (tanh) -> fc2.
No training code here.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from phitools.errors import ConfigError, UsageError


@dataclass
class PhiConfig:
    """Shape and regularisation of a Phi model. `d_mlp` is the MLP's intermediate size."""

    vocab_size: int = 51200
    n_layer: int = 24
    d_model: int = 2048
    n_head: int = 32
    d_mlp: int = 8192
    partial_rotary_factor: float = 0.5
    rope_theta: float = 10000.0
    max_seq_len: int = 2048
    layer_norm_eps: float = 1e-5
    qk_layernorm: bool = False
    resid_pdrop: float = 0.0
    embd_pdrop: float = 0.0
    attn_pdrop: float = 0.0
    init_std: float = 0.02

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.partial_rotary_factor)

    def validate(self) -> PhiConfig:
        """Raise ConfigError if the shapes do not fit together; returns self."""
        for name in ("vocab_size", "n_layer", "d_model", "n_head", "d_mlp", "max_seq_len"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"model config: {name} must be a positive integer, got {v!r}")
        if self.d_model % self.n_head:
            raise ConfigError(
                f"model config: d_model {self.d_model} is not divisible by n_head {self.n_head}",
                hint="pick n_head so that head_dim = d_model / n_head is an integer",
            )
        if not 0.0 <= self.partial_rotary_factor <= 1.0:
            raise ConfigError(
                f"model config: partial_rotary_factor must be in [0, 1], got {self.partial_rotary_factor}"
            )
        if self.rotary_dim % 2:
            raise ConfigError(
                f"model config: rotary_dim = int(head_dim {self.head_dim} * partial_rotary_factor "
                f"{self.partial_rotary_factor}) = {self.rotary_dim} must be even"
            )
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"model config: {name} must be in [0, 1), got {getattr(self, name)}")
        if self.rope_theta <= 0 or self.layer_norm_eps <= 0 or self.init_std < 0:
            raise ConfigError("model config: rope_theta and layer_norm_eps must be > 0 and init_std >= 0")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhiConfig:
        """Build from a dict (e.g. checkpoint config.json 'model'); unknown keys are a ConfigError."""
        unknown = sorted(set(d) - set(FIELDS))
        if unknown:
            raise ConfigError(
                f"model config: unknown field(s) {', '.join(unknown)}", hint=f"valid fields: {', '.join(FIELDS)}"
            )
        return cls(**{k: _coerce(k, v) for k, v in d.items()}).validate()


FIELDS: dict[str, type] = typing.get_type_hints(PhiConfig)  # field name -> int | float | bool


def _coerce(name: str, v: Any) -> Any:
    """Coerce a value (possibly a CLI string) to the field's type; ConfigError when it cannot."""
    t = FIELDS[name]
    try:
        if t is bool:
            if isinstance(v, str):
                if v.lower() in ("1", "true", "yes", "on"):
                    return True
                if v.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(v)
            return bool(v)
        if t is int:
            if isinstance(v, float) and not v.is_integer():
                raise ValueError(v)
            return int(v)
        return float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"model config: {name} expects {t.__name__}, got {v!r}") from None


# Published shapes. phi-1 / phi-1.5 / phi-2 follow the Hugging Face configs of microsoft/phi-1, phi-1_5, phi-2;
# phi-1-small follows the phi-1 paper (20 layers, d 1024, MLP 4096, 16 heads of 64, same rotary dim 32).
# tiny and small are for CPU experiments and tests.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        vocab_size=8192, n_layer=2, d_model=128, n_head=4, d_mlp=512, partial_rotary_factor=0.5, max_seq_len=256
    ),
    "small": dict(
        vocab_size=8192, n_layer=6, d_model=256, n_head=8, d_mlp=1024, partial_rotary_factor=0.5, max_seq_len=512
    ),
    "phi-1-small": dict(
        vocab_size=51200, n_layer=20, d_model=1024, n_head=16, d_mlp=4096, partial_rotary_factor=0.5, max_seq_len=2048
    ),
    "phi-1": dict(
        vocab_size=51200, n_layer=24, d_model=2048, n_head=32, d_mlp=8192, partial_rotary_factor=0.5, max_seq_len=2048
    ),
    "phi-1.5": dict(
        vocab_size=51200, n_layer=24, d_model=2048, n_head=32, d_mlp=8192, partial_rotary_factor=0.5, max_seq_len=2048
    ),
    "phi-2": dict(
        vocab_size=51200,
        n_layer=32,
        d_model=2560,
        n_head=32,
        d_mlp=10240,
        partial_rotary_factor=0.4,
        max_seq_len=2048,
        resid_pdrop=0.1,
    ),
}


def preset_config(name: str, **overrides: Any) -> PhiConfig:
    """The config of a named preset with any field overridden (values may be strings, e.g. from a CLI)."""
    if name not in PRESETS:
        raise UsageError(f"unknown model preset {name!r}", hint=f"valid presets: {', '.join(PRESETS)}")
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise UsageError(
            f"unknown model config field(s) {', '.join(unknown)}", hint=f"valid fields: {', '.join(FIELDS)}"
        )
    d = dict(PRESETS[name])
    d.update({k: v for k, v in overrides.items() if v is not None})
    return PhiConfig.from_dict(d)


# ---- the module ------------------------------------------------------------------------------------------


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the last dim: pairs dim i with dim i + R/2 (the HF / GPT-NeoX layout)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotary_cos_sin(
    pos: torch.Tensor, rotary_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin for integer positions pos (B, T) -> each (B, 1, T, R), computed in float32 then cast."""
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, rotary_dim, 2, dtype=torch.float, device=pos.device) / rotary_dim)
    )  # (R/2,)
    freqs = pos[..., None].float() * inv_freq  # (B, T, R/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, R)
    return emb.cos().to(dtype)[:, None], emb.sin().to(dtype)[:, None]


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation (HF 'gelu_new')."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class KVCache:
    """Pre-allocated keys and values for incremental decoding, shared by all layers.

    k, v: (L, B, H, max_len, hd). `pos` is how many slots are filled (the same for every row). For batches of
    prompts of different lengths, left-pad them and pass `attention_mask` (B, T) on the prefill call: padded
    slots are then never attended to, and each row's rotary positions count only its real tokens
    (`lengths`, (B,)). Usage:

        cache = model.new_kv_cache(B, max_len)
        logits = model(prompt, kv_cache=cache, attention_mask=mask)   # prefill: (B, T, V)
        logits = model(next_tok[:, None], kv_cache=cache)            # one step: (B, 1, V)
    """

    def __init__(
        self,
        n_layer: int,
        batch: int,
        n_head: int,
        max_len: int,
        head_dim: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str | None = None,
    ):
        self.k = torch.zeros(n_layer, batch, n_head, max_len, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=device)  # which slots hold real tokens
        self.lengths = torch.zeros(batch, dtype=torch.long, device=device)  # real tokens seen per row
        self.pos = 0
        self.padded = False  # any masked slot so far -> attention needs an explicit mask
        self.max_len = max_len

    def reset(self) -> None:
        """Empty the cache for reuse with a new batch of the same size."""
        self.valid.zero_()
        self.lengths.zero_()
        self.pos = 0
        self.padded = False


class Attention(nn.Module):
    def __init__(self, cfg: PhiConfig):
        super().__init__()
        C, H, hd = cfg.d_model, cfg.n_head, cfg.head_dim
        self.n_head, self.head_dim, self.rotary_dim = H, hd, cfg.rotary_dim
        self.dropout = cfg.attn_pdrop
        self.q_proj = nn.Linear(C, H * hd)
        self.k_proj = nn.Linear(C, H * hd)
        self.v_proj = nn.Linear(C, H * hd)
        self.dense = nn.Linear(H * hd, C)
        self.q_ln = nn.LayerNorm(hd, eps=cfg.layer_norm_eps) if cfg.qk_layernorm else None
        self.k_ln = nn.LayerNorm(hd, eps=cfg.layer_norm_eps) if cfg.qk_layernorm else None

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
        causal: bool,
        kv: tuple[torch.Tensor, torch.Tensor, int] | None = None,
    ) -> torch.Tensor:
        B, T, C = x.shape
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.k_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        if self.q_ln is not None:
            q, k = self.q_ln(q), self.k_ln(k)
        R = self.rotary_dim
        if R:
            q = torch.cat((q[..., :R] * cos + rotate_half(q[..., :R]) * sin, q[..., R:]), dim=-1)
            k = torch.cat((k[..., :R] * cos + rotate_half(k[..., :R]) * sin, k[..., R:]), dim=-1)
        if kv is not None:  # write this step's keys/values, attend over everything so far
            k_buf, v_buf, start = kv  # (B, H, max_len, hd)
            k_buf[:, :, start : start + T] = k
            v_buf[:, :, start : start + T] = v
            k, v = k_buf[:, :, : start + T].to(q.dtype), v_buf[:, :, : start + T].to(q.dtype)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal and mask is None, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, T, hd)
        y = y.transpose(1, 2).reshape(B, T, self.n_head * self.head_dim)  # (B, T, H*hd)
        return self.dense(y)


class MLP(nn.Module):
    def __init__(self, cfg: PhiConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.fc2 = nn.Linear(cfg.d_mlp, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(gelu_tanh(self.fc1(x)))


class Block(nn.Module):
    """One Phi layer: x + attn(ln(x)) + mlp(ln(x))."""

    def __init__(self, cfg: PhiConfig):
        super().__init__()
        self.ln = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.resid_pdrop)

    def forward(self, x, cos, sin, mask, causal, kv=None):
        u = self.ln(x)  # (B, T, C)
        return x + self.drop(self.attn(u, cos, sin, mask, causal, kv)) + self.drop(self.mlp(u))


class Phi(nn.Module):
    """Phi causal language model. Parameter names map 1:1 to HF's (see model/hf.py)."""

    def __init__(self, config: PhiConfig):
        super().__init__()
        self.config = config.validate()
        # _weight skips nn.Embedding's own init (init_weights does it; normal_ on the meta device is slow)
        self.wte = nn.Embedding(
            config.vocab_size, config.d_model, _weight=torch.empty(config.vocab_size, config.d_model)
        )
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Normal(0, init_std) weights, zero biases, LayerNorm gamma 1 / beta 0 (call after to_empty on meta)."""
        if self.wte.weight.is_meta:  # nothing to initialise yet (load_checkpoint assigns real tensors)
            return
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, mean=0.0, std=self.config.init_std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # -- positions and masks -------------------------------------------------------------------------------
    def _pos_mask(self, B: int, T: int, attention_mask: torch.Tensor | None, cache: KVCache | None, device):
        """Rotary positions (B|1, T), an explicit bool mask (B, 1, T, Tk) or None, and whether SDPA is causal."""
        if cache is None:
            if attention_mask is None:
                return torch.arange(T, device=device)[None], None, True
            valid = attention_mask.to(device=device, dtype=torch.bool)  # (B, T)
            pos = (valid.long().cumsum(1) - 1).clamp(min=0)
            i = torch.arange(T, device=device)
            allowed = (i[None, :] <= i[:, None])[None] & valid[:, None, :]  # (B, T, T) causal and real keys
            allowed |= torch.eye(T, dtype=torch.bool, device=device)[None]  # padded queries see themselves: no NaN rows
            return pos, allowed[:, None], False
        start = cache.pos
        if start + T > cache.max_len:
            raise ValueError(f"KV cache full: {start} + {T} tokens > max_len {cache.max_len}")
        valid = (
            torch.ones(B, T, dtype=torch.bool, device=device)
            if attention_mask is None
            else attention_mask.to(device=device, dtype=torch.bool)
        )
        cache.padded = cache.padded or not bool(valid.all())
        cache.valid[:, start : start + T] = valid
        pos = (cache.lengths[:, None] + valid.long().cumsum(1) - 1).clamp(min=0)  # (B, T)
        if not cache.padded:
            if T == 1:
                return pos, None, False  # one new token sees every cached one
            if start == 0:
                return pos, None, True
        i = torch.arange(T, device=device)[:, None] + start  # (T, 1) absolute slot of each query
        j = torch.arange(start + T, device=device)[None, :]  # (1, Tk)
        allowed = (j <= i)[None] & cache.valid[:, None, : start + T]  # (B, T, Tk)
        allowed |= (j == i)[None]
        return pos, allowed[:, None], False

    def _hidden(self, idx: torch.Tensor, attention_mask: torch.Tensor | None, kv_cache: KVCache | None) -> torch.Tensor:
        B, T = idx.shape
        pos, mask, causal = self._pos_mask(B, T, attention_mask, kv_cache, idx.device)
        x = self.drop(self.wte(idx))  # (B, T, C)
        cos, sin = rotary_cos_sin(pos, self.config.rotary_dim, self.config.rope_theta, x.dtype)  # (B|1, 1, T, R)
        for layer, block in enumerate(self.h):
            kv = None if kv_cache is None else (kv_cache.k[layer], kv_cache.v[layer], kv_cache.pos)
            x = block(x, cos, sin, mask, causal, kv)
        if kv_cache is not None:
            kv_cache.lengths += mask_sum(attention_mask, B, T, idx.device)
            kv_cache.pos += T
        return self.ln_f(x)  # (B, T, C)

    def forward(
        self,
        idx: torch.Tensor,
        *,
        kv_cache: KVCache | None = None,
        attention_mask: torch.Tensor | None = None,
        return_hidden: bool = False,
        last_only: bool = False,
    ):
        """Logits (B, T, V) in float32 for token ids idx (B, T); (logits, hidden) with return_hidden=True.

        kv_cache: a KVCache from new_kv_cache(); this call appends idx at slot cache.pos (positions continue).
        attention_mask: (B, T) 1 for real tokens, 0 for padding; padded keys are never attended to.
        last_only: compute logits for the last position only, (B, 1, V) (sampling).
        """
        h = self._hidden(idx, attention_mask, kv_cache)
        logits = self.lm_head(h[:, -1:] if last_only else h).float()  # (B, T, V)
        return (logits, h) if return_hidden else logits

    def hidden_states(self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states after the final LayerNorm, (B, T, C) (features for classifiers)."""
        return self._hidden(idx, attention_mask, None)

    def new_kv_cache(
        self,
        batch_size: int,
        max_len: int,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> KVCache:
        """An empty KVCache for `batch_size` rows of up to `max_len` tokens (prompt + generated)."""
        p = self.wte.weight
        c = self.config
        return KVCache(
            c.n_layer, batch_size, c.n_head, max_len, c.head_dim, dtype=dtype or p.dtype, device=device or p.device
        )

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Parameter count; exclude_embeddings drops the input embedding table (lm_head is a matmul: kept)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wte.weight.numel() if exclude_embeddings else n

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token: 6N + 12*L*H*Q*T (N non-embedding params, Q head_dim, T seq_len; PaLM app. B)."""
        c = self.config
        return 6 * self.num_params(exclude_embeddings=True) + 12 * c.n_layer * c.n_head * c.head_dim * seq_len


def mask_sum(attention_mask: torch.Tensor | None, B: int, T: int, device) -> torch.Tensor:
    """Real tokens per row, (B,)."""
    if attention_mask is None:
        return torch.full((B,), T, dtype=torch.long, device=device)
    return attention_mask.to(device=device, dtype=torch.bool).long().sum(1)


def param_shapes(config: PhiConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter name of Phi(config) and its shape, without building the model."""
    C, M, V, hd = config.d_model, config.d_mlp, config.vocab_size, config.head_dim
    shapes: dict[str, tuple[int, ...]] = {"wte.weight": (V, C)}
    for layer in range(config.n_layer):
        p = f"h.{layer}."
        shapes.update({p + "ln.weight": (C,), p + "ln.bias": (C,)})
        for name in ("q_proj", "k_proj", "v_proj"):
            shapes.update({p + f"attn.{name}.weight": (C, C), p + f"attn.{name}.bias": (C,)})
        shapes.update({p + "attn.dense.weight": (C, C), p + "attn.dense.bias": (C,)})
        if config.qk_layernorm:
            for name in ("q_ln", "k_ln"):
                shapes.update({p + f"attn.{name}.weight": (hd,), p + f"attn.{name}.bias": (hd,)})
        shapes.update(
            {
                p + "mlp.fc1.weight": (M, C),
                p + "mlp.fc1.bias": (M,),
                p + "mlp.fc2.weight": (C, M),
                p + "mlp.fc2.bias": (C,),
            }
        )
    shapes.update({"ln_f.weight": (C,), "ln_f.bias": (C,), "lm_head.weight": (V, C), "lm_head.bias": (V,)})
    return shapes
