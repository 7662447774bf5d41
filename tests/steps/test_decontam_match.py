"""Decontamination against real HumanEval/MBPP: renamed copies and 13-gram copies are caught, stdlib is not."""

from __future__ import annotations

import ast
import builtins
import gzip
import json

import pytest

from phitools.errors import DataError, UsageError
from phitools.eval import benchmarks as bm
from phitools.eval.benchmarks import load_texts, load_texts_file
from phitools.pipeline import Context
from phitools.steps.decontam import BenchmarkIndex, Decontam, DecontamOptions, function_keys, parse_python


class Rename(ast.NodeTransformer):
    """Rename every function, argument, variable and local import, and drop docstrings: what a model
    paraphrasing a memorised solution (or a cheater) would do. Builtins and module-level imports stay."""

    def rename(self, tree: ast.Module) -> str:
        self.keep = set(dir(builtins))
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self.keep |= {(a.asname or a.name).split(".")[0] for a in node.names}
        tree.body = [n if isinstance(n, (ast.Import, ast.ImportFrom)) else self.visit(n) for n in tree.body]
        out = ast.unparse(ast.fix_missing_locations(tree))
        compile(out, "<renamed>", "exec")
        return out

    def visit_Name(self, node):
        if node.id not in self.keep:
            node.id = "renamed_" + node.id
        return node

    def visit_arg(self, node):
        node.arg = "renamed_" + node.arg
        node.annotation = None
        return node

    def visit_alias(self, node):  # only imports inside functions get here
        node.asname = "renamed_" + (node.asname or node.name.split(".")[0])
        return node

    def visit_FunctionDef(self, node):
        node.name = "renamed_" + node.name
        if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
            node.body = node.body[1:] or [ast.Pass()]  # no docstring: no prompt words left to n-gram match
        self.generic_visit(node)
        return node


@pytest.fixture(scope="module")
def humaneval():
    return load_texts("humaneval")


@pytest.fixture(scope="module")
def index(humaneval):
    return BenchmarkIndex(humaneval + load_texts("mbpp"))


def test_renamed_canonical_solutions_are_caught(humaneval, index):
    eligible = caught = 0
    for it in humaneval:
        tree = parse_python(it.solution)
        if max((k.nodes for k in function_keys(tree)), default=0) < index.config.min_nodes:
            continue  # too small to tell from ordinary code (e.g. `return len(string)`): not claimed
        eligible += 1
        renamed = Rename().rename(tree)
        assert "renamed_" in renamed
        found = index.check(renamed)
        if found and "ast" in found and it.task_id in found["tasks"]:
            caught += 1
    assert eligible >= 130
    assert caught == eligible


def test_renamed_copy_inside_a_markdown_textbook(humaneval, index):
    it = next(i for i in humaneval if i.task_id == "HumanEval/0")
    code = Rename().rename(parse_python(it.solution))
    text = f"# Closeness\n\nLet us compare numbers.\n\n```python\n{code}\n```\n\nThat is all.\n"
    found = index.check(text)
    assert found["ast"]["functions"][0]["match"] == "exact"
    assert "HumanEval/0" in found["tasks"] and "ngram" not in found


def test_renamed_copy_with_an_added_statement_is_caught_by_windows(humaneval, index):
    it = next(i for i in humaneval if i.task_id == "HumanEval/10")  # make_palindrome: a longer function
    tree = parse_python(it.solution)
    fn = [n for n in tree.body if isinstance(n, ast.FunctionDef)][-1]
    fn.body.insert(2, ast.parse("steps_taken = 0").body[0])
    found = index.check(Rename().rename(tree))
    assert found and "HumanEval/10" in found["tasks"]
    assert any(f["match"] == "ast_windows" for f in found["ast"]["functions"])


def test_thirteen_gram_copy_is_caught_and_twelve_is_not():
    mbpp = load_texts("mbpp")
    it = next(i for i in mbpp if len(i.prompt.split()) >= 16)
    idx = BenchmarkIndex(mbpp, DecontamOptions(ast=False))
    words = it.prompt.split()
    prose = "Here is a lesson about something else entirely. "
    found = idx.check(prose + " ".join(words[:13]) + " and then we stop.")
    assert found["ngram"]["hits"] >= 1 and it.task_id in found["tasks"]
    assert idx.check(prose + " ".join(words[:12]) + " and then we stop.") is None
    # configurable n
    assert BenchmarkIndex(mbpp, DecontamOptions(ngram=8, ast=False)).check(prose + " ".join(words[:8])) is not None


