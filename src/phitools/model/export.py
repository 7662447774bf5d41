"""`phitools export`: a checkpoint converted between phitools and Hugging Face Phi formats, streaming, without loss.

Tensors are renamed (model/hf.py), never recomputed, so the weights are bit-identical unless a dtype is asked
for; tokenizer sidecar files are copied; provenance is recorded (phitools: meta.provenance; HF: phitools.json
beside config.json, which HF tools ignore and `inspect_checkpoint` reads back).

    from phitools.model.export import export
    from phitools.model.options import ExportOptions

    export(ExportOptions("runs/a", "phi-hf/", format="hf"))  # then PhiForCausalLM.from_pretrained("phi-hf")
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from phitools.errors import UsageError
from phitools.model.checkpoint import inspect_checkpoint, open_weights, replaceable, save_checkpoint
from phitools.model.hf import META_FILE, config_to_hf, to_hf_name
from phitools.model.options import ExportOptions
from phitools.model.store import TensorSpec, atomic_dir, stamp, write_json, write_safetensors


class _Renamed:
    """A Mapping-like view of phitools-named weights under HF names (lazy, for streaming writes)."""

    def __init__(self, weights, dtype=None):
        self.w, self.dtype = weights, dtype
        self.names = {to_hf_name(k): k for k in weights}

    def __getitem__(self, hf_name: str):
        t = self.w[self.names[hf_name]]
        return t if self.dtype is None else t.to(self.dtype)


def export_checkpoint(src, dst, *, fmt: str = "hf", dtype: torch.dtype | None = None, overwrite: bool = False) -> Path:
    """Convert the checkpoint (phitools or HF Phi) at `src` to `fmt` ('hf' or 'phitools') at `dst`; `dtype`
    (e.g. torch.bfloat16) stores the weights in that dtype instead of as stored."""
    name = str(dtype).replace("torch.", "") if dtype is not None else None
    return export(ExportOptions(src, dst, format=fmt, dtype=name, overwrite=overwrite))


def export(opts: ExportOptions) -> Path:
    """What `phitools export` does: convert `opts.src` to `opts.format` at `opts.output`; returns the output path."""
    fmt, dst = opts.format, opts.output
    dtype = getattr(torch, opts.dtype) if opts.dtype else None
    info = inspect_checkpoint(opts.src)
    if Path(dst).resolve() == info.path.resolve():
        raise UsageError("export: the output must differ from the source", hint="choose another -o")
    w = open_weights(info)
    meta = {k: v for k, v in info.meta.items() if k not in ("created", "phitools_version", "provenance")}
    meta["provenance"] = {
        "operation": "export",
        "params": {"format": fmt, "from": info.kind, "dtype": opts.dtype},
        "parent": {"path": str(info.path.resolve()), "kind": info.kind, "meta": info.meta},
    }
    sidecars = {p.name: p for p in info.sidecars}
    if fmt == "phitools":
        return save_checkpoint(
            dst, w, info.config, meta, specs=w.specs, dtype=dtype, extra_files=sidecars, overwrite=opts.overwrite
        )
    specs = {to_hf_name(k): TensorSpec(dtype or s.dtype, s.shape) for k, s in w.specs.items()}
    dtypes = {s.dtype for s in specs.values()}
    dtype_name = str(dtypes.pop()).replace("torch.", "") if len(dtypes) == 1 else "float32"
    meta = {**stamp(), **meta}
    with atomic_dir(dst, replace=opts.overwrite, may_replace=replaceable) as tmp:
        write_safetensors(tmp / "model.safetensors", _Renamed(w, dtype), specs=specs, metadata={"format": "pt"})
        write_json(tmp / "config.json", config_to_hf(info.config, extra=info.meta.get("hf_config"), dtype=dtype_name))
        write_json(tmp / META_FILE, meta)
        for name, p in sidecars.items():
            shutil.copyfile(p, tmp / name)
    return Path(dst)


__all__ = ["export", "export_checkpoint"]
