"""The randomness spec for `synth`: dimensions (topics, audiences, styles, ...) and the seeded draw.

A spec is a TOML file (see docs/synth.md):

    [synth]                       # optional defaults
    kind = "exercise"             # textbook | exercise | story
    template = "my_prompt.txt"    # relative to this file
    system = "You are ..."        # system message (replaces the template's)

    [dimensions]
    topic = { file = "topics.txt" }                         # one value per line ('#' comments)
    audience = ["beginners", "working programmers"]         # a plain list
    style = { values = ["dialogue", "tutorial"], weights = [1, 3] }
    concept = { values = [{ value = "closures", weight = 2 }, "generators"] }

    [dimensions.subtopic]                                   # conditional on another dimension
    by = "topic"
    values = { "recursion" = ["base cases", "the call stack"], "*" = ["a common mistake"] }

Each record index draws one value per dimension from its own RNG, seeded by (seed, index): the draw for
record i does not depend on how many records are made, on --shard, or on which records already exist, so
sharded and resumed runs agree exactly. Each dimension consumes exactly one uniform number in draw order.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phitools.errors import ConfigError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
RESERVED = {"constraints"}  # placeholder filled with the dimensions a template does not mention
ANY = "*"
_DIM_KEYS = {"values", "file", "weights", "by", "description"}
_SYNTH_KEYS = {"kind", "template", "system"}
KINDS = ("textbook", "exercise", "story")


@dataclass
class Choice:
    """A weighted list of values with its cumulative distribution."""

    values: list[str]
    weights: list[float]

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float64)
        self._cum = np.cumsum(w / w.sum())
        self._cum[-1] = 1.0

    def pick(self, u: float) -> str:
        """The value at uniform draw u in [0, 1)."""
        return self.values[int(np.searchsorted(self._cum, u, side="right"))]


@dataclass
class Dimension:
    """One axis of injected randomness."""

    name: str
    choice: Choice | None = None  # unconditional
    by: str | None = None  # conditional on this dimension's value
    table: dict[str, Choice] = field(default_factory=dict)
    source: str = "inline"
    description: str = ""

    def all_values(self) -> list[str]:
        """Every value this dimension can take (in declaration order, without repeats)."""
        if self.choice is not None:
            return list(dict.fromkeys(self.choice.values))
        return list(dict.fromkeys(v for c in self.table.values() for v in c.values))

    def describe(self) -> dict:
        d: dict = {"source": self.source, "values": len(self.all_values())}
        if self.by:
            d["by"] = self.by
        if self.choice is not None and len(set(self.choice.weights)) > 1:
            d["weighted"] = True
        return d


@dataclass
class Spec:
    """Dimensions in draw order, plus the optional [synth] defaults."""

    dimensions: dict[str, Dimension] = field(default_factory=dict)
    kind: str | None = None
    template: str | None = None  # a path (resolved against the spec file's folder)
    system: str | None = None
    path: str | None = None
    sha256: str | None = None

    def add(self, dim: Dimension) -> None:
        """Add (or replace) a dimension; the draw order is recomputed."""
        self.dimensions[dim.name] = dim
        self.dimensions = _draw_order(self.dimensions, self.path or "<spec>")

    def draw(self, seed: int, index: int) -> dict[str, str]:
        """The values for record `index`: deterministic in (seed, index) alone."""
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed % 2**64, index])))
        u = rng.random(len(self.dimensions))
        out: dict[str, str] = {}
        for k, (name, dim) in enumerate(self.dimensions.items()):
            if dim.choice is not None:
                out[name] = dim.choice.pick(float(u[k]))
            else:
                parent = out[dim.by]  # type: ignore[index]
                ch = dim.table.get(parent) or dim.table[ANY]
                out[name] = ch.pick(float(u[k]))
        return out

    def declared_values(self) -> dict[str, list[str]]:
        """{dimension: every value it can take}, for coverage reports."""
        return {n: d.all_values() for n, d in self.dimensions.items()}

    def describe(self) -> dict:
        """For the manifest: where the spec came from and the shape of each dimension."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "dimensions": {n: d.describe() for n, d in self.dimensions.items()},
        }


# ---- reading -------------------------------------------------------------------------------------------


def _read_utf8(p: Path, what: str, missing_hint: str) -> str:
    """A user's text file, or a ConfigError naming the file (and line, for bad UTF-8)."""
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read {what}: {e.strerror}", hint=missing_hint) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{p}:{line}: {what} is not valid UTF-8", hint="save it as UTF-8") from None


