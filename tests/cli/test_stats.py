"""`phitools stats` through real processes: JSON report on stdout or -o, near-duplicate removal."""

from __future__ import annotations

import json

import orjson


def jsonl(recs) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in recs)


RECS = [{"id": 1, "text": "a b c a b"}, {"id": 2, "text": "a b d"}, {"id": 3, "text": "x"}]


def test_report_on_stdout_from_stdin_and_from_a_file(tmp_path, phitools):
    r = phitools("stats", input=jsonl(RECS))
    assert r.returncode == 0, r.stderr.decode()
    rep = json.loads(r.stdout)
    assert rep["records"] == 3
    assert rep["distinct"]["counts"]["1"] == {"distinct": 5, "total": 9}
    assert rep["openings"]["k_words"] == 5 and rep["near_duplicates"]["params"]["bands"] == 32
    assert r.stderr == b""  # no table when stderr is not a terminal
    f = tmp_path / "in.jsonl"
    f.write_bytes(jsonl(RECS))
    r2 = phitools("stats", f, "--opening-words", "2", "-o", tmp_path / "rep.json", "--table")
    assert r2.returncode == 0 and r2.stdout == b""
    rep2 = json.loads((tmp_path / "rep.json").read_text())
    assert rep2["openings"]["repeated_opening_rate"] == round(2 / 3, 6) and rep2["inputs"] == [str(f)]
    assert b"distinct-1" in r2.stderr


def test_dedup_writes_records_without_near_duplicates(tmp_path, phitools):
    long = " ".join(f"w{i}" for i in range(50))
    recs = [
        {"id": 0, "text": long},
        {"id": 1, "text": "something else entirely here"},
        {"id": 2, "text": long + " tail"},
        {"id": 3, "text": long.upper()},
    ]
    r = phitools("stats", "-", "--dedup", tmp_path / "dd.jsonl", input=jsonl(recs))
    assert r.returncode == 0, r.stderr.decode()
    kept = [orjson.loads(x)["id"] for x in (tmp_path / "dd.jsonl").read_bytes().splitlines()]
    assert kept == [0, 1]
    m = json.loads((tmp_path / "dd.jsonl.manifest.json").read_text())
    assert m["stats"]["dropped"] == {"near_duplicate": 2} and m["dedup"]["near_duplicates"] == 2
    assert json.loads(r.stdout)["near_duplicates"]["rate"] == 0.5
    # records to stdout need the report elsewhere
    r = phitools("stats", "--dedup", "-", input=jsonl(recs))
    assert r.returncode == 2 and b"needs -o FILE" in r.stderr


def test_bad_input_is_a_one_line_error(phitools):
    r = phitools("stats", input=b'{"text": "ok"}\n{broken\n')
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.decode().startswith("phitools stats: error: <stdin>:2: malformed JSON")
