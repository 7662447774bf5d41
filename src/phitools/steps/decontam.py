"""Decontamination: find records that overlap a benchmark's prompts or solutions.

Two independent tests, both reported (a record is contaminated if either fires):

* word n-grams (phi-1: 13-grams). Each benchmark problem contributes the n-grams of its prompt and of its
  reference solution (HumanEval: prompt + canonical_solution; MBPP: the task text and the code). A record
  is flagged when it shares at least `min_hits` n-grams with the benchmark. Words are those of
  `ngrams.words` (lowercased \\w+ runs), so indentation, quoting and spacing changes do not hide a copy.
  Benchmark texts shorter than n words cannot match and are counted as such.

* AST (code only). Every function in a benchmark solution and every function in a record (the whole text
  if it parses as Python, else each fenced code block) is normalised: docstrings, type annotations and
  decorators are removed, and every name the function binds (its own name, arguments, local variables,
  loop and comprehension targets, nested definitions, exception names) becomes a positional placeholder
  (_0, _1, ... in order of first appearance); globals, builtins, attributes and constants are kept. Two
  functions match when their normalised trees are equal -- a copy with renamed identifiers is caught, an
  unrelated function with the same structure on different builtins or constants is not. Benchmark functions
  smaller than `min_nodes` AST nodes (e.g. `return a + b`) are too generic to call a match and are skipped.
  A second, looser AST test compares n-grams of the normalised tree's token stream with every local name
  written as one anonymous placeholder, which survives renaming plus small edits (a statement added or
  removed); a record is flagged when it shares an `ast_ngram`-token window with a benchmark function.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from phitools.errors import UsageError
from phitools.eval.benchmarks import BenchmarkText, load_texts
from phitools.llm.parse import code_blocks
from phitools.options import check, option
from phitools.pipeline import Context
from phitools.records import Record
from phitools.steps.ngrams import WordHasher, ngram_hashes, sorted_unique

# ---- AST normalisation ------------------------------------------------------------------------------------

_FUNC = (ast.FunctionDef, ast.AsyncFunctionDef)


def _is_docstring(stmt: ast.AST) -> bool:
    return stmt.__class__ is ast.Expr and stmt.value.__class__ is ast.Constant and isinstance(stmt.value.value, str)  # type: ignore[attr-defined]


_SKIP_FIELDS = {"decorator_list", "returns", "annotation", "type_comment", "type_params", "ctx", "type_ignores"}
_HOLE = "\x01"  # marks a placeholder name in the token stream
_FIELDS: dict[type, tuple] = {}
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _fields(cls: type) -> tuple:
    f = _FIELDS.get(cls)
    if f is None:
        f = _FIELDS[cls] = tuple(n for n in cls._fields if n not in _SKIP_FIELDS)  # type: ignore[attr-defined]
    return f


def _serialise(fn: ast.AST, module_defs: frozenset = frozenset()) -> list[str]:
    """Canonical pre-order token stream of a function, with the names it binds as positional placeholders.

    The names a function binds (its own name, arguments, assignment / loop / comprehension / with / except
    targets, nested definitions, local imports) become holes numbered by first appearance; every other name
    (globals, builtins) stays. Docstrings, annotations, decorators and type comments are left out; a bare
    annotation (`x: int`) declares nothing and is dropped, `x: int = v` reads as `x = v`. ")" closes each
    node, so equal streams mean equal normalised trees. One pass: names are patched after the walk.
    Functions and classes defined at the top of the same module (`module_defs`, e.g. a helper the function
    calls) are renamed too, numbered separately in order of first use.
    """
    out: list[str] = []
    append = out.append
    name_at: list[int] = []  # positions in `out` that hold a name
    bound: dict[str, str] = {}  # name -> placeholder number, in order of first binding

    def bind(n: str | None) -> None:
        if n and n not in bound:
            bound[n] = str(len(bound))

    def put_name(n: str) -> None:
        name_at.append(len(out))
        append(n)

    def visit(node: ast.AST) -> None:
        cls = node.__class__
        if cls is ast.AnnAssign:
            if node.value is None:  # type: ignore[attr-defined]
                return
            append("Assign")
            visit(node.target)  # type: ignore[attr-defined]
            visit(node.value)  # type: ignore[attr-defined]
            append(")")
            return
        append(cls.__name__)
        if cls is ast.Name:
            if node.ctx.__class__ is not ast.Load:  # type: ignore[attr-defined]
                bind(node.id)  # type: ignore[attr-defined]
            put_name(node.id)  # type: ignore[attr-defined]
            append(")")
            return
        if cls is ast.Constant:
            append(repr(node.value)[:64])  # type: ignore[attr-defined]
            append(")")
            return
        if cls is ast.arg:
            bind(node.arg)  # type: ignore[attr-defined]
            put_name(node.arg)  # type: ignore[attr-defined]
        elif cls is ast.Attribute:
            append("." + node.attr)  # type: ignore[attr-defined]
        elif cls in _DEFS:
            bind(node.name)  # type: ignore[attr-defined]
            put_name(node.name)  # type: ignore[attr-defined]
        elif cls is ast.alias:
            # `import m` and `import m as x` both bind a local name to m: written the same way
            append(node.name)  # type: ignore[attr-defined]
            local = (node.asname or node.name).split(".")[0]  # type: ignore[attr-defined]
            bind(local)
            put_name(local)
        elif cls is ast.ExceptHandler and node.name:  # type: ignore[attr-defined]
            bind(node.name)  # type: ignore[attr-defined]
            put_name(node.name)  # type: ignore[attr-defined]
        elif cls is ast.Global or cls is ast.Nonlocal:
            for n in node.names:  # type: ignore[attr-defined]
                put_name(n)
        elif cls is ast.keyword:
            append("=" + str(node.arg))  # type: ignore[attr-defined]
        elif cls is ast.ImportFrom:
            append(f"{node.module}:{node.level}")  # type: ignore[attr-defined]
        for fname in _fields(cls):
            value = getattr(node, fname, None)
            if value.__class__ is list:
                if fname == "body" and value and cls in _DEFS and _is_docstring(value[0]):
                    value = value[1:]
                for v in value:
                    if isinstance(v, ast.AST):
                        visit(v)
            elif isinstance(value, ast.AST):
                visit(value)
        append(")")

    visit(fn)
    sibling: dict[str, str] = {}
    for i in name_at:
        n = out[i]
        p = bound.get(n)
        if p is not None:
            out[i] = _HOLE + p
        elif n in module_defs:
            out[i] = _HOLE + "g" + sibling.setdefault(n, str(len(sibling)))
    return out


@dataclass
class FunctionKey:
    """The normalised forms of one function."""

    name: str
    exact: str  # sha256 of the canonical stream with positional placeholders
    nodes: int  # size of the normalised tree (nodes)
    tokens: list[str]  # the same stream with every placeholder written as one anonymous hole


def _functions(node: ast.AST) -> Iterator[ast.AST]:
    """Every function definition under node, looking only through statement lists (not expressions)."""
    for fname in node._fields:
        value = getattr(node, fname, None)
        if value.__class__ is list:
            for v in value:
                if isinstance(v, (ast.stmt, ast.excepthandler, ast.match_case)):
                    if isinstance(v, _FUNC):
                        yield v
                    yield from _functions(v)


def function_keys(tree: ast.AST, min_nodes: int = 0) -> list[FunctionKey]:
    """Normalised keys of every function (top level, nested, methods) in a parsed module.

    Functions smaller than `min_nodes` are left out (they cannot match a benchmark function of that size).
    """
    out = []
    module_defs = frozenset(n.name for n in getattr(tree, "body", ()) if isinstance(n, _DEFS))
    for node in _functions(tree):
        try:
            stream = _serialise(node, module_defs)
        except RecursionError:
            continue
        nodes = stream.count(")")
        if nodes < min_nodes:
            continue
        exact = hashlib.sha256("\x00".join(stream).encode("utf-8", "surrogatepass")).hexdigest()
        anon = [_HOLE if t.startswith(_HOLE) else t for t in stream]
        out.append(FunctionKey(node.name, exact, nodes, anon))  # type: ignore[attr-defined]
    return out


def parse_python(code: str) -> ast.AST | None:
    """The module's tree, or None when it is not Python."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences etc. in other people's code
            return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def python_trees(text: str) -> list[ast.AST]:
    """The Python in a record: the whole text if it parses, else each fenced code block that does."""
    tree = parse_python(text)
    if tree is not None:
        return [tree]
    trees = (parse_python(block) for _, block in code_blocks(text) if "def " in block)
    return [t for t in trees if t is not None]


