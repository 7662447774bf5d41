"""Checkpoints: round trip, atomic writes, tamper/truncation detection, training state without pickle."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from phitools.errors import CheckpointError
from phitools.model.checkpoint import (
    inspect_checkpoint,
    load_checkpoint,
    load_extra,
    open_weights,
    pack_state,
    save_checkpoint,
    unpack_state,
)
from phitools.model.phi import Phi, preset_config


@pytest.fixture(scope="module")
def model() -> Phi:
    torch.manual_seed(0)
    return Phi(preset_config("tiny", vocab_size=61, n_layer=2, d_model=64, n_head=4, d_mlp=128)).eval()


def logits(m: Phi) -> torch.Tensor:
    x = torch.arange(40).reshape(2, 20) % m.config.vocab_size
    with torch.no_grad():
        return m(x)


def test_round_trip_and_meta(model, tmp_path):
    ck = save_checkpoint(
        tmp_path / "ck",
        model,
        meta={"steps": 7, "tokens_seen": 1234, "provenance": {"operation": "train"}},
        extra_files={"tokenizer.json": b'{"x": 1}'},
    )
    assert sorted(p.name for p in ck.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    m2, cfg, meta = load_checkpoint(ck)
    assert cfg == model.config and not m2.training
    assert torch.equal(logits(m2), logits(model))
    assert meta["steps"] == 7 and meta["tokens_seen"] == 1234 and meta["provenance"] == {"operation": "train"}
    assert meta["phitools_version"] and meta["created"]
    raw = json.loads((ck / "config.json").read_text())
    assert raw["format"] == "phitools-checkpoint" and set(raw["files"]) == {"model.safetensors", "tokenizer.json"}
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temp dirs left behind


def test_bf16_storage_loads_as_float32(model, tmp_path):
    ck = save_checkpoint(tmp_path / "ck", model, dtype=torch.bfloat16)
    assert all(s.dtype == torch.bfloat16 for s in open_weights(ck).specs.values())
    m2, _, _ = load_checkpoint(ck)
    assert m2.wte.weight.dtype == torch.float32
    assert torch.equal(m2.wte.weight, model.wte.weight.to(torch.bfloat16).float())
    assert load_checkpoint(ck, dtype=None)[0].wte.weight.dtype == torch.bfloat16


class Boom(dict):
    """A weights mapping that fails part-way through writing."""

    def __getitem__(self, k):
        if k.startswith("h.1."):
            raise RuntimeError("simulated crash")
        return super().__getitem__(k)


def test_crash_mid_write_leaves_nothing_that_looks_whole(model, tmp_path):
    sd = Boom(model.state_dict())
    with pytest.raises(RuntimeError, match="simulated crash"):
        save_checkpoint(tmp_path / "ck", sd, model.config)
    assert list(tmp_path.iterdir()) == []
    # replacing an existing checkpoint: a crash keeps the old one intact
    save_checkpoint(tmp_path / "ck", model, meta={"steps": 1})
    with pytest.raises(RuntimeError):
        save_checkpoint(tmp_path / "ck", sd, model.config, meta={"steps": 2}, overwrite=True)
    assert load_checkpoint(tmp_path / "ck")[2]["steps"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


@pytest.mark.parametrize("exchange", [True, False])
def test_replace_rules(model, tmp_path, monkeypatch, exchange):
    if not exchange:  # the portable two-rename path (no renameat2)
        monkeypatch.setattr("phitools.runtime.files._exchange", lambda a, b: False)
    save_checkpoint(tmp_path / "ck", model, meta={"steps": 1})
    with pytest.raises(CheckpointError, match="already exists"):
        save_checkpoint(tmp_path / "ck", model)
    save_checkpoint(tmp_path / "ck", model, meta={"steps": 2}, overwrite=True)
    assert load_checkpoint(tmp_path / "ck")[2]["steps"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="refusing to replace it"):
        save_checkpoint(tmp_path / "data", model, overwrite=True)
    assert (tmp_path / "data" / "precious.txt").read_text() == "keep me"
    # a checkpoint with other things in it (a run directory: metrics, step checkpoints) is not replaced either
    (tmp_path / "ck" / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(CheckpointError, match="refusing to replace it"):
        save_checkpoint(tmp_path / "ck", model, overwrite=True)
    assert (tmp_path / "ck" / "metrics.jsonl").exists()


def test_tampered_truncated_and_missing_files(model, tmp_path):
    ck = save_checkpoint(tmp_path / "ck", model)
    st = ck / "model.safetensors"
    good = st.read_bytes()
    bad = bytearray(good)
    bad[-10] ^= 0x01  # one bit in one weight
    st.write_bytes(bytes(bad))
    with pytest.raises(CheckpointError, match="sha256 does not match"):
        load_checkpoint(ck)
    st.write_bytes(good[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(ck)
    with pytest.raises(
        CheckpointError, match="its header describes"
    ):  # without the recorded size/hash, the header catches it
        load_checkpoint(ck, verify=False)
    st.unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(ck)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope")
    (ck / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(ck)


def test_config_and_weights_must_agree(model, tmp_path):
    ck = save_checkpoint(tmp_path / "ck", model)
    raw = json.loads((ck / "config.json").read_text())
    raw["model"]["d_mlp"] = 256
    (ck / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r"mlp.fc1.weight has shape \(128, 64\), config.json implies \(256, 64\)"):
        load_checkpoint(ck)
    raw["model"]["d_mlp"] = 128
    raw["model"]["n_layer"] = 3
    (ck / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="missing tensor"):
        load_checkpoint(ck)
    raw["model"]["n_layer"] = 2
    raw["model"]["n_layers"] = 2
    (ck / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="unknown field"):
        inspect_checkpoint(ck)


def test_pickle_weights_are_refused(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(CheckpointError, match="safetensors only"):
        load_checkpoint(tmp_path)


def test_training_state_round_trip_without_pickle(model, tmp_path):
    m = Phi(model.config)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
    opt.step()
    np.random.seed(5)
    state = {
        "optimizer": opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "step": 11,
        "data": {"epoch": 0, "offset": 4096},
    }
    tensors, blob = pack_state(state)
    ck = save_checkpoint(tmp_path / "ck", m, extra_tensors=tensors, extra_json=blob)
    assert {p.name for p in ck.iterdir()} == {"config.json", "model.safetensors", "state.safetensors", "state.json"}
    back = unpack_state(*load_extra(ck))
    assert back["step"] == 11 and back["data"] == {"epoch": 0, "offset": 4096}
    assert torch.equal(back["torch_rng"], state["torch_rng"])
    np.random.set_state(back["numpy_rng"])
    assert np.random.randint(1 << 30) == (np.random.seed(5), np.random.randint(1 << 30))[1]
    opt2 = torch.optim.AdamW(m.parameters(), lr=1e-3)
    opt2.load_state_dict(back["optimizer"])
    for p in m.parameters():
        for k in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt2.state[p][k], opt.state[p][k])
    st = ck / "state.safetensors"
    st.write_bytes(st.read_bytes()[:-4])
    with pytest.raises(CheckpointError, match="truncated"):
        load_extra(ck)


def test_no_pickle_in_files(model, tmp_path):
    ck = save_checkpoint(tmp_path / "ck", model, extra_tensors={"a": torch.ones(2)}, extra_json={"b": 1})
    for f in ck.iterdir():
        assert not f.read_bytes().startswith(b"\x80"), f  # pickle protocol marker
    assert os.path.getsize(ck / "state.safetensors") > 0


def test_safetensors_files_are_standard(tmp_path):
    """Our streaming writer and plain-read loader agree with the safetensors library, all dtypes and odd shapes."""
    from safetensors.torch import load_file, save_file

    from phitools.model.store import SafetensorsFile, write_safetensors

    g = torch.Generator().manual_seed(0)
    ts = {
        "f32": torch.randn(3, 5, generator=g),
        "bf16": torch.randn(7, generator=g).to(torch.bfloat16),
        "f16": torch.randn(2, 2, 2, generator=g).half(),
        "i64": torch.arange(6),
        "u8": torch.arange(4, dtype=torch.uint8),
        "b": torch.tensor([True, False]),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
    }
    digest = write_safetensors(tmp_path / "a.safetensors", ts, metadata={"format": "pt"})
    assert digest["bytes"] == (tmp_path / "a.safetensors").stat().st_size
    for back in (load_file(tmp_path / "a.safetensors"), SafetensorsFile(tmp_path / "a.safetensors").load()):
        assert back.keys() == ts.keys() and all(
            torch.equal(back[k], ts[k]) and back[k].dtype == ts[k].dtype for k in ts
        )
    save_file(ts, tmp_path / "b.safetensors")
    back = SafetensorsFile(tmp_path / "b.safetensors").load()
    assert all(torch.equal(back[k], ts[k]) for k in ts)
    (tmp_path / "c.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(CheckpointError, match="unreadable safetensors"):
        SafetensorsFile(tmp_path / "c.safetensors")
