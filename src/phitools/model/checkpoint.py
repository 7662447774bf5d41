"""Checkpoints: a directory with `config.json` and `model.safetensors`. No pickle anywhere.

    CKPT/
      config.json          {"format": "phitools-checkpoint", "format_version": 1,
                            "model": {PhiConfig fields}, "meta": {provenance, steps, ...},
                            "files": {"model.safetensors": {"bytes": N, "sha256": "..."}, ...}}
      model.safetensors    the weights, phitools parameter names (model/phi.py)
      state.safetensors    optional: training state tensors (optimizer moments, RNG states)
      state.json           optional: training state that is not a tensor (step, data position, lr schedule)
      tokenizer.json ...   optional sidecar files (copied with `extra_files`)

`config.json` is written last inside a temporary directory that is then renamed into place (model/store.py),
so a directory at CKPT is always complete; `files` holds each file's size and sha256, checked on load, so a
truncated or altered file is an error, never silently different weights.

`load_checkpoint` also accepts a Hugging Face Phi directory (config.json with model_type "phi" plus
model.safetensors or sharded safetensors); see model/hf.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from phitools import __version__
from phitools.errors import CheckpointError, ConfigError
from phitools.model import hf
from phitools.model.phi import Phi, PhiConfig, param_shapes
from phitools.model.store import SafetensorsFile, TensorSpec, atomic_dir, stamp, write_json, write_safetensors
from phitools.runtime.files import file_digest

FORMAT = "phitools-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"
HF_INDEX = "model.safetensors.index.json"
# tokenizer files a checkpoint carries along (grow and export copy them; HF directories have them)
SIDECAR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "generation_config.json",
)
_RESERVED = {CONFIG_FILE, MODEL_FILE, STATE_TENSORS, STATE_JSON, HF_INDEX}


@dataclass
class CheckpointInfo:
    """What a checkpoint directory holds, read from its config.json without loading weights."""

    path: Path
    kind: str  # "phitools" or "hf"
    config: PhiConfig
    meta: dict
    raw: dict  # the parsed config.json
    files: dict = field(default_factory=dict)  # phitools: recorded {name: {bytes, sha256}}

    @property
    def sidecars(self) -> list[Path]:
        """Tokenizer and other sidecar files present in the directory."""
        return [self.path / n for n in SIDECAR_FILES if (self.path / n).is_file()]


def _leftovers(path: Path) -> str:
    if not path.parent.is_dir():
        return ""
    tmp = sorted(p.name for p in path.parent.glob(f".{path.name}.*-*"))
    return f"; an interrupted save left {', '.join(tmp)} in {path.parent}" if tmp else ""


def inspect_checkpoint(path: str | os.PathLike) -> CheckpointInfo:
    """Read and check a checkpoint's config.json (phitools or Hugging Face Phi); no weights are loaded."""
    path = Path(path)
    if path.is_file() and (path.name == CONFIG_FILE or path.suffix == ".safetensors"):
        path = path.parent
    if not path.exists():
        raise CheckpointError(
            f"{path}: no such checkpoint" + _leftovers(path),
            hint="give a checkpoint directory (config.json + model.safetensors)",
        )
    if not path.is_dir():
        raise CheckpointError(
            f"{path}: not a checkpoint directory",
            hint="a checkpoint is a directory with config.json and model.safetensors",
        )
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        if list(path.glob("*.bin")) or list(path.glob("*.pt")) or list(path.glob("*.ckpt")):
            raise CheckpointError(
                f"{path}: only pickle weights found and no config.json",
                hint="phitools loads safetensors only; re-save with save_pretrained(safe_serialization=True)",
            )
        raise CheckpointError(
            f"{cfg_path}: missing; {path} is not a complete checkpoint" + _leftovers(path),
            hint="expected a phitools checkpoint or a Hugging Face Phi directory",
        )
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(
            f"{cfg_path}: not valid JSON ({e})", hint="the checkpoint is damaged; use another copy"
        ) from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{cfg_path}: expected a JSON object")
    if raw.get("format") == FORMAT:
        if raw.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(
                f"{cfg_path}: checkpoint format_version {raw.get('format_version')} is newer than this phitools "
                f"({FORMAT_VERSION})",
                hint="upgrade phitools",
            )
        try:
            config = PhiConfig.from_dict(raw.get("model") or {})
        except ConfigError as e:
            raise CheckpointError(f"{cfg_path}: {e}") from None
        return CheckpointInfo(path, "phitools", config, dict(raw.get("meta") or {}), raw, dict(raw.get("files") or {}))
    if "model_type" in raw:
        config = hf.config_from_hf(raw, source=str(cfg_path))
        prev = _read_json_quiet(path / hf.META_FILE)  # our metadata, when phitools exported this directory
        meta = {k: prev[k] for k in ("steps", "tokens_seen", "data") if k in prev}
        meta["provenance"] = {
            "operation": "import",
            "params": {"format": "hf"},
            "parent": {"path": str(path.resolve()), "meta": prev or None},
        }
        meta["hf_config"] = hf.hf_extra(raw)
        return CheckpointInfo(path, "hf", config, meta, raw)
    raise CheckpointError(
        f"{cfg_path}: neither a phitools checkpoint nor a Hugging Face config (no 'format' or 'model_type')"
    )


