"""The decontam step from Python gives what `phitools decontam` gives (records and manifest, apart from argv and
time); its options check themselves with the command's one-line errors."""

from __future__ import annotations

import json

import pytest
from conftest import benchmark_rows, run_phitools
from same_as_cli import comparable

from phitools import pipeline
from phitools.errors import DataError, UsageError
from phitools.pipeline import Context, IOOptions
from phitools.steps.decontam import Decontam, DecontamOptions


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    he = benchmark_rows("humaneval")
    mb = benchmark_rows("mbpp")
    recs = [
        {"id": "copy", "text": he[2]["prompt"] + he[2]["canonical_solution"]},
        {"id": "mbpp-in-markdown", "text": "Some code:\n```python\n" + mb[40]["code"] + "\n```\n"},
        {"id": "clean", "text": "def add(a, b):\n    return a + b\n"},
        {"id": "no-text", "body": "x"},
    ] + [{"id": f"p{i}", "text": f"A short paragraph number {i} about lists."} for i in range(10)]
    path = tmp_path_factory.mktemp("decontam") / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


@pytest.mark.parametrize(
    "flags,opts",
    [
        ([], {}),
        (["-b", "humaneval", "-b", "mbpp", "--drop"], {"benchmarks": ["humaneval", "mbpp"], "drop": True}),
        (["-b", "mbpp", "--no-ast", "--ngram", "10"], {"benchmarks": ["mbpp"], "ast": False, "ngram": 10}),
    ],
)
def test_the_step_equals_the_command(records, tmp_path, flags, opts):
    r = run_phitools("decontam", records, *flags, "-o", tmp_path / "cli")
    assert r.returncode == 0, r.stderr.decode()
    step = Decontam(DecontamOptions(**opts))
    stats = pipeline.run(step, IOOptions(inputs=[str(records)], output=str(tmp_path / "api")))
    assert (tmp_path / "api" / "part-00000.jsonl.zst").read_bytes() == (
        tmp_path / "cli" / "part-00000.jsonl.zst"
    ).read_bytes()
    assert comparable(tmp_path / "api" / "manifest.json") == comparable(tmp_path / "cli" / "manifest.json")
    assert step.counts["contaminated"] >= 1 and step.counts["checked"] == 14
    assert stats.dropped.get("contaminated", 0) == (step.counts["contaminated"] if opts.get("drop") else 0)


def test_the_step_on_plain_dicts(records):
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    step = Decontam(DecontamOptions(drop=True))
    ctx = Context()
    kept = list(step(rows, ctx))
    assert "copy" not in [r["id"] for r in kept] and len(kept) == len(rows) - 1
    assert ctx.stats.dropped == {"contaminated": 1}
    entry = step.manifest()["decontam"]
    assert entry["action"] == "drop" and entry["contaminated"] == 1 and entry["top_tasks"] == [["HumanEval/2", 1]]
    assert entry["without_field"] == 1 and entry["method"]["ngram"] == 13


def test_options_check_themselves(tmp_path):
    with pytest.raises(UsageError, match="--ngram must be at least 1, got 0"):
        DecontamOptions(ngram=0)
    with pytest.raises(UsageError, match="--min-hits must be at least 1"):
        DecontamOptions(min_hits=0)
    with pytest.raises(UsageError, match="--benchmark expects list of string"):
        DecontamOptions(benchmarks="humaneval")
    with pytest.raises(UsageError, match="at least one --benchmark"):
        DecontamOptions(benchmarks=[])
    with pytest.raises(UsageError, match="ast_coverage must be in"):
        DecontamOptions(ast_coverage=1.5)
    # benchmarks are found when the step is built: before anything is read or written
    with pytest.raises(UsageError, match="neither a known benchmark"):
        Decontam(DecontamOptions(benchmarks=["humaneva1"]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "?"}\n')
    with pytest.raises(DataError, match="none of prompt/canonical_solution/code"):
        Decontam(DecontamOptions(benchmarks=[str(bad)]))
