"""`phitools decontam` through real processes against HumanEval/MBPP (the copies shipped with phitools)."""

from __future__ import annotations

import json

import orjson
from conftest import benchmark_rows

OFFLINE = {"PHITOOLS_DATA_MIRROR": "http://127.0.0.1:9"}  # any download attempt would fail


def jsonl(recs) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in recs)


def test_flag_then_drop_with_counts(tmp_path, phitools):
    he = benchmark_rows("humaneval")[:3]
    recs = [
        {"id": "copy", "text": he[0]["prompt"] + he[0]["canonical_solution"], "keep": {"me": 1}},
        {"id": "clean", "text": "def greet(name):\n    return 'hello ' + name\n"},
    ]
    r = phitools("decontam", "-b", "humaneval", "-b", "mbpp", input=jsonl(recs), env=OFFLINE)
    assert r.returncode == 0, r.stderr.decode()
    out = [orjson.loads(x) for x in r.stdout.splitlines()]
    assert [o["id"] for o in out] == ["copy", "clean"] and out[0]["keep"] == {"me": 1}
    d = out[0]["decontam"]
    assert d["contaminated"] and "HumanEval/0" in d["tasks"] and d["ngram"]["n"] == 13 and "ast" in d
    assert "decontam" not in out[1]
    dst = tmp_path / "clean.jsonl"
    r = phitools("decontam", "--drop", "-o", dst, input=jsonl(recs), env=OFFLINE)
    assert r.returncode == 0 and [orjson.loads(x)["id"] for x in dst.read_bytes().splitlines()] == ["clean"]
    m = json.loads((tmp_path / "clean.jsonl.manifest.json").read_text())
    assert m["stats"]["dropped"] == {"contaminated": 1}
    dm = m["decontam"]
    assert dm["contaminated"] == 1 and dm["checked"] == 2 and dm["action"] == "drop"
    assert dm["index"]["problems"] == {"humaneval": 164} and dm["method"]["ngram"] == 13
    assert "HumanEval/0" in [t for t, _ in dm["top_tasks"]]


def test_humaneval_and_mbpp_offline_on_a_directory(tmp_path, phitools):
    # as written in the issue: no --data-dir, no network, the benchmarks come from the package
    mb = {r["task_id"]: r for r in benchmark_rows("mbpp")}
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.jsonl").write_bytes(
        jsonl(
            [
                {"id": "mbpp-copy", "text": mb[2]["text"] + "\n" + mb[2]["code"]},
                {"id": "mine", "text": "def twice(x):\n    return 2 * x\n"},
            ]
        )
    )
    r = phitools(
        "decontam",
        "--benchmark",
        "humaneval",
        "--benchmark",
        "mbpp",
        "corpus/",
        "-o",
        "clean/",
        cwd=tmp_path,
        env=OFFLINE,
    )
    assert r.returncode == 0, r.stderr.decode()
    m = json.loads((tmp_path / "clean" / "manifest.json").read_text())
    assert m["decontam"]["index"]["problems"] == {"humaneval": 164, "mbpp": 974}
    out = [orjson.loads(x) for x in phitools("cat", "clean/", cwd=tmp_path, check=True).stdout.splitlines()]
    assert [(o["id"], "decontam" in o) for o in out] == [("mbpp-copy", True), ("mine", False)]
    assert out[0]["decontam"]["tasks"] == ["2"]  # MBPP task 2 (decontam names MBPP tasks by their bare id)


def test_benchmark_file_and_ngram_option(tmp_path, phitools):
    bench = tmp_path / "mine.jsonl"
    bench.write_text(
        json.dumps(
            {
                "task_id": "mine/1",
                "text": "count the vowels in a word and return the total number found",
                "code": "def f(w):\n    return sum(c in 'aeiou' for c in w)\n",
            }
        )
        + "\n"
    )
    recs = [{"text": "Today we count the vowels in a word and return the total."}]
    r = phitools("decontam", "-b", bench, input=jsonl(recs))
    assert r.returncode == 0 and "decontam" not in orjson.loads(r.stdout)  # only 10 words in common
    r = phitools("decontam", "-b", bench, "--ngram", "8", input=jsonl(recs))
    assert orjson.loads(r.stdout)["decontam"]["tasks"] == ["mine/1"]
    r = phitools("decontam", "-b", "nosuch", input=jsonl(recs))
    assert r.returncode == 2 and b"neither a known benchmark" in r.stderr
