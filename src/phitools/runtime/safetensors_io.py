"""safetensors files: the one implementation of the format, written streaming and read tensor by tensor.

    8 bytes   little-endian u64 N, the header's length
    N bytes   JSON {"__metadata__": {str: str}, NAME: {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...},
              padded with spaces so the data starts 8-byte aligned
    ...       the tensors' bytes (C order, little-endian), tiling the data section exactly

`write_file` streams each tensor's bytes straight from its memory (no serialised copy of the whole dict),
hashing as it goes, and fsyncs; the bytes of a tensor are asked for only when it is written, so a caller can
produce tensors lazily. `SafetensorsReader` validates the header on open (offsets tile the data, the size
matches: a truncated file is an error) and reads one tensor at a time into fresh memory with plain reads (no
mmap). Nothing here imports torch: `save_arrays` / `load_arrays` are the numpy front end (classifiers, whose
hashing path must not pay torch's import), and `model/store.py` is the torch one (checkpoints, training state).
Every failure to read is a one-line `CheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from phitools.errors import CheckpointError

# bytes per element of each safetensors dtype code
ITEM_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "F64": 8,
    "I64": 8,
    "U64": 8,
}
NUMPY_DTYPES = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype(np.uint8),
    "I8": np.dtype(np.int8),
    "I16": np.dtype("<i2"),
    "U16": np.dtype("<u2"),
    "F16": np.dtype("<f2"),
    "I32": np.dtype("<i4"),
    "U32": np.dtype("<u4"),
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "U64": np.dtype("<u8"),
}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in NUMPY_DTYPES.items()}
# The safetensors library writes tensors by descending dtype (the order of its Rust `Dtype` enum, which is
# ITEM_BYTES's order), then by name; `save_arrays` does the same, so its files are byte-identical to
# `safetensors.numpy.save_file`'s (tests/runtime/test_safetensors_io.py checks it against the library).
_LIBRARY_RANK = {code: i for i, code in enumerate(ITEM_BYTES)}
_CHUNK = 64 << 20  # write/hash in 64 MiB slices: no second full copy of a big tensor
_MAX_HEADER = 100 << 20


class Entry(NamedTuple):
    """One tensor in a file: dtype code, shape, and its byte span in the data section."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def nbytes(dtype: str, shape: Iterable[int]) -> int:
    n = ITEM_BYTES[dtype]
    for s in shape:
        n *= int(s)
    return n


def write_file(
    path: str | os.PathLike,
    layout: Iterable[tuple[str, str, tuple[int, ...]]],
    data: Callable[[str], memoryview | bytes],
    *,
    metadata: Mapping[str, str] | None = None,
) -> dict:
    """Write a safetensors file with the tensors of `layout` ((name, dtype code, shape), in file order);
    `data(name)` gives a tensor's raw bytes when it is written (it may compute the tensor then). The file is
    fsync'ed; returns {bytes, sha256}."""
    layout = list(layout)
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, dtype, shape in layout:
        if dtype not in ITEM_BYTES:
            raise CheckpointError(f"cannot store tensor {name} of dtype {dtype} in safetensors")
        size = nbytes(dtype, shape)
        header[name] = {"dtype": dtype, "shape": [int(s) for s in shape], "data_offsets": [offset, offset + size]}
        offset += size
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
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
        for name, dtype, shape in layout:
            mv = memoryview(data(name)).cast("B")
            if len(mv) != nbytes(dtype, shape):
                raise CheckpointError(f"tensor {name}: {len(mv)} bytes, expected {nbytes(dtype, shape)}")
            for i in range(0, len(mv), _CHUNK):
                put(mv[i : i + _CHUNK])
            del mv
        f.flush()
        os.fsync(f.fileno())
    return {"bytes": total, "sha256": h.hexdigest()}