def _read_json_quiet(p: Path) -> dict:
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        return d if isinstance(d, dict) else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}


def is_checkpoint(path: str | os.PathLike) -> bool:
    """True if `path` is a directory whose config.json we recognise."""
    try:
        inspect_checkpoint(path)
        return True
    except CheckpointError:
        return False


def replaceable(path: str | os.PathLike) -> bool:
    """True if `path` is a checkpoint holding nothing but checkpoint files, so --overwrite may replace it.

    A run directory (a checkpoint plus metrics, step checkpoints, ...) or a downloaded model folder with a
    README is never replaced wholesale: that would delete files the user did not ask us to touch.
    """
    path = Path(path)
    if not is_checkpoint(path):
        return False
    known = _RESERVED | set(SIDECAR_FILES) | {hf.META_FILE}
    return all(
        p.is_file() and (p.name in known or re.fullmatch(r"model-\d+-of-\d+\.safetensors", p.name))
        for p in path.iterdir()
    )


def _verify(path: Path, recorded: Mapping[str, Any], name: str) -> None:
    f = path / name
    if not f.is_file():
        raise CheckpointError(f"{f}: missing (config.json lists it); the checkpoint is incomplete")
    rec = recorded.get(name)
    if rec is None:
        return
    size = f.stat().st_size
    if size != rec.get("bytes"):
        raise CheckpointError(
            f"{f}: {size} bytes, config.json records {rec.get('bytes')} (truncated or replaced)",
            hint="the checkpoint is damaged; use another copy",
        )
    if rec.get("sha256") and file_digest(f)["sha256"] != rec["sha256"]:
        raise CheckpointError(
            f"{f}: sha256 does not match config.json (the file was altered or corrupted)",
            hint="the checkpoint is damaged; use another copy",
        )


