"""`phitools.shards.complete.verify` from Python reports what `phitools verify` prints (JSON and text)."""

from __future__ import annotations

import json

import pytest
from conftest import run_phitools

from phitools.errors import UsageError
from phitools.shards.complete import VerifyOptions, verify


@pytest.fixture
def outputs(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": f"t{i}"}) + "\n" for i in range(9)))
    run_phitools("cat", src, "-o", tmp_path / "whole", check=True)
    run_phitools("cat", src, "--shard", "1/3", "-o", tmp_path / "parts", check=True)
    return tmp_path / "whole", tmp_path / "parts"


def test_verify_from_python_reports_what_the_command_prints(outputs):
    whole, parts = outputs
    r = run_phitools("verify", whole, parts, "--json", "--quick")
    assert r.returncode == 1  # parts/ misses --shard 0/3 and 2/3
    reports = verify(VerifyOptions(dirs=[str(whole), str(parts)], quick=True))
    assert [rep.to_dict() for rep in reports] == [json.loads(line) for line in r.stdout.splitlines()]
    assert [rep.complete for rep in reports] == [True, False] and reports[1].missing == [0, 2]
    text = run_phitools("verify", whole, parts, "--parts", "3")
    reports = verify(VerifyOptions(dirs=[str(whole), str(parts)], parts=3))
    assert text.stdout.decode() == "\n".join(rep.text() for rep in reports) + "\n"
    assert "hint: re-run the missing --shard K/3 tasks" in reports[1].text()


def test_options_check_themselves():
    with pytest.raises(UsageError, match="give at least one DIR"):
        VerifyOptions(dirs=[])
    with pytest.raises(UsageError, match="--parts must be at least 1"):
        VerifyOptions(dirs=["x"], parts=0)
