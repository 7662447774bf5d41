"""Labelling logic: sampling, truncation, rubrics, label records, votes and diagnostics."""

from __future__ import annotations

import random

import pytest

from phitools.errors import ConfigError, UsageError
from phitools.llm import LLMRequest, LLMResult
from phitools.steps.label import (
    LabelDiagnostics,
    Labeller,
    Rubric,
    builtin_rubric_text,
    label_records,
    load_rubric,
    sample_fraction,
    sample_n,
    truncate,
)


def recs(n: int) -> list[dict]:
    return [{"id": f"doc{i}", "text": f"text {i}", "extra": {"keep": i}} for i in range(n)]


def test_fraction_sampling_is_seeded_streaming_and_order_independent():
    data = recs(2000)
    a = [r["id"] for r in sample_fraction(iter(data), 0.1, seed=1)]
    assert a == [r["id"] for r in sample_fraction(data, 0.1, seed=1)]
    assert 150 <= len(a) <= 250
    shuffled = data[:]
    random.Random(0).shuffle(shuffled)
    assert sorted(r["id"] for r in sample_fraction(shuffled, 0.1, seed=1)) == sorted(a)
    assert a != [r["id"] for r in sample_fraction(data, 0.1, seed=2)]
    with pytest.raises(UsageError):
        list(sample_fraction(data, 1.5, seed=0))


def test_sample_n_is_exact_uniformish_in_input_order_and_order_independent():
    data = recs(500)
    stats: dict = {}
    got = list(sample_n(iter(data), 20, seed=3, stats=stats))
    assert len(got) == 20 and stats["considered"] == 500
    idx = [int(r["id"][3:]) for r in got]
    assert idx == sorted(idx)  # input order
    shuffled = data[:]
    random.Random(1).shuffle(shuffled)
    assert {r["id"] for r in sample_n(shuffled, 20, seed=3)} == {r["id"] for r in got}
    assert {r["id"] for r in sample_n(data, 20, seed=4)} != {r["id"] for r in got}
    assert len(list(sample_n(data[:5], 20, seed=0))) == 5
    # every record is equally likely: over many seeds the first and last halves get similar shares
    first_half = sum(int(r["id"][3:]) < 250 for s in range(40) for r in sample_n(data, 10, seed=s))
    assert 140 <= first_half <= 260


def test_truncate_prefers_a_line_break():
    text = "\n".join(f"line {i:03d}" for i in range(100))
    cut, t = truncate(text, 95)
    assert t and text.startswith(cut) and cut.endswith("line 009")  # 95 chars end mid-line 010: cut before it
    assert truncate("short", 95) == ("short", False)


def test_rubrics(tmp_path):
    for name in ("code", "web"):
        r = load_rubric(name)
        assert "{text}" in builtin_rubric_text(name) and "Educational score" in r.template
        assert "BODY" in r.prompt("BODY") and "{text}" not in r.prompt("BODY")
    assert "basic coding concepts" in load_rubric("code").template
    f = tmp_path / "mine.txt"
    f.write_text("Rate {text} from 0 to 10 with {braces} kept")
    r = load_rubric(str(f), max_score=10)
    assert (
        r.prompt("X") == "Rate X from 0 to 10 with {braces} kept" and r.schema()["properties"]["score"]["maximum"] == 10
    )
    (tmp_path / "bad.txt").write_text("no placeholder")
    with pytest.raises(ConfigError, match="placeholder"):
        load_rubric(str(tmp_path / "bad.txt"))
    with pytest.raises(UsageError):
        load_rubric("nope")


def result(req: LLMRequest, text: str | None, error: str | None = None, attempts: int = 1) -> LLMResult:
    parsed = req.parse(text) if text is not None and error is None else None
    return LLMResult(request=req, text=text, parsed=parsed, error=error, attempts=attempts)


