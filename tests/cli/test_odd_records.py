"""Any string a record can hold is read and written, or refused with file:line and skippable (issue 11, item 3).

Lone surrogates ("\\ud800", which Python's own json.dumps writes), JSON nested ~1,000 deep, and a `text` that is not
a string, through every tool that reads records, as real subprocesses.
"""

from __future__ import annotations

import json
import sys

import pytest
from conftest import run_phitools

from phitools.records import MAX_DEPTH, dumps_record, loads_record

GOOD = {"id": "g", "text": "def f(x):\n    return x + 1\n"}
SURROGATE = json.dumps({"id": "s", "text": "a\ud800b", "meta": {"title": "x\udfff"}})  # what Python's json writes
PAIR = json.dumps({"id": "p", "text": "ok \U0001f600"})  # a valid pair, escaped: "\ud83d\ude00"


def deep(levels: int) -> str:
    """A record whose `d` field nests arrays so that the whole line has `levels` levels."""
    k = levels - 1
    return '{"id": "d", "text": "x", "d": ' + "[" * k + "]" * k + "}"


def test_a_deep_record_is_written_without_help_from_a_read():
    """The writer makes its own room for MAX_DEPTH levels (a process may build the record, never parse one)."""
    d: list = []
    for _ in range(MAX_DEPTH - 2):
        d = [d]
    rec = {"id": "d", "text": "x", "d": d}
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # Python's default, as in a fresh process
    try:
        line = dumps_record(rec)
    finally:
        sys.setrecursionlimit(max(old, sys.getrecursionlimit()))
    assert loads_record(line) == rec


def _lines(*items) -> bytes:
    return "".join(json.dumps(i) + "\n" if isinstance(i, dict) else i + "\n" for i in items).encode()


def test_records_round_trip_lone_surrogates_and_deep_nesting():
    rec = loads_record(SURROGATE.encode())
    assert rec["text"] == "a\ud800b"
    line = dumps_record(rec)
    assert b"\\ud800" in line and loads_record(line) == rec  # written as an escape, read back the same
    rec = loads_record(deep(MAX_DEPTH).encode())
    assert loads_record(dumps_record(rec)) == rec  # deeper than orjson writes (255), as deep as it reads
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels"):
        loads_record(deep(MAX_DEPTH + 1).encode())
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels"):
        loads_record(deep(100_000).encode())
    # a lone surrogate sends the line to the standard library parser: as deep is read and written there too
    both = deep(1000).replace('"text": "x"', '"text": "x\\ud800"')
    rec = loads_record(both.encode())
    assert rec["text"] == "x\ud800" and loads_record(dumps_record(rec)) == rec
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels"):  # and too deep is clean there too
        loads_record(deep(100_000).replace('"text": "x"', '"text": "x\\ud800"').encode())


def test_cat_keeps_lone_surrogates_and_deep_records(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(_lines(GOOD, SURROGATE, PAIR, deep(1000), deep(MAX_DEPTH)))
    r = run_phitools("cat", src, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    back = run_phitools("cat", tmp_path / "out", check=True)
    assert [loads_record(x) for x in back.stdout.splitlines()] == [
        loads_record(x) for x in src.read_bytes().splitlines()
    ]


def test_too_deep_is_a_one_line_error_or_skipped(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(_lines(GOOD, deep(5000)))
    r = run_phitools("cat", src)
    assert r.returncode == 1 and f"in.jsonl:2: JSON nested deeper than {MAX_DEPTH} levels".encode() in r.stderr
    assert len(r.stderr.splitlines()) == 1
    r = run_phitools("cat", src, "--skip-bad", "-o", tmp_path / "o")
    assert r.returncode == 0
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["stats"]["skipped_bad"] == {"too_deep": 1}


# tools that need the text as valid Unicode (an LLM prompt, a tokenizer, hashed features) refuse a lone surrogate
TOOLS = {
    "label": ["label", "--backend", "heuristic"],
    "tokenize": ["tokenize"],
}


def test_stats_and_decontam_take_a_lone_surrogate(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(_lines(GOOD, PAIR, SURROGATE, deep(1000)))
    r = run_phitools("stats", src, "-o", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r.json").read_text())["records"] == 4
    (tmp_path / "bench.jsonl").write_text(
        json.dumps({"task_id": "t/0", "prompt": "def g():\n", "canonical_solution": "    return 1\n"}) + "\n"
    )
    r = run_phitools("decontam", src, "-b", tmp_path / "bench.jsonl")
    assert r.returncode == 0, r.stderr
    assert [loads_record(x)["text"] for x in r.stdout.splitlines()] == [
        loads_record(x)["text"] for x in src.read_bytes().splitlines()
    ]


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_text_tools_refuse_a_lone_surrogate_with_file_and_line_and_skip_it(tmp_path, tool):
    src = tmp_path / "in.jsonl"
    src.write_bytes(_lines(GOOD, PAIR, SURROGATE, deep(1000)))
    r = run_phitools(*TOOLS[tool], src)
    err = r.stderr.decode()
    assert r.returncode == 1 and "in.jsonl:3: field 'text' holds a lone surrogate" in err and "Traceback" not in err, (
        err
    )
    r = run_phitools(*TOOLS[tool], src, "--skip-bad")
    assert r.returncode == 0 and "Traceback" not in r.stderr.decode(), r.stderr


@pytest.mark.parametrize("tool", sorted(TOOLS) + ["cat", "stats"])
@pytest.mark.parametrize("bad", [5, {"t": 1}])
def test_text_must_be_a_string_for_every_tool(tmp_path, tool, bad):
    src = tmp_path / "in.jsonl"
    src.write_bytes(_lines(GOOD, {"id": "n", "text": bad}))
    r = run_phitools(*(TOOLS.get(tool) or [tool]), src)
    assert r.returncode == 1 and b"in.jsonl:2: field 'text' is" in r.stderr and b"not a string" in r.stderr
    assert b'"id":"n"' not in r.stdout  # never scored, never passed on


def test_classify_apply_refuses_and_skips(tmp_path):
    from phitools.steps.classify.features import parse_features
    from phitools.steps.classify.hashing import HashSettings
    from phitools.steps.classify.train import TrainOptions, train

    recs = [
        {
            "id": i,
            "text": ("def f(x):\n    '''Doc.'''\n    return x\n" if i % 2 else "x=1\n") * (1 + i % 5),
            "label": {"score": 4 if i % 2 else 1},
        }
        for i in range(40)
    ]
    clf, report = train(
        iter(recs),
        parse_features("hash", hash_settings=HashSettings(n_features=1 << 12)),
        TrainOptions(estimator="logreg", folds=2),
    )
    clf.save(tmp_path / "clf", report=report)
    src = tmp_path / "in.jsonl"
    src.write_bytes(_lines(GOOD, SURROGATE, {"id": "n", "text": 7}))
    r = run_phitools("classify", "apply", tmp_path / "clf", src, "--score-only", "--workers", "1")
    assert r.returncode == 1 and b"in.jsonl:2: field 'text' holds a lone surrogate" in r.stderr
    r = run_phitools(
        "classify", "apply", tmp_path / "clf", src, "--score-only", "--workers", "1", "--skip-bad", "-o", tmp_path / "o"
    )
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert m["stats"]["records_out"] == 1 and m["stats"]["skipped_bad"] == {"lone_surrogate": 1, "not_string_text": 1}