# ---- the index --------------------------------------------------------------------------------------------


_BENCHMARK_HELP = (
    "humaneval, humaneval+, mbpp, mbpp-sanitized, mbpp+, or a FILE (JSONL in the human-eval or MBPP schema, "
    ".gz/.zst, or a JSON array). Repeat for several."
)
_DATA_DIR_HELP = (
    "Folder laid out like humaneval/HumanEval.jsonl, mbpp/mbpp.jsonl (.gz accepted) whose copies win over the "
    "rest (else $PHITOOLS_DATA, ~/.cache/phitools/data, the copies shipped with phitools, a download), as for "
    "`phitools eval`."
)


@dataclass
class DecontamOptions:
    """Which benchmarks to check against, how (the test parameters, see the module docstring), and what to do
    with a contaminated record."""

    benchmarks: list[str] = option(
        dataclasses.MISSING,
        "--benchmark",
        "-b",
        factory=lambda: ["humaneval"],
        show_default=False,
        help=_BENCHMARK_HELP,
    )
    data_dir: str | None = option(None, "--data-dir", show_default=False, help=_DATA_DIR_HELP)
    download: bool = option(
        True,
        "--download/--no-download",
        help="Fetch a named benchmark from its public source (sha256-checked) when no copy is found (phitools "
        "ships every named one).",
    )
    drop: bool = option(
        False, "--drop", help="Drop contaminated records (default: keep them and add `decontam: {...}`)."
    )
    ngram: int = option(13, "--ngram", min=1, help="Word n-gram length for the overlap test (phi-1: 13).")
    min_hits: int = option(1, "--min-hits", min=1, help="Shared n-grams needed to flag a record.")
    ast: bool = option(
        True, "--ast/--no-ast", help="Also compare functions after AST normalisation (renaming-insensitive)."
    )
    min_nodes: int = option(
        20, "--min-nodes", min=1, help="Benchmark functions smaller than this many AST nodes are too generic to match."
    )
    field: str = option("text", "--field", help="The record field to check.")
    # the looser AST test's window, coverage and minimum function size: tuned, not on the command line
    ast_window: int = option(12, min=1, cli=False, help="Tokens per window of the normalised token stream.")
    ast_coverage: float = option(
        0.7, cli=False, help="Share of a benchmark function's windows a record must hold, in (0, 1]."
    )
    ast_window_min_nodes: int = option(
        30, min=1, cli=False, help="Functions smaller than this match exactly only (no window test)."
    )

    def __post_init__(self) -> None:
        check(self)
        if not self.benchmarks:
            raise UsageError("give at least one --benchmark")
        if not 0 < self.ast_coverage <= 1:
            raise UsageError(f"ast_coverage must be in (0, 1], got {self.ast_coverage!r}")

    def method(self) -> dict:
        """The test parameters, for the manifest."""
        d = {"ngram": self.ngram, "ngram_words": "lowercased \\w+ runs", "min_hits": self.min_hits, "ast": self.ast}
        if self.ast:
            d.update(
                {
                    "ast_min_nodes": self.min_nodes,
                    "ast_window_tokens": self.ast_window,
                    "ast_coverage": self.ast_coverage,
                    "ast_window_min_nodes": self.ast_window_min_nodes,
                }
            )
        return d


