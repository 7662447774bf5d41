"""`phitools synth` through real processes and pipes, against a loopback OpenAI-compatible server."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from phitools.cli import app
from phitools.llm.testing import FakeLLMServer, request_text

REPO = Path(__file__).resolve().parents[2]
TOPICS = str(REPO / "examples" / "topics.txt")
SPEC = str(REPO / "examples" / "spec.toml")


def answer(body: dict) -> str:
    """A small textbook section, or an exercise, that depends on the prompt and the seed."""
    text = request_text(body)
    tag = hashlib.sha256(f"{text}|{body.get('seed')}".encode()).hexdigest()[:10]
    if "exercise" in text:
        return (
            f'```python\ndef f_{tag}(x: int) -> int:\n    """Add one.\n\n    >>> f_{tag}(1)\n    2\n    """\n'
            "    return x + 1\n```\n"
        )
    return (
        f"# Section {tag}\n\nA loop repeats a block of code ({tag}).\n\n"
        "```python\nfor i in range(3):\n    print(i)\n```\n"
    )


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer(answer=answer) as srv:
        yield srv


def phitools_cmd(*args) -> list:
    return [sys.executable, "-m", "phitools", *map(str, args)]


def records(blob: bytes) -> list:
    return [orjson.loads(line) for line in blob.splitlines() if line.strip()]


def test_synth_pipes_into_tokenize(server, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    synth = subprocess.Popen(
        phitools_cmd("synth", "--topics", TOPICS, "--n", "6", "--api-base", server.url, "--model", "fake"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    tok = subprocess.run(
        phitools_cmd("tokenize", "--train-tokenizer", "--vocab-size", "300", "--seq-len", "16", "-o", tmp_path / "tok"),
        stdin=synth.stdout,
        capture_output=True,
        env=env,
        timeout=120,
    )
    synth.stdout.close()
    assert synth.wait(timeout=60) == 0, synth.stderr.read().decode()
    assert tok.returncode == 0, tok.stderr.decode()
    m = json.loads((tmp_path / "tok" / "manifest.json").read_text())
    assert m["stats"]["records_in"] == 6
    assert (tmp_path / "cache" / "phitools" / "llm-cache.sqlite").exists()  # stdout runs cache in the user cache dir


def test_synth_to_a_directory_then_resume_from_the_cache(server, tmp_path, phitools):
    out = tmp_path / "ex"
    args = ["synth", "--spec", SPEC, "--n", "9", "--seed", "4", "--api-base", server.url, "--model", "fake", "-o", out]
    before = server.n
    r = phitools(*args)
    assert r.returncode == 0, r.stderr.decode()
    assert server.n - before == 9
    m = json.loads((out / "manifest.json").read_text())
    s = m["synth"]
    assert s["kind"] == "exercise" and s["written"] == 9 and s["failed_total"] == 0 and s["seed"] == 4
    assert sum(s["coverage"]["difficulty"]["counts"].values()) == 9
    assert set(s["coverage"]) == {"topic", "difficulty", "audience", "function_name", "setting", "requirement"}
    assert m["llm"]["usage"]["requests"] == 9 and "OPENAI_API_KEY" not in json.dumps(m)
    first = records(phitools("cat", out).stdout)
    assert all(rec["text"] == rec["prompt"] + rec["solution"] for rec in first)
    # the same command again: answered requests come from the cache in the output dir; output identical
    r2 = phitools(*args)
    assert r2.returncode == 0 and server.n - before == 9
    assert records(phitools("cat", out).stdout) == first
    assert json.loads((out / "manifest.json").read_text())["llm"]["usage"]["cached"] == 9


def test_dry_run_is_deterministic_and_shards_partition_it():
    run = CliRunner().invoke
    base = ["synth", "--spec", SPEC, "--n", "20", "--dry-run", "--seed"]
    a = run(app, base + ["1"])
    assert a.exit_code == 0, a.output
    recs = records(a.stdout_bytes)
    assert len(recs) == 20 and recs == records(run(app, base + ["1"]).stdout_bytes)
    assert [r["synth"]["draw"] for r in recs] != [
        r["synth"]["draw"] for r in records(run(app, base + ["2"]).stdout_bytes)
    ]
    parts = [records(run(app, base + ["1", "--shard", f"{k}/3"]).stdout_bytes) for k in range(3)]
    assert sorted((r for p in parts for r in p), key=lambda r: r["id"]) == recs
    for r in recs:  # the drawn topic is what the prompt asks about
        assert f'about "{r["synth"]["draw"]["topic"]}"' in r["messages"][-1]["content"]


def test_errors_are_one_line_with_the_place(tmp_path, phitools):
    bad = tmp_path / "spec.toml"
    bad.write_text('[dimensions]\ntopic = ["a", "b"]\nstyle = { values = ["x"], weights = [1, 2] }\n')
    r = phitools("synth", "--spec", bad, "--dry-run")
    err = r.stderr.decode().strip()
    assert r.returncode == 2 and r.stdout == b""
    assert (
        err.startswith(f"phitools synth: error: {bad}:3: dimension 'style': weights has 2 entries") and "\n" not in err
    )
    r = phitools("synth", "--n", "3")
    assert r.returncode == 2 and b"--topics FILE and/or --spec FILE" in r.stderr
    tpl = tmp_path / "t.txt"
    tpl.write_text("Explain {topic} to {reader}.\n")
    r = phitools("synth", "--topics", TOPICS, "--template", tpl, "--dry-run")
    assert r.returncode == 2 and f"{tpl}:1: placeholder {{reader}} is not a dimension".encode() in r.stderr


def test_all_answers_unusable_fails_and_keeps_them(tmp_path, phitools):
    with FakeLLMServer(answer="no code here") as srv:
        out, failed = tmp_path / "ex.jsonl", tmp_path / "failed.jsonl"
        r = phitools(
            "synth",
            "--topics",
            TOPICS,
            "--kind",
            "exercise",
            "--n",
            "3",
            "--max-attempts",
            "2",
            "--api-base",
            srv.url,
            "--model",
            "fake",
            "-o",
            out,
            "--failed",
            failed,
        )
        assert srv.n == 6  # two attempts each
    assert r.returncode == 1 and b"no record survived: all 3 failed (unparseable: 3)" in r.stderr
    assert not out.exists() and not Path(str(out) + ".manifest.json").exists()
    kept = records(failed.read_bytes())
    assert len(kept) == 3 and all(k["raw"] == "no code here" and "text" not in k for k in kept)


def test_dedup_and_stats(tmp_path, phitools):
    same = "# Loops\n\n" + " ".join(f"word{i}" for i in range(80))
    with FakeLLMServer(answer=same) as srv:
        r = phitools(
            "synth",
            "--topics",
            TOPICS,
            "--n",
            "5",
            "--dedup",
            "--stats",
            "--api-base",
            srv.url,
            "--model",
            "fake",
            "-o",
            tmp_path / "tb",
        )
    assert r.returncode == 0, r.stderr.decode()
    m = json.loads((tmp_path / "tb" / "manifest.json").read_text())
    assert m["stats"]["records_out"] == 1 and m["stats"]["dropped"] == {"near_duplicate": 4}
    assert m["synth"]["dedup"]["near_duplicates"] == 4
    assert m["diversity"]["records"] == 1 and "distinct-1" in r.stderr.decode()


def test_dedup_with_shard_says_it_is_per_part_and_stats_dedups_the_union(tmp_path, phitools):
    same = "# Loops\n\n" + " ".join(f"word{i}" for i in range(80))
    with FakeLLMServer(answer=same) as srv:
        for k in range(2):
            r = phitools(
                "synth",
                "--topics",
                TOPICS,
                "--n",
                "6",
                "--dedup",
                "--shard",
                f"{k}/2",
                "--api-base",
                srv.url,
                "--model",
                "fake",
                "-o",
                tmp_path / "tb",
            )
            assert r.returncode == 0, r.stderr.decode()
            assert b"within this part only" in r.stderr
    m = json.loads((tmp_path / "tb" / "manifest-00000-of-00002.json").read_text())
    assert m["synth"]["dedup"]["scope"] == "per shard: part 0/2 only"
    r = phitools("stats", tmp_path / "tb", "--dedup", tmp_path / "dd", "-o", tmp_path / "report.json")
    assert r.returncode == 0, r.stderr.decode()
    assert (
        json.loads((tmp_path / "dd" / "manifest.json").read_text())["stats"]["records_out"] == 1
    )  # the unsharded answer


def test_show_template():
    res = CliRunner().invoke(app, ["synth", "--show-template", "--kind", "story"])
    assert res.exit_code == 0 and "{noun}" in res.stdout and res.stdout.startswith("[system]")


def test_check_runs_doctests_in_the_sandbox(tmp_path, phitools):
    pytest.importorskip("phitools.eval.sandbox")

    def ex(body):  # index-dependent: some solutions are wrong
        text = request_text(body)
        wrong = body["seed"] % 2
        return (
            f'```python\ndef sq(n: int) -> int:\n    """Square n.\n\n    >>> sq(3)\n    9\n    """\n'
            f"    return n * n{' + 1' if wrong else ''}\n```\n# {len(text)}"
        )

    with FakeLLMServer(answer=ex) as srv:
        r = phitools(
            "synth",
            "--topics",
            TOPICS,
            "--kind",
            "exercise",
            "--n",
            "6",
            "--check",
            "--max-attempts",
            "1",
            "--api-base",
            srv.url,
            "--model",
            "fake",
            "-o",
            tmp_path / "ex",
            "--failed",
            tmp_path / "bad.jsonl",
        )
        seeds = [b["seed"] for b in srv.bodies]
    assert r.returncode == 0, r.stderr.decode()
    n_wrong = sum(s % 2 for s in seeds)
    assert 0 < n_wrong < 6
    m = json.loads((tmp_path / "ex" / "manifest.json").read_text())
    assert m["synth"]["check"] == {"passed": 6 - n_wrong, "failed": n_wrong}
    assert m["synth"]["written"] == 6 - n_wrong and m["stats"]["dropped"] == {"check_failed": n_wrong}
    bad = records((tmp_path / "bad.jsonl").read_bytes())
    assert all("1 of 1 doctest examples failed" in b["synth"]["error"] for b in bad)
