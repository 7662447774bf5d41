"""The tolerant score parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phitools.llm.parse import find_json_object, parse_score


@pytest.mark.parametrize(
    "text,score",
    [
        ("Educational score: 3", 3),
        ("Clear and documented.\n**Educational score:** 4", 4),
        ('{"rationale": "ok", "score": 2}', 2),
        ('```json\n{"score": "5", "rationale": "x"}\n```', 5),
        ('Sure! {"educational_score": 1}', 1),
        ("4/5", 4),
        ("I rate it 3 out of 5.", 3),
        ("3", 3),
        ("Total: 2.5", 2.5),
        ("The educational value of this code is 0.", 0),
        ("Step 1 adds 2 points, step 3 adds 1.\nEducational score: 3", 3),
    ],
)
def test_scores_in_many_shapes(text, score):
    assert parse_score(text)[0] == score


@pytest.mark.parametrize(
    "text,why",
    [
        ("", "empty"),
        ("I cannot rate this.", "no score"),
        ("Score: 7", "outside"),
        ("Score: 8/10", "out of 10"),
        ('{"score": "high"}', "not a number"),
    ],
)
def test_refusals_and_out_of_range_raise(text, why):
    with pytest.raises(ValueError, match=why):
        parse_score(text)


def test_rationale_drops_the_score_lines():
    assert parse_score("Well explained.\nEducational score: 4\nEducational score: 4") == (4, "Well explained.")
    assert parse_score('{"score": 1, "rationale": "boilerplate"}') == (1, "boilerplate")


def test_other_scales():
    assert parse_score("Educational score: 8", 0, 10)[0] == 8


@given(st.integers(0, 5), st.text(alphabet=st.characters(blacklist_categories=("Nd", "Cs")), max_size=200))
def test_final_score_line_wins_after_any_prose(k, prose):
    assert parse_score(f"{prose}\nEducational score: {k}")[0] == k


def test_find_json_object():
    assert find_json_object('x {"a": 1} y') == {"a": 1}
    assert find_json_object("no json") is None