class SafetensorsReader:
    """A safetensors file, header checked on open, read tensor by tensor (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise ValueError("file shorter than its 8-byte header length")
                (n,) = struct.unpack("<Q", head)
                if n > min(size - 8, _MAX_HEADER):
                    raise ValueError(f"header length {n} does not fit in the file ({size} bytes)")
                header = json.loads(f.read(n))
        except (OSError, ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            raise CheckpointError(
                f"{self.path}: unreadable safetensors ({e})",
                hint="the file is truncated or corrupted; use another copy",
            ) from None
        if not isinstance(header, dict):
            raise CheckpointError(f"{self.path}: unreadable safetensors (header is not a JSON object)")
        self.metadata: dict = header.pop("__metadata__", None) or {}
        self.data_start = 8 + n
        self.entries: dict[str, Entry] = {}
        try:
            for name, e in header.items():
                dtype = e["dtype"]
                if dtype not in ITEM_BYTES:
                    raise ValueError(f"tensor {name}: unknown dtype {dtype!r}")
                shape = tuple(int(s) for s in e["shape"])
                begin, end = (int(x) for x in e["data_offsets"])
                if min(shape, default=0) < 0 or end - begin != nbytes(dtype, shape):
                    raise ValueError(f"tensor {name}: {end - begin} bytes for {dtype} {list(shape)}")
                self.entries[name] = Entry(dtype, shape, begin, end)
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"{self.path}: unreadable safetensors (bad header entry: {e})", hint="the file is corrupted"
            ) from None
        pos = 0
        for e in sorted(self.entries.values(), key=lambda e: (e.begin, e.end)):
            if e.begin != pos:
                raise CheckpointError(
                    f"{self.path}: unreadable safetensors (tensor data overlaps or leaves gaps)",
                    hint="the file is corrupted",
                )
            pos = e.end
        if self.data_start + pos != size:
            raise CheckpointError(
                f"{self.path}: {size} bytes, its header describes {self.data_start + pos} (truncated or padded)",
                hint="the file is damaged; use another copy",
            )

    def keys(self) -> list[str]:
        return list(self.entries)

    def read_into(self, name: str, buf: memoryview) -> None:
        """Read tensor `name`'s bytes into `buf` (a writable buffer of exactly its size)."""
        e = self.entries[name]
        if e.end == e.begin:
            return
        with open(self.path, "rb") as f:
            f.seek(self.data_start + e.begin)
            got = f.readinto(buf)
        if got != e.end - e.begin:
            raise CheckpointError(
                f"{self.path}: tensor {name} is truncated", hint="the file is damaged; use another copy"
            )

    def array(self, name: str) -> np.ndarray:
        """Tensor `name` as a numpy array in fresh memory (every dtype numpy has; BF16 and FP8 are not)."""
        e = self.entries[name]
        if e.dtype not in NUMPY_DTYPES:
            raise CheckpointError(f"{self.path}: tensor {name} is {e.dtype}, which numpy cannot hold")
        a = np.empty(e.shape, dtype=NUMPY_DTYPES[e.dtype])
        self.read_into(name, memoryview(a.reshape(-1).view(np.uint8)))
        return a


def dtype_code(a: np.ndarray) -> str:
    """The safetensors dtype code of a numpy array; CheckpointError for dtypes safetensors has no code for."""
    code = _CODES.get((a.dtype.kind, a.dtype.itemsize))
    if code is None:
        raise CheckpointError(f"cannot store a numpy {a.dtype} array in safetensors")
    return code


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], *, metadata=None) -> dict:
    """Write numpy arrays to a safetensors file, in the safetensors library's order; returns {bytes, sha256}."""
    little = {}
    for name, a in arrays.items():
        a = np.asarray(a)
        code = dtype_code(a)
        little[name] = (code, np.require(a, dtype=NUMPY_DTYPES[code], requirements="C"))  # 0-d stays 0-d
    order = sorted(little, key=lambda k: (-_LIBRARY_RANK[little[k][0]], k))
    layout = [(k, little[k][0], little[k][1].shape) for k in order]
    return write_file(path, layout, lambda k: little[k][1].reshape(-1).view(np.uint8).data, metadata=metadata)


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a numpy array; CheckpointError when the file is damaged."""
    r = SafetensorsReader(path)
    return {k: r.array(k) for k in r.keys()}


__all__ = [
    "ITEM_BYTES",
    "NUMPY_DTYPES",
    "Entry",
    "SafetensorsReader",
    "dtype_code",
    "load_arrays",
    "nbytes",
    "save_arrays",
    "write_file",
]
