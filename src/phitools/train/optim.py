"""AdamW with the usual decay exemptions, and the learning-rate schedule (warmup, then cosine/linear/constant)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from phitools.errors import UsageError
from phitools.train.config import SCHEDULES


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight matrices decay; biases, norm weights and embeddings do not.

    Embeddings are found by module type (nn.Embedding); norms as any 1-d parameter of a module whose class name
    contains "Norm" (LayerNorm, RMSNorm, qk-norms); biases by name. Every trainable parameter lands in exactly one
    group, in `named_parameters` order, which keeps the optimizer state layout stable across runs.
    """
    no_decay_ids: set[int] = set()
    for mod in model.modules():
        if isinstance(mod, nn.Embedding) or "Norm" in type(mod).__name__:
            no_decay_ids.update(id(p) for p in mod.parameters(recurse=False))
    decay, no_decay, decay_names, no_decay_names = [], [], [], []
    seen: set[int] = set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in no_decay_ids or name.endswith("bias") or p.ndim < 2:
            no_decay.append(p)
            no_decay_names.append(name)
        else:
            decay.append(p)
            decay_names.append(name)
    return [
        {"params": decay, "weight_decay": weight_decay, "names": decay_names},
        {"params": no_decay, "weight_decay": 0.0, "names": no_decay_names},
    ]


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over `param_groups(model)`; fused kernels on CUDA, foreach elsewhere."""
    groups = param_groups(model, weight_decay)
    if fused is None:
        fused = any(p.is_cuda for g in groups for p in g["params"])
    for g in groups:
        g.pop("names")
    kwargs = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **kwargs)


@dataclass(frozen=True)
class Schedule:
    """Learning rate by step: linear warmup from 0 to `lr`, then decay to `min_lr` at `max_steps`.

    Step s (0-based, the s-th optimizer step) uses lr * (s + 1) / warmup during warmup, so the first step is
    never taken at lr 0. After warmup, `cosine` follows half a cosine, `linear` a straight line, `constant`
    stays at `lr`.
    """

    lr: float
    min_lr: float
    warmup_steps: int
    max_steps: int
    kind: str = "cosine"

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise UsageError(f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.kind!r}")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise UsageError(f"need 0 <= --min-lr <= --lr and --lr > 0 (got lr={self.lr}, min_lr={self.min_lr})")
        if self.warmup_steps < 0:
            raise UsageError(f"--warmup-steps must be >= 0, got {self.warmup_steps}")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.lr
        span = max(1, self.max_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.kind == "linear":
            return self.lr + (self.min_lr - self.lr) * progress
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's lr for `step`; returns it."""
        lr = self(step)
        for g in optimizer.param_groups:
            g["lr"] = lr
        return lr

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "lr": self.lr,
            "min_lr": self.min_lr,
            "warmup_steps": self.warmup_steps,
            "max_steps": self.max_steps,
        }
