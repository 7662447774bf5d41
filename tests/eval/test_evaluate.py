"""`phitools.eval.run` from Python does what `phitools eval` does: the same result records (verdicts, statuses,
check_ids), the same summary, the same outputs; and the same one-line usage errors."""

from __future__ import annotations

import dataclasses
import json
import sysconfig
from pathlib import Path

import pytest
from conftest import run_phitools

from phitools import eval as ev
from phitools.errors import UsageError
from phitools.eval import EvalOptions
from phitools.llm.options import GenerationEndpointOptions
from phitools.llm.testing import FakeLLMServer
from phitools.records import loads_record

STDLIB = Path(sysconfig.get_paths()["stdlib"])
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TIMING = ("cpu_s", "wall_s")
RUN_TIME = ("seconds", "checks_per_s")


def _write(path: Path, recs) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def _problems(n: int) -> list[dict]:
    return [
        {
            "task_id": f"toy/{i}",
            "prompt": f'def f{i}(x):\n    """x + {i}"""\n',
            "entry_point": f"f{i}",
            "test": f"def check(candidate):\n    assert candidate(3) == {3 + i}\n",
            "canonical_solution": f"    return x + {i}\n",
        }
        for i in range(n)
    ]


def _results(out: Path) -> list[dict]:
    return [
        {k: v for k, v in loads_record(line).items() if k not in TIMING}
        for line in (out / "results.jsonl").read_bytes().splitlines()
    ]


def _of_any_run(summary: dict) -> dict:
    """A summary less what differs between two identical runs: how long they took, the run's cgroup names."""
    summary = {k: v for k, v in summary.items() if k not in RUN_TIME}
    if "cgroup" in summary["sandbox"]:
        summary["sandbox"] = {**summary["sandbox"], "cgroup": {**summary["sandbox"]["cgroup"], "paths": None}}
    return summary


def _summary(out: Path) -> dict:
    return _of_any_run(json.loads((out / "summary.json").read_text()))


def _manifest(out: Path) -> dict:
    m = json.loads((out / "manifest.json").read_text())
    for key in ("argv", "created", "outputs"):
        m.pop(key)
    m["summary"] = _of_any_run(m["summary"])
    m["stats"]["eval"] = _of_any_run(m["stats"]["eval"])
    return m


@pytest.fixture
def toy(tmp_path) -> tuple[Path, Path]:
    """A problems file and samples for it: passes, a wrong answer, an exception, a timeout; two samples per task."""
    problems = _write(tmp_path / "problems.jsonl", _problems(3))
    samples = _write(
        tmp_path / "samples.jsonl",
        [
            {"task_id": "toy/0", "completion": "    return x + 0\n", "model": "a"},
            {"task_id": "toy/0", "completion": "    return x\n", "model": "b"},
            {"task_id": "toy/1", "completion": "    return x - 1\n"},
            {"task_id": "toy/1", "completion": "    raise ValueError('no')\n"},
            {"task_id": "toy/2", "completion": "    while True:\n        pass\n"},
            {"task_id": "toy/2", "completion": "    return x + 2\n"},
        ],
    )
    return problems, samples


def test_samples_from_python_equal_the_command(toy, tmp_path, capfdbinary):
    problems, samples = toy
    flags = ["-b", problems, "--samples", samples, "--timeout", "0.5", "-j", "2", "--k", "1,2"]
    r = run_phitools("eval", *flags, "-o", tmp_path / "cli", "-q", check=True)
    assert r.stdout == b""
    opts = EvalOptions(
        benchmark=str(problems), samples=str(samples), timeout=0.5, workers=2, ks="1,2", output=str(tmp_path / "py")
    )
    seen: list[dict] = []
    summary = ev.run(opts, on_record=seen.append)

    cli, py = tmp_path / "cli", tmp_path / "py"
    assert _results(py) == _results(cli)
    assert [x["status"] for x in _results(py)] == ["passed", "passed", "failed", "failed", "timed_out", "passed"]
    assert len({x["check_id"] for x in _results(py)}) == 6
    assert _summary(py) == _summary(cli)
    assert _of_any_run(summary) == _summary(py)  # run returns the summary
    assert summary["pass_at_k"] == {"pass@1": 0.5, "pass@2": 2 / 3}
    assert _manifest(py) == _manifest(cli)
    assert sorted(p.name for p in py.iterdir()) == sorted(p.name for p in cli.iterdir())
    # on_record saw every record, in the final order
    assert [{k: v for k, v in x.items() if k not in TIMING} for x in seen] == _results(py)

    # without -o: the same records on stdout, from the command and from Python
    r = run_phitools("eval", *flags, "-q", check=True)
    capfdbinary.readouterr()
    ev.run(dataclasses.replace(opts, output=None))
    from_python = capfdbinary.readouterr().out
    for stdout in (r.stdout, from_python):
        streamed = [{k: v for k, v in loads_record(ln).items() if k not in TIMING} for ln in stdout.splitlines()]
        assert streamed == _results(cli)


