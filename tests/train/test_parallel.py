"""Two processes under torchrun (gloo, CPU) match one process with the same global batch.

Tolerance: 1e-5 relative on every logged loss (observed ~1e-7: the only difference is the order in which
the two ranks' gradients are summed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import orjson
import pytest

SAME = {
    "preset": "tiny",
    "model": {"n_layer": 2, "d_model": 32, "n_head": 2, "d_mlp": 64},
    "seq_len": 32,
    "batch_size": 8,
    "micro_batch_size": 2,
    "max_steps": 5,
    "save_every": 3,
    "eval_every": 5,
    "eval_batches": 1,
    "seed": 3,
}
FLAGS = [
    "--preset",
    "tiny",
    "--n-layer",
    "2",
    "--d-model",
    "32",
    "--n-head",
    "2",
    "--d-mlp",
    "64",
    "--seq-len",
    "32",
    "--batch-size",
    "8",
    "--micro-batch-size",
    "2",
    "--max-steps",
    "5",
    "--save-every",
    "3",
    "--eval-every",
    "5",
    "--eval-batches",
    "1",
    "--seed",
    "3",
    "--quiet",
]


def _losses(run):
    return [
        (r["type"], r["step"], r.get("loss", r.get("eval_loss")))
        for r in map(orjson.loads, (run / "metrics.jsonl").read_bytes().splitlines())
    ]


@pytest.fixture(scope="module")
def one_process(token_dir, tmp_path_factory):
    import torch

    from phitools.train.config import resolve
    from phitools.train.loop import train

    out = tmp_path_factory.mktemp("one") / "run"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(resolve({"data": str(token_dir), "output": str(out), **SAME}), argv=["test"])
    finally:
        torch.set_num_threads(n)
    return _losses(out)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_gloo_processes_match_one(mode, token_dir, tmp_path, one_process):
    run = tmp_path / mode
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "phitools",
        "train",
        "--data",
        str(token_dir),
        *FLAGS,
        "--parallel",
        mode,
        "-o",
        str(run),
    ]
    for attempt in range(2):
        p = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, timeout=300)
        # gloo on this shared 2-core box: in 2 of 4 full-suite runs on two pytest workers (never alone, never in
        # 8 runs beside the sandbox suite) one rank aborted in PyTorch's C++ code (SIGABRT, this message); such a
        # run is tried once more, anything else fails at once
        if p.returncode == 0 or attempt or b"terminate called without an active exception" not in p.stderr:
            break
        shutil.rmtree(run, ignore_errors=True)
    assert p.returncode == 0, p.stderr.decode()[:6000] + "\n...\n" + p.stderr.decode()[-3000:]
    two = _losses(run)
    assert [x[:2] for x in two] == [x[:2] for x in one_process]  # rank 0 alone wrote the metrics: one line per step
    for (_, _, a), (_, _, b) in zip(one_process, two):
        assert b == pytest.approx(a, rel=1e-5)
    man = orjson.loads((run / "manifest.json").read_bytes())
    assert man["train"]["world_size"] == 2 and man["train"]["grad_accum"] == 2  # 8 = 2 ranks x 2 micro x 2 accumulation
    from phitools.model.checkpoint import load_checkpoint

    load_checkpoint(run)  # the final model is a plain checkpoint, gathered from the shards under FSDP