def test_label_record_single_vote_failure_and_truncation():
    lab = Labeller(load_rubric("code"), models=["m"], max_chars=100, seed=5)
    rec = {"id": "a", "text": "x" * 300, "meta": {"path": "p"}}
    reqs = lab.requests(rec)
    assert len(reqs) == 1 and reqs[0].seed == 5 and reqs[0].json_schema["required"] == ["rationale", "score"]
    assert "x" * 100 in reqs[0].messages[0]["content"] and "x" * 101 not in reqs[0].messages[0]["content"]
    out = lab.finish(rec, [result(reqs[0], "Clear.\nEducational score: 4")])
    assert out["meta"] == {"path": "p"} and out["id"] == "a" and "label" not in rec
    assert out["label"] == {
        "score": 4,
        "rationale": "Clear.",
        "model": "m",
        "rubric": "code",
        "attempts": 1,
        "truncated": True,
        "chars": 300,
    }
    failed = lab.finish(rec, [result(reqs[0], None, error="HTTP 500 (after 5 attempts)", attempts=5)])
    assert failed["label"]["score"] is None and failed["label"]["error"].startswith("HTTP 500")
    d = lab.diagnostics.to_dict()
    assert d["labelled"] == 1 and d["failed"] == 1 and d["truncated"] == 2 and d["histogram"]["4"] == 1


def test_votes_mean_spread_and_agreement():
    lab = Labeller(load_rubric("code"), models=["a", "b"], votes=2, temperature=0.7)
    rec = {"text": "t"}
    reqs = lab.requests(rec)
    assert [(r.model, r.sample) for r in reqs] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert len({r.cache_key({}) for r in reqs}) == 4
    texts = ["Educational score: 2", "Educational score: 3", "Educational score: 3", None]
    res = [
        result(r, t) if t else result(r, None, error="timeout after 5s (after 5 attempts)") for r, t in zip(reqs, texts)
    ]
    out = lab.finish(rec, res)["label"]
    assert out["score"] == pytest.approx(8 / 3, abs=1e-3) and out["spread"] == 1 and out["model"] == ["a", "b"]
    assert [v["score"] for v in out["votes"]] == [2, 3, 3, None] and "error" in out["votes"][3]


def test_krippendorff_alpha_known_values():
    d = LabelDiagnostics()
    for v in ([1, 1], [3, 3], [5, 5]):
        d.add(sum(v) / 2, v, None, False)
    assert d.alpha == pytest.approx(1.0)
    # two raters, values 1..4 vs 1..4 shifted pairs: interval alpha by hand
    d = LabelDiagnostics()
    for v in ([1, 2], [2, 3], [3, 4], [4, 5]):
        d.add(sum(v) / 2, v, None, False)
    # D_o = mean over pairable values of squared pair differences = 1; D_e over the 8 pooled values
    pooled = [1, 2, 2, 3, 3, 4, 4, 5]
    n = len(pooled)
    de = sum((a - b) ** 2 for i, a in enumerate(pooled) for j, b in enumerate(pooled) if i != j) / (n * (n - 1))
    assert d.alpha == pytest.approx(1 - 1 / de)
    assert d.to_dict()["agreement"]["mean_pairwise_exact_agreement"] == 0.0


def test_non_discriminating_labeller_is_flagged():
    d = LabelDiagnostics()
    for _ in range(19):
        d.add(1, [], None, False)
    d.add(2, [], None, False)
    assert not d.discriminates() and d.to_dict()["top_score_share"] == 0.95
    d.add(3, [], None, False)
    d.add(4, [], None, False)
    assert d.discriminates()  # 19/22 = 86%


def test_heuristic_labels_are_marked():
    lab = Labeller(Rubric("code", "{text}"), models=["heuristic"])
    out = list(label_records(recs(3), lab, runner=None))
    assert all(r["label"]["heuristic"] is True and r["label"]["model"] == "heuristic" for r in out)
    assert all(0 <= r["label"]["score"] <= 5 and r["extra"]["keep"] == i for i, r in enumerate(out))


def test_docs_show_the_builtin_rubrics_in_full():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "label.md").read_text()
    for name in ("code", "web"):
        assert builtin_rubric_text(name).strip() in doc, f"docs/label.md is missing the current '{name}' rubric"
    assert "proves the plumbing, not the judgement" in doc