def read_values_file(path: str | os.PathLike, *, what: str = "values file") -> list[str]:
    """One value per line; blank lines and lines starting with '#' are skipped."""
    p = Path(path)
    text = _read_utf8(p, what, "check the path")
    vals = [ln.strip() for ln in text.splitlines()]
    vals = [v for v in vals if v and not v.startswith("#")]
    if not vals:
        raise ConfigError(f"{p}: {what} has no values", hint="write one value per line ('#' starts a comment)")
    return vals


def topics_dimension(path: str | os.PathLike) -> Dimension:
    """The `topic` dimension from a --topics file (uniform weights)."""
    vals = read_values_file(path, what="topics file")
    return Dimension("topic", choice=Choice(vals, [1.0] * len(vals)), source=os.fspath(path))


class _Where:
    """Finds the line where a dimension is declared, for file:line messages."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = text.splitlines()

    def line(self, name: str | None = None, key: str | None = None) -> int | None:
        pats = []
        if name is not None:
            q = rf'(?:{re.escape(name)}|"{re.escape(name)}"|\'{re.escape(name)}\')'
            if key is not None:
                pats.append(rf"^\s*\[\s*dimensions\s*\.\s*{q}\s*\.\s*{re.escape(key)}\s*\]")
            pats.append(rf"^\s*\[\s*dimensions\s*\.\s*{q}\s*\]")
            pats.append(rf"^\s*{q}\s*=")
            pats.append(rf"^\s*dimensions\s*\.\s*{q}\s*[.=]")
        for pat in pats:
            rx = re.compile(pat)
            start = None
            for i, ln in enumerate(self.lines):
                if rx.search(ln):
                    start = i
                    break
            if start is None:
                continue
            if key is not None:  # look for the key itself after the declaration
                krx = re.compile(rf"(^|[{{,\s]){re.escape(key)}\s*=")
                for j in range(start, len(self.lines)):
                    if krx.search(self.lines[j]):
                        return j + 1
                    if j > start and self.lines[j].lstrip().startswith("["):
                        break
            return start + 1
        return None

    def error(
        self, msg: str, *, name: str | None = None, key: str | None = None, hint: str | None = None
    ) -> ConfigError:
        ln = self.line(name, key) if name else None
        where = f"{self.path}:{ln}" if ln else self.path
        return ConfigError(f"{where}: {msg}", hint=hint)


def load_spec(path: str | os.PathLike) -> Spec:
    """Parse and validate a spec file. Errors are ConfigError with file:line and what to do."""
    p = Path(path)
    text = _read_utf8(p, "spec", "check the --spec path")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(e))
        if m:
            where = f"{p}:{m.group(1)}:{m.group(2)}"
        elif "end of document" in str(e):
            where = f"{p}:{max(1, len(text.splitlines()))}"
            msg += " at the end of the file (an unclosed bracket or string?)"
        else:
            where = str(p)
        raise ConfigError(f"{where}: invalid TOML: {msg}", hint="see docs/synth.md for the spec format") from None
    return spec_from_dict(
        data, path=str(p), text=text, sha256=hashlib.sha256(text.encode("utf-8")).hexdigest()
    )  # == the file bytes (valid UTF-8)


def spec_from_dict(data: dict, *, path: str = "<spec>", text: str = "", sha256: str | None = None) -> Spec:
    """Build a Spec from parsed TOML (file references resolve against the spec's folder)."""
    where = _Where(path, text)
    base = Path(path).parent if path != "<spec>" else Path(".")
    unknown = set(data) - {"synth", "dimensions"}
    if unknown:
        bad = sorted(unknown)[0]
        ln = next(
            (i + 1 for i, line in enumerate(where.lines) if re.match(rf"^\s*\[?\s*{re.escape(bad)}\b", line)), None
        )
        raise ConfigError(
            f"{path}:{ln}: unknown section or key {bad!r}" if ln else f"{path}: unknown section or key {bad!r}",
            hint="a spec has [synth] and [dimensions] (see docs/synth.md)",
        )
    spec = Spec(path=path if path != "<spec>" else None, sha256=sha256)
    synth = data.get("synth", {})
    if not isinstance(synth, dict):
        raise where.error("'synth' must be a table", hint="write [synth] followed by kind = ..., template = ...")
    for k in synth:
        if k not in _SYNTH_KEYS:
            ln = next((i + 1 for i, line in enumerate(where.lines) if re.match(rf"^\s*{re.escape(k)}\s*=", line)), None)
            raise ConfigError(
                f"{path}:{ln}: [synth] has unknown key {k!r}" if ln else f"{path}: [synth] has unknown key {k!r}",
                hint=f"known keys: {', '.join(sorted(_SYNTH_KEYS))}",
            )
    if "kind" in synth:
        if synth["kind"] not in KINDS:
            raise where.error(f"[synth] kind = {synth['kind']!r} is not one of {', '.join(KINDS)}")
        spec.kind = synth["kind"]
    if "template" in synth:
        if not isinstance(synth["template"], str) or not synth["template"]:
            raise where.error("[synth] template must be a file name")
        spec.template = str(base / synth["template"])
    if "system" in synth:
        if not isinstance(synth["system"], str):
            raise where.error("[synth] system must be a string")
        spec.system = synth["system"]

    dims = data.get("dimensions", {})
    if not isinstance(dims, dict):
        raise where.error("'dimensions' must be a table", hint="write [dimensions] then name = [values]")
    out: dict[str, Dimension] = {}
    for name, body in dims.items():
        out[name] = _parse_dimension(name, body, where, base)
    for name, d in out.items():
        if d.by is not None:
            if d.by not in out:
                raise where.error(
                    f"dimension {name!r}: by = {d.by!r} names no declared dimension",
                    name=name,
                    key="by",
                    hint=f"declared: {', '.join(out)}",
                )
            if d.by == name:
                raise where.error(f"dimension {name!r} depends on itself", name=name, key="by")
            if ANY not in d.table:
                missing = [v for v in out[d.by].all_values() if v not in d.table]
                if missing:
                    raise where.error(
                        f"dimension {name!r}: no values for {d.by} = {missing[0]!r}"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                        name=name,
                        key="values",
                        hint=f'add an entry for it, or a fallback "{ANY}" = [...]',
                    )
    spec.dimensions = _draw_order(out, path)
    return spec


def _parse_dimension(name: str, body: Any, where: _Where, base: Path) -> Dimension:
    if not NAME_RE.match(name):
        raise where.error(
            f"dimension name {name!r} is not an identifier",
            name=name,
            hint="use letters, digits and underscores (it is a {placeholder} in templates)",
        )
    if name in RESERVED:
        raise where.error(
            f"dimension name {name!r} is reserved",
            name=name,
            hint="{constraints} in a template lists the dimensions it does not mention; pick another name",
        )
    if isinstance(body, list):
        body = {"values": body}
    elif isinstance(body, str):
        raise where.error(
            f"dimension {name!r} is a string",
            name=name,
            hint=f'write {name} = ["a", "b"] for values or {name} = {{ file = "{body}" }} for a file',
        )
    if not isinstance(body, dict):
        raise where.error(f"dimension {name!r} must be a list of values or a table", name=name)
    extra = set(body) - _DIM_KEYS
    if extra:
        k = sorted(extra)[0]
        raise where.error(
            f"dimension {name!r} has unknown key {k!r}",
            name=name,
            key=k,
            hint=f"known keys: {', '.join(sorted(_DIM_KEYS))}",
        )
    desc = body.get("description", "")
    if "by" in body:
        by = body["by"]
        if not isinstance(by, str):
            raise where.error(f"dimension {name!r}: by must be a dimension name", name=name, key="by")
        vals = body.get("values")
        if not isinstance(vals, dict) or not vals:
            raise where.error(
                f"dimension {name!r}: with by = {by!r}, values must be a table mapping each {by} to a list",
                name=name,
                key="values",
                hint=f'e.g. values = {{ "recursion" = ["base cases"], "{ANY}" = ["examples"] }}',
            )
        if "file" in body or "weights" in body:
            raise where.error(
                f"dimension {name!r}: a conditional dimension takes neither file nor weights",
                name=name,
                hint='give weights inline: { value = "x", weight = 2 }',
            )
        table = {str(k): _choice(name, v, None, where, f"values.{k}") for k, v in vals.items()}
        return Dimension(name, by=by, table=table, source="inline", description=str(desc))
    has_v, has_f = "values" in body, "file" in body
    if has_v == has_f:
        raise where.error(
            f"dimension {name!r} needs exactly one of values or file",
            name=name,
            hint=f'e.g. {name} = ["a", "b"] or {name} = {{ file = "{name}s.txt" }}',
        )
    if has_f:
        f = body["file"]
        if not isinstance(f, str) or not f:
            raise where.error(f"dimension {name!r}: file must be a path", name=name, key="file")
        fp = base / f
        if not fp.is_file():
            raise where.error(
                f"dimension {name!r}: file {f!r} not found (looked at {fp})",
                name=name,
                key="file",
                hint="paths are relative to the spec file",
            )
        vals = read_values_file(fp, what=f"values file for dimension {name!r}")
        source = str(fp)
    else:
        vals = body["values"]
        if not isinstance(vals, list):
            raise where.error(f"dimension {name!r}: values must be a list", name=name, key="values")
        source = "inline"
    return Dimension(
        name, choice=_choice(name, vals, body.get("weights"), where, "values"), source=source, description=str(desc)
    )


def _choice(name: str, vals: Any, weights: Any, where: _Where, key: str) -> Choice:
    if not isinstance(vals, list) or not vals:
        raise where.error(f"dimension {name!r}: {key} must be a non-empty list", name=name, key=key.split(".")[0])
    values: list[str] = []
    ws: list[float] = []
    for v in vals:
        w = 1.0
        if isinstance(v, dict):
            if set(v) - {"value", "weight"} or "value" not in v:
                raise where.error(
                    f'dimension {name!r}: an entry {v!r} must look like {{ value = "...", weight = 2 }}',
                    name=name,
                    key=key.split(".")[0],
                )
            w = v.get("weight", 1.0)
            v = v["value"]
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise where.error(
                f"dimension {name!r}: value {v!r} is not a string or number", name=name, key=key.split(".")[0]
            )
        s = str(v).strip()
        if not s:
            raise where.error(f"dimension {name!r}: empty value", name=name, key=key.split(".")[0])
        values.append(s)
        ws.append(_weight(name, w, where))
    if weights is not None:
        if any(isinstance(v, dict) for v in vals):
            raise where.error(
                f"dimension {name!r}: give weights either inline or as a weights list, not both",
                name=name,
                key="weights",
            )
        if isinstance(weights, list):
            if len(weights) != len(values):
                raise where.error(
                    f"dimension {name!r}: weights has {len(weights)} entries but there are {len(values)} values",
                    name=name,
                    key="weights",
                    hint="one weight per value, or a table {{ value = weight }}",
                )
            ws = [_weight(name, w, where) for w in weights]
        elif isinstance(weights, dict):
            known = set(values)
            for k in weights:
                if k not in known:
                    raise where.error(
                        f"dimension {name!r}: weights names {k!r}, which is not one of its values",
                        name=name,
                        key="weights",
                    )
            ws = [_weight(name, weights.get(v, 1.0), where) for v in values]  # unnamed values weigh 1
        else:
            raise where.error(f"dimension {name!r}: weights must be a list or a table", name=name, key="weights")
    if sum(ws) <= 0:
        raise where.error(f"dimension {name!r}: all weights are zero", name=name, key="weights")
    return Choice(values, ws)


def _weight(name: str, w: Any, where: _Where) -> float:
    if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 or w != w or w == float("inf"):
        raise where.error(f"dimension {name!r}: weight {w!r} must be a finite number >= 0", name=name, key="weights")
    return float(w)


def _draw_order(dims: dict[str, Dimension], path: str) -> dict[str, Dimension]:
    """Declaration order, except that a conditional dimension comes after the one it depends on."""
    done: dict[str, Dimension] = {}
    visiting: set = set()

    def visit(n: str) -> None:
        if n in done:
            return
        if n in visiting:
            raise ConfigError(
                f"{path}: dimensions depend on each other in a cycle through {n!r}", hint="remove one 'by'"
            )
        visiting.add(n)
        d = dims[n]
        if d.by is not None:
            if d.by not in dims:
                raise ConfigError(f"{path}: dimension {n!r} depends on {d.by!r}, which is not declared")
            visit(d.by)
        visiting.discard(n)
        done[n] = d

    for n in dims:
        visit(n)
    return done


def merge_dimensions(spec: Spec, extra: Sequence[Dimension]) -> Spec:
    """A copy of spec with `extra` dimensions added (replacing same-named ones)."""
    s = Spec(
        dimensions=dict(spec.dimensions),
        kind=spec.kind,
        template=spec.template,
        system=spec.system,
        path=spec.path,
        sha256=spec.sha256,
    )
    for d in extra:
        s.add(d)
    return s
