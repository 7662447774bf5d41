"""Huge documents are encoded in pieces: the same ids, a fraction of the memory (issue 11: 50 MB record -> 5.5 GB)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from phitools.steps import tokenize as T


@pytest.fixture(scope="module")
def long_text(stdlib) -> str:
    parts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(stdlib.glob("*.py"))[:40]]
    return "".join(parts)


@pytest.fixture(scope="module")
def trained(long_text):
    return T.train_tokenizer(iter(long_text.split("\n\n")), 600)


def _whole(tok, text, eot):
    return np.array(tok.encode(text, add_special_tokens=False).ids + [eot])


@pytest.mark.parametrize("which", ["bundled", "trained"])
def test_pieces_give_the_same_ids(long_text, trained, which, monkeypatch):
    tok = T.load_tokenizer("stdlib-8k") if which == "bundled" else trained
    assert T.split_safe(tok)
    eot = T.eot_id(tok)
    monkeypatch.setattr(T, "PIECE_CHARS", 3000)  # many cuts, in every kind of context the stdlib has
    monkeypatch.setattr(T, "ENCODE_CHARS", 20000)
    assert len(T.pieces(long_text, 3000)) > 100
    docs = [{"text": long_text}, {"text": "short"}, {"text": long_text[7:50000]}]
    got = list(T.encode_records(tok, docs, eot=eot, batch_size=8))
    assert [r for r, _ in got] == docs
    for r, ids in got:
        assert np.array_equal(ids, _whole(tok, r["text"], eot))


def test_cuts_fall_after_a_newline_between_non_spaces():
    text = ("x = 1\n" + "    y\n\n" * 3) * 2000
    spans = T.pieces(text, 500)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    for _, end in spans[:-1]:
        assert text[end - 1] == "\n" and not text[end - 2].isspace() and not text[end].isspace()
    assert T.pieces("a" * 5000, 100) == [(0, 5000)]  # no safe cut: stays whole


def test_tokenizers_where_cutting_could_change_ids_are_not_cut():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    assert not T.split_safe(tok)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.normalizer = normalizers.NFKC()
    assert not T.split_safe(tok)
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    assert not T.split_safe(tok)


_PEAK = """
import resource, sys
from phitools.cli import app
try:
    app(sys.argv[1:], prog_name="phitools")
except SystemExit as e:
    assert not e.code, e.code
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stderr)
"""


def _peak(tmp_path, name, text) -> int:
    src = tmp_path / f"{name}.jsonl"
    src.write_text(json.dumps({"id": name, "text": text}) + "\n")
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            _PEAK,
            "tokenize",
            str(src),
            "-o",
            str(tmp_path / f"tok-{name}"),
            "--workers",
            "1",
            "-q",
        ],
        capture_output=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr.decode()
    return int(p.stderr.decode().strip().splitlines()[-1])


@pytest.mark.slow
def test_a_huge_record_stays_within_a_few_times_its_size(tmp_path, long_text):
    big = (long_text * (16_000_000 // len(long_text) + 1))[:16_000_000]
    base = _peak(tmp_path, "small", long_text[:1000])
    peak = _peak(tmp_path, "big", big)
    # before pieces this was ~110x the record (5.5 GB for 50 MB); benchmarks/tokenize_memory.py has the figures
    assert peak - base < 10 * len(big), (peak - base) / len(big)
