"""Is a stage output whole? Inspect a directory written by `-o DIR` against its manifests.

An output directory is complete when its manifests describe one set: either one `manifest.json`, or
`manifest-K-of-N.json` for every K in 0..N-1 of a single N; every file a manifest lists is there with the
listed size (and, when checked, sha256); and no data file lies there that no manifest lists. The same rules
cover record directories (`part*.jsonl.zst`) and token directories (`tokens*.bin`, plus `tokenizer.json`).

`inspect_output(DIR)` returns a `Report` (what `phitools verify DIR --json` prints); readers call it and refuse
an incomplete directory unless told `--allow-partial`. A directory without any phitools manifest and without
phitools-named shards is a plain directory of data files (made by hand or by another program): there is
nothing to check it against, and it is read as it is.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from phitools.errors import UsageError
from phitools.options import check, option
from phitools.runtime.files import sha256_file
from phitools.shards import ownership
from phitools.shards.spec import ShardSpec

MANIFEST_RE = re.compile(r"^manifest(?:-(\d+)-of-(\d+))?\.json$")
DATA_SUFFIXES = (".jsonl", ".jsonl.zst", ".jsonl.gz", ".ndjson", ".ndjson.zst", ".ndjson.gz", ".zst", ".gz")
TOKEN_SUFFIX = ".bin"
TOKENS_FORMAT = "phitools-tokens"
# names phitools writers give their shards: a directory holding these but no manifest is an unfinished run
PHITOOLS_SHARD_RE = re.compile(r"^(?:part|tokens)(?:-\d{5}-of-\d{5})?-\d{5}\.(?:jsonl\.zst|bin)$")
_TOKEN_KEYS = ("dtype", "vocab_size", "eot_id", "tokenizer_sha256")


def slice_tag(shard: ShardSpec | None) -> str:
    """The name tag of a `--shard K/N` writer: `-0000K-of-0000N` ('' for an unsharded run)."""
    return f"-{shard.index:05d}-of-{shard.count:05d}" if shard and shard.count > 1 else ""


def manifest_name(shard: ShardSpec | None) -> str:
    """`manifest.json`, or `manifest-0000K-of-0000N.json` for a `--shard K/N` writer."""
    return f"manifest{slice_tag(shard)}.json"


def is_data_name(name: str) -> bool:
    """A file name a reader would take for data (records or token shards); hidden names never are."""
    return not name.startswith(".") and (name.endswith(DATA_SUFFIXES) or name.endswith(TOKEN_SUFFIX))


@dataclass
class Problem:
    """One reason a directory is not whole."""

    kind: str  # no_manifest bad_manifest mixed_parts wrong_part missing_part missing_file size_mismatch
    #            sha256_mismatch extra_file duplicate_file disagree missing_tokenizer tokenizer_mismatch
    message: str
    path: str | None = None
    part: int | None = None


@dataclass
class Listed:
    """A file a manifest lists: where it is and what it should be."""

    path: Path
    part: int
    bytes: int | None
    sha256: str | None
    records: int | None = None
    tokens: int | None = None
    ok: bool = True  # present, with the listed size (and sha256 when checked)


@dataclass
class Report:
    """What `inspect_output` found. `to_dict()` is the stable JSON of `phitools verify --json`."""

    path: str
    kind: str  # records | tokens | plain (no manifests: nothing to check) | empty | missing
    complete: bool = False
    parts: int | None = None
    present: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    checked: str = "size"
    problems: list[Problem] = field(default_factory=list)
    listed: list[Listed] = field(default_factory=list)
    temps: list[ownership.TempFile] = field(default_factory=list)
    manifests: dict[int, dict] = field(default_factory=dict)
    plain_files: list[Path] = field(default_factory=list)

    @property
    def records(self) -> int | None:
        return sum(int(f.records or 0) for f in self.listed) if self.kind == "records" else None

    @property
    def tokens(self) -> int | None:
        return sum(int(f.tokens or 0) for f in self.listed) if self.kind == "tokens" else None

    def files_to_read(self) -> list[Listed]:
        """Listed files that check out, in read order (part, then listing order)."""
        return [f for f in self.listed if f.ok]

    def summary(self) -> str:
        """One line: what is wrong (or that it is whole)."""
        if self.complete:
            what = f"{self.records:,} records" if self.kind == "records" else f"{self.tokens:,} tokens"
            parts = f" in {self.parts} --shard parts" if (self.parts or 1) > 1 else ""
            return f"complete: {len(self.listed)} file(s), {what}{parts} ({self.checked} checked)"
        if self.kind == "missing" and not self.problems:
            return "no such directory"
        if not self.problems:
            return "no phitools output here"
        kinds: dict[str, list[Problem]] = {}
        for p in self.problems:
            kinds.setdefault(p.kind, []).append(p)
        out = []
        for kind, ps in kinds.items():
            if kind == "missing_part":
                missing = _ranges([p.part for p in ps])
                out.append(f"{len(self.present)} of {self.parts} --shard parts are complete (missing K = {missing})")
            elif kind in ("missing_file", "size_mismatch", "sha256_mismatch", "extra_file", "duplicate_file"):
                names = ", ".join(Path(p.path or "").name for p in ps[:3]) + (
                    f", +{len(ps) - 3} more" if len(ps) > 3 else ""
                )
                out.append(f"{len(ps)} {_KIND_WORDS[kind]} ({names})")
            else:
                out.append(ps[0].message + (f" (+{len(ps) - 1} more)" if len(ps) > 1 else ""))
        return "incomplete: " + "; ".join(out)

    def hint(self, allow_partial: bool = True) -> str:
        """What to do about it (`allow_partial`: mention the --allow-partial way out, for record readers)."""
        kinds = {p.kind for p in self.problems}
        if kinds & {"no_manifest"}:
            fix, way = (
                "a run that did not finish leaves no manifest: re-run the command that writes it",
                "the finished shards anyway",
            )
        elif kinds & {"missing_part"}:
            fix, way = f"re-run the missing --shard K/{self.parts} tasks (the same -o)", "the complete parts only"
        elif kinds & {"extra_file", "duplicate_file"}:
            fix, way = "remove the files no manifest lists (left by an earlier or foreign run)", "only the listed ones"
        elif kinds & {"mixed_parts", "wrong_part", "disagree"}:
            return "the directory holds several runs that do not belong together: remove it and re-run into an empty -o"
        else:
            fix, way = "re-run the command that wrote this directory", "the files that check out"
        return f"{fix}, or pass --allow-partial to read {way}" if allow_partial else fix

    def text(self, max_problems: int = 20) -> str:
        """The human report `phitools verify` prints: the summary line, then problems, running parts, temporary
        files and the hint, indented."""
        lines = [f"{self.path}: {self.summary()}"]
        for p in self.problems[:max_problems]:
            lines.append(f"  {p.kind}: {p.message}")
        if len(self.problems) > max_problems:
            lines.append(f"  ... {len(self.problems) - max_problems} more")
        if self.running:
            lines.append(f"  running now: --shard K = {', '.join(map(str, self.running))}")
        if self.temps:
            stale = [t for t in self.temps if t.stale()]
            lines.append(
                f"  temp files: {len(self.temps)} ({len(stale)} provably stale, removed by the next run of that part)"
            )
        if not self.complete and self.kind not in ("plain", "empty", "missing"):
            lines.append(f"  hint: {self.hint()}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The JSON `phitools verify --json` prints (fields documented in docs/formats.md; kept stable)."""
        return {
            "path": self.path,
            "kind": self.kind,
            "complete": self.complete,
            "parts": self.parts,
            "present": self.present,
            "missing": self.missing,
            "running": self.running,
            "checked": self.checked,
            "files": len(self.listed),
            "records": self.records,
            "tokens": self.tokens,
            "problems": [{k: v for k, v in asdict(p).items()} for p in self.problems],
            "temp_files": [{"path": t.path.name, "host": t.host, "pid": t.pid, "stale": t.stale()} for t in self.temps],
            "summary": self.summary(),
            "hint": None if self.complete else self.hint(),
        }