def test_unrelated_stdlib_code_is_not_flagged(stdlib_small, index):
    flagged = []
    n = 0
    for p in sorted(stdlib_small.glob("*.py")):
        n += 1
        found = index.check(p.read_text(encoding="utf-8", errors="replace"))
        if found:
            flagged.append((p.name, found))
    assert n >= 50
    assert flagged == []


def test_normalisation_ignores_names_docstrings_annotations_but_not_structure():
    a = function_keys(
        parse_python(
            'def f(xs: list) -> int:\n    """Sum."""\n    t = 0\n    for x in xs:\n        t += x\n    return t\n'
        )
    )[0]
    b = function_keys(
        parse_python("def total(values):\n    acc = 0\n    for v in values:\n        acc += v\n    return acc\n")
    )[0]
    c = function_keys(
        parse_python("def total(values):\n    acc = 1\n    for v in values:\n        acc += v\n    return acc\n")
    )[0]
    d = function_keys(
        parse_python("def total(values):\n    acc = 0\n    for v in values:\n        acc += v\n    return len(acc)\n")
    )[0]
    assert a.exact == b.exact
    assert a.exact != c.exact  # a different constant
    assert a.exact != d.exact  # a builtin call is kept by name
    # swapping which argument is used where is a different function, not a renaming
    e = function_keys(parse_python("def f(a, b):\n    return a - b\n"))[0]
    f = function_keys(parse_python("def f(a, b):\n    return b - a\n"))[0]
    assert e.exact != f.exact


def test_decontaminate_flags_or_drops_and_counts(humaneval):
    it = humaneval[3]
    recs = [
        {"id": "copy", "text": it.prompt + it.solution},
        {"id": "clean", "text": "print('hello world')"},
        {"id": "none"},
    ]
    step = Decontam(items=humaneval)
    out = list(step(recs, Context()))
    counts = step.counts
    assert [r["id"] for r in out] == ["copy", "clean", "none"]
    assert out[0]["decontam"]["contaminated"] is True and it.task_id in out[0]["decontam"]["tasks"]
    assert "decontam" not in out[1] and out[2] == {"id": "none"}
    assert counts["contaminated"] == 1 and counts["checked"] == 3 and counts["no_text"] == 1
    ctx = Context()
    dropped = list(Decontam(DecontamOptions(drop=True), items=humaneval)(recs, ctx))
    assert [r["id"] for r in dropped] == ["clean", "none"] and ctx.stats.dropped == {"contaminated": 1}


def test_benchmark_files(tmp_path, monkeypatch):
    he = tmp_path / "mini.jsonl"
    he.write_text(
        json.dumps({"task_id": "T/1", "prompt": "def f(x):\n", "canonical_solution": "    return x\n"}) + "\n"
    )
    items = load_texts_file(he)
    assert items[0].task_id == "T/1" and items[0].solution == "def f(x):\n    return x\n"
    shipped = bm.shipped_dir()
    san = load_texts_file(shipped / "mbpp" / "sanitized-mbpp.json.gz")  # a gzipped JSON array
    assert len(san) == 427 and san[0].prompt.startswith("Write a")
    (tmp_path / "san.json").write_bytes(gzip.decompress((shipped / "mbpp" / "sanitized-mbpp.json.gz").read_bytes()))
    assert [i.task_id for i in load_texts_file(tmp_path / "san.json")] == [i.task_id for i in san]
    assert len(load_texts("mbpp-sanitized")) == 427
    assert len(load_texts(str(shipped / "evalplus" / "HumanEvalPlus.jsonl.gz"))) == 164
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "?"}\n')
    with pytest.raises(DataError, match="none of prompt/canonical_solution/code"):
        load_texts_file(bad)
    with pytest.raises(UsageError, match="neither a known benchmark"):
        load_texts("humaneva1")
    assert len(load_texts("mbpp", data_dir=tmp_path, allow_download=False)) == 974  # the shipped copy
    monkeypatch.setattr(bm, "shipped_dir", lambda: tmp_path / "nothing")
    with pytest.raises(DataError, match="mbpp/mbpp.jsonl not found"):
        load_texts("mbpp", data_dir=tmp_path, allow_download=False)
    monkeypatch.undo()
    plus = load_texts("mbpp+")
    assert len(plus) == 378 and all(it.solution for it in plus)
