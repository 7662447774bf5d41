"""`--resume` after `kill -9`: a real subprocess is killed mid-run; the resumed run's losses are bitwise those of an
uninterrupted run with the same flags."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import orjson
import pytest

FLAGS = [
    "--preset",
    "tiny",
    "--n-layer",
    "1",
    "--d-model",
    "32",
    "--n-head",
    "2",
    "--d-mlp",
    "64",
    "--seq-len",
    "64",
    "--batch-size",
    "8",
    "--max-steps",
    "24",
    "--save-every",
    "8",
    "--eval-every",
    "10",
    "--eval-batches",
    "2",
    "--seed",
    "7",
    "--quiet",
]
SAME = {
    "preset": "tiny",
    "model": {"n_layer": 1, "d_model": 32, "n_head": 2, "d_mlp": 64},
    "seq_len": 64,
    "batch_size": 8,
    "max_steps": 24,
    "save_every": 8,
    "eval_every": 10,
    "eval_batches": 2,
    "seed": 7,
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PHITOOLS_NO_PROGRESS": "1"}


def _train(token_dir, out, *extra):
    return [sys.executable, "-m", "phitools", "train", "--data", str(token_dir), *FLAGS, "-o", str(out), *extra]


def _lines(path):
    out = []
    for line in path.read_bytes().splitlines():
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            pass
    return out


@pytest.mark.slow
def test_kill9_then_resume_gives_bitwise_identical_losses(token_dir, tmp_path):
    from phitools.train.config import resolve
    from phitools.train.loop import train

    # the uninterrupted run, in this process (one thread, like the subprocesses): the same numbers bit for bit
    train(resolve({"data": str(token_dir), "output": str(tmp_path / "straight"), **SAME}), argv=["test"])

    run = tmp_path / "killed"
    proc = subprocess.Popen(_train(token_dir, run), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill once step 10 is logged: past the step-8 checkpoint, before the end
        if metrics.exists() and any(r.get("step", 0) >= 10 for r in _lines(metrics)):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    logged = max(r["step"] for r in _lines(metrics))
    assert 10 <= logged < 24
    assert not (run / "config.json").exists()  # no final model: the run did not complete

    resumed = subprocess.run(_train(token_dir, run, "--resume"), env=ENV, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr.decode()
    a, b = _lines(tmp_path / "straight" / "metrics.jsonl"), _lines(metrics)
    assert [(r["type"], r["step"], r.get("loss"), r.get("eval_loss")) for r in a] == [
        (r["type"], r["step"], r.get("loss"), r.get("eval_loss")) for r in b
    ]
    assert len([r for r in b if r["type"] == "train"]) == 24
    assert (run / "model.safetensors").read_bytes() == (tmp_path / "straight" / "model.safetensors").read_bytes()
    man = orjson.loads((run / "manifest.json").read_bytes())
    assert man["train"]["status"] == "complete"
    assert man["train"]["resumed_from"].endswith(("step-000008", "step-000016"))
