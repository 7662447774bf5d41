"""The one safetensors implementation: numpy files byte-identical to the safetensors library's, read back by both
sides, damaged files as one-line errors, and no torch import on the numpy path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from phitools.errors import CheckpointError
from phitools.runtime.safetensors_io import SafetensorsReader, load_arrays, save_arrays


def _arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "hash.idf": rng.random(17, dtype=np.float32),
        "b.f64": rng.random((3, 2)),
        "a.f16": rng.random(5).astype(np.float16),
        "lgbm.columns": np.arange(7, dtype=np.int64),
        "trees.feature": np.arange(-3, 3, dtype=np.int32),
        "i16": np.arange(4, dtype=np.int16),
        "i8": np.arange(-2, 2, dtype=np.int8),
        "u8": np.arange(4, dtype=np.uint8),
        "u16": np.arange(3, dtype=np.uint16),
        "u32": np.arange(3, dtype=np.uint32),
        "u64": np.arange(3, dtype=np.uint64),
        "flags": np.array([True, False, True]),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "fortran": np.asfortranarray(rng.random((3, 4), dtype=np.float32)),
        "big_endian": np.arange(5, dtype=">i4"),
    }


def test_numpy_files_are_byte_identical_to_the_safetensors_library(tmp_path):
    from safetensors.numpy import load_file, save_file

    arrays = _arrays()
    for meta in (None, {"format": "np"}):  # one key: the library keeps its metadata in a hash map (random order)
        digest = save_arrays(tmp_path / "ours.safetensors", arrays, metadata=meta)
        # the library writes a Fortran-ordered array's memory as it lies: hand it C-ordered arrays
        save_file(
            {k: np.require(v, requirements="C") for k, v in arrays.items()}, str(tmp_path / "lib.safetensors"), meta
        )
        ours = (tmp_path / "ours.safetensors").read_bytes()
        assert ours == (tmp_path / "lib.safetensors").read_bytes()
        assert digest["bytes"] == len(ours)
    for back in (load_arrays(tmp_path / "lib.safetensors"), load_file(str(tmp_path / "ours.safetensors"))):
        assert back.keys() == arrays.keys()
        for k, a in arrays.items():
            assert (
                back[k].shape == a.shape and np.array_equal(back[k], a) and back[k].dtype == a.dtype.newbyteorder("=")
            )
    assert SafetensorsReader(tmp_path / "ours.safetensors").metadata == {"format": "np"}


def test_damaged_files_are_one_line_errors(tmp_path):
    f = tmp_path / "a.safetensors"
    save_arrays(f, {"x": np.arange(10, dtype=np.float32)})
    good = f.read_bytes()
    damaged = {
        "truncated": good[:-4],
        "padded": good + b"\0",
        "not json": b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ",
        "huge header": b"\xff" * 8 + b"{}",
        "empty": b"",
        "bad dtype": good.replace(b'"F32"', b'"F99"'),
        "bad offsets": good.replace(b"[0,40]", b"[4,44]"),
    }
    for what, data in damaged.items():
        f.write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            load_arrays(f)
        assert str(f) in str(e.value) and "\n" not in str(e.value), what
    with pytest.raises(CheckpointError, match="no such file|unreadable"):
        load_arrays(tmp_path / "missing.safetensors")


def test_what_numpy_cannot_hold_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    from phitools.model.store import write_safetensors

    write_safetensors(tmp_path / "bf16.safetensors", {"w": torch.ones(3, dtype=torch.bfloat16)})
    with pytest.raises(CheckpointError, match="BF16, which numpy cannot hold"):
        load_arrays(tmp_path / "bf16.safetensors")
    with pytest.raises(CheckpointError, match="complex"):
        save_arrays(tmp_path / "c.safetensors", {"z": np.ones(2, dtype=np.complex64)})


def test_the_numpy_path_imports_no_torch(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from phitools.steps.classify import saved\n"
        "from phitools.runtime.safetensors_io import load_arrays, save_arrays\n"
        f"save_arrays({str(tmp_path / 'a.safetensors')!r}, {{'x': np.ones(3, dtype=np.float32)}})\n"
        f"assert load_arrays({str(tmp_path / 'a.safetensors')!r})['x'].sum() == 3\n"
        "assert 'torch' not in sys.modules, 'the numpy path imported torch'\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
