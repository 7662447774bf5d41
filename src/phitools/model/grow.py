"""Grow a Phi checkpoint in width and depth, reusing its weights (phi-1-small -> phi-1, phi-1.5 -> phi-2).

Width, `tile` mode (HyperCloning-style, function-preserving). With integer factors k = d_model'/d_model and
m = d_mlp'/d_mlp and head_dim fixed (so n_head' = k * n_head), every hidden vector of the grown model is
the source's vector repeated k times (the MLP's inner vector m times):

    wte                (V, C)   -> repeat on C                              (V, kC)
    ln, ln_f  gamma/beta (C)    -> repeat                                   (kC)
    q, k, v, dense     (C, C)   -> repeat k x k blocks, / k; bias repeat    (kC, kC)
    fc1                (M, C)   -> repeat m x k blocks, / k; bias repeat    (mM, kC)
    fc2                (C, M)   -> repeat k x m blocks, / m; bias repeat    (kC, mM)
    lm_head            (V, C)   -> repeat on C, / k; bias as is             (V, kC)
    q_ln, k_ln         (hd)     -> as is (head_dim is unchanged)

Repeating the q/k/v rows block-wise makes new head j + H a copy of head j. LayerNorm of a repeated vector
has the same mean and variance, so its output is the repeated output: the grown model computes the same
logits (up to float rounding). Optional `noise` keeps that property: for every weight whose input is
replicated, noise is added to each input block such that it sums to zero over the blocks (for k = 2:
+N and -N), std = noise * std(source weight), seeded per tensor; the output is unchanged, but the copies
are no longer identical, so training can pull them apart.

Width, `embed` mode (for non-integer ratios such as 2048 -> 2560; NOT function-preserving): the grown
weights are a fresh init (normal(0, init_std), zero biases, LayerNorm 1/0) with the source weights copied
into the top-left block; attention weights are embedded head by head (old head h -> new head h, first
head_dim dims), and rotary_dim is kept (partial_rotary_factor' = rotary_dim / head_dim').

Depth (`n_layer` L_old -> L_new, new layer i takes old layer `interpolate_layers`):
    src(i) = min(L_old - 1, floor(i * L_old / L_new + 1/2))     (round half up, in exact integer arithmetic)
For 20 -> 24 that is 0 1 2 3 3 4 5 6 7 8 8 9 10 11 12 13 13 14 15 16 17 18 18 19: layers 3, 8, 13 and 18 are
used twice. `interpolate` copies them (not function-preserving). `identity` uses the same map, but the
second copy of a layer (new layers 4, 10, 16, 22 for 20 -> 24, each right after its original) has zero
`dense` and `fc2` weights and biases, so it adds nothing to the residual stream: function-preserving.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import torch

from phitools.errors import PhitoolsError, UsageError
from phitools.model.options import GrowOptions, check_growth
from phitools.model.phi import Phi, PhiConfig, param_shapes
from phitools.model.store import TensorSpec


def interpolate_layers(l_old: int, l_new: int) -> list[int]:
    """Source layer of each new layer: floor(i * l_old / l_new + 1/2), capped at l_old - 1."""
    return [min(l_old - 1, (2 * i * l_old + l_new) // (2 * l_new)) for i in range(l_new)]


@dataclass
class GrowPlan:
    """What a growth does: shapes, width mode and factors, the layer map and which layers are new."""

    src: PhiConfig
    dst: PhiConfig
    width_mode: str = "tile"  # tile | embed
    depth: str = "interpolate"  # interpolate | identity
    layer_map: list[int] = field(default_factory=list)
    zeroed: list[int] = field(default_factory=list)  # identity depth: new layers with zero dense / fc2
    noise: float = 0.0
    seed: int = 0

    @property
    def k(self) -> int:
        return self.dst.d_model // self.src.d_model

    @property
    def m(self) -> int:
        return self.dst.d_mlp // self.src.d_mlp

    @property
    def function_preserving(self) -> bool:
        return self.width_mode == "tile" and (self.depth == "identity" or self.dst.n_layer == self.src.n_layer)

    def params(self) -> dict:
        """JSON for provenance."""
        return {
            "width_mode": self.width_mode,
            "depth": self.depth,
            "noise": self.noise,
            "seed": self.seed,
            "from": {k: getattr(self.src, k) for k in ("n_layer", "d_model", "n_head", "d_mlp")},
            "to": {k: getattr(self.dst, k) for k in ("n_layer", "d_model", "n_head", "d_mlp")},
            "layer_map": self.layer_map,
            "zeroed_layers": self.zeroed,
            "function_preserving": self.function_preserving,
        }


def plan_grow(
    src: PhiConfig,
    *,
    d_model: int | None = None,
    n_head: int | None = None,
    d_mlp: int | None = None,
    n_layer: int | None = None,
    depth: str = "interpolate",
    width_mode: str = "tile",
    noise: float = 0.0,
    seed: int = 0,
) -> GrowPlan:
    """Check the requested shapes and return the plan; UsageError explains what is not possible and why."""
    check_growth(depth, width_mode, noise)
    C = d_model or src.d_model
    L = n_layer or src.n_layer
    for what, new, old in (("d_model", C, src.d_model), ("layers", L, src.n_layer)):
        if new < old:
            raise UsageError(f"grow: {what} {new} is smaller than the source's {old}; grow only grows")
    if width_mode == "tile":
        if C % src.d_model:
            raise UsageError(
                f"grow: d_model {src.d_model} -> {C} is not an integer factor, so tiling cannot preserve the function",
                hint="use a multiple, or --width-mode embed (top-left copy + random init, not function-preserving)",
            )
        k = C // src.d_model
        H = n_head or src.n_head * k
        if H != src.n_head * k:
            raise UsageError(
                f"grow: tiling keeps head_dim {src.head_dim}, so d_model {C} needs {src.n_head * k} heads, not {H}",
                hint="drop --heads, or use --width-mode embed",
            )
        M = d_mlp or src.d_mlp * k
        if M % src.d_mlp or M < src.d_mlp:
            raise UsageError(
                f"grow: d_mlp {src.d_mlp} -> {M} is not an integer factor", hint="use a multiple, or --width-mode embed"
            )
        rotary = src.partial_rotary_factor
    else:
        if noise:
            raise UsageError(
                "grow: --noise applies to --width-mode tile only (embed mode is not function-preserving anyway)"
            )
        if n_head is None:
            if C % src.head_dim:
                raise UsageError(f"grow: d_model {C} is not a multiple of head_dim {src.head_dim}", hint="give --heads")
            H = C // src.head_dim
        else:
            H = n_head
        if C % H:
            raise UsageError(f"grow: d_model {C} is not divisible by {H} heads")
        if H < src.n_head or C // H < src.head_dim:
            raise UsageError(
                f"grow: embed mode needs at least the source's {src.n_head} heads of at least {src.head_dim} dims, "
                f"got {H} heads of {C // H}"
            )
        if d_mlp is None:
            if (src.d_mlp * C) % src.d_model:
                raise UsageError("grow: give --d-mlp (the source's MLP ratio does not give an integer size)")
            M = src.d_mlp * C // src.d_model
        else:
            M = d_mlp
        if M < src.d_mlp:
            raise UsageError(f"grow: d_mlp {M} is smaller than the source's {src.d_mlp}")
        rotary = src.rotary_dim / (C // H)  # keep rotary_dim: the copied dims keep their frequencies
        if int((C // H) * rotary) != src.rotary_dim:
            raise UsageError(f"grow: cannot keep rotary_dim {src.rotary_dim} with head_dim {C // H}")
    dst = dataclasses.replace(src, d_model=C, n_head=H, d_mlp=M, n_layer=L, partial_rotary_factor=rotary).validate()
    layer_map = interpolate_layers(src.n_layer, L)
    zeroed = [i for i in range(1, L) if depth == "identity" and layer_map[i] == layer_map[i - 1]]
    return GrowPlan(src, dst, width_mode, depth, layer_map, zeroed, float(noise), int(seed))


# ---- tensors ------------------------------------------------------------------------------------------

_LAYER = re.compile(r"^h\.(\d+)\.(.+)$")
# which axes of each parameter live in which space: "C" model dim, "M" MLP dim, "A" attention heads (H*hd),
# "h" one head's dims, "V" vocab (never grows)
_AXES = {
    "wte.weight": "VC",
    "ln_f.weight": "C",
    "ln_f.bias": "C",
    "lm_head.weight": "VC",
    "lm_head.bias": "V",
    "ln.weight": "C",
    "ln.bias": "C",
    "attn.q_proj.weight": "AC",
    "attn.k_proj.weight": "AC",
    "attn.v_proj.weight": "AC",
    "attn.dense.weight": "CA",
    "attn.q_proj.bias": "A",
    "attn.k_proj.bias": "A",
    "attn.v_proj.bias": "A",
    "attn.dense.bias": "C",
    "attn.q_ln.weight": "h",
    "attn.q_ln.bias": "h",
    "attn.k_ln.weight": "h",
    "attn.k_ln.bias": "h",
    "mlp.fc1.weight": "MC",
    "mlp.fc1.bias": "M",
    "mlp.fc2.weight": "CM",
    "mlp.fc2.bias": "C",
}
_OUTPUT_PROJ = ("attn.dense.weight", "attn.dense.bias", "mlp.fc2.weight", "mlp.fc2.bias")


def _generator(seed: int, name: str) -> torch.Generator:
    """A generator seeded from (seed, tensor name): results do not depend on the order tensors are made in."""
    return torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63))


class GrownWeights(Mapping):
    """The grown model's weights as a lazy Mapping: each tensor is built from the source when asked for.

    `source`: a Mapping of the source's phitools-named tensors (a Weights view or a state_dict). Building a
    tensor allocates only that tensor (plus its noise), so streaming these into a file keeps memory low.
    """

    def __init__(self, plan: GrowPlan, source: Mapping[str, torch.Tensor]):
        self.plan, self.source = plan, source
        sspecs = getattr(source, "specs", None)
        self.specs: dict[str, TensorSpec] = {}
        for name, shape in param_shapes(plan.dst).items():
            sname = self._source_name(name)
            dtype = sspecs[sname].dtype if sspecs is not None else source[sname].dtype
            self.specs[name] = TensorSpec(dtype, shape)

    def _source_name(self, name: str) -> str:
        mt = _LAYER.match(name)
        return name if mt is None else f"h.{self.plan.layer_map[int(mt.group(1))]}.{mt.group(2)}"

    def __iter__(self) -> Iterator[str]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.specs:
            raise KeyError(name)
        mt = _LAYER.match(name)
        kind = name if mt is None else mt.group(2)
        spec = self.specs[name]
        if mt is not None and int(mt.group(1)) in self.plan.zeroed and kind in _OUTPUT_PROJ:
            return torch.zeros(spec.shape, dtype=spec.dtype)
        src = self.source[self._source_name(name)]
        if self.plan.width_mode == "tile":
            return self._tile(name, kind, src)
        return self._embed(name, kind, src)

    # tile: repeat blocks; divide by the input factor; zero-sum noise across input blocks
    def _tile(self, name: str, kind: str, w: torch.Tensor) -> torch.Tensor:
        p = self.plan
        factor = {"C": p.k, "A": p.k, "M": p.m, "V": 1, "h": 1}
        axes = _AXES[kind]
        out = w.repeat(*(factor[a] for a in axes))  # one new allocation of the target's size
        if len(axes) == 2 and kind != "wte.weight":  # a linear layer: (out, in); the input is replicated f times
            f = factor[axes[1]]
            if f > 1:
                out.div_(f)
                if p.noise > 0:
                    n_out, n_in = out.shape[0], w.shape[1]
                    n = torch.randn(n_out, f, n_in, generator=_generator(p.seed, name))  # (out, f input blocks, in)
                    n.sub_(n.mean(dim=1, keepdim=True)).mul_(p.noise * w.float().std().item())  # zero-sum over blocks
                    out.view(n_out, f, n_in).add_(n.to(out.dtype))
                    del n
        return out

    # embed: fresh init, source in the top-left block (attention head by head)
    def _embed(self, name: str, kind: str, w: torch.Tensor) -> torch.Tensor:
        p, s, d = self.plan, self.plan.src, self.plan.dst
        spec = self.specs[name]
        axes = _AXES[kind]
        if kind.endswith("bias"):
            out = torch.zeros(spec.shape, dtype=spec.dtype)
        elif len(axes) == 1:  # LayerNorm gamma
            out = torch.ones(spec.shape, dtype=spec.dtype)
        else:
            out = (
                torch.empty(spec.shape, dtype=torch.float32)
                .normal_(0.0, d.init_std, generator=_generator(p.seed, name))
                .to(spec.dtype)
            )
        # view every "A" axis as (heads, head_dim) so the copy keeps heads whole
        new_shape, old_shape, index = [], [], []
        for a, n_new, n_old in zip(axes, out.shape, w.shape):
            if a == "A":
                new_shape += [d.n_head, d.head_dim]
                old_shape += [s.n_head, s.head_dim]
                index += [slice(0, s.n_head), slice(0, s.head_dim)]
            else:
                new_shape.append(n_new)
                old_shape.append(n_old)
                index.append(slice(0, n_old))
        out.view(new_shape)[tuple(index)] = w.reshape(old_shape).to(out.dtype)
        return out


def grow_state(plan: GrowPlan, source: Mapping[str, torch.Tensor]) -> GrownWeights:
    """Lazy grown weights for `plan` from source weights (see GrownWeights)."""
    return GrownWeights(plan, source)


def grow_model(model: Phi, plan: GrowPlan) -> Phi:
    """Grow an in-memory model (for tests and notebooks; use grow_checkpoint for big models)."""
    weights = GrownWeights(plan, {k: v.detach() for k, v in model.state_dict().items()})
    with torch.device("meta"):
        big = Phi(plan.dst)
    big.load_state_dict({k: weights[k] for k in weights}, strict=True, assign=True)
    return big.train(model.training)


@torch.no_grad()
def compare_logits(a: Phi, b: Phi, *, batch: int = 4, seq_len: int = 64, seed: int = 0) -> dict:
    """max |logits_a - logits_b| and argmax agreement on random token sequences."""
    g = torch.Generator().manual_seed(seed)
    T = min(seq_len, a.config.max_seq_len, b.config.max_seq_len)
    x = torch.randint(0, a.config.vocab_size, (batch, T), generator=g)
    la, lb = a.eval()(x), b.eval()(x)
    return {
        "max_abs_diff": (la - lb).abs().max().item(),
        "max_abs_logit": la.abs().max().item(),
        "argmax_agree": (la.argmax(-1) == lb.argmax(-1)).float().mean().item(),
        "tokens": batch * T,
    }


def grow_checkpoint(src, dst, **kw) -> tuple[GrowPlan, dict | None]:
    """Grow the checkpoint at `src` into a new phitools checkpoint at `dst`; `kw` are GrowOptions fields."""
    return grow(GrowOptions(src, dst, **kw))


def grow(opts: GrowOptions) -> tuple[GrowPlan, dict | None]:
    """What `phitools grow` does: grow `opts.src` (phitools or HF Phi) into a new phitools checkpoint at
    `opts.output`; returns (plan, check report or None).

    Streams tensor by tensor: peak memory is about the source plus the largest grown tensor. `opts.check`
    reloads both and compares logits on random inputs (the compare_logits dict; for a function-preserving plan
    a difference above float tolerance is an error and the output is removed).
    """
    import shutil
    from pathlib import Path

    from phitools.model.checkpoint import inspect_checkpoint, load_checkpoint, open_weights, save_checkpoint

    src, dst = opts.src, opts.output
    info = inspect_checkpoint(src)
    if Path(dst).resolve() == info.path.resolve():
        raise UsageError("grow: the output must differ from the source", hint="choose another -o")
    plan = plan_grow(
        info.config,
        d_model=opts.d_model,
        n_head=opts.n_head,
        d_mlp=opts.d_mlp,
        n_layer=opts.n_layer,
        depth=opts.depth,
        width_mode=opts.width_mode,
        noise=opts.noise,
        seed=opts.seed,
    )
    w = open_weights(info)
    grown = GrownWeights(plan, w)
    meta = {k: info.meta[k] for k in ("data", "hf_config") if k in info.meta}
    data = info.meta.get("data") or (info.meta.get("provenance") or {}).get("data")  # train records it in provenance
    if data:
        meta["data"] = data  # the same tokenizer and token data: eval and train --init check against it
    if "tokens_seen" in info.meta:
        meta["parent_tokens_seen"] = info.meta["tokens_seen"]
    meta["provenance"] = {
        "operation": "grow",
        "params": plan.params(),
        "parent": {
            "path": str(info.path.resolve()),
            "kind": info.kind,
            "model_sha256": (info.files.get("model.safetensors") or {}).get("sha256"),
            "meta": info.meta,
        },
    }
    save_checkpoint(
        dst,
        grown,
        plan.dst,
        meta,
        specs=grown.specs,
        extra_files={p.name: p for p in info.sidecars},
        overwrite=opts.overwrite,
    )
    del grown, w
    if not opts.check:
        return plan, None
    a, _, _ = load_checkpoint(src)
    b, _, _ = load_checkpoint(dst)
    report = compare_logits(a, b, seed=opts.seed)
    del a, b
    report["function_preserving"] = plan.function_preserving
    if plan.function_preserving and report["max_abs_diff"] > 1e-4 * max(1.0, report["max_abs_logit"]):
        shutil.rmtree(dst, ignore_errors=True)
        raise PhitoolsError(
            f"grow --check: logits differ by {report['max_abs_diff']:.3g} for a function-preserving growth; "
            f"{dst} removed",
            hint="please report this as a bug",
        )
    return plan, report
