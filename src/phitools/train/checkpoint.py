"""Training checkpoints: model weights + optimizer + schedule + data position + RNG, without pickle.

Built on model/checkpoint.py (atomic directory, safetensors, sha256-checked): weights go to model.safetensors,
the optimizer moments and RNG states to state.safetensors, everything else (step, tokens, sampler position,
schedule, config, python/numpy RNG) to state.json. Layout of a run directory:

    RUN/checkpoints/step-000050/   a full training checkpoint (also a plain model checkpoint)
    RUN/latest -> checkpoints/step-000050   convenience link to the newest one
    RUN/config.json, RUN/model.safetensors, ...   the final model: RUN itself is a checkpoint at the end
    RUN/final -> checkpoints/step-000200     the same final checkpoint, by name

`--resume` scans RUN/checkpoints for the highest complete step (a directory only exists once complete).
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from phitools.errors import CheckpointError
from phitools.train.parallel import Dist, full_state_dict, is_fsdp

STEP_RE = re.compile(r"^step-(\d{6,})$")
CHECKPOINTS = "checkpoints"
LATEST = "latest"
FINAL = "final"


def step_dir(run: Path, step: int) -> Path:
    return Path(run) / CHECKPOINTS / f"step-{step:06d}"


def list_steps(run: Path) -> list[tuple[int, Path]]:
    """Complete step checkpoints of a run, oldest first."""
    d = Path(run) / CHECKPOINTS
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        m = STEP_RE.match(p.name)
        if m and (p / "config.json").is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest(run: Path) -> Path | None:
    """The newest complete step checkpoint of a run, or None."""
    steps = list_steps(run)
    return steps[-1][1] if steps else None


def point_latest(run: Path, target: Path, name: str = LATEST) -> None:
    """Atomically repoint RUN/latest (or RUN/<name>: a relative symlink) at `target`."""
    link = Path(run) / name
    tmp = Path(run) / f".{name}.tmp-{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.path.relpath(target, run))
        os.replace(tmp, link)
    except OSError:  # filesystems without symlinks: resume does not need the link
        tmp.unlink(missing_ok=True)


def prune(run: Path, keep: int) -> None:
    """Delete all but the newest `keep` step checkpoints (keep=0: keep everything)."""
    if keep <= 0:
        return
    for _, p in list_steps(run)[:-keep]:
        shutil.rmtree(p, ignore_errors=True)


def publish_final(run: Path, src: Path) -> None:
    """Make RUN itself a checkpoint of the final model by hard-linking the files of `src` into it.

    config.json goes first out and last in, so at no moment does RUN hold a config.json that describes other
    weights than the ones next to it (and config.json's sha256 records catch any mix-up on load).
    """
    from phitools.model.checkpoint import CONFIG_FILE

    run = Path(run)
    (run / CONFIG_FILE).unlink(missing_ok=True)
    names = [p.name for p in src.iterdir() if p.is_file() and p.name != CONFIG_FILE] + [CONFIG_FILE]
    for name in names:
        tmp = run / f".{name}.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        try:
            os.link(src / name, tmp)
        except OSError:
            shutil.copyfile(src / name, tmp)
        os.replace(tmp, run / name)
    point_latest(run, src, FINAL)  # RUN/final: the same checkpoint under the name some examples use


# ---- optimizer state <-> tensors + JSON, keyed by parameter name ------------------------------------------


def _optim_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer, dist: Dist) -> dict:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    # full_state_dict gathers FSDP shards; with cpu_offload only rank 0 receives it
    osd = get_optimizer_state_dict(
        model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=dist.distributed)
    )
    return osd


def load_state(path: Path) -> dict:
    """The full training state of a checkpoint (state.json with its tensors put back)."""
    from phitools.model.checkpoint import load_extra, unpack_state

    tensors, blob = load_extra(path)
    if not blob or "optimizer" not in blob:
        raise CheckpointError(
            f"{path}: no training state (a model-only checkpoint)",
            hint="resume from a RUN/checkpoints/step-* directory, or use --init to start from these weights",
        )
    return unpack_state(tensors, blob)


def load_optimizer(osd: dict, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load an optimizer state saved by `save` into `optimizer` (sharding it again under FSDP)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    dev = next(iter(model.parameters())).device
    if not is_fsdp(model):
        for st in osd["state"].values():
            for k, v in st.items():
                if isinstance(v, torch.Tensor) and k != "step":
                    st[k] = v.to(dev)
    set_optimizer_state_dict(model, optimizer, osd, options=StateDictOptions(full_state_dict=True))


# ---- RNG ---------------------------------------------------------------------------------------------------


def capture_rng() -> dict:
    """This process's RNG states (torch, CUDA, numpy, python) as JSON-able lists."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, pystate, gauss_next = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": keys,
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "state": list(pystate), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def _apply_rng(st: dict) -> None:
    torch.set_rng_state(st["torch"].cpu())
    n = st["numpy"]
    np.random.set_state(
        (n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = st["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state(st["cuda"].cpu())


def restore_rng(state: dict, *, rank: int) -> None:
    """Restore this rank's RNG states; with more ranks than saved, the extra ranks keep their fresh seeds."""
    per_rank = state.get("rng") or []
    if rank < len(per_rank):
        _apply_rng(per_rank[rank])


# ---- save / load -------------------------------------------------------------------------------------------


def save(
    path: Path,
    model: nn.Module,
    config,
    optimizer: torch.optim.Optimizer,
    state: dict,
    provenance: dict,
    *,
    dist: Dist,
    tokenizer: Path | None = None,
) -> None:
    """Write a training checkpoint. Every rank must call it (FSDP gathers); only rank 0 writes."""
    from phitools.model.checkpoint import pack_state, save_checkpoint

    weights = full_state_dict(model, dist)
    osd = _optim_state_dict(model, optimizer, dist)
    rngs = dist.all_gather_objects(capture_rng())
    if not dist.is_main:
        return
    osd = {
        "state": {
            k: {kk: (vv.detach().cpu() if isinstance(vv, torch.Tensor) else vv) for kk, vv in v.items()}
            for k, v in osd["state"].items()
        },
        "param_groups": osd["param_groups"],
    }
    tensors, packed = pack_state({"optimizer": osd, "rng": rngs})
    full = dict(state)
    full.update(packed)
    extra_files = {"tokenizer.json": tokenizer} if tokenizer is not None and Path(tokenizer).is_file() else None
    save_checkpoint(
        path,
        weights,
        config,
        {"provenance": provenance, "steps": state["step"], "tokens_seen": state["tokens"]},
        extra_tensors=tensors,
        extra_json=full,
        extra_files=extra_files,
        overwrite=True,
    )


def read_state(path: Path) -> dict:
    """state.json of a training checkpoint (without loading tensors)."""
    import json

    from phitools.model.checkpoint import STATE_JSON

    p = Path(path) / STATE_JSON
    if not p.is_file():
        raise CheckpointError(
            f"{path}: no training state (state.json)", hint="resume needs a RUN/checkpoints/step-* checkpoint"
        )
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{p}: not valid JSON ({e})") from None


def load_model(path: str | os.PathLike):
    """(model in float32 on CPU, config, meta) from a phitools or Hugging Face Phi checkpoint."""
    from phitools.model.checkpoint import load_checkpoint

    model, config, meta = load_checkpoint(path)
    return model.train(), config, meta


def summarize_meta(meta: dict | None) -> dict:
    """The parts of a parent's metadata worth carrying into a child's provenance (not its whole history of configs)."""
    meta = meta or {}
    prov = meta.get("provenance") or {}
    keep = {k: prov[k] for k in ("operation", "tool", "params", "steps", "tokens_seen", "data") if k in prov}
    for k in ("steps", "tokens_seen"):
        if k in meta:
            keep[k] = meta[k]
    if isinstance(prov.get("parent"), dict):
        keep["parent"] = {"path": prov["parent"].get("path")}
    return keep


def describe_tree(run: Path) -> dict[str, Any]:
    """A short listing for the run manifest: which step checkpoints exist."""
    return {"checkpoints": [p.name for _, p in list_steps(run)]}