def test_python_resumes_what_the_command_started(toy, tmp_path):
    problems, samples = toy
    out = tmp_path / "out"
    run_phitools("eval", "-b", problems, "--samples", samples, "--timeout", "0.5", "-o", out, "-q", check=True)
    first = _results(out)
    summary = ev.run(EvalOptions(benchmark=str(problems), samples=str(samples), timeout=0.5, output=str(out)))
    assert summary["resumed"] == 6 and summary["checked"] == 0
    assert _results(out) == first


def test_a_concurrent_eval_into_one_directory_is_refused_from_python(toy, tmp_path):
    from phitools.eval.results import ResultsLog

    problems, samples = toy
    out = tmp_path / "out"
    with ResultsLog(out):
        with pytest.raises(UsageError, match="another phitools eval is writing there"):
            ev.run(EvalOptions(benchmark=str(problems), samples=str(samples), output=str(out)))


def _tiny_checkpoint(root: Path) -> Path:
    import torch

    from phitools.model.checkpoint import save_checkpoint
    from phitools.model.phi import Phi, preset_config
    from phitools.steps import tokenize as T

    texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(STDLIB.glob("*.py"))[:12]]
    tok = T.train_tokenizer(texts, 300)
    tok.save(str(root / "tokenizer.json"))
    torch.manual_seed(0)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    m = Phi(preset_config("tiny", vocab_size=vocab, n_layer=2, d_model=32, n_head=2, d_mlp=64, max_seq_len=128))
    return save_checkpoint(root / "run", m, extra_files={"tokenizer.json": root / "tokenizer.json"})


@pytest.mark.slow
def test_a_checkpoint_from_python_equals_the_command(tmp_path, monkeypatch):
    import torch

    ckpt = _tiny_checkpoint(tmp_path)
    flags = ["--limit", "2", "--n-samples", "2", "--max-new-tokens", "12", "--k", "1,2", "--device", "cpu"]
    run_phitools("eval", ckpt, *flags, "-o", tmp_path / "cli", "-q", env=ONE_THREAD, check=True)
    monkeypatch.setattr(torch, "get_num_threads", torch.get_num_threads)  # restored after the test
    torch.set_num_threads(1)
    opts = EvalOptions(
        checkpoint=str(ckpt), limit=2, n_samples=2, max_tokens=12, ks="1,2", device="cpu", output=str(tmp_path / "py")
    )
    summary = ev.run(opts)

    cli, py = tmp_path / "cli", tmp_path / "py"
    assert (py / "samples.jsonl").read_bytes() == (cli / "samples.jsonl").read_bytes()
    assert _results(py) == _results(cli) and len(_results(py)) == 4
    assert _summary(py) == _summary(cli) and summary["samples"] == 4
    assert _manifest(py) == _manifest(cli)
    assert _manifest(py)["generation"]["temperature"] == 0.8  # two samples: sampled, not greedy


def test_an_endpoint_from_python_equals_the_command(tmp_path):
    problems = _write(tmp_path / "problems.jsonl", _problems(2))
    answers = {p["prompt"]: p["canonical_solution"] for p in _problems(2)}
    with FakeLLMServer(answer=lambda body: answers[body["prompt"]]) as srv:
        run_phitools(
            "eval", "-b", problems, "--api-base", srv.url, "--model", "m", "--cache", "off", "-o", tmp_path / "cli",
            "-q", check=True,
        )  # fmt: skip
        summary = ev.run(
            EvalOptions(benchmark=str(problems), output=str(tmp_path / "py")),
            GenerationEndpointOptions(api_base=srv.url, model=["m"], cache="off"),
        )
    cli, py = tmp_path / "cli", tmp_path / "py"
    assert (py / "samples.jsonl").read_bytes() == (cli / "samples.jsonl").read_bytes()
    assert _results(py) == _results(cli) and summary["pass_at_k"] == {"pass@1": 1.0}
    m = _manifest(py)
    assert m["generation"]["llm"]["timeout_s"] == 600  # the endpoint's own wait, not the sandbox's --timeout
    assert m["eval"]["limits"]["cpu"] == 3.0


