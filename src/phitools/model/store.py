"""Low-level weight storage: torch tensors in safetensors files, and directories replaced atomically.

`write_safetensors` writes one tensor at a time straight from its memory (no serialised copy of the whole
dict, unlike `safetensors.torch.save_file`), hashing as it goes, so writing a checkpoint costs ~one tensor
of extra memory and one pass over the bytes. Tensors may be produced lazily (grow, export), which keeps
peak memory at the source plus the largest target tensor. `SafetensorsFile` reads them back one at a time.
Both are the torch front end of runtime/safetensors_io.py, the one implementation of the format.

`atomic_dir(path)` yields a temporary directory next to `path` and, when the block finishes, puts it in
place with a rename (an atomic exchange when replacing on Linux), so a crash never leaves a directory at
`path` that looks whole but is not.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path

import torch

from phitools import __version__
from phitools.errors import CheckpointError
from phitools.runtime import safetensors_io
from phitools.runtime.files import atomic_dir as _atomic_dir

DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
TORCH_DTYPES: dict[str, torch.dtype] = {v: k for k, v in DTYPES.items()}


def _raw_bytes(t: torch.Tensor) -> memoryview:
    """The tensor's bytes (little-endian, C order) as a zero-copy view when possible."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous()
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())


class TensorSpec(tuple):
    """(dtype, shape) of a tensor that will be produced later."""

    def __new__(cls, dtype: torch.dtype, shape: tuple[int, ...]):
        return super().__new__(cls, (dtype, tuple(int(s) for s in shape)))

    @property
    def dtype(self) -> torch.dtype:
        return self[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return self[1]

    @property
    def nbytes(self) -> int:
        n = torch.empty((), dtype=self.dtype).element_size()
        for s in self.shape:
            n *= s
        return n


def write_safetensors(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    *,
    specs: Mapping[str, TensorSpec] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict:
    """Write tensors (in `specs` order, or sorted by name) to a safetensors file; returns {bytes, sha256}.

    With `specs` given, `tensors[name]` is looked up only when that tensor is written, so a lazy Mapping can
    compute each one on demand; each must match its spec. The file is fsync'ed before returning.
    """
    if specs is None:
        specs = {k: TensorSpec(tensors[k].dtype, tuple(tensors[k].shape)) for k in sorted(tensors)}
    for name, spec in specs.items():
        if spec.dtype not in DTYPES:
            raise CheckpointError(f"cannot store tensor {name} of dtype {spec.dtype} in safetensors")

    def data(name: str) -> memoryview:
        t, spec = tensors[name], specs[name]
        if t.dtype != spec.dtype or tuple(t.shape) != spec.shape:
            raise CheckpointError(f"tensor {name}: got {t.dtype} {tuple(t.shape)}, expected {spec.dtype} {spec.shape}")
        return _raw_bytes(t)

    layout = [(name, DTYPES[spec.dtype], spec.shape) for name, spec in specs.items()]
    return safetensors_io.write_file(path, layout, data, metadata=metadata)


def write_json(path: str | os.PathLike, obj: object) -> dict:
    """Write JSON (indented, trailing newline), fsync'ed; returns {bytes, sha256}."""
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def stamp() -> dict[str, str]:
    """What every checkpoint's metadata starts with: when (UTC) and which phitools wrote it."""
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "phitools_version": __version__,
    }


def atomic_dir(
    path: str | os.PathLike, *, replace: bool = False, may_replace: Callable[[Path], bool] | None = None
) -> AbstractContextManager[Path]:
    """runtime.files.atomic_dir for checkpoints: a refusal is a CheckpointError."""
    return _atomic_dir(
        path, replace=replace, may_replace=may_replace, error=CheckpointError, what="checkpoint directory"
    )


class SafetensorsFile(safetensors_io.SafetensorsReader):
    """A safetensors file read tensor by tensor as torch tensors (runtime/safetensors_io.py has the format):
    each tensor read is fresh memory, so loading costs the model's size and nothing is left mapped. The
    header is validated on open: offsets must tile the data section exactly and the file size must match.
    """

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        for name, e in self.entries.items():
            if e.dtype not in TORCH_DTYPES:
                raise CheckpointError(
                    f"{self.path}: unreadable safetensors (tensor {name} has dtype {e.dtype}, not supported here)"
                )

    def spec(self, name: str) -> TensorSpec:
        e = self.entries[name]
        return TensorSpec(TORCH_DTYPES[e.dtype], e.shape)

    def read(self, name: str) -> torch.Tensor:
        """The tensor `name`, in freshly allocated CPU memory."""
        e = self.entries[name]
        t = torch.empty(e.shape, dtype=TORCH_DTYPES[e.dtype])
        if e.end > e.begin:
            self.read_into(name, memoryview(t.reshape(-1).view(torch.uint8).numpy()))
        return t

    def load(self) -> dict[str, torch.Tensor]:
        """Every tensor."""
        return {k: self.read(k) for k in self.entries}