class Weights(Mapping):
    """Lazy, read-only view of a checkpoint's weights under phitools names; tensors are read on access.

    Works for phitools and HF (single or sharded) directories. Each access reads the tensor from disk into
    fresh memory (no memory map), so streaming over the weights costs about one tensor of memory.
    """

    def __init__(self, info: CheckpointInfo, *, verify: bool = True):
        self.info = info
        path = info.path
        files: dict[str, Path] = {}  # phitools name -> file
        src_names: dict[str, str] = {}  # phitools name -> name stored in the file
        if info.kind == "phitools":
            if verify:
                _verify(path, info.files, MODEL_FILE)
            shards = [path / MODEL_FILE]
        else:
            index = path / HF_INDEX
            if (path / MODEL_FILE).is_file():
                shards = [path / MODEL_FILE]
            elif index.is_file():
                try:
                    wmap = json.loads(index.read_text())["weight_map"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise CheckpointError(f"{index}: invalid index ({e})") from None
                shards = []
                for fname in dict.fromkeys(wmap.values()):
                    if Path(fname).name != fname:
                        raise CheckpointError(f"{index}: shard name {fname!r} is not a plain file name")
                    shards.append(path / fname)
            else:
                bins = sorted(p.name for p in path.glob("*.bin"))
                raise CheckpointError(
                    f"{path}: no model.safetensors" + (f" (only pickle weights: {', '.join(bins)})" if bins else ""),
                    hint="phitools reads safetensors only; re-save with save_pretrained(safe_serialization=True)",
                )
        self._by_name: dict[str, SafetensorsFile] = {}
        for shard in shards:
            if not shard.is_file():
                raise CheckpointError(f"{shard}: missing; the checkpoint is incomplete")
            h = SafetensorsFile(shard)
            for stored in h.keys():
                name = stored if info.kind == "phitools" else hf.from_hf_name(stored)
                if name is None:
                    continue
                if name in files:
                    raise CheckpointError(f"{shard}: tensor {stored} appears twice")
                files[name], src_names[name] = shard, stored
                self._by_name[name] = h
        self._src = src_names
        expected = param_shapes(info.config)
        missing = [n for n in expected if n not in self._src]
        unexpected = [n for n in self._src if n not in expected]
        where = shards[0] if len(shards) == 1 else path
        if missing:
            raise CheckpointError(
                f"{where}: missing tensor(s) {', '.join(map(self._show, missing[:5]))}"
                f"{' ...' if len(missing) > 5 else ''} for the config in config.json",
                hint="the weights and config.json do not belong together",
            )
        if unexpected:
            raise CheckpointError(
                f"{where}: unexpected tensor(s) {', '.join(map(self._show_src, unexpected[:5]))}"
                f"{' ...' if len(unexpected) > 5 else ''}",
                hint="not a Phi causal-LM checkpoint, or config.json does not match the weights",
            )
        self.specs: dict[str, TensorSpec] = {}
        for name, shape in expected.items():
            spec = self._by_name[name].spec(self._src[name])
            if spec.shape != shape:
                raise CheckpointError(
                    f"{where}: tensor {self._show_src(name)} has shape {spec.shape}, config.json implies {shape}",
                    hint="the weights and config.json do not belong together",
                )
            if not spec.dtype.is_floating_point:
                raise CheckpointError(
                    f"{where}: tensor {self._show_src(name)} has dtype {spec.dtype}, expected a float type"
                )
            self.specs[name] = spec

    def _show(self, name: str) -> str:
        return name if self.info.kind == "phitools" else hf.to_hf_name(name)

    def _show_src(self, name: str) -> str:
        return self._src.get(name, name)

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.specs:
            raise KeyError(name)
        return self._by_name[name].read(self._src[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)


def open_weights(path_or_info: str | os.PathLike | CheckpointInfo, *, verify: bool = True) -> Weights:
    """A lazy Weights view of a checkpoint (phitools or HF); shapes are checked against its config."""
    info = path_or_info if isinstance(path_or_info, CheckpointInfo) else inspect_checkpoint(path_or_info)
    return Weights(info, verify=verify)


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    *,
    dtype: torch.dtype | None = torch.float32,
    verify: bool = True,
) -> tuple[Phi, PhiConfig, dict]:
    """Load a phitools checkpoint or a Hugging Face Phi directory -> (model in eval mode, config, meta).

    dtype: cast weights to this dtype (default float32; None keeps the stored dtype).
    verify: check sizes and sha256 recorded in config.json (phitools checkpoints).
    """
    info = inspect_checkpoint(path)
    w = open_weights(info, verify=verify)
    with torch.device("meta"):
        model = Phi(info.config)
    sd = {}
    for name in w:
        t = w[name]
        sd[name] = t.to(device=map_location, dtype=dtype or t.dtype)
        del t
    model.load_state_dict(sd, strict=True, assign=True)
    del w
    return model.eval(), info.config, info.meta


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | Mapping[str, torch.Tensor],
    config: PhiConfig | None = None,
    meta: dict | None = None,
    *,
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
    extra_json: Any = None,
    extra_files: Mapping[str, str | os.PathLike | bytes] | None = None,
    overwrite: bool = False,
    dtype: torch.dtype | None = None,
    specs: Mapping[str, TensorSpec] | None = None,
) -> Path:
    """Write a checkpoint directory atomically; returns its path.

    model: a Phi, or a Mapping of phitools-named tensors (with `specs`, a lazy Mapping is read one tensor at a time).
    meta: provenance and training metadata (JSON); `created` and `phitools_version` are filled in.
    extra_tensors / extra_json: training state saved as state.safetensors / state.json (see pack_state).
    extra_files: {file name: path or bytes} copied into the checkpoint (e.g. tokenizer.json).
    overwrite: replace an existing checkpoint at `path` (never a directory that is not a checkpoint).
    dtype: store weights in this dtype (default: as they are).
    """
    if isinstance(model, nn.Module):
        config = config or getattr(model, "config", None)
        tensors: Mapping[str, torch.Tensor] = model.state_dict()
    else:
        tensors = model
    if config is None:
        raise CheckpointError("save_checkpoint: no model config given")
    config.validate()
    expected = param_shapes(config)
    if specs is None:
        specs = {k: TensorSpec(tensors[k].dtype, tuple(tensors[k].shape)) for k in expected if k in tensors}
    missing = [k for k in expected if k not in specs]
    extra = [k for k in specs if k not in expected]
    if missing or extra:
        raise CheckpointError(
            f"save_checkpoint: weights do not match the config (missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for k, shape in expected.items():
        if specs[k].shape != shape:
            raise CheckpointError(f"save_checkpoint: {k} has shape {specs[k].shape}, config implies {shape}")
    if dtype is not None:
        specs = {k: TensorSpec(dtype, s.shape) for k, s in specs.items()}
        tensors = _Cast(tensors, dtype)
    full_meta = stamp()
    full_meta.update(meta or {})
    try:
        json.dumps(full_meta)
        if extra_json is not None:
            json.dumps(extra_json)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"save_checkpoint: metadata is not JSON-serialisable ({e})") from None
    for name in extra_files or {}:
        if Path(name).name != name or name in _RESERVED or name.startswith("."):
            raise CheckpointError(f"save_checkpoint: extra file name {name!r} is not allowed")
    path = Path(path)
    with atomic_dir(path, replace=overwrite, may_replace=replaceable) as tmp:
        files = {
            MODEL_FILE: write_safetensors(
                tmp / MODEL_FILE,
                tensors,
                specs={k: specs[k] for k in expected},
                metadata={"format": "pt", "producer": f"phitools {__version__}"},
            )
        }
        if extra_tensors:
            files[STATE_TENSORS] = write_safetensors(tmp / STATE_TENSORS, extra_tensors)
        if extra_json is not None:
            files[STATE_JSON] = write_json(tmp / STATE_JSON, extra_json)
        for name, src in (extra_files or {}).items():
            if isinstance(src, (bytes, bytearray)):
                (tmp / name).write_bytes(src)
            else:
                shutil.copyfile(src, tmp / name)
            files[name] = file_digest(tmp / name)
        write_json(
            tmp / CONFIG_FILE,
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "model": config.to_dict(),
                "meta": full_meta,
                "files": files,
            },
        )
    return path


