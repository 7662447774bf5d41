"""Progress in logs: real processes whose stderr is a file (as under Slurm or nohup), fed slowly enough to report.

Each long-running tool writes `[timestamp] phitools TOOL: counts | rate | elapsed | ETA` lines to stderr every
--progress-every seconds, stdout carries only its data, --quiet silences the lines, and on a terminal a rich
bar shows instead.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from conftest import run_phitools

from phitools.llm.testing import FakeLLMServer

LINE = re.compile(
    r"^\[(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d)\] phitools (?P<head>[a-z ]+(?:: [^:|]+)?): "
    r"(?P<done>done, )?(?P<body>.+)$"
)
SLOW = 0.2  # --progress-every in these tests


def progress_lines(stderr: str, tool: str) -> list[dict]:
    """The progress lines of stderr, parsed (other lines, such as a tool's closing summary, are left out)."""
    out = []
    for line in stderr.splitlines():
        if not line.startswith("["):
            continue
        m = LINE.match(line)
        assert m, f"not a progress line: {line!r}"
        assert m["head"].split(":")[0] == tool, line
        parts = m["body"].split(" | ")
        d = {"head": m["head"], "done": bool(m["done"]), "parts": parts, "line": line}
        for p in parts:
            if m2 := re.fullmatch(r"(in|out|dropped) ([\d,]+)", p):
                d[m2[1]] = int(m2[2].replace(",", ""))
            elif m2 := re.fullmatch(r"([\d,]+)/([\d,]+) (\w+) \(([\d.]+)%\)", p):
                d["n"], d["total"], d["unit"] = int(m2[1].replace(",", "")), int(m2[2].replace(",", "")), m2[3]
            elif m2 := re.fullmatch(r"([\d,]+) (\w+)", p):
                d["n"], d["unit"] = int(m2[1].replace(",", "")), m2[2]
            elif m2 := re.fullmatch(r"([\d.,]+) (\w+)/s", p):
                d["rate"] = float(m2[1].replace(",", ""))
            elif p.startswith("elapsed "):
                d["elapsed"] = p[8:]
            elif p.startswith("ETA "):
                d["eta"] = p[4:]
        assert "rate" in d and "elapsed" in d, line
        out.append(d)
    return out


def _check_sequence(lines: list[dict], key: str) -> None:
    assert len(lines) >= 2 and lines[-1]["done"] and not any(x["done"] for x in lines[:-1])
    values = [x[key] for x in lines]
    assert values == sorted(values)


def _cmd(*args) -> list[str]:
    return [sys.executable, "-m", "phitools", *map(str, args)]


def feed_until_reported(
    args: list,
    make_line,
    tmp_path: Path,
    *,
    want: int = 2,
    env: dict | None = None,
    delay: float = 0.02,
    limit_s: float = 120,
) -> tuple[int, bytes, str, list[bytes]]:
    """Feed `phitools ARGS` stdin one line at a time until its stderr file holds `want` lines (whatever the load on
    the machine), then close stdin. Returns (exit code, stdout, stderr, the lines fed)."""
    err_path = tmp_path / "stderr.log"
    fed: list[bytes] = []
    chunks: list[bytes] = []
    with open(err_path, "wb") as err:
        p = subprocess.Popen(
            _cmd(*args), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env={**os.environ, **(env or {})}
        )
        reader = threading.Thread(target=lambda: chunks.append(p.stdout.read()))
        reader.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            line = make_line(len(fed))
            p.stdin.write(line)
            p.stdin.flush()
            fed.append(line)
            if err_path.read_text().count("\n") >= want:
                break
            time.sleep(delay)
        p.stdin.close()
        reader.join(timeout=limit_s)
        p.wait(timeout=limit_s)
    return p.returncode, b"".join(chunks), err_path.read_text(), fed


def _rec(i: int) -> bytes:
    return orjson.dumps({"id": f"r{i}", "text": f"def f{i}(x):\n    return x + {i}\n" * 3}) + b"\n"


def test_cat_reports_counts_and_keeps_stdout_for_data(tmp_path):
    code, out, err, fed = feed_until_reported(["cat", "--progress-every", SLOW], _rec, tmp_path, want=3)
    assert code == 0, err
    assert out == b"".join(fed)  # stdout: exactly the records, nothing else
    lines = progress_lines(err, "cat")
    _check_sequence(lines, "in")
    assert lines[-1]["in"] == lines[-1]["out"] == len(fed) and "eta" not in lines[-1]


def test_quiet_and_zero_silence_it_and_the_environment_sets_it(tmp_path):
    for flags in (["--quiet"], ["--progress-every", "0"]):
        p = subprocess.Popen(
            _cmd("cat", *flags),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PHITOOLS_PROGRESS_EVERY": "0.05"},
        )
        for i in range(20):
            p.stdin.write(_rec(i))
            p.stdin.flush()
            time.sleep(0.05)
        out, err = p.communicate()
        assert p.returncode == 0 and err == b"" and out.count(b"\n") == 20
    code, _, err, fed = feed_until_reported(["cat"], _rec, tmp_path, env={"PHITOOLS_PROGRESS_EVERY": str(SLOW)})
    assert code == 0 and progress_lines(err, "cat")[-1]["in"] == len(fed)


def test_tokenize_reports_docs(tmp_path):
    code, out, err, fed = feed_until_reported(["tokenize", "--progress-every", SLOW], _rec, tmp_path)
    assert code == 0, err
    assert out.count(b"\n") == len(fed) and all("tokens" in json.loads(x) for x in out.splitlines())
    lines = progress_lines(err, "tokenize")
    _check_sequence(lines, "n")
    assert lines[-1]["unit"] == "docs" and lines[-1]["in"] == lines[-1]["out"] == len(fed)


@pytest.fixture(scope="module")
def slow_server():
    with FakeLLMServer(latency=0.03) as srv:
        yield srv


def test_label_reports_in_out_rate_and_eta(slow_server, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(b"".join(_rec(i) for i in range(60)))
    with open(tmp_path / "err.log", "wb") as err:
        r = subprocess.run(
            _cmd(
                "label",
                corpus,
                "--sample",
                "40",
                "--api-base",
                slow_server.url,
                "--model",
                "m",
                "--concurrency",
                "1",
                "--cache",
                "off",
                "--progress-every",
                SLOW,
            ),
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=300,
        )
    stderr = (tmp_path / "err.log").read_text()
    assert r.returncode == 0, stderr
    recs = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(recs) == 40 and all("label" in x for x in recs)
    lines = progress_lines(stderr, "label")
    _check_sequence(lines, "n")
    assert all(x["total"] == 40 and x["in"] == 60 for x in lines)  # the sample was drawn from all 60 first
    assert lines[-1]["n"] == lines[-1]["out"] == 40
    assert all("eta" in x for x in lines[:-1] if 0 < x["n"] < 40) and "eta" not in lines[-1]
    assert any("eta" in x for x in lines)


def test_synth_reports_against_its_plan(slow_server, tmp_path):
    topics = tmp_path / "topics.txt"
    topics.write_text("loops\nrecursion\nsorting\n")
    with open(tmp_path / "err.log", "wb") as err:
        r = subprocess.run(
            _cmd(
                "synth",
                "--topics",
                topics,
                "--n",
                "30",
                "--api-base",
                slow_server.url,
                "--model",
                "m",
                "--concurrency",
                "1",
                "--cache",
                "off",
                "--progress-every",
                SLOW,
            ),
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=300,
        )
    stderr = (tmp_path / "err.log").read_text()
    assert r.returncode == 0, stderr
    assert len(r.stdout.splitlines()) == 30
    lines = progress_lines(stderr, "synth")
    _check_sequence(lines, "n")
    assert {x["total"] for x in lines} == {30} and lines[-1]["out"] == 30
    assert all("eta" in x for x in lines[:-1] if 0 < x["n"] < 30) and any("eta" in x for x in lines)


@pytest.fixture(scope="module")
def classifier(stdlib_small, tmp_path_factory):
    d = tmp_path_factory.mktemp("progress-clf")
    run_phitools("ingest", stdlib_small, "-o", d / "corpus", check=True)
    run_phitools("label", d / "corpus", "--backend", "heuristic", "-o", d / "labeled", check=True)
    run_phitools(
        "classify",
        "train",
        d / "labeled",
        "--features",
        "hash",
        "--estimator",
        "lgbm",
        "--n-estimators",
        "10",
        "--folds",
        "2",
        "-o",
        d / "clf",
        check=True,
    )
    return d / "clf"


@pytest.mark.slow
def test_classify_apply_reports(classifier, tmp_path):
    code, out, err, fed = feed_until_reported(
        ["classify", "apply", classifier, "--score-only", "--workers", "1", "--progress-every", SLOW], _rec, tmp_path
    )
    assert code == 0, err
    assert [json.loads(x)["id"] for x in out.splitlines()] == [json.loads(x)["id"] for x in fed]
    lines = progress_lines(err, "classify apply")
    _check_sequence(lines, "in")
    assert lines[-1]["out"] == len(fed)


def test_eval_reports_generation_and_checks(slow_server, tmp_path):
    problems = tmp_path / "problems.jsonl"
    problems.write_text(
        "".join(
            json.dumps(
                {
                    "task_id": f"T/{i}",
                    "prompt": f"def add_{i}(x):\n",
                    "entry_point": f"add_{i}",
                    "test": f"def check(candidate):\n    assert candidate(1) == {i + 1}\n",
                }
            )
            + "\n"
            for i in range(6)
        )
    )
    with open(tmp_path / "err.log", "wb") as err:
        r = subprocess.run(
            _cmd(
                "eval",
                "--benchmark",
                problems,
                "--api-base",
                slow_server.url,
                "--model",
                "m",
                "--n-samples",
                "5",
                "--concurrency",
                "1",
                "--cache",
                "off",
                "--progress-every",
                SLOW,
                "-o",
                tmp_path / "res",
            ),
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=300,
        )
    stderr = (tmp_path / "err.log").read_text()
    assert r.returncode == 0, stderr
    assert r.stdout == b""
    gen = [x for x in progress_lines(stderr, "eval") if x["head"] == "eval: generate"]
    _check_sequence(gen, "n")
    assert {x["total"] for x in gen} == {30} and gen[-1]["n"] == 30 and gen[-1]["unit"] == "samples"


@pytest.mark.slow
def test_train_reports_steps_and_loss(stdlib_small, tmp_path):
    tok = tmp_path / "tok"
    py = sys.executable
    p = subprocess.run(
        f"{py} -m phitools ingest {stdlib_small} | {py} -m phitools tokenize --train-tokenizer --vocab-size 512 "
        f"--seq-len 64 -o {tok}",
        shell=True,
        capture_output=True,
    )
    assert p.returncode == 0, p.stderr.decode()
    with open(tmp_path / "err.log", "wb") as err:
        r = subprocess.run(
            _cmd(
                "train",
                "--data",
                tok,
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
                "32",
                "--batch-size",
                "4",
                "--max-steps",
                "200",
                "--save-every",
                "0",
                "--eval-every",
                "0",
                "--log-every",
                "10",
                "--progress-every",
                SLOW,
                "-o",
                tmp_path / "run",
            ),
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=600,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    stderr = (tmp_path / "err.log").read_text()
    assert r.returncode == 0, stderr
    lines = progress_lines(stderr, "train")
    _check_sequence(lines, "n")
    assert {x["total"] for x in lines} == {200} and lines[-1]["n"] == 200
    assert any(re.search(r"loss \d+\.\d+ lr ", x["line"]) for x in lines)


def test_a_terminal_gets_the_rich_bar(tmp_path):
    """stderr on a pseudo-terminal: a live bar with the rate, not log lines."""
    master, slave = pty.openpty()
    p = subprocess.Popen(
        _cmd("cat", "--progress-every", "0.05"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "COLUMNS": "160", "TERM": "xterm"},
    )
    os.close(slave)
    screen = b""

    def drain(timeout: float) -> None:
        nonlocal screen
        while select.select([master], [], [], timeout)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            screen += chunk

    deadline = time.monotonic() + 120
    i = 0
    while b"records/s" not in screen and time.monotonic() < deadline:
        p.stdin.write(_rec(i))
        p.stdin.flush()
        i += 1
        drain(0.05)
    p.stdin.close()
    out = p.stdout.read()
    p.wait(timeout=60)
    drain(0.2)
    os.close(master)
    assert p.returncode == 0 and out.count(b"\n") == i
    text = screen.decode(errors="replace")
    assert "records/s" in text and "phitools cat:" not in text  # the bar, not the log line
    assert re.search(r"in \d+ out \d+", text)
