"""Token directories: verified on open, written safely (issue 11, items 1, 2 and 6)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import run_phitools

from phitools.errors import DataError
from phitools.shards.ownership import temp_files
from phitools.shards.tokens import open_token_dir

DOCS = b"".join(b'{"id": %d, "text": "def f%d(x):\\n    return x * %d\\n"}\n' % (i, i, i) for i in range(200))


def _tokenize(out, *extra, input=DOCS):
    r = run_phitools(
        "tokenize", "-o", out, "--seq-len", "16", "--shard-size", "256", "--workers", "1", "-q", *extra, input=input
    )
    assert r.returncode == 0, r.stderr.decode()
    return out


@pytest.fixture
def tokdir(tmp_path):
    return _tokenize(tmp_path / "tok")


@pytest.fixture
def sharded(tmp_path):
    d = tmp_path / "sh"
    for k in range(3):
        _tokenize(d, "--shard", f"{k}/3")
    return d


def _manifest(d, name="manifest.json"):
    return json.loads((d / name).read_text())


def test_whole_directory_opens_with_sha256_checked(tokdir, sharded):
    td = open_token_dir(tokdir)
    assert len(td.shard_paths) >= 2 and td.total_tokens == _manifest(tokdir)["tokens"]
    union = open_token_dir(sharded)
    assert union.manifest["documents"] == 200


def test_missing_part_is_refused(sharded):
    (sharded / "manifest-00001-of-00003.json").unlink()
    with pytest.raises(DataError, match=r"2 of 3 --shard parts are complete \(missing K = 1\)"):
        open_token_dir(sharded)


def test_parts_that_disagree_are_refused(sharded):
    p = sharded / "manifest-00002-of-00003.json"
    m = json.loads(p.read_text())
    m["tokenizer_sha256"] = "0" * 64
    p.write_text(json.dumps(m))
    with pytest.raises(DataError, match="disagree on tokenizer_sha256"):
        open_token_dir(sharded)


def test_missing_shard_is_refused(tokdir):
    (tokdir / "tokens-00001.bin").unlink()
    with pytest.raises(DataError, match=r"1 listed file\(s\) missing \(tokens-00001.bin\)"):
        open_token_dir(tokdir)


def test_truncated_shard_is_refused_even_by_a_quick_open(tokdir):
    p = tokdir / "tokens-00000.bin"
    p.write_bytes(p.read_bytes()[:-2])
    with pytest.raises(DataError, match="wrong size"):
        open_token_dir(tokdir, verify="size")


def test_same_size_other_bytes_are_refused_by_default(tokdir):
    p = tokdir / "tokens-00000.bin"
    a = np.fromfile(p, dtype="<u2")
    a[:3] = a[:3][::-1] + 1
    a.tofile(p)
    assert open_token_dir(tokdir, verify="size").total_tokens > 0
    with pytest.raises(DataError, match="sha256 differs"):
        open_token_dir(tokdir)


def test_replaced_tokenizer_is_refused(tokdir, tmp_path):
    other = tmp_path / "other"
    _tokenize(other, "--train-tokenizer", "--vocab-size", "300")
    (tokdir / "tokenizer.json").write_bytes((other / "tokenizer.json").read_bytes())
    with pytest.raises(DataError, match="tokenizer.json differs"):
        open_token_dir(tokdir)


def test_train_refuses_a_damaged_directory(tokdir, tmp_path):
    p = tokdir / "tokens-00000.bin"
    b = bytearray(p.read_bytes())
    b[0] ^= 1
    p.write_bytes(bytes(b))
    r = run_phitools("train", "--data", tokdir, "-o", tmp_path / "run", "--max-steps", "1", "--seq-len", "8", "-q")
    assert r.returncode == 1 and b"sha256 differs" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_rerun_replaces_the_previous_run(tokdir):
    before = sorted(p.name for p in tokdir.glob("tokens-*.bin"))
    assert len(before) >= 3
    _tokenize(tokdir, input=b"".join(DOCS.splitlines(keepends=True)[:20]))  # fewer documents: fewer shards
    after = sorted(p.name for p in tokdir.glob("tokens-*.bin"))
    assert len(after) < len(before) and after == [s["path"] for s in _manifest(tokdir)["shards"]]
    assert open_token_dir(tokdir).manifest["documents"] == 20


def test_a_failed_run_leaves_the_previous_output(tokdir):
    before = {p.name: p.read_bytes() for p in tokdir.iterdir()}
    bad = DOCS + b'{"id": "x", "text": 5}\n'
    r = run_phitools(
        "tokenize", "-o", tokdir, "--seq-len", "16", "--shard-size", "64", "--workers", "1", "-q", input=bad
    )
    assert r.returncode == 1 and b"<stdin>:201:" in r.stderr
    assert {p.name: p.read_bytes() for p in tokdir.iterdir()} == before  # no new shard, no temp, same manifest
    assert open_token_dir(tokdir).manifest["documents"] == 200


def test_a_failed_first_run_leaves_nothing(tmp_path):
    d = tmp_path / "t"
    r = run_phitools("tokenize", "-o", d, "--seq-len", "16", "--shard-size", "64", "-q", input=DOCS + b"{bad\n")
    assert r.returncode == 1
    assert list(d.iterdir()) == []


def test_oserror_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    r = run_phitools("tokenize", "-o", tmp_path / "file" / "tok", input=DOCS)
    err = r.stderr.decode().strip()
    assert r.returncode == 1 and err.startswith("phitools tokenize: error: ") and "Not a directory" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def _slow_tokenize(out):
    """A tokenize -o OUT that reads stdin we keep open, so it is mid-run until we say."""
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "phitools",
            "tokenize",
            "-o",
            str(out),
            "--seq-len",
            "16",
            "--shard-size",
            "64",
            "--batch-size",
            "1",
            "--workers",
            "1",
            "--no-pack",
            "-q",
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    p.stdin.write(DOCS)
    p.stdin.flush()
    for _ in range(1200):
        if any(t.final.startswith("tokens") for t in temp_files(out)) if out.exists() else False:
            return p
        time.sleep(0.05)
    raise AssertionError("tokenize did not start writing")


def test_concurrent_tokenize_into_one_directory_cannot_both_succeed(tmp_path):
    d = tmp_path / "tok"
    first = _slow_tokenize(d)
    second = run_phitools("tokenize", "-o", d, "--seq-len", "16", "-q", input=DOCS[:500])
    assert second.returncode == 1 and b"another phitools process is writing it now" in second.stderr
    first.stdin.close()
    assert first.wait(timeout=300) == 0, first.stderr.read()
    td = open_token_dir(d)  # whole, and all of the first run's own bytes
    assert td.manifest["documents"] == 200


def test_kill_9_leaves_temps_the_next_run_removes(tmp_path):
    d = _tokenize(tmp_path / "tok")
    proc = _slow_tokenize(d)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    left = temp_files(d)
    assert left and all(t.stale() for t in left)
    assert open_token_dir(d).manifest["documents"] == 200  # the killed run changed nothing
    _tokenize(d)
    assert temp_files(d) == []