def benchmark_texts(opts: DecontamOptions) -> list[BenchmarkText]:
    """The problems of every --benchmark, found as `phitools eval` finds them (eval/benchmarks.py)."""
    return [t for b in opts.benchmarks for t in load_texts(b, opts.data_dir, allow_download=opts.download)]


class BenchmarkIndex:
    """Hashed word n-grams and normalised functions of one or more benchmarks."""

    def __init__(self, items: Sequence[BenchmarkText], config: DecontamOptions | None = None):
        self.config = cfg = config or DecontamOptions()
        self.hasher = WordHasher()
        self.items = list(items)
        self.ngram_owner: dict[int, set[int]] = {}  # word n-gram hash -> item indices
        self.exact_owner: dict[str, set[int]] = {}  # normalised function hash -> item indices
        self.window_owner: dict[int, list[int]] = {}  # AST-token window hash -> benchmark function ids
        self.fn_item: list[int] = []  # benchmark function id -> item index
        self.fn_windows: list[int] = []  # benchmark function id -> number of distinct windows
        self.too_short = 0
        self.functions_too_small = 0
        self.functions_exact = 0
        for i, it in enumerate(self.items):
            for text in (it.prompt, it.solution):
                if not text:
                    continue
                g = ngram_hashes(self.hasher.text(text), cfg.ngram)
                if not g.size:
                    self.too_short += 1
                for h in sorted_unique(g).tolist():
                    self.ngram_owner.setdefault(h, set()).add(i)
            if cfg.ast:
                tree = parse_python(it.solution)
                for fk in function_keys(tree) if tree is not None else []:
                    if fk.nodes < cfg.min_nodes:
                        self.functions_too_small += 1
                        continue
                    self.exact_owner.setdefault(fk.exact, set()).add(i)
                    self.functions_exact += 1
                    if fk.nodes < cfg.ast_window_min_nodes:
                        continue  # small functions share most windows with unrelated code: exact match only
                    w = sorted_unique(self._windows(fk))
                    fid = len(self.fn_item)
                    self.fn_item.append(i)
                    self.fn_windows.append(int(w.size))
                    for h in w.tolist():
                        self.window_owner.setdefault(h, []).append(fid)
        self._ngram_sorted = np.array(sorted(self.ngram_owner), dtype=np.uint64)
        self._window_sorted = np.array(sorted(self.window_owner), dtype=np.uint64)

    def _windows(self, fk: FunctionKey) -> np.ndarray:
        return ngram_hashes(self.hasher.hashes(fk.tokens), self.config.ast_window, short=True)

    def describe(self) -> dict:
        by = Counter(it.benchmark for it in self.items)
        return {
            "problems": dict(sorted(by.items())),
            "ngrams": len(self.ngram_owner),
            "texts_shorter_than_ngram": self.too_short,
            "functions_exact_test": self.functions_exact,
            "functions_window_test": len(self.fn_item),
            "functions_below_min_nodes": self.functions_too_small,
        }

    @staticmethod
    def _hits(g: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
        if not g.size or not sorted_keys.size:
            return g[:0]
        g = sorted_unique(g)
        pos = np.searchsorted(sorted_keys, g)
        pos[pos >= sorted_keys.size] = 0
        return g[sorted_keys[pos] == g]

    def check(self, text: str) -> dict | None:
        """None when clean, else what matched: {ngram: {...}, ast: {functions: [...]}, benchmarks, tasks}."""
        cfg = self.config
        found: dict = {}
        tasks: set[int] = set()
        hits = self._hits(ngram_hashes(self.hasher.text(text), cfg.ngram), self._ngram_sorted)
        if hits.size and hits.size >= cfg.min_hits:
            owners: set[int] = set()
            for h in hits.tolist():
                owners |= self.ngram_owner[h]
            found["ngram"] = {"n": cfg.ngram, "hits": int(hits.size), "tasks": self._task_ids(owners)}
            tasks |= owners
        if cfg.ast and self.fn_item and "def" in text:
            fmatches = [m for tree in python_trees(text) for m in self._match_functions(tree)]
            if fmatches:
                found["ast"] = {"functions": fmatches}
                for m in fmatches:
                    tasks |= m.pop("_items")
        if not found:
            return None
        found["benchmarks"] = sorted({self.items[i].benchmark for i in tasks})
        found["tasks"] = self._task_ids(tasks)
        return found

    def _match_functions(self, tree: ast.AST) -> list[dict]:
        cfg = self.config
        out = []
        for fk in function_keys(tree, cfg.min_nodes):
            owners = set(self.exact_owner.get(fk.exact, ()))
            if owners:
                out.append({"function": fk.name, "match": "exact", "tasks": self._task_ids(owners), "_items": owners})
                continue
            hit = self._hits(self._windows(fk), self._window_sorted)
            if not hit.size:
                continue
            per_fn: Counter = Counter()
            for h in hit.tolist():
                per_fn.update(self.window_owner[h])
            best = {}
            for fid, c in per_fn.items():
                cov = c / self.fn_windows[fid]
                if cov >= cfg.ast_coverage:
                    i = self.fn_item[fid]
                    best[i] = max(best.get(i, 0.0), cov)
            if best:
                out.append(
                    {
                        "function": fk.name,
                        "match": "ast_windows",
                        "coverage": round(max(best.values()), 3),
                        "tasks": self._task_ids(best),
                        "_items": set(best),
                    }
                )
        return out

    def _task_ids(self, idx: Iterable[int]) -> list[str]:
        return sorted({self.items[i].task_id for i in idx}, key=_natural)


def _natural(s: str) -> list:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t]