@pytest.mark.slow
def test_perplexity_from_python_equals_the_command(tmp_path):
    import numpy as np

    from phitools.shards import write_manifest
    from phitools.shards.tokens import TokenShardWriter
    from phitools.steps import tokenize as T

    ckpt = _tiny_checkpoint(tmp_path)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    vocab = tok.get_vocab_size(with_added_tokens=True)
    tokdir = tmp_path / "tok"
    w = TokenShardWriter(tokdir, vocab_size=vocab, seq_len=32, packed=True, shard_tokens=2048)
    for p in sorted(STDLIB.glob("*.py"))[:2]:
        w.add(np.array(tok.encode(p.read_text(encoding="utf-8", errors="replace")).ids, dtype=np.int64))
    w.close()
    w.set_tokenizer(tok)
    w.commit(
        lambda path, fields: write_manifest(
            path,
            tool="tokenize",
            seed=0,
            outputs=w.shards,
            extra={**fields, "vocab_size": vocab, "eot_id": T.eot_id(tok), "tokenizer_sha256": T.tokenizer_sha256(tok)},
        )
    )
    r = run_phitools("eval", ckpt, "--perplexity", tokdir, "--limit", "20", "-q", env=ONE_THREAD, check=True)
    res = ev.run(EvalOptions(checkpoint=str(ckpt), perplexity=str(tokdir), limit=20, output=str(tmp_path / "py")))
    assert json.loads(r.stdout) == pytest.approx(res)
    assert json.loads((tmp_path / "py" / "perplexity.json").read_text()) == res
    assert res["windows"] == 20 and res["tokenizer_matches"] is True


@pytest.mark.parametrize(
    "kwargs, endpoint, message",
    [
        ({}, None, "give exactly one source of completions"),
        ({"samples": "s.jsonl", "checkpoint": "runs/a"}, None, "one source of completions (got CHECKPOINT, --samples)"),
        ({"samples": "s.jsonl"}, {"api_base": "http://x/v1"}, "(got --samples, --api-base/--backend)"),
        ({"samples": "s.jsonl", "ks": "0"}, None, "--k wants positive integers"),
        ({"samples": "s.jsonl", "memory": "lots"}, None, "'lots' is not a size"),
        ({"samples": "s.jsonl", "timeout": 0.01}, None, "--timeout must be at least 0.05"),
        ({"samples": "s.jsonl", "top_p": 2.0}, None, "--top-p must be at most 1"),
        ({"samples": "s.jsonl", "n_samples": "3"}, None, "--n-samples expects integer"),
        ({"perplexity": "tok/"}, None, "--perplexity needs a CHECKPOINT"),
        ({"perplexity": "tok/", "checkpoint": "c", "samples": "s"}, None, "--perplexity and --samples do not go"),
        ({"samples": "s.jsonl", "output": "FILE"}, None, "exists and is not a directory"),
        ({"samples": "SAMPLES", "limit": 0}, None, "--limit 0 leaves no problems to score"),
    ],
)  # fmt: skip
def test_usage_errors_from_python_are_the_commands(tmp_path, kwargs, endpoint, message):
    (tmp_path / "FILE").write_text("x")
    _write(tmp_path / "SAMPLES", [{"task_id": "HumanEval/0", "completion": ""}])
    kwargs = {k: str(tmp_path / v) if v in ("FILE", "SAMPLES") else v for k, v in kwargs.items()}
    with pytest.raises(UsageError) as err:
        ev.run(EvalOptions(**kwargs), GenerationEndpointOptions(**(endpoint or {})))
    assert message in str(err.value) and "\n" not in str(err.value)
    # the command says the same in one line and exits 2 (a Python type error has no flag form)
    if "expects" in message:
        return
    flags = {
        "checkpoint": [], "samples": ["--samples"], "ks": ["--k"], "memory": ["--memory"], "timeout": ["--timeout"],
        "top_p": ["--top-p"], "perplexity": ["--perplexity"], "output": ["-o"], "limit": ["--limit"],
    }  # fmt: skip
    argv = [x for k, v in kwargs.items() for x in (*flags[k], str(v))]
    argv += [x for k, v in (endpoint or {}).items() for x in ("--" + k.replace("_", "-"), v)]
    r = run_phitools("eval", *argv, cwd=tmp_path)
    err_line = r.stderr.decode().strip()
    assert r.returncode == 2, err_line
    if "--timeout" not in message and "--top-p" not in message:  # typer itself checks ranges on the command line
        assert err_line == f"phitools eval: error: {err.value}"
