"""Low-level weight storage: streaming safetensors writes, and directories replaced atomically.

`write_safetensors` writes one tensor at a time straight from its memory (no serialised copy of the whole
dict, unlike `safetensors.torch.save_file`), hashing as it goes, so writing a checkpoint costs ~one tensor
of extra memory and one pass over the bytes. Tensors may be produced lazily (grow, export), which keeps
peak memory at the source plus the largest target tensor.

`atomic_dir(path)` yields a temporary directory next to `path` and, when the block finishes, puts it in
place with a rename (an atomic exchange when replacing on Linux), so a crash never leaves a directory at
`path` that looks whole but is not.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path

import torch

from phitools.errors import CheckpointError
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
_CHUNK = 64 << 20  # write/hash in 64 MiB slices so no second full copy of a big tensor is made


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
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, spec in specs.items():
        if spec.dtype not in DTYPES:
            raise CheckpointError(f"cannot store tensor {name} of dtype {spec.dtype} in safetensors")
        header[name] = {
            "dtype": DTYPES[spec.dtype],
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + spec.nbytes],
        }
        offset += spec.nbytes
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)  # pad the header so the data starts 8-byte aligned, as safetensors does
    h = hashlib.sha256()
    total = 0
    with open(path, "wb") as f:

        def put(b) -> None:
            nonlocal total
            f.write(b)
            h.update(b)
            total += len(b)

        put(struct.pack("<Q", len(hb)))
        put(hb)
        for name, spec in specs.items():
            t = tensors[name]
            if t.dtype != spec.dtype or tuple(t.shape) != spec.shape:
                raise CheckpointError(
                    f"tensor {name}: got {t.dtype} {tuple(t.shape)}, expected {spec.dtype} {spec.shape}"
                )
            mv = _raw_bytes(t)
            for i in range(0, len(mv), _CHUNK):
                put(mv[i : i + _CHUNK])
            del t, mv
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": total, "sha256": h.hexdigest()}


def write_json(path: str | os.PathLike, obj: object) -> dict:
    """Write JSON (indented, trailing newline), fsync'ed; returns {bytes, sha256}."""
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def atomic_dir(
    path: str | os.PathLike, *, replace: bool = False, may_replace: Callable[[Path], bool] | None = None
) -> AbstractContextManager[Path]:
    """runtime.files.atomic_dir for checkpoints: a refusal is a CheckpointError."""
    return _atomic_dir(
        path, replace=replace, may_replace=may_replace, error=CheckpointError, what="checkpoint directory"
    )


class SafetensorsFile:
    """A safetensors file read tensor by tensor with plain reads (no mmap): each tensor read is fresh memory,
    so loading costs the model's size and nothing is left mapped. The header is validated on open: offsets
    must tile the data section exactly and the file size must match (a truncated file is an error).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise ValueError("file shorter than its 8-byte header length")
                (n,) = struct.unpack("<Q", head)
                if n > min(size - 8, 100 << 20):
                    raise ValueError(f"header length {n} does not fit in the file ({size} bytes)")
                header = json.loads(f.read(n))
        except (OSError, ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            raise CheckpointError(
                f"{self.path}: unreadable safetensors ({e})",
                hint="the file is truncated or corrupted; use another copy",
            ) from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{self.path}: unreadable safetensors (header is not a JSON object)")
        self.metadata = header.pop("__metadata__", None) or {}
        self.data_start = 8 + n
        self.entries: dict[str, tuple[torch.dtype, tuple[int, ...], int, int]] = {}
        spans = []
        try:
            for name, e in header.items():
                dtype = TORCH_DTYPES[e["dtype"]]
                shape = tuple(int(s) for s in e["shape"])
                begin, end = (int(x) for x in e["data_offsets"])
                if end - begin != TensorSpec(dtype, shape).nbytes:
                    raise ValueError(f"tensor {name}: {end - begin} bytes for {e['dtype']} {list(shape)}")
                self.entries[name] = (dtype, shape, begin, end)
                spans.append((begin, end))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"{self.path}: unreadable safetensors (bad header entry: {e})", hint="the file is corrupted"
            ) from None
        pos = 0
        for begin, end in sorted(spans):
            if begin != pos:
                raise CheckpointError(
                    f"{self.path}: unreadable safetensors (tensor data overlaps or leaves gaps)",
                    hint="the file is corrupted",
                )
            pos = end
        if self.data_start + pos != size:
            raise CheckpointError(
                f"{self.path}: {size} bytes, its header describes {self.data_start + pos} (truncated or padded)",
                hint="the file is damaged; use another copy",
            )

    def keys(self) -> list[str]:
        return list(self.entries)

    def spec(self, name: str) -> TensorSpec:
        dtype, shape, _, _ = self.entries[name]
        return TensorSpec(dtype, shape)

    def read(self, name: str) -> torch.Tensor:
        """The tensor `name`, in freshly allocated CPU memory."""
        dtype, shape, begin, end = self.entries[name]
        t = torch.empty(shape, dtype=dtype)
        if end > begin:
            buf = memoryview(t.reshape(-1).view(torch.uint8).numpy())
            with open(self.path, "rb") as f:
                f.seek(self.data_start + begin)
                got = f.readinto(buf)
            if got != end - begin:
                raise CheckpointError(
                    f"{self.path}: tensor {name} is truncated", hint="the file is damaged; use another copy"
                )
        return t

    def load(self) -> dict[str, torch.Tensor]:
        """Every tensor."""
        return {k: self.read(k) for k in self.entries}
