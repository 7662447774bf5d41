"""Diversity statistics: exact numbers on hand-built inputs."""

from __future__ import annotations

import numpy as np
import pytest

from phitools.steps.ngrams import WordHasher, ngram_hashes, words
from phitools.steps.stats import Coverage, DistinctCounter, compute_stats


def test_words_are_lowercased_word_runs():
    assert words("Hello, World! x_1 = foo(bar)  # ok") == ["hello", "world", "x_1", "foo", "bar", "ok"]


def test_ngram_hashes_are_stable_and_order_sensitive():
    h = WordHasher()
    a = ngram_hashes(h.text("a b c d"), 2)
    assert a.size == 3 and a.dtype == np.uint64
    assert np.array_equal(a, ngram_hashes(WordHasher().text("A, b; c. D"), 2))  # another hasher, same values
    assert ngram_hashes(h.text("b a"), 2)[0] != ngram_hashes(h.text("a b"), 2)[0]
    assert ngram_hashes(h.text("a b"), 3).size == 0
    assert ngram_hashes(h.text("a b"), 3, short=True).size == 1
    # a short text's single shingle never equals a full shingle of the same words
    assert ngram_hashes(h.text("a b"), 3, short=True)[0] != ngram_hashes(h.text("a b"), 2)[0]


RECS = [
    {"text": "a b c a b"},  # 1-grams 5; 2-grams ab bc ca ab; 3-grams abc bca cab
    {"text": "A, b! d"},  # a b d: 3; ab bd; abd
    {"text": ""},  # nothing
    {"text": "x"},  # x: 1
    {"id": "no text here"},
]


def test_distinct_n_exact():
    rep = compute_stats(RECS, opening_words=2)
    d = rep["distinct"]
    assert d["counts"]["1"] == {"distinct": 5, "total": 9}  # a b c d x
    assert d["counts"]["2"] == {"distinct": 4, "total": 6}  # ab bc ca bd
    assert d["counts"]["3"] == {"distinct": 4, "total": 4}  # abc bca cab abd
    assert d["distinct_1"] == round(5 / 9, 6)
    assert d["distinct_2"] == round(4 / 6, 6)
    assert d["distinct_3"] == 1.0
    assert rep["records"] == 5 and rep["records_without_text"] == 1
    assert rep["words"]["total"] == 9


def test_repeated_openings_exact():
    rep = compute_stats(RECS, opening_words=2)
    o = rep["openings"]
    # openings with words: "a b", "a b", "x" -> 2 of 3 records share theirs
    assert o["repeated_opening_rate"] == round(2 / 3, 6)
    assert o["distinct_openings"] == 2
    assert o["top"] == [["a b", 2]]
    o3 = compute_stats(RECS, opening_words=3)["openings"]
    assert o3["repeated_opening_rate"] == 0.0  # "a b c" vs "a b d"


def test_near_duplicate_rate_in_report():
    base = " ".join(f"word{i}" for i in range(60))
    recs = [
        {"text": base},
        {"text": base + " extra"},
        {"text": " ".join(f"other{i}" for i in range(60))},
        {"text": base},
    ]
    nd = compute_stats(recs)["near_duplicates"]
    assert nd["near_duplicates"] == 2 and nd["rate"] == 0.5 and nd["clusters"] == 1 and nd["largest_cluster"] == 3
    assert nd["params"]["jaccard_threshold"] == 0.8 and nd["params"]["num_perm"] == 128


def test_distinct_counter_compacts_without_changing_counts(monkeypatch):
    import phitools.steps.stats as stats_mod

    monkeypatch.setattr(stats_mod, "_COMPACT_AT", 3)
    dc = DistinctCounter(1)
    h = WordHasher()
    for t in ["a b c", "a b", "d", "a"]:
        dc.add(h.text(t))
    assert (dc.distinct, dc.total) == (4, 7)


def test_coverage_counts_and_never_drawn():
    cov = Coverage({"topic": ["loops", "sets", "graphs"]})
    for t in ["loops", "loops", "sets"]:
        cov.add_record({"synth": {"draw": {"topic": t, "style": "terse"}}})
    cov.add_record({"text": "not synthetic"})
    rep = cov.report()
    assert rep["topic"] == {
        "distinct": 2,
        "counts": {"loops": 2, "sets": 1},
        "declared": 3,
        "never_drawn_count": 1,
        "never_drawn": ["graphs"],
    }
    assert rep["style"] == {"distinct": 1, "counts": {"terse": 3}}
    assert compute_stats([{"text": "x", "synth": {"draw": {"topic": "loops"}}}])["coverage"]["topic"]["counts"] == {
        "loops": 1
    }


@pytest.mark.parametrize("field", ["body"])
def test_other_field(field):
    rep = compute_stats([{field: "p q r"}, {field: "p q s"}], field=field, near_dup=False)
    assert rep["distinct"]["counts"]["1"] == {"distinct": 4, "total": 6}
    assert "near_duplicates" not in rep
