"""phitools.options: typed options dataclasses, checked the same way from Python, the CLI and config files."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from phitools.errors import ConfigError, UsageError
from phitools.options import check, conforms, from_mapping, option, option_like, type_name


@dataclass
class Knobs:
    votes: int = option(1, min=1, help="votes")
    rate: float = option(0.5, "--rate", min=0, max=1, help="rate")
    kind: str = option("a", choices=("a", "b"), help="kind")
    names: list[str] | None = option(None, help="names")
    flag: bool = option(False, help="flag")

    def __post_init__(self) -> None:
        check(self)


def test_defaults_and_metadata_live_on_the_field():
    k = Knobs()
    assert (k.votes, k.rate, k.kind, k.names, k.flag) == (1, 0.5, "a", None, False)


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"votes": 0}, "--votes must be at least 1, got 0"),
        ({"rate": 2}, "--rate must be at most 1, got 2"),
        ({"kind": "c"}, "--kind must be one of a, b, got 'c'"),
        ({"votes": "3"}, "--votes expects integer, got '3'"),
        ({"names": ["x", 3]}, "--names expects list of string or none"),
        ({"flag": 1}, "--flag expects true or false, got 1"),
    ],
)
def test_bad_values_are_one_line_usage_errors(kw, msg):
    with pytest.raises(UsageError) as e:
        Knobs(**kw)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_ints_are_numbers_but_bools_are_not():
    assert conforms(float, 3) and not conforms(float, True) and not conforms(int, True)
    assert type_name(float | None) == "number or none"


def test_from_mapping_names_the_key_the_value_and_the_file():
    assert from_mapping(Knobs, {"votes": 3, "rate": 1}, source="k.toml").votes == 3
    with pytest.raises(ConfigError) as e:
        from_mapping(Knobs, {"rate": "0.1"}, source="k.toml")
    assert str(e.value).startswith("k.toml: rate = '0.1' should be number")
    with pytest.raises(ConfigError) as e:
        from_mapping(Knobs, {"nope": 1}, source="k.toml")
    assert "unknown key 'nope'" in str(e.value) and "votes" in str(e.value)


@dataclass
class Variant:
    """Shares --rate with Knobs, and --votes with another default; `flag` is kept off the command line."""

    rate: float = option_like(Knobs, "rate")
    votes: int = option_like(Knobs, "votes", default=3)
    flag: bool = option_like(Knobs, "flag", cli=False)
    names: list[str] | None = option_like(Knobs, "names")

    def __post_init__(self) -> None:
        check(self)


def test_option_like_reuses_a_declaration_with_changes():
    theirs = {f.name: f for f in dataclasses.fields(Knobs)}
    ours = {f.name: f for f in dataclasses.fields(Variant)}
    assert ours["rate"].metadata == theirs["rate"].metadata and ours["rate"].default == 0.5
    assert ours["votes"].default == 3 and ours["votes"].metadata["help"] == "votes"
    assert ours["flag"].metadata["cli"] is False and theirs["flag"].metadata["cli"] is True
    assert Variant().votes == 3
    with pytest.raises(UsageError, match="--rate must be at most 1"):
        Variant(rate=2)  # the checks come along
    with pytest.raises(TypeError, match="no option 'nope'"):
        option_like(Knobs, "nope")
