"""The randomness spec: parsing, clear errors, and the seeded per-index draw."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import pytest

from phitools.errors import ConfigError
from phitools.shards import parse_shard
from phitools.steps.synth import SynthPlan
from phitools.steps.synth_prompts import builtin_template
from phitools.steps.synth_spec import load_spec, merge_dimensions, topics_dimension

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


BASIC = """
[dimensions]
topic = ["loops", "recursion", "sets", "strings"]
style = { values = ["dialogue", "tutorial"], weights = [3, 1] }
level = { values = [{ value = "easy", weight = 0 }, "hard"] }
"""


def test_draw_is_a_function_of_seed_and_index_only(tmp_path):
    spec = load_spec(write(tmp_path, BASIC))
    again = load_spec(write(tmp_path, BASIC, "copy.toml"))
    first = [spec.draw(7, i) for i in range(200)]
    assert first == [again.draw(7, i) for i in range(200)]
    # order of evaluation and which other indices exist do not matter
    assert [spec.draw(7, i) for i in reversed(range(200))] == first[::-1]
    assert spec.draw(7, 123) == first[123]
    other = [spec.draw(8, i) for i in range(200)]
    assert other != first
    assert set(first[0]) == {"topic", "style", "level"}


def test_weights_are_honoured(tmp_path):
    spec = load_spec(write(tmp_path, BASIC))
    draws = [spec.draw(0, i) for i in range(4000)]
    style = Counter(d["style"] for d in draws)
    assert abs(style["dialogue"] / 4000 - 0.75) < 0.03
    assert Counter(d["level"] for d in draws) == {"hard": 4000}  # weight 0 is never drawn
    topics = Counter(d["topic"] for d in draws)
    assert set(topics) == {"loops", "recursion", "sets", "strings"}
    assert all(abs(c / 4000 - 0.25) < 0.03 for c in topics.values())


def test_adding_a_dimension_keeps_the_earlier_draws(tmp_path):
    a = load_spec(write(tmp_path, BASIC))
    b = load_spec(write(tmp_path, BASIC + 'extra = ["x", "y", "z"]\n', "b.toml"))
    for i in range(100):
        da, db = a.draw(1, i), b.draw(1, i)
        assert {k: db[k] for k in da} == da


def test_conditional_dimension_and_fallback(tmp_path):
    spec = load_spec(
        write(
            tmp_path,
            """
        [dimensions.subtopic]
        by = "topic"
        values = { "recursion" = ["base cases", "call stack"], "*" = ["examples"] }

        [dimensions]
        topic = ["recursion", "loops"]
    """,
        )
    )
    assert list(spec.dimensions) == ["topic", "subtopic"]  # drawn after what it depends on
    seen = Counter()
    for i in range(300):
        d = spec.draw(0, i)
        if d["topic"] == "recursion":
            assert d["subtopic"] in ("base cases", "call stack")
        else:
            assert d["subtopic"] == "examples"
        seen[d["subtopic"]] += 1
    assert set(seen) == {"base cases", "call stack", "examples"}
    assert spec.declared_values()["subtopic"] == ["base cases", "call stack", "examples"]


def test_values_files_are_relative_to_the_spec_and_skip_comments(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "aud.txt").write_text("# audiences\nkids\n\n  adults  \n", encoding="utf-8")
    spec = load_spec(
        write(tmp_path, '[dimensions]\naudience = { file = "aud.txt", weights = { kids = 2 } }\n', "sub/spec.toml")
    )
    assert spec.declared_values() == {"audience": ["kids", "adults"]}
    c = Counter(spec.draw(0, i)["audience"] for i in range(3000))
    assert abs(c["kids"] / 3000 - 2 / 3) < 0.03


def test_topics_file_overrides_the_spec_topic(tmp_path):
    spec = load_spec(write(tmp_path, BASIC))
    (tmp_path / "t.txt").write_text("graphs\ntrees\n", encoding="utf-8")
    merged = merge_dimensions(spec, [topics_dimension(tmp_path / "t.txt")])
    assert {merged.draw(0, i)["topic"] for i in range(50)} == {"graphs", "trees"}
    assert list(merged.dimensions)[0] == "topic"


def test_examples_spec_loads():
    spec = load_spec(REPO / "examples" / "spec.toml")
    assert spec.kind == "exercise"
    assert {"topic", "difficulty", "audience", "function_name", "setting"} <= set(spec.dimensions)
    assert len(spec.declared_values()["topic"]) >= 30


@pytest.mark.parametrize(
    "text,line,needle",
    [
        (
            '[dimensions]\na = ["x", "y"]\nb = { values = ["p", "q"], weights = [1, 2, 3] }\n',
            3,
            "weights has 3 entries but there are 2 values",
        ),
        ('[dimensions]\n\n[dimensions.style]\nvalues = ["a"]\nweight = [1]\n', 5, "unknown key 'weight'"),
        ('[dimensions]\ntopic = { file = "nope.txt" }\n', 2, "file 'nope.txt' not found"),
        (
            '[dimensions]\ntopic = ["a"]\n[dimensions.sub]\nby = "topik"\nvalues = { a = ["x"] }\n',
            4,
            "names no declared dimension",
        ),
        (
            '[dimensions]\ntopic = ["a", "b"]\n[dimensions.sub]\nby = "topic"\nvalues = { a = ["x"] }\n',
            5,
            "no values for topic = 'b'",
        ),
        ('[dimensions]\ntopic = ["a", \n', 2, "invalid TOML"),
        ('[dimensions]\n\ntopic = "topics.txt"\n', 3, "is a string"),
        ('[dimensions]\nconstraints = ["a"]\n', 2, "reserved"),
        ('[dimensions]\nx = { values = ["a", "b"], weights = [1, -1] }\n', 2, "must be a finite number >= 0"),
        ("[dimensions]\nx = []\n", 2, "must be a non-empty list"),
        ('[dimensions]\n"bad name" = ["a"]\n', 2, "not an identifier"),
        ('[synth]\nkind = "novel"\n', None, "is not one of textbook, exercise, story"),
        ('[sinth]\nkind = "story"\n', 1, "unknown section or key 'sinth'"),
    ],
)
def test_spec_errors_say_where_and_what(tmp_path, text, line, needle):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as ei:
        load_spec(p)
    msg = str(ei.value)
    assert needle in msg
    if line is not None:
        assert msg.startswith(f"{p}:{line}"), msg
    assert ei.value.exit_code == 2


def test_shards_partition_the_indices(tmp_path):
    spec = load_spec(write(tmp_path, BASIC))
    tpl = builtin_template("textbook")
    full = list(SynthPlan(kind="textbook", spec=spec, template=tpl, n=23).indices())
    parts = [
        list(SynthPlan(kind="textbook", spec=spec, template=tpl, n=23, shard=parse_shard(f"{k}/4")).indices())
        for k in range(4)
    ]
    assert sorted(i for p in parts for i in p) == full == list(range(23))
    assert [
        SynthPlan(kind="textbook", spec=spec, template=tpl, n=23, shard=parse_shard(f"{k}/4")).count() for k in range(4)
    ] == [len(p) for p in parts]
    # a record's sampling seed does not depend on the shard either
    plan = SynthPlan(kind="textbook", spec=spec, template=tpl, n=23, seed=5)
    sharded = SynthPlan(kind="textbook", spec=spec, template=tpl, n=23, seed=5, shard=parse_shard("1/4"))
    assert plan.sampling_seed(5) == sharded.sampling_seed(5) != plan.sampling_seed(6)
