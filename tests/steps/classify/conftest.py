"""A labelled set with a learnable signal, built from real code: standard-library modules as written (with their
docstrings and comments) are scored high; other modules, stripped of docstrings and comments and with every
identifier renamed to l/I/O/0 noise, are scored low."""

from __future__ import annotations

import ast
import builtins
import keyword
import random
import sysconfig
from pathlib import Path

import pytest

STDLIB = Path(sysconfig.get_paths()["stdlib"])
_KEEP = set(dir(builtins)) | set(keyword.kwlist) | {"self", "cls"}


def obfuscate(src: str, rng: random.Random) -> str:
    """Drop docstrings and comments, rename identifiers to unreadable ones (the program stays valid)."""
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            b = node.body
            if (
                b
                and isinstance(b[0], ast.Expr)
                and isinstance(getattr(b[0], "value", None), ast.Constant)
                and isinstance(b[0].value.value, str)
            ):
                node.body = b[1:] or [ast.Pass()]
    names: dict[str, str] = {}

    def rename(x: str) -> str:
        if x in _KEEP or x.startswith("__"):
            return x
        if x not in names:
            names[x] = "_" + "".join(rng.choice("lIO0") for _ in range(5)) + str(len(names))
        return names[x]

    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            node.id = rename(node.id)
        elif isinstance(node, ast.arg):
            node.arg = rename(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            node.name = rename(node.name)
        elif isinstance(node, ast.Attribute):
            node.attr = rename(node.attr)
    return ast.unparse(tree)


def stdlib_modules(start: int, count: int, max_bytes: int = 30_000) -> list[tuple[str, str]]:
    """(name, source) of `count` parseable stdlib modules under max_bytes, from the sorted list at `start`."""
    out = []
    for p in sorted(STDLIB.glob("*.py"))[start:]:
        src = p.read_text(errors="replace")
        if not 500 < len(src) < max_bytes:
            continue
        try:
            ast.parse(src)
        except SyntaxError:
            continue
        out.append((p.name, src))
        if len(out) == count:
            break
    return out


def build_labelled(start: int, count: int, seed: int = 0) -> list[dict]:
    """Alternate modules: even ones as written (score 4 or 5), odd ones obfuscated (score 0 or 1)."""
    rng = random.Random(seed)
    recs = []
    for i, (name, src) in enumerate(stdlib_modules(0, start + count)[start:]):
        if i % 2 == 0:
            recs.append(
                {"id": name, "text": src, "label": {"score": rng.choice([4, 5]), "model": "test", "rubric": "code"}}
            )
        else:
            recs.append(
                {
                    "id": name + "#obf",
                    "text": obfuscate(src, rng),
                    "label": {"score": rng.choice([0, 1]), "model": "test", "rubric": "code"},
                }
            )
    return recs


@pytest.fixture(scope="session")
def labelled():
    """60 labelled records (30 good, 30 bad) from the first modules of the standard library."""
    return build_labelled(0, 60)


@pytest.fixture(scope="session")
def heldout():
    """40 more labelled records from other modules (never seen in training)."""
    return build_labelled(60, 40, seed=1)


@pytest.fixture(scope="session")
def clf_dir(labelled, tmp_path_factory):
    """A small lgbm classifier trained on `labelled`, saved once per session."""
    import copy

    from phitools.steps.classify.features import parse_features
    from phitools.steps.classify.hashing import HashSettings
    from phitools.steps.classify.train import TrainOptions, train

    pipe = parse_features("hash", hash_settings=HashSettings(n_features=1 << 16))
    clf, report = train(iter(copy.deepcopy(labelled)), pipe, TrainOptions(estimator="lgbm", n_estimators=20, folds=2))
    path = tmp_path_factory.mktemp("clf-session") / "clf"
    clf.save(path, report=report)
    return path
