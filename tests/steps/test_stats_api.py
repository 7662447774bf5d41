"""`phitools.steps.stats` from Python gives what `phitools stats` gives: the same report, the same deduplicated
records and manifest (apart from argv and time); its options check themselves with the command's errors."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, run_phitools
from same_as_cli import comparable

from phitools.errors import UsageError
from phitools.pipeline import Context
from phitools.steps.stats import Diversity, StatsOptions, report_json, run_stats


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    long = " ".join(f"w{i}" for i in range(60))
    recs = [
        {"id": i, "text": long + (" tail" if i % 3 else ""), "synth": {"draw": {"topic": "recursion"}}}
        for i in range(6)
    ]
    recs += [
        {"id": 10 + i, "text": f"Lesson {i}: loops and lists and how to use them well ({i * i})."} for i in range(8)
    ]
    recs += [{"id": 99, "body": "no text"}]
    path = tmp_path_factory.mktemp("stats") / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_the_report_equals_the_commands(records, tmp_path):
    spec = REPO / "examples" / "spec.toml"
    r = run_phitools("stats", records, "--spec", spec, "--opening-words", "3", "--top", "2", "--limit", "12")
    assert r.returncode == 0, r.stderr.decode()
    opts = StatsOptions(inputs=[str(records)], spec=str(spec), opening_words=3, top=2, limit=12)
    report = run_stats(opts)
    assert report_json(report) == r.stdout
    assert report["records"] == 12 and report["near_duplicates"]["near_duplicates"] >= 1
    assert report["coverage"]["topic"]["counts"] == {"recursion": 6}


def test_dedup_from_python_equals_the_command(records, tmp_path):
    cli, api = tmp_path / "cli", tmp_path / "api"
    r = run_phitools("stats", records, "--dedup", cli / "dd.jsonl", "-o", cli / "report.json", "--threshold", "0.7")
    assert r.returncode == 0, r.stderr.decode()
    report = run_stats(
        StatsOptions(inputs=[str(records)], dedup=str(api / "dd.jsonl"), output=str(api / "report.json"), threshold=0.7)
    )
    assert (api / "dd.jsonl").read_bytes() == (cli / "dd.jsonl").read_bytes()
    assert comparable(api / "dd.jsonl.manifest.json") == comparable(cli / "dd.jsonl.manifest.json")
    assert (api / "report.json").read_bytes() == (cli / "report.json").read_bytes() == report_json(report)
    assert report["near_duplicates"]["near_duplicates"] == 5  # the five copies of the long text after the first
    assert sorted(p.name for p in api.iterdir()) == ["dd.jsonl", "dd.jsonl.manifest.json", "report.json"]


def test_the_step_passes_records_through_and_reports():
    recs = [{"text": "a b c d e f"}, {"text": "a b c d e f"}, {"text": "something else"}]
    step = Diversity(StatsOptions(dedup="unused", shingle=2, num_perm=16, bands=8))
    ctx = Context()
    assert [r["text"] for r in step(recs, ctx)] == ["a b c d e f", "something else"]
    assert ctx.stats.dropped == {"near_duplicate": 1}
    assert step.report()["records"] == 3 and step.manifest()["dedup"]["scope"] == "all records"
    plain = Diversity()
    assert list(plain(recs, Context())) == recs and plain.manifest() == {}


def test_options_check_themselves():
    with pytest.raises(UsageError, match="--num-perm 100 is not a multiple of --bands 32"):
        StatsOptions(num_perm=100)
    with pytest.raises(UsageError, match="--dedup - writes records to stdout, so the report needs -o FILE"):
        StatsOptions(dedup="-")
    with pytest.raises(UsageError, match="--threshold must be at least 0.01"):
        StatsOptions(threshold=0)
    with pytest.raises(UsageError, match="--top must be at least 0"):
        StatsOptions(top=-1)
    assert StatsOptions(dedup="-", output="report.json").params().rows == 4
