"""`phitools eval` end to end, through real subprocesses (and typer's CliRunner for usage errors)."""

from __future__ import annotations

import ast
import json
import math
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from conftest import benchmark_rows

from phitools.llm.testing import FakeLLMServer

STDLIB = Path(sysconfig.get_paths()["stdlib"])
# tiny models on a shared 2-core machine: one intra-op thread is much faster than two fighting ones
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


OFFLINE = {"PHITOOLS_DATA_MIRROR": "http://127.0.0.1:9"}  # any download attempt would fail


def _he(n):
    return benchmark_rows("humaneval")[:n]


def _write(path: Path, recs) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random checkpoint (with tokenizer.json) and a token directory made with the same tokenizer."""
    import torch

    from phitools.model.checkpoint import save_checkpoint
    from phitools.model.phi import Phi, preset_config
    from phitools.shards import write_manifest
    from phitools.shards.tokens import TokenShardWriter
    from phitools.steps import tokenize as T

    root = tmp_path_factory.mktemp("evalcli")
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(STDLIB.glob("*.py"))[:12]]
    tok = T.train_tokenizer(texts, 300)
    tok.save(str(root / "tokenizer.json"))
    vocab = tok.get_vocab_size(with_added_tokens=True)
    torch.manual_seed(0)
    m = Phi(preset_config("tiny", vocab_size=vocab, n_layer=2, d_model=32, n_head=2, d_mlp=64, max_seq_len=128))
    ckpt = save_checkpoint(root / "run", m, extra_files={"tokenizer.json": root / "tokenizer.json"})
    tokdir = root / "tok"
    w = TokenShardWriter(tokdir, vocab_size=vocab, seq_len=32, packed=True, shard_tokens=2048)
    eot = T.eot_id(tok)
    for enc in tok.encode_batch(texts[:3]):
        w.add(np.array(enc.ids + [eot], dtype=np.int64))
    w.close()
    w.set_tokenizer(tok)
    w.commit(
        lambda path, fields: write_manifest(
            path,
            tool="tokenize",
            seed=0,
            outputs=w.shards,
            extra={
                **fields,
                "vocab_size": vocab,
                "eot_id": eot,
                "documents": 3,
                "tokenizer_sha256": T.tokenizer_sha256(tok),
            },
        )
    )
    return ckpt, tokdir, w.tokens


def test_scores_a_samples_file(phitools, tmp_path):
    probs = _he(6)
    recs = []
    for p in probs:
        recs.append({"task_id": p["task_id"], "completion": p["canonical_solution"], "model": "ref"})
        recs.append({"task_id": p["task_id"], "completion": "    return None\n"})
    samples = _write(tmp_path / "samples.jsonl", recs)
    out = tmp_path / "results"
    r = phitools("eval", "--benchmark", "humaneval", "--samples", samples, "-o", out, "--workers", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b""
    results = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    assert [(x["task_id"], x["completion_id"], x["passed"]) for x in results][:2] == [
        ("HumanEval/0", 0, True),
        ("HumanEval/0", 1, False),
    ]
    assert results[0]["model"] == "ref"  # unknown fields pass through
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pass_at_k"] == {"pass@1": 0.5}  # pass@10, pass@100 left out: 2 samples per task
    assert summary["status"]["passed"] == 6 and summary["tasks"] == 6 and summary["benchmark_pinned"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tool"] == "eval" and {o["path"] for o in manifest["outputs"]} == {"results.jsonl", "summary.json"}
    err = r.stderr.decode()
    assert "pass@1" in err and "50.00%" in err and "cover 6 of 164 problems" in err


def test_stdin_to_stdout(phitools, tmp_path):
    p = _he(1)[0]
    line = json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}).encode() + b"\n"
    r = phitools("eval", "--samples", "-", "--limit", "1", "-q", input=line)
    assert r.returncode == 0, r.stderr.decode()
    out = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(out) == 1 and out[0]["passed"] is True and out[0]["status"] == "passed"
    assert r.stderr == b""


def test_mbpp_samples(phitools, tmp_path):
    rows = [r for r in benchmark_rows("mbpp") if 11 <= r["task_id"] <= 14]
    recs = [{"task_id": r["task_id"], "completion": r["code"]} for r in rows]
    recs.append({"task_id": "Mbpp/11", "completion": "def remove_Occ(s, ch):\n    return s\n"})
    _write(tmp_path / "s.jsonl", recs)
    # as written in the issue: no --data-dir, no network (the shipped MBPP)
    r = phitools(
        "eval", "--benchmark", "mbpp", "--samples", "s.jsonl", "-o", "r/", "--k", "1", cwd=tmp_path, env=OFFLINE
    )
    assert r.returncode == 0, r.stderr.decode()
    out = tmp_path / "r"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["benchmark_pinned"] and "phitools/data/benchmarks/mbpp/mbpp.jsonl.gz" in summary["benchmark_source"]
    assert summary["status"] == {"passed": 4, "failed": 1, "timed_out": 0, "error": 0}
    assert summary["pass_at_k"]["pass@1"] == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert "cover 4 of 500" in r.stderr.decode()


def test_bad_samples_fail_cleanly(phitools, tmp_path):
    samples = _write(
        tmp_path / "bad.jsonl",
        [{"task_id": "HumanEval/0", "completion": ""}, {"task_id": "HumanEval/999", "completion": ""}],
    )
    out = tmp_path / "never"
    r = phitools("eval", "--samples", samples, "-o", out)
    assert r.returncode == 1
    err = r.stderr.decode().strip()
    assert err.count("\n") == 0 and "bad.jsonl" in err and "HumanEval/999" in err
    assert not (out / "manifest.json").exists()


def test_usage_errors():
    from typer.testing import CliRunner

    from phitools.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["eval", "--benchmark", "humaneval"])
    assert r.exit_code == 2 and "exactly one source" in r.output
    r = runner.invoke(app, ["eval", "--samples", "x.jsonl", "--k", "0"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["eval", "--help"])
    assert r.exit_code == 0 and "phitools eval --benchmark humaneval --samples samples.jsonl -o results/" in r.output


@pytest.mark.slow
def test_generates_from_a_checkpoint(phitools, tiny, tmp_path):
    ckpt, _, _ = tiny
    out = tmp_path / "results"
    r = phitools(
        "eval",
        ckpt,
        "--benchmark",
        "humaneval",
        "--n-samples",
        "2",
        "--limit",
        "2",
        "-o",
        out,
        "--max-new-tokens",
        "16",
        "--k",
        "1,2",
        "--device",
        "cpu",
        env=ONE_THREAD,
    )
    assert r.returncode == 0, r.stderr.decode()
    samples = [json.loads(ln) for ln in (out / "samples.jsonl").read_text().splitlines()]
    assert [s["task_id"] for s in samples] == ["HumanEval/0"] * 2 + ["HumanEval/1"] * 2
    results = [json.loads(ln) for ln in (out / "results.jsonl").read_text().splitlines()]
    assert len(results) == 4 and all(x["passed"] is False for x in results)  # a random model
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generation"]["n_samples"] == 2 and manifest["generation"]["temperature"] == 0.8
    # the generated samples re-score to the same verdicts
    r2 = phitools("eval", "--samples", out / "samples.jsonl", "-q", "--limit", "2")
    assert [json.loads(ln)["status"] for ln in r2.stdout.splitlines()] == [x["status"] for x in results]


def test_generates_from_an_endpoint(phitools, tmp_path):
    probs = {p["prompt"]: p for p in _he(3)}

    def answer(body):
        return probs[body["prompt"]]["canonical_solution"] + "\n\ndef extra():\n    pass\n"

    out = tmp_path / "ep"
    with FakeLLMServer(answer=answer) as srv:
        r = phitools(
            "eval", "--api-base", srv.url, "--model", "fake-model", "--limit", "3", "-o", out, "--cache", "off"
        )
    assert r.returncode == 0, r.stderr.decode()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pass_at_k"] == {"pass@1": 1.0} and summary["samples"] == 3


def test_request_timeout_is_its_own_not_the_sandbox_timeout(phitools, tmp_path):
    # A server that needs 1.5 s per completion, with a 0.5 s sandbox --timeout: the completions must all
    # arrive (the request timeout defaults to 600 s); --request-timeout 0.3 makes them time out.
    probs = {p["prompt"]: p for p in _he(2)}

    def answer(body):
        return probs[body["prompt"]]["canonical_solution"]

    with FakeLLMServer(answer=answer, latency=1.5) as srv:
        out = tmp_path / "ok"
        r = phitools(
            "eval",
            "--api-base",
            srv.url,
            "--model",
            "fake-model",
            "--limit",
            "2",
            "--timeout",
            "0.5",
            "--max-attempts",
            "1",
            "--cache",
            "off",
            "-o",
            out,
        )
        assert r.returncode == 0, r.stderr.decode()
        samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
        assert len(samples) == 2 and not any("generation_error" in x for x in samples)
        m = json.loads((out / "manifest.json").read_text())
        assert m["generation"]["llm"]["timeout_s"] == 600 and m["eval"]["limits"]["cpu"] == 0.5
        assert json.loads((out / "summary.json").read_text())["pass_at_k"] == {"pass@1": 1.0}

        short = tmp_path / "short"
        r = phitools(
            "eval",
            "--api-base",
            srv.url,
            "--model",
            "fake-model",
            "--limit",
            "2",
            "--request-timeout",
            "0.3",
            "--max-attempts",
            "1",
            "--cache",
            "off",
            "-o",
            short,
        )
    assert r.returncode == 0, r.stderr.decode()
    samples = [json.loads(line) for line in (short / "samples.jsonl").read_text().splitlines()]
    assert all(x["generation_error"].startswith("timeout after 0.3s") for x in samples) and len(samples) == 2, samples
    assert "2 of 2 requests failed" in r.stderr.decode()


def test_no_command_gathers_its_options_from_locals():
    import phitools.cli as cli_pkg
    from phitools.llm.options import LLMOptions

    assert not hasattr(LLMOptions, "pick")
    for f in Path(cli_pkg.__file__).parent.glob("*.py"):
        calls = [
            n
            for n in ast.walk(ast.parse(f.read_text()))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("locals", "vars")
        ]
        assert not calls, f"{f.name}:{calls[0].lineno} builds options from locals()"


@pytest.mark.slow
def test_perplexity(phitools, tiny, tmp_path):
    ckpt, tokdir, n_tokens = tiny
    out = tmp_path / "ppl"
    r = phitools("eval", ckpt, "--perplexity", tokdir, "-o", out, "-q", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr.decode()
    res = json.loads((out / "perplexity.json").read_text())
    assert res["perplexity"] == pytest.approx(math.exp(res["loss"]))
    assert res["tokenizer_matches"] is True and json.loads((out / "manifest.json").read_text())["tool"] == "eval"
    # every token but each shard's first is predicted exactly once
    from phitools.shards.tokens import open_token_dir

    td = open_token_dir(tokdir)
    assert res["tokens"] == sum(len(a) - 1 for a in td.arrays) and res["tokens"] < n_tokens
    # the same number computed directly, one window at a time
    import torch

    from phitools.eval.perplexity import windows
    from phitools.model.checkpoint import load_checkpoint

    model, cfg, _ = load_checkpoint(ckpt)
    torch.set_num_threads(1)
    tot, cnt = 0.0, 0
    with torch.inference_mode():
        for arr in td.arrays:
            for s0, e0 in windows(len(arr), res["seq_len"]):
                x = torch.from_numpy(np.asarray(arr[s0:e0], dtype=np.int64))[None]
                logits = model(x[:, :-1])
                tot += float(torch.nn.functional.cross_entropy(logits[0], x[0, 1:], reduction="sum"))
                cnt += x.shape[1] - 1
    assert cnt == res["tokens"] and res["loss"] == pytest.approx(tot / cnt, rel=1e-4)