_KIND_WORDS = {
    "missing_file": "listed file(s) missing",
    "size_mismatch": "file(s) with the wrong size",
    "sha256_mismatch": "file(s) whose sha256 differs from the manifest",
    "extra_file": "file(s) no manifest lists",
    "duplicate_file": "file(s) listed twice",
}


def _ranges(ks: list[int | None]) -> str:
    vals = sorted(k for k in ks if k is not None)
    out, i = [], 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        out.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    return ",".join(out)


_DIRS_HELP = "Output directories written by -o DIR (records or token shards)."


@dataclass
class VerifyOptions:
    """Which output directories `phitools verify` checks, and how."""

    dirs: list[str] = option(argument=True, metavar="DIR", show_default=False, help=_DIRS_HELP)
    parts: int | None = option(
        None,
        "--parts",
        metavar="N",
        min=1,
        show_default=False,
        help="The number of --shard K/N parts expected (e.g. a Slurm array's size); default: what the manifests say.",
    )
    quick: bool = option(False, "--quick", help="Check sizes only, not sha256.")

    def __post_init__(self) -> None:
        check(self)
        if not self.dirs:
            raise UsageError("give at least one DIR")


def verify(opts: VerifyOptions) -> list[Report]:
    """What `phitools verify` checks: one `Report` per directory (`.complete`, `.text()`, `.to_dict()`)."""
    return [inspect_output(d, sha256=not opts.quick, parts=opts.parts) for d in opts.dirs]


