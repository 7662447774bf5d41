"""Prompt templates (parse, render, check) and the parsing of exercise answers."""

from __future__ import annotations

import ast

import pytest

from phitools.errors import ConfigError
from phitools.steps.synth_prompts import (
    KIND_DEFAULTS,
    SynthParseError,
    builtin_template,
    check_template,
    code_blocks,
    default_dimensions,
    load_template,
    parse_exercise,
    parse_template,
    render,
)
from phitools.steps.synth_spec import KINDS


def test_template_sections_and_placeholders():
    t = parse_template(
        "[system]\nYou teach {audience}.\n[user]\nExplain {topic}; keep {{braces}}.\n{constraints}\n", id="t"
    )
    assert t.system == "You teach {audience}."
    assert t.placeholders == ("audience", "topic", "constraints")
    msgs = render(t, {"audience": "kids", "topic": "loops", "name_rule": "ends in _x", "tone": "warm"})
    assert msgs[0] == {"role": "system", "content": "You teach kids."}
    user = msgs[1]["content"]
    assert user.startswith("Explain loops; keep {braces}.")
    assert "Additional requirements:\n- name rule: ends in _x\n- tone: warm" in user
    # no leftover dimensions: the constraints block disappears without leaving blank lines
    user2 = render(t, {"audience": "kids", "topic": "loops"})[1]["content"]
    assert user2 == "Explain loops; keep {braces}."
    assert render(t, {"audience": "kids", "topic": "loops"}, system="")[0]["role"] == "user"


def test_template_without_sections_is_the_user_message():
    t = parse_template("Write about {topic}.", id="x")
    assert t.system is None and render(t, {"topic": "sets"}) == [{"role": "user", "content": "Write about sets."}]


def test_unknown_placeholder_points_at_the_template_line(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("Write about {topic}.\nFor {audiance}.\n", encoding="utf-8")
    t = load_template(str(p))
    with pytest.raises(ConfigError, match=rf"{p}:2: placeholder {{audiance}} is not a dimension"):
        check_template(t, ["topic", "audience"])
    with pytest.raises(ConfigError, match="no \\[user\\] line"):
        parse_template("[system]\nhi\n", id="bad")


@pytest.mark.parametrize("kind", KINDS)
def test_builtin_templates_need_only_topic_and_their_defaults(kind):
    t = builtin_template(kind)
    dims = ["topic"] + [d.name for d in default_dimensions(kind, t, ["topic"])]
    check_template(t, dims)
    assert set(dims) - {"topic"} == set(KIND_DEFAULTS[kind])
    assert t.sha256 and t.id == f"builtin:{kind}"
    with pytest.raises(ConfigError):
        check_template(t, [])


GOOD = '''Here you go:

```python
from typing import List


def running_total(values: List[int]) -> List[int]:
    """Return the running totals of values.

    >>> running_total([1, 2, 3])
    [1, 3, 6]
    """
    out = []
    total = 0
    for v in values:
        total += v
        out.append(total)
    return out


@staticmethod
def _helper(x):
    return x


print(running_total([1]))
assert running_total([]) == []
if __name__ == "__main__":
    import doctest
    doctest.testmod()
```

This works because ...
'''


def test_parse_exercise_splits_prompt_and_solution():
    ex = parse_exercise(GOOD)
    assert ex.entry_point == "running_total"
    assert ex.prompt.startswith("from typing import List\n")
    assert ex.prompt.rstrip().endswith('"""') and ">>> running_total([1, 2, 3])" in ex.prompt
    assert ex.solution.startswith("    out = []\n")
    assert "def _helper" in ex.solution and "@staticmethod" in ex.solution  # helpers after it are kept
    assert "print(" not in ex.solution and "__main__" not in ex.solution  # the test harness is not
    ast.parse(ex.text)
    ns: dict = {}
    exec(compile(ex.text, "<ex>", "exec"), ns)  # noqa: S102 - our own fixed test string
    assert ns["running_total"]([1, 2, 3]) == [1, 3, 6]


def test_parse_exercise_without_fences_and_async():
    ex = parse_exercise('async def f(x):\n    """Double."""\n    return 2 * x\n')
    assert ex.entry_point == "f" and ex.solution == "    return 2 * x\n"


@pytest.mark.parametrize(
    "answer,reason",
    [
        ("", "empty completion"),
        ("I would rather not.", "does not parse"),
        ("```python\ndef f(x:\n    return x\n```", "does not parse"),
        ("```python\ndef f(x):\n    return x\n```", "no function with a docstring"),
        ("```python\nx = 1\n```", "no function definition"),
        ('```python\ndef f(x):\n    """Doc."""\n```', "no body after its docstring"),
        ('```python\ndef f(x):\n    """Doc."""\n    pass\n```', "no body after its docstring"),
        ('```python\ndef f(x):\n    """Doc."""\n    return (x +\n', "does not parse"),  # cut off by max_tokens
    ],
)
def test_parse_exercise_rejects_unusable_answers(answer, reason):
    with pytest.raises(SynthParseError, match=reason):
        parse_exercise(answer)


def test_code_blocks_handle_unclosed_and_plain_fences():
    blocks = code_blocks("a\n```py\nx = 1\n```\nb\n```\ny = 2\n")
    assert blocks == [("py", "x = 1\n"), ("", "y = 2\n")]