class _Cast(Mapping):
    def __init__(self, inner: Mapping[str, torch.Tensor], dtype: torch.dtype):
        self.inner, self.dtype = inner, dtype

    def __getitem__(self, k: str) -> torch.Tensor:
        return self.inner[k].to(self.dtype)

    def __iter__(self):
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def load_extra(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", *, verify: bool = True
) -> tuple[dict[str, torch.Tensor], Any]:
    """The training state saved with a checkpoint: (extra_tensors, extra_json); ({}, None) when there is none."""
    info = inspect_checkpoint(path)
    if info.kind != "phitools":
        return {}, None
    tensors: dict[str, torch.Tensor] = {}
    blob = None
    if STATE_TENSORS in info.files:
        if verify:
            _verify(info.path, info.files, STATE_TENSORS)
        tensors = {k: v.to(map_location) for k, v in SafetensorsFile(info.path / STATE_TENSORS).load().items()}
    if STATE_JSON in info.files:
        if verify:
            _verify(info.path, info.files, STATE_JSON)
        try:
            blob = json.loads((info.path / STATE_JSON).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{info.path / STATE_JSON}: not valid JSON ({e})") from None
    return tensors, blob


# ---- training state without pickle: nested containers of tensors/arrays/scalars <-> (tensors, JSON) --------

_UNSIGNED = {np.dtype(np.uint16): np.int16, np.dtype(np.uint32): np.int32, np.dtype(np.uint64): np.int64}


def pack_state(obj: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested structure (dicts with any JSON-scalar keys, lists, tuples, tensors, numpy arrays,
    numbers, strings) into ({name: tensor}, JSON) for save_checkpoint(extra_tensors=, extra_json=).

    Optimizer state_dicts (int keys) and RNG states (torch ByteTensor, numpy uint32 arrays, tuples) round-trip
    exactly through unpack_state.
    """
    tensors: dict[str, torch.Tensor] = {}

    def key(path: str) -> str:
        k, i = path or "root", 1
        while k in tensors:
            k, i = f"{path}#{i}", i + 1
        return k

    def walk(o: Any, path: str) -> Any:
        if isinstance(o, torch.Tensor):
            k = key(path)
            tensors[k] = o.detach().cpu().contiguous()
            return {"__tensor__": k}
        if isinstance(o, np.ndarray):
            k = key(path)
            a = np.ascontiguousarray(o)
            if a.dtype in _UNSIGNED:
                tensors[k] = torch.from_numpy(a.view(_UNSIGNED[a.dtype]).copy())
            else:
                tensors[k] = torch.from_numpy(a.copy())
            return {"__ndarray__": k, "dtype": str(a.dtype)}
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in o):
                return {k: walk(v, f"{path}.{k}" if path else k) for k, v in o.items()}
            return {"__items__": [[k, walk(v, f"{path}.{k}" if path else str(k))] for k, v in o.items()]}
        if isinstance(o, tuple):
            return {"__tuple__": [walk(v, f"{path}.{i}") for i, v in enumerate(o)]}
        if isinstance(o, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(o)]
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        raise CheckpointError(f"pack_state: cannot store {type(o).__name__} at {path or 'root'} without pickle")

    return tensors, walk(obj, "")


def unpack_state(tensors: Mapping[str, torch.Tensor], blob: Any) -> Any:
    """Inverse of pack_state."""

    def walk(o: Any) -> Any:
        if isinstance(o, dict):
            if "__tensor__" in o:
                return tensors[o["__tensor__"]]
            if "__ndarray__" in o:
                a = tensors[o["__ndarray__"]].numpy()
                dt = np.dtype(o["dtype"])
                return a.view(dt) if dt in _UNSIGNED else a.astype(dt, copy=False)
            if "__tuple__" in o:
                return tuple(walk(v) for v in o["__tuple__"])
            if "__items__" in o:
                return {(tuple(k) if isinstance(k, list) else k): walk(v) for k, v in o["__items__"]}
            return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    return walk(blob)
