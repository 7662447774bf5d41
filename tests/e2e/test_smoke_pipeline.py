"""CI smoke job: the whole recipe at toy scale through real subprocess pipes.

ingest | label (heuristic rater) -> classify train/apply -> synth (loopback OpenAI-compatible server)
-> decontam | tokenize -> train -> grow -> train --init -> eval (sandboxed HumanEval) -> eval --perplexity
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from phitools.llm.testing import FakeLLMServer

PY = sys.executable

TEXTBOOK = (
    "## Lists in Python\n\nA list holds items in order. You can add to it with append and read items by index.\n\n"
    "```python\nnums = [3, 1, 2]\nnums.append(5)\nprint(sorted(nums))\n```\n\n"
    "Sorting returns a new list; the original stays.\n"
)
EXERCISE = (
    '```python\ndef add_all(xs: list[int]) -> int:\n    """Return the sum of xs.\n\n'
    '    >>> add_all([1, 2, 3])\n    6\n    """\n'
    "    total = 0\n    for x in xs:\n        total += x\n    return total\n```\n"
)


def _answer(body: dict) -> str:
    text = json.dumps(body)
    return EXERCISE if "programming exercises" in text else TEXTBOOK


def sh(cmd: str, cwd) -> subprocess.CompletedProcess:
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=cwd, capture_output=True, timeout=600)
    assert p.returncode == 0, f"{cmd}\n--- stderr ---\n{p.stderr.decode(errors='replace')[-3000:]}"
    return p


@pytest.mark.slow
def test_whole_recipe_at_toy_scale(tmp_path, stdlib_small):
    pt = f"{PY} -m phitools"
    topics = tmp_path / "topics.txt"
    topics.write_text("lists\ndictionaries\nrecursion\nstring formatting\n")
    with FakeLLMServer(answer=_answer) as srv:
        llm = f"--api-base {srv.url} --model fake"
        sh(f"{pt} ingest {stdlib_small} -o corpus/", tmp_path)
        sh(f"{pt} cat corpus/ | {pt} label --sample 60 --backend heuristic --seed 1 -o labeled/", tmp_path)
        sh(f"{pt} classify train labeled/ --features hash --estimator lgbm --folds 3 -o clf/", tmp_path)
        sh(f"{pt} classify apply clf/ corpus/ --keep-top 0.5 --rejects rejects.jsonl.zst -o filtered/", tmp_path)
        sh(f"{pt} synth --topics {topics} --kind textbook --n 4 {llm} --seed 1 -o synth-tb/", tmp_path)
        sh(f"{pt} synth --topics {topics} --kind exercise --n 4 {llm} --seed 1 -o synth-ex/", tmp_path)
    sh(
        f"{pt} decontam --benchmark humaneval --benchmark mbpp --no-download --drop filtered/ synth-tb/ synth-ex/ "
        f"| {pt} tokenize --train-tokenizer --vocab-size 512 --seq-len 64 -o tok/",
        tmp_path,
    )
    sh(
        f"{pt} train --data tok/ --preset tiny --seq-len 64 --batch-size 8 --max-steps 12 "
        "--save-every 6 --eval-every 6 --seed 7 -o runs/a",
        tmp_path,
    )
    sh(f"{pt} grow runs/a --d-model 256 --layers 3 --check -o runs/grown", tmp_path)
    sh(
        f"{pt} train --data tok/ --init runs/grown --seq-len 64 --batch-size 8 --max-steps 6 --seed 8 -o runs/b",
        tmp_path,
    )
    sh(
        f"{pt} eval runs/b --benchmark humaneval --no-download --n-samples 1 --limit 2 --max-tokens 24 -o results/",
        tmp_path,
    )
    sh(f"{pt} eval runs/b --perplexity tok/ --limit 64 -o ppl/", tmp_path)

    man = lambda d: json.loads((tmp_path / d / "manifest.json").read_text())  # noqa: E731
    corpus, filtered = man("corpus"), man("filtered")
    assert corpus["stats"]["records_out"] == 60
    assert filtered["stats"]["records_out"] == 30
    labeled = [json.loads(x) for x in sh(f"{pt} cat labeled/", tmp_path).stdout.splitlines()]
    assert len(labeled) == 60 and all(r["label"]["model"] == "heuristic" for r in labeled)
    ex = [json.loads(x) for x in sh(f"{pt} cat synth-ex/", tmp_path).stdout.splitlines()]
    assert len(ex) == 4 and all("def add_all" in r["prompt"] and "total += x" in r["solution"] for r in ex)
    tok = man("tok")
    assert tok["documents"] == 30 + 4 + 4 and tok["tokens"] > 0
    metrics = [json.loads(x) for x in (tmp_path / "runs/a/metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if m.get("loss") is not None]
    assert losses and losses[-1] < losses[0]
    summary = json.loads((tmp_path / "results" / "summary.json").read_text())
    assert summary["tasks"] == 2 and sum(summary["status"].values()) == 2 and "pass@1" in summary["pass_at_k"]
    ppl = json.loads((tmp_path / "ppl" / "perplexity.json").read_text())
    assert ppl["perplexity"] > 1