def load_manifest(path: Path) -> dict | None:
    """A phitools manifest, or None when the JSON is not one (no `tool`/`outputs`). Raises ValueError when
    unreadable."""
    try:
        doc = orjson.loads(path.read_bytes())
    except (orjson.JSONDecodeError, OSError) as e:
        raise ValueError(str(e)) from None
    if not isinstance(doc, dict) or "tool" not in doc or not isinstance(doc.get("outputs"), list):
        return None
    return doc


def inspect_output(
    path: str | os.PathLike,
    *,
    sha256: bool = True,
    parts: int | None = None,
    skip_sha: set[str] | None = None,
    probe_locks: bool = True,
) -> Report:
    """Check a directory written by a phitools `-o DIR` (records or tokens) against its manifests.

    sha256: hash every listed file (else sizes only). parts: the N the caller expects (a Slurm array's
    size); without it N comes from the manifests. skip_sha: file names not to hash (this process wrote them).
    probe_locks: fill `running` by testing the writers' locks (readers, which do not need it, skip it).
    """
    d = Path(path)
    rep = Report(path=str(path), kind="missing", checked="sha256" if sha256 else "size")
    if not d.is_dir():
        if parts:
            rep.parts, rep.missing = parts, list(range(parts))
            rep.problems += [
                Problem("missing_part", f"--shard {k}/{parts} has no manifest (no such directory)", None, k)
                for k in range(parts)
            ]
        return rep
    try:
        names = sorted(os.listdir(d))
    except OSError as e:
        rep.kind = "empty"
        rep.problems.append(Problem("bad_manifest", f"cannot list the directory ({e.strerror})", str(d)))
        return rep
    rep.temps = ownership.temp_files(d)
    for name in names if probe_locks else ():
        m = re.match(r"^\.lock(?:-(\d+)-of-(\d+))?$", name)
        if m and ownership.lock_held(d / name):
            rep.running.append(int(m.group(1) or 0))
    rep.running.sort()

    # -- manifests -------------------------------------------------------------------------------------
    found: list[tuple[int, int, Path, dict]] = []
    for name in names:
        m = MANIFEST_RE.match(name)
        if not m:
            continue
        p = d / name
        try:
            doc = load_manifest(p)
        except ValueError as e:
            rep.problems.append(Problem("bad_manifest", f"unreadable manifest {name} ({e})", str(p)))
            continue
        if doc is None:
            continue  # some other program's manifest.json
        k, n = (int(m.group(1)), int(m.group(2))) if m.group(1) else (0, 1)
        recorded = str(doc.get("shard") or "0/1")
        if m.group(1) and recorded != f"{k}/{n}":
            rep.problems.append(Problem("wrong_part", f"{name} says it is --shard {recorded}", str(p), k))
            continue
        found.append((k, n, p, doc))
    data_names = [n for n in names if is_data_name(n) and (d / n).is_file()]
    if not found:
        rep.plain_files = [d / n for n in data_names]
        ours = [n for n in data_names if PHITOOLS_SHARD_RE.match(n)]
        if ours or any(rep.problems):
            rep.kind = "tokens" if any(n.endswith(TOKEN_SUFFIX) for n in ours) else "records"
            if ours:
                rep.problems.append(
                    Problem(
                        "no_manifest",
                        f"{len(ours)} shard(s) but no manifest: the run that wrote them did not finish",
                        str(d),
                    )
                )
        else:
            rep.kind = "plain" if data_names else "empty"
        if parts:
            rep.parts, rep.missing = parts, list(range(parts))
            rep.problems += [
                Problem("missing_part", f"--shard {k}/{parts} has no manifest", None, k) for k in range(parts)
            ]
        return rep

    kinds = {"tokens" if doc.get("format") == TOKENS_FORMAT else "records" for _, _, _, doc in found}
    rep.kind = "tokens" if kinds == {"tokens"} else "records"
    if len(kinds) > 1:
        rep.problems.append(Problem("mixed_parts", "record manifests and token manifests in one directory", str(d)))
    ns = sorted({n for _, n, _, _ in found})
    n_expected = parts or (ns[0] if len(ns) == 1 else None)
    if len(ns) > 1 or (parts and ns != [parts]):
        desc = ", ".join("unsharded" if n == 1 else f"--shard K/{n}" for n in ns)
        want = f"; expected --shard K/{parts}" if parts and ns != [parts] else ""
        rep.problems.append(Problem("mixed_parts", f"manifests of different runs ({desc}){want}", str(d)))
    rep.parts = n_expected
    for k, n, _p, doc in found:
        if n == n_expected:
            rep.manifests[k] = doc
    rep.present = sorted(rep.manifests)
    if n_expected:
        rep.missing = [k for k in range(n_expected) if k not in rep.manifests]
        for k in rep.missing:
            rep.problems.append(Problem("missing_part", f"--shard {k}/{n_expected} has no manifest", None, k))

    # -- listed files (of every manifest found: a file some manifest lists is never "extra") --------------
    seen: dict[str, int] = {}
    for k, n, _, doc in sorted(found, key=lambda t: (t[1] != n_expected, t[1], t[0])):
        itemsize = (4 if str(doc.get("dtype", "")).endswith("4") else 2) if doc.get("format") == TOKENS_FORMAT else None
        for o in doc.get("outputs", []):
            if not isinstance(o, dict) or not isinstance(o.get("path"), str):
                continue
            name = o["path"]
            fp = d / name
            if Path(name).name != name or name in (".", ".."):
                continue  # not a file of this directory (a train run lists "."): nothing to check here
            if name in seen:
                rep.problems.append(Problem("duplicate_file", f"{name} is listed by two manifests", str(fp), k))
                continue
            seen[name] = k
            if n != n_expected:
                continue  # belongs to another run (mixed_parts says so): not checked, not read, not "extra"
            size = o.get("bytes")
            if size is None and o.get("tokens") is not None and itemsize:
                size = int(o["tokens"]) * itemsize
            rep.listed.append(
                Listed(
                    fp,
                    k,
                    int(size) if size is not None else None,
                    o.get("sha256"),
                    records=o.get("records"),
                    tokens=o.get("tokens"),
                )
            )
    for f in rep.listed:
        try:
            st = f.path.stat()
        except OSError:
            f.ok = False
            rep.problems.append(Problem("missing_file", f"{f.path.name} is listed but missing", str(f.path), f.part))
            continue
        if f.bytes is not None and st.st_size != f.bytes:
            f.ok = False
            rep.problems.append(
                Problem(
                    "size_mismatch",
                    f"{f.path.name} is {st.st_size} bytes, its manifest says {f.bytes}",
                    str(f.path),
                    f.part,
                )
            )
    if sha256:
        todo = [f for f in rep.listed if f.ok and f.sha256 and f.path.name not in (skip_sha or set())]
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # hashlib releases the GIL
            digests = list(pool.map(lambda f: sha256_file(f.path), todo))
        for f, got in zip(todo, digests):
            if got != f.sha256:
                f.ok = False
                rep.problems.append(
                    Problem("sha256_mismatch", f"{f.path.name}: sha256 differs from its manifest", str(f.path), f.part)
                )
    for name in data_names:
        if name not in seen:
            rep.problems.append(Problem("extra_file", f"{name} is not listed by any manifest", str(d / name)))

    if rep.kind == "tokens":
        _check_token_parts(d, rep, sha256)
    rep.complete = not rep.problems
    return rep


def _check_token_parts(d: Path, rep: Report, sha256: bool) -> None:
    docs = [rep.manifests[k] for k in rep.present]
    if not docs:
        return
    first = docs[0]
    for key in _TOKEN_KEYS:
        if any(m.get(key) != first.get(key) for m in docs[1:]):
            rep.problems.append(Problem("disagree", f"the --shard parts disagree on {key}", str(d)))
    tok = d / str(first.get("tokenizer") or "tokenizer.json")
    if not tok.is_file():
        rep.problems.append(Problem("missing_tokenizer", "tokenizer.json is missing", str(tok)))
        return
    want = {m.get("tokenizer_file_sha256") for m in docs} - {None}
    if want:
        if sha256 and sha256_file(tok) not in want:
            rep.problems.append(
                Problem("tokenizer_mismatch", "tokenizer.json differs from the one the manifests record", str(tok))
            )
        elif len(want) > 1:
            rep.problems.append(Problem("disagree", "the --shard parts record different tokenizer.json files", str(d)))
