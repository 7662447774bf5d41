"""`phitools tokenize`: the issue's four pipelines (on a small stdlib slice), through real pipes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import run_phitools
from tokenizers import Tokenizer

from phitools.errors import DataError
from phitools.shards.tokens import open_token_dir


@pytest.fixture(scope="module")
def tok_env(stdlib_small, tmp_path_factory):
    d = tmp_path_factory.mktemp("tok")
    py = sys.executable
    # 1. ingest | tokenize --train-tokenizer
    p = subprocess.run(
        f"{py} -m phitools ingest {stdlib_small} | "
        f"{py} -m phitools tokenize --train-tokenizer --vocab-size 1024 -o {d}/tok/",
        shell=True,
        capture_output=True,
    )
    assert p.returncode == 0, p.stderr.decode()
    # 2. ingest -o corpus/
    run_phitools("ingest", stdlib_small, "-o", d / "corpus", check=True)
    return d


def test_pipeline_train_tokenizer(tok_env):
    td = open_token_dir(tok_env / "tok")
    m = td.manifest
    assert m["format"] == "phitools-tokens" and m["dtype"] == "uint16" and m["vocab_size"] == 1024
    assert td.total_tokens == m["tokens"] > 10_000 and td.total_tokens % m["seq_len"] == 0
    assert m["documents"] == 60 and len(m["tokenizer_sha256"]) == 64
    tok = Tokenizer.from_file(str(td.tokenizer_path))
    assert tok.token_to_id("<|endoftext|>") == td.eot_id
    stream = np.concatenate([np.asarray(a) for a in td.arrays])
    first_doc = stream[: int(np.argmax(stream == td.eot_id))]
    corpus0 = json.loads(run_phitools("cat", tok_env / "corpus", "--limit", "1", check=True).stdout)
    assert tok.decode(first_doc.tolist()) == corpus0["text"]  # byte-level BPE is lossless


def test_pipeline_dir_and_stdin_agree(tok_env):
    d = tok_env
    run_phitools(
        "tokenize",
        d / "corpus",
        "--tokenizer",
        d / "tok" / "tokenizer.json",
        "--seq-len",
        "512",
        "-o",
        d / "tok2",
        check=True,
    )
    p = subprocess.run(
        f"cat {d}/corpus/*.jsonl.zst | "
        f"{sys.executable} -m phitools tokenize --tokenizer {d}/tok/tokenizer.json --seq-len 512 -o {d}/tok3/",
        shell=True,
        capture_output=True,
    )
    assert p.returncode == 0, p.stderr.decode()
    a, b = open_token_dir(d / "tok2"), open_token_dir(d / "tok3")
    assert a.manifest["seq_len"] == 512 and a.total_tokens % 512 == 0
    assert np.array_equal(np.concatenate(a.arrays), np.concatenate(b.arrays))
    # same tokenizer as tok/: the stream is the same prefix as tok/'s
    c = np.concatenate(open_token_dir(d / "tok").arrays)
    n = min(len(c), a.total_tokens)
    assert np.array_equal(np.concatenate(a.arrays)[:n], c[:n])


def test_workers_give_identical_bytes(tok_env):
    d = tok_env
    outs = []
    for w in ("1", "2"):
        run_phitools(
            "tokenize",
            d / "corpus",
            "--tokenizer",
            d / "tok" / "tokenizer.json",
            "--workers",
            w,
            "--shard-size",
            "20000",
            "-o",
            d / f"w{w}",
            check=True,
        )
        outs.append(open_token_dir(d / f"w{w}", verify=True))
    assert [s["sha256"] for s in outs[0].manifest["shards"]] == [s["sha256"] for s in outs[1].manifest["shards"]]
    assert len(outs[0].manifest["shards"]) > 1


def test_no_pack_keeps_every_token_and_stdout_mode(tok_env):
    d = tok_env
    run_phitools(
        "tokenize", d / "corpus", "--tokenizer", d / "tok" / "tokenizer.json", "--no-pack", "-o", d / "np", check=True
    )
    td = open_token_dir(d / "np")
    assert td.manifest["stats"]["tail_tokens_dropped"] == 0
    out = run_phitools(
        "tokenize", d / "corpus", "--tokenizer", d / "tok" / "tokenizer.json", "--limit", "3", check=True
    )
    recs = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(recs) == 3 and all(r["tokens"][-1] == td.eot_id for r in recs) and "meta" in recs[0]
    assert (
        sum(len(r["tokens"]) for r in recs) == int(np.argmax(np.cumsum(np.asarray(td.arrays[0]) == td.eot_id) == 3)) + 1
    )


def test_sharded_tokenize_union(tok_env):
    d = tok_env
    parts = [("--shard", f"{k}/2", "-o", d / "sh") for k in range(2)]
    if not (d / "np" / "manifest.json").exists():  # made by the --no-pack test, which may run in another worker
        parts.append(("-o", d / "np"))
    for extra in parts:
        run_phitools(
            "tokenize", d / "corpus", "--tokenizer", d / "tok" / "tokenizer.json", "--no-pack", *extra, check=True
        )
    whole = open_token_dir(d / "np")
    union = open_token_dir(d / "sh")
    assert union.total_tokens == whole.total_tokens and union.manifest["documents"] == 60


def test_bad_inputs(tmp_path, tok_env):
    tok = tok_env / "tok" / "tokenizer.json"
    bad = run_phitools("tokenize", "--tokenizer", tok, "-o", tmp_path / "o", input=b'{"text": "ok"}\n{"text": 5}\n')
    assert bad.returncode == 1 and b"<stdin>:2:" in bad.stderr and not (tmp_path / "o" / "manifest.json").exists()
    assert not (tmp_path / "o" / "tokenizer.json").exists()
    empty = run_phitools("tokenize", "--tokenizer", tok, "-o", tmp_path / "e", input=b"")
    assert empty.returncode == 1 and b"empty" in empty.stderr
    usage = run_phitools("tokenize", "--train-tokenizer", input=b'{"text": "x"}\n')
    both = run_phitools(
        "tokenize", "--train-tokenizer", "--tokenizer", tok, "-o", tmp_path / "b", input=b'{"text": "x"}\n'
    )
    assert both.returncode == 2
    assert usage.returncode == 2 and b"-o DIR" in usage.stderr
    notok = run_phitools("tokenize", "--tokenizer", tmp_path / "missing.json", input=b'{"text": "x"}\n')
    assert notok.returncode == 1 and b"tokenizer file not found" in notok.stderr
    with pytest.raises(DataError, match="no manifest"):
        open_token_dir(tmp_path)


def test_default_tokenizer_is_bundled(tmp_path):
    out = run_phitools(
        "tokenize",
        "-o",
        tmp_path / "d",
        "--seq-len",
        "8",
        input=b'{"text": "def f(x):\\n    return x"}\n' * 5,
        check=True,
    )
    td = open_token_dir(tmp_path / "d")
    assert td.vocab_size == 8192 and td.eot_id == 0 and td.total_tokens > 0
    assert td.manifest["tokenizer_source"] == "stdlib-8k"
    assert out.stdout == b""
