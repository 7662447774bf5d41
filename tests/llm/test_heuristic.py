"""The transparent non-LLM scorer: deterministic, and it ranks textbook code above junk."""

from __future__ import annotations

from phitools.llm.heuristic import code_features, looks_like_code, score

TEXTBOOK = '''"""Binary search: find a value in a sorted list in O(log n) steps."""


def binary_search(items, target):
    """Return the index of `target` in the sorted list `items`, or -1 if it is absent.

    >>> binary_search([1, 3, 5, 7], 5)
    2
    """
    low, high = 0, len(items) - 1
    while low <= high:
        middle = (low + high) // 2  # look at the middle element
        if items[middle] == target:
            return middle
        if items[middle] < target:
            low = middle + 1  # the target can only be to the right
        else:
            high = middle - 1  # ... or to the left
    return -1


if __name__ == "__main__":
    print(binary_search([2, 4, 6, 8, 10], 8))
'''

JUNK = "import base64;exec(base64.b64decode('aW1wb3J0IG9zO29zLnN5c3RlbSgnbHMnKQ=='));q1=2;zz=q1*3\n"
CONFIG = "\n".join(f"SETTING_{i} = {i}" for i in range(40))


def test_textbook_code_beats_obfuscated_and_config():
    good, why, feats = score(TEXTBOOK)
    assert good >= 4 and feats["kind"] == "code" and feats["documentation"] > 0.5 and why.startswith("heuristic")
    assert score(JUNK)[0] <= 1
    assert score(CONFIG)[0] < good
    assert score("")[0] == 0


def test_deterministic_and_prose_path():
    assert score(TEXTBOOK) == score(TEXTBOOK)
    essay = (
        "# Photosynthesis\n\n" + "Plants turn light into chemical energy. The process happens in chloroplasts. "
        "It needs water and carbon dioxide.\n" * 20
    )
    s, _, feats = score(essay)
    assert feats["kind"] == "prose" and 0 <= s <= 5
    assert not looks_like_code(essay) and looks_like_code(TEXTBOOK)


def test_code_that_does_not_parse_is_penalised():
    assert code_features(TEXTBOOK.replace("def binary_search", "def binary search"))["syntax"] == 0.0
