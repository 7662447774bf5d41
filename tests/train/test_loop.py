"""The Trainer in-process: config precedence, accumulation maths, exact resume, NaN stop, run layout."""

from __future__ import annotations

import json

import pytest
import torch

from phitools.errors import ConfigError, UsageError
from phitools.train.config import load_config_file, resolve
from phitools.train.loop import DivergedError, Trainer, read_metrics, train

SMALL = {"n_layer": 1, "d_model": 32, "n_head": 2, "d_mlp": 64}


def cfg(token_dir, out, **kw):
    base = {
        "data": str(token_dir),
        "output": str(out),
        "model": dict(SMALL),
        "seq_len": 16,
        "batch_size": 4,
        "max_steps": 6,
        "eval_every": 3,
        "eval_batches": 2,
        "save_every": 3,
        "seed": 5,
    }
    base.update(kw)
    return resolve(base)


def test_flags_override_file_override_defaults(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('lr = 0.01\nbatch_size = 16\nschedule = "linear"\n[model]\nn_layer = 3\nd_model = 64\n')
    c = resolve({"data": "d", "output": "o", "batch_size": 32, "model": {"d_model": 96}}, load_config_file(f))
    assert (c.lr, c.batch_size, c.schedule, c.max_steps) == (0.01, 32, "linear", 200)
    assert c.model == {"n_layer": 3, "d_model": 96}
    (tmp_path / "bad.json").write_text('{"learning_rate": 1}')
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config_file(tmp_path / "bad.json")


def test_resume_refuses_a_different_trajectory():
    recorded = resolve({"data": "d", "output": "o", "seed": 1}).to_dict()
    assert resolve({"max_steps": 500}, recorded=recorded).seed == 1  # unchanged keys come from the run
    with pytest.raises(UsageError, match="seed"):
        resolve({"seed": 2}, recorded=recorded)


def test_accumulation_gives_the_same_step(token_dir, tmp_path):
    a = Trainer(cfg(token_dir, tmp_path / "a"))
    b = Trainer(cfg(token_dir, tmp_path / "b", micro_batch_size=1))
    assert (a.grad_accum, b.grad_accum) == (1, 4)
    for _ in range(2):
        ra, rb = a.train_step(), b.train_step()
        assert rb.loss == pytest.approx(ra.loss, rel=1e-5)
    for pa, pb in zip(a.raw_model.parameters(), b.raw_model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6)


def test_batch_not_divisible_is_a_usage_error(token_dir, tmp_path):
    with pytest.raises(UsageError, match="micro-batch"):
        Trainer(cfg(token_dir, tmp_path / "a", micro_batch_size=3))


def test_nan_loss_stops_before_the_optimizer_step(token_dir, tmp_path):
    t = Trainer(cfg(token_dir, tmp_path / "a"))
    t.train_step()
    with torch.no_grad():
        t.raw_model.h[0].mlp.fc1.weight[0, 0] = float("nan")
    before = {k: v.clone() for k, v in t.raw_model.state_dict().items()}
    moments = {id(p): s["exp_avg"].clone() for p, s in t.optimizer.state.items()}
    with pytest.raises(DivergedError, match="nan at step 2.*not updated"):
        t.train_step()
    after = t.raw_model.state_dict()
    assert all(
        torch.equal(
            before[k],
            after[k],
        )
        or torch.isnan(before[k]).any()
        for k in before
    )
    assert all(torch.equal(moments[id(p)], s["exp_avg"]) for p, s in t.optimizer.state.items())
    assert t.step == 1


def test_resume_in_process_is_bitwise_and_run_is_a_checkpoint(token_dir, tmp_path):
    from phitools.model.checkpoint import load_checkpoint

    full = train(cfg(token_dir, tmp_path / "full"), argv=["test"])
    assert full["step"] == 6
    half = cfg(token_dir, tmp_path / "half", max_steps=6)
    t = Trainer(half)
    for _ in range(3):
        t.train_step()
    t.save()
    train(half, resume=True, argv=["test"])  # resumes from step 3
    a = read_metrics(tmp_path / "full" / "metrics.jsonl")
    b = read_metrics(tmp_path / "half" / "metrics.jsonl")
    assert [r["loss"] for r in a][3:] == [r["loss"] for r in b]  # the resumed run logs steps 4..6
    ea, eb = (
        read_metrics(tmp_path / "full" / "metrics.jsonl", "eval"),
        read_metrics(tmp_path / "half" / "metrics.jsonl", "eval"),
    )
    assert ea[-1]["eval_loss"] == eb[-1]["eval_loss"]
    m1, c1, meta = load_checkpoint(tmp_path / "full")  # RUN itself is the final model
    m2, _, _ = load_checkpoint(tmp_path / "half")
    assert all(torch.equal(x, y) for x, y in zip(m1.state_dict().values(), m2.state_dict().values()))
    prov = meta["provenance"]
    assert prov["operation"] == "train" and prov["steps"] == 6 and prov["tokens_seen"] == 6 * 4 * 16
    assert prov["data"]["tokenizer_sha256"] and prov["data"]["shards"][0]["sha256"]
    man = json.loads((tmp_path / "full" / "manifest.json").read_text())
    assert man["train"]["status"] == "complete" and man["train"]["checkpoints"] == ["step-000003", "step-000006"]
    assert (tmp_path / "full" / "latest").resolve() == (tmp_path / "full" / "checkpoints" / "step-000006").resolve()


def test_a_run_that_fails_with_an_oserror_is_marked_failed(token_dir, tmp_path, monkeypatch):
    import errno
    import json

    def disk_full(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Trainer, "fit", disk_full)
    with pytest.raises(OSError):
        train(cfg(token_dir, tmp_path / "r"))
    t = json.loads((tmp_path / "r" / "manifest.json").read_text())["train"]
    assert t["status"] == "failed" and "No space left" in t["error"]
