"""`phitools cat`: the same case through a file, '-', stdin and typer's runner; stdout purity."""

from __future__ import annotations

import json

import orjson
from conftest import run_phitools
from typer.testing import CliRunner

from phitools.cli import app

RECS = b"".join(orjson.dumps({"id": i, "text": f"line {i}", "x": {"nested": [i]}}) + b"\n" for i in range(25))


def test_file_dash_stdin_and_runner_agree(tmp_path):
    f = tmp_path / "in.jsonl"
    f.write_bytes(RECS)
    via_file = run_phitools("cat", f, check=True).stdout
    via_dash = run_phitools("cat", "-", input=RECS, check=True).stdout
    via_stdin = run_phitools("cat", input=RECS, check=True).stdout
    res = CliRunner().invoke(app, ["cat", str(f)])
    assert res.exit_code == 0
    assert via_file == via_dash == via_stdin == RECS == res.stdout.encode()


def test_stdout_carries_only_records(tmp_path):
    out = run_phitools("cat", "--limit", "7", input=RECS, check=True, env={"PHITOOLS_VERBOSE": "1"})
    lines = out.stdout.splitlines()
    assert len(lines) == 7 and all(isinstance(json.loads(x), dict) for x in lines)


def test_reshard_and_convert(tmp_path):
    run_phitools("cat", "-o", tmp_path / "d", "--shard-size", "10", input=RECS, check=True)
    m = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert [o["records"] for o in m["outputs"]] == [10, 10, 5]
    run_phitools("cat", tmp_path / "d", "-o", tmp_path / "all.jsonl.gz", check=True)
    assert run_phitools("cat", tmp_path / "all.jsonl.gz", check=True).stdout == RECS


def test_runner_reports_bad_input_in_one_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(b'{"a": 1}\n{"a": \n')
    res = CliRunner().invoke(app, ["cat", str(f)])
    assert res.exit_code == 1 and "bad.jsonl:2: malformed JSON" in res.stderr
    out = run_phitools("cat", f, "-o", tmp_path / "o")
    assert out.returncode == 1 and out.stderr.count(b"\n") == 1 and not (tmp_path / "o" / "manifest.json").exists()
    ok = run_phitools("cat", f, "--skip-bad", "-o", tmp_path / "o2", check=True)
    assert ok.returncode == 0
    assert json.loads((tmp_path / "o2" / "manifest.json").read_text())["stats"]["skipped_bad"] == {"malformed_json": 1}