class Decontam:
    """The decontam step: flag (add `decontam: {...}`) or with `drop` remove records whose `field` overlaps a
    benchmark. Tallies in `counts` (checked, contaminated, by_ngram, by_ast, no_text, task:ID); a dropped
    record is counted in the run's stats as `contaminated`.

    The benchmarks are loaded and indexed when the step is built (an unknown name or a bad file fails then,
    before any output); `items` indexes these problems instead of `opts.benchmarks`.
    """

    name = "decontam"
    required: tuple[str, ...] = ()

    def __init__(self, opts: DecontamOptions | None = None, *, items: Sequence[BenchmarkText] | None = None):
        self.opts = opts = opts or DecontamOptions()
        self.index = BenchmarkIndex(benchmark_texts(opts) if items is None else items, opts)
        self.counts: Counter = Counter()

    def __call__(self, records: Iterable[Record], ctx: Context | None = None) -> Iterator[Record]:
        ctx = ctx if ctx is not None else Context()
        counts, index, field, drop = self.counts, self.index, self.opts.field, self.opts.drop
        for rec in records:
            text = rec.get(field)
            counts["checked"] += 1
            if not isinstance(text, str):
                counts["no_text"] += 1
                yield rec
                continue
            found = index.check(text)
            if found is None:
                yield rec
                continue
            counts["contaminated"] += 1
            if "ngram" in found:
                counts["by_ngram"] += 1
            if "ast" in found:
                counts["by_ast"] += 1
            for t in found["tasks"]:
                counts["task:" + t] += 1
            if drop:
                ctx.stats.drop("contaminated")
                continue
            out = dict(rec)
            out["decontam"] = {"contaminated": True, **found}
            yield out

    def manifest(self) -> dict:
        """The manifest's `decontam` entry: parameters, benchmark sizes and the tallies."""
        counts = self.counts
        tasks = {k[5:]: v for k, v in counts.items() if k.startswith("task:")}
        top = sorted(tasks.items(), key=lambda kv: (-kv[1], kv[0]))
        return {
            "decontam": {
                "benchmarks": list(self.opts.benchmarks),
                "index": self.index.describe(),
                "method": self.opts.method(),
                "action": "drop" if self.opts.drop else "flag",
                "checked": counts["checked"],
                "contaminated": counts["contaminated"],
                "by_ngram": counts["by_ngram"],
                "by_ast": counts["by_ast"],
                "without_field": counts["no_text"],
                "tasks_hit": len(tasks),
                "top_tasks": [[t, c] for t, c in top[:20]],
            }
        }
