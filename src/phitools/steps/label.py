"""Labelling: rate each record's educational value with an LLM (or the heuristic stand-in).

Pure library code: records in, labelled records out, plus diagnostics. The CLI (cli/label.py) opens the
shards, builds the runner and writes the manifest.

    rubric = load_rubric("code")
    labeller = Labeller(rubric, models=["gpt-4o-mini"], votes=1)
    with LLMRunner(backend, ...) as runner:
        for rec in label_records(records, labeller, runner): ...
    labeller.diagnostics.to_dict()

Each output record is the input record plus

    label: {score, rationale, model, rubric, attempts}          (+ error when it failed: score is null)
           + truncated/chars when the text was cut to --max-chars
           + votes: [{model, sample, score, attempts[, error]}], spread   with several votes or models
           + heuristic: true, features: {...}                          for --backend heuristic

A failed label is never given a default score: `score` is null and `error` says why.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from phitools.errors import ConfigError, UsageError
from phitools.llm.client import LLMRequest, LLMResult
from phitools.llm.parse import parse_score
from phitools.records import Record

BUILTIN_RUBRICS = ("code", "web")
SCORE_SCHEMA_TEMPLATE = {
    "type": "object",
    "properties": {"rationale": {"type": "string"}, "score": {"type": "integer", "minimum": 0, "maximum": 5}},
    "required": ["rationale", "score"],
}


# ---- rubrics ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rubric:
    """A prompt template with `{text}` and the score range it asks for."""

    name: str
    template: str
    max_score: int = 5

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.template.encode()).hexdigest()

    def prompt(self, text: str) -> str:
        # replace, not str.format: code is full of braces
        return self.template.replace("{text}", text)

    def schema(self) -> dict:
        s = {**SCORE_SCHEMA_TEMPLATE, "properties": dict(SCORE_SCHEMA_TEMPLATE["properties"])}
        s["properties"]["score"] = {"type": "integer", "minimum": 0, "maximum": self.max_score}
        return s

    def describe(self) -> dict:
        return {"name": self.name, "sha256": self.sha256, "max_score": self.max_score}


def builtin_rubric_text(name: str) -> str:
    """The full text of a built-in rubric ('code' or 'web')."""
    return resources.files("phitools").joinpath("prompts", f"label-{name}.txt").read_text(encoding="utf-8")


def load_rubric(spec: str, *, max_score: int = 5) -> Rubric:
    """'code' (phi-1's question), 'web' (additive 0-5), or a template file containing {text}."""
    if spec in BUILTIN_RUBRICS:
        return Rubric(spec, builtin_rubric_text(spec), max_score)
    p = Path(spec)
    if not p.is_file():
        raise UsageError(
            f"--rubric {spec!r}: not a built-in rubric ({', '.join(BUILTIN_RUBRICS)}) nor a file",
            hint="give code, web, or the path of a prompt template containing {text}",
        )
    try:
        template = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--rubric {spec}: cannot read: {e}") from None
    if "{text}" not in template:
        raise ConfigError(
            f"--rubric {spec}: the template has no {{text}} placeholder",
            hint="put {text} where the document goes, and ask for a final line 'Educational score: N'",
        )
    return Rubric(p.name, template, max_score)


# ---- sampling ---------------------------------------------------------------------------------------------
def record_key(rec: Record) -> bytes:
    """What identifies a record for sampling: its id, else its text (order-independent, shard-independent)."""
    if "id" in rec:
        return b"id:" + str(rec["id"]).encode("utf-8", "surrogatepass")
    return b"text:" + str(rec.get("text", "")).encode("utf-8", "surrogatepass")


def unit_hash(seed: int, key: bytes) -> float:
    """A uniform number in [0, 1) from (seed, key): the same record always draws the same number."""
    h = hashlib.blake2b(key, digest_size=8, key=str(seed).encode()).digest()
    return int.from_bytes(h, "big") / 2**64


def sample_fraction(records: Iterable[Record], fraction: float, seed: int) -> Iterator[Record]:
    """Keep each record with probability `fraction`, decided by a hash of (seed, record): streaming."""
    if not 0 < fraction <= 1:
        raise UsageError(f"--fraction {fraction}: expected 0 < F <= 1")
    for rec in records:
        if unit_hash(seed, record_key(rec)) < fraction:
            yield rec


def sample_n(records: Iterable[Record], n: int, seed: int, stats: dict | None = None) -> Iterator[Record]:
    """A uniform sample of `n` records, in input order: a reservoir of the n smallest hash(seed, record).

    One pass, memory for n records; the choice does not depend on input order. Nothing is yielded until
    the input ends.
    """
    if n < 0:
        raise UsageError("--sample must be >= 0")
    heap: list[tuple[float, int, Record]] = []  # max-heap on u via negation
    seen = 0
    for i, rec in enumerate(records):
        seen += 1
        u = unit_hash(seed, record_key(rec))
        if len(heap) < n:
            heapq.heappush(heap, (-u, i, rec))
        elif n and -heap[0][0] > u:
            heapq.heapreplace(heap, (-u, i, rec))
    if stats is not None:
        stats["considered"] = seen
    for _, _, rec in sorted(heap, key=lambda t: t[1]):
        yield rec


def sample_n_of_part(
    tagged: Iterable[tuple[Record, bool]], n: int, seed: int, stats: dict | None = None
) -> Iterator[Record]:
    """This --shard part's share of the unsharded `sample_n`: `tagged` is every input record with whether it
    belongs to this part. The N parts together label exactly the n records an unsharded run labels, not n each.

    The reservoir keeps the n smallest hashes over all records, holding only this part's records themselves.
    """
    if n < 0:
        raise UsageError("--sample must be >= 0")
    heap: list[tuple[float, int, Record | None]] = []
    seen = 0
    for i, (rec, mine) in enumerate(tagged):
        seen += 1
        u = unit_hash(seed, record_key(rec))
        item = (-u, i, rec if mine else None)
        if len(heap) < n:
            heapq.heappush(heap, item)
        elif n and -heap[0][0] > u:
            heapq.heapreplace(heap, item)
    if stats is not None:
        stats["considered"] = seen
    for _, _, rec in sorted(heap, key=lambda t: t[1]):
        if rec is not None:
            yield rec


def truncate(text: str, max_chars: int | None) -> tuple[str, bool]:
    """Cut `text` to at most max_chars, at a line break when one is near the end."""
    if max_chars is None or len(text) <= max_chars:
        return text, False
    cut = text[:max_chars]
    nl = cut.rfind("\n")
    if nl >= max_chars * 0.8:
        cut = cut[:nl]
    return cut, True


# ---- diagnostics ------------------------------------------------------------------------------------------
@dataclass
class LabelDiagnostics:
    """Score histogram, failures and (with several votes) agreement, accumulated while streaming.

    Agreement: Krippendorff's alpha for interval data over records with >= 2 valid votes (1 = perfect,
    0 = chance, < 0 = worse than chance), the mean exact pairwise agreement, and the mean spread
    (max - min) of the votes of a record.
    """

    max_score: int = 5
    labelled: int = 0
    failed: int = 0
    truncated: int = 0
    histogram: Counter = field(default_factory=Counter)  # record score (rounded) -> count
    vote_histogram: Counter = field(default_factory=Counter)  # individual vote -> count
    errors: Counter = field(default_factory=Counter)
    score_sum: float = 0.0
    # agreement accumulators
    _units: int = 0
    _do_sum: float = 0.0  # sum over units of (sum over ordered pairs (v_i - v_j)^2) / (m_u - 1)
    _n_pairable: int = 0
    _v_sum: float = 0.0
    _v2_sum: float = 0.0
    _pairs: int = 0
    _pairs_equal: int = 0
    _spread_sum: float = 0.0

    def add(self, score: float | None, votes: Sequence[float], error: str | None, truncated: bool) -> None:
        if truncated:
            self.truncated += 1
        for v in votes:
            self.vote_histogram[_bin(v)] += 1
        if score is None:
            self.failed += 1
            self.errors[(error or "unknown").split(":")[0].split(" (")[0][:60]] += 1
            return
        self.labelled += 1
        self.score_sum += score
        self.histogram[_bin(score)] += 1
        m = len(votes)
        if m >= 2:
            self._units += 1
            self._n_pairable += m
            s = sum(votes)
            s2 = sum(v * v for v in votes)
            self._v_sum += s
            self._v2_sum += s2
            # sum over ordered pairs i != j of (v_i - v_j)^2 = 2 m s2 - 2 s^2
            self._do_sum += (2 * m * s2 - 2 * s * s) / (m - 1)
            eq = sum(1 for a in range(m) for b in range(a + 1, m) if votes[a] == votes[b])
            self._pairs += m * (m - 1) // 2
            self._pairs_equal += eq
            self._spread_sum += max(votes) - min(votes)

    @property
    def mean(self) -> float | None:
        return self.score_sum / self.labelled if self.labelled else None

    @property
    def alpha(self) -> float | None:
        """Krippendorff's alpha (interval metric)."""
        n = self._n_pairable
        if self._units == 0 or n < 2:
            return None
        d_o = self._do_sum / n
        d_e = (2 * n * self._v2_sum - 2 * self._v_sum**2) / (n * (n - 1))
        if d_e <= 0:
            return 1.0 if d_o == 0 else None
        return 1.0 - d_o / d_e

    @property
    def top_share(self) -> float | None:
        """Share of labelled records in the most common score bin."""
        if not self.labelled:
            return None
        return max(self.histogram.values()) / self.labelled

    def discriminates(self, threshold: float = 0.9, min_records: int = 10) -> bool:
        """False when more than `threshold` of (at least `min_records`) labels are the same score."""
        ts = self.top_share
        return not (self.labelled >= min_records and ts is not None and ts > threshold)

    def to_dict(self) -> dict:
        d: dict[str, Any] = {
            "labelled": self.labelled,
            "failed": self.failed,
            "truncated": self.truncated,
            "histogram": {str(k): self.histogram.get(k, 0) for k in range(0, self.max_score + 1)},
            "mean_score": _round(self.mean),
            "top_score_share": _round(self.top_share),
            "discriminates": self.discriminates(),
        }
        extra = sorted(k for k in self.histogram if not (0 <= k <= self.max_score))
        for k in extra:
            d["histogram"][str(k)] = self.histogram[k]
        if self.errors:
            d["errors"] = dict(self.errors.most_common())
        if self._units:
            d["agreement"] = {
                "records_with_votes": self._units,
                "krippendorff_alpha_interval": _round(self.alpha),
                "mean_pairwise_exact_agreement": _round(self._pairs_equal / self._pairs if self._pairs else None),
                "mean_spread": _round(self._spread_sum / self._units),
            }
            d["vote_histogram"] = {str(k): self.vote_histogram.get(k, 0) for k in range(0, self.max_score + 1)}
        return d

    def summary_lines(self) -> list[str]:
        hist = " ".join(f"{k}:{self.histogram.get(k, 0)}" for k in range(0, self.max_score + 1))
        mean = f"{self.mean:.2f}" if self.mean is not None else "-"
        lines = [
            f"scores {hist} | mean {mean} | labelled {self.labelled}, failed {self.failed}, truncated {self.truncated}"
        ]
        if self._units:
            a = self.alpha
            lines.append(
                f"votes: Krippendorff's alpha {a:.3f} (interval), exact pairwise agreement "
                f"{self._pairs_equal / max(1, self._pairs):.2f}, mean spread {self._spread_sum / self._units:.2f}"
                if a is not None
                else "votes: agreement undefined (all votes identical)"
            )
        return lines


def _bin(v: float) -> int:
    return int(math.floor(v + 0.5))


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


# ---- the labeller -----------------------------------------------------------------------------------------
class Labeller:
    """Turns records into requests and results back into labelled records, keeping diagnostics."""

    def __init__(
        self,
        rubric: Rubric,
        *,
        models: Sequence[str],
        votes: int = 1,
        temperature: float = 0.0,
        max_tokens: int = 256,
        max_chars: int | None = 8000,
        seed: int | None = 0,
        structured: bool = True,
        text_field: str = "text",
        prefill: str | None = None,
    ):
        if votes < 1:
            raise UsageError("--votes must be >= 1")
        self.rubric = rubric
        self.models = list(models)
        self.votes = votes
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.max_chars = max_chars
        self.seed = seed
        self.structured = structured
        self.text_field = text_field
        # an assistant-message prefix the model continues (the local backend); the parser sees prefix + answer
        self.prefill = prefill
        self.diagnostics = LabelDiagnostics(max_score=rubric.max_score)
        self._schema = rubric.schema() if structured else None

    def parse(self, answer: str) -> tuple[int | float, str]:
        if self.prefill:
            answer = self.prefill + answer
        return parse_score(answer, 0, self.rubric.max_score)

    def _text(self, rec: Record) -> tuple[str, bool, int]:
        raw = rec.get(self.text_field)
        text = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
        cut, truncated = truncate(text, self.max_chars)
        return cut, truncated, len(text)

    def requests(self, rec: Record) -> list[LLMRequest]:
        """votes x models requests for one record."""
        text, _, _ = self._text(rec)
        prompt = self.rubric.prompt(text)
        msgs: tuple = ({"role": "user", "content": prompt},)
        if self.prefill:
            msgs += ({"role": "assistant", "content": self.prefill},)
        return [
            LLMRequest(
                messages=msgs,
                model=m,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
                seed=self.seed,
                json_schema=self._schema,
                sample=k,
                parse=self.parse,
            )
            for m in self.models
            for k in range(self.votes)
        ]

    def finish(self, rec: Record, results: Sequence[LLMResult]) -> Record:
        """The record with its `label` (and the diagnostics updated)."""
        _, truncated, nchars = self._text(rec)
        multi = len(results) > 1
        good = [r for r in results if r.ok]
        scores = [float(r.parsed[0]) for r in good]
        label: dict[str, Any] = {}
        if good:
            score: float | int | None = _tidy(sum(scores) / len(scores))
            first = good[0]
            label["score"] = score
            label["rationale"] = first.parsed[1]
            error = None
        else:
            score = None
            label["score"] = None
            label["rationale"] = None
            error = results[-1].error if results else "no request"
        label["model"] = self.models[0] if len(self.models) == 1 else list(self.models)
        label["rubric"] = self.rubric.name
        label["attempts"] = sum(r.attempts for r in results)
        if error is not None:
            label["error"] = error
        if truncated:
            label["truncated"] = True
            label["chars"] = nchars
        if multi:
            votes = []
            for r in results:
                v: dict[str, Any] = {
                    "model": r.request.model,
                    "sample": r.request.sample,
                    "attempts": r.attempts,
                    "score": r.parsed[0] if r.ok else None,
                }
                if not r.ok:
                    v["error"] = r.error
                votes.append(v)
            label["votes"] = votes
            if len(scores) >= 2:
                label["spread"] = _tidy(max(scores) - min(scores))
        self.diagnostics.add(score, scores if multi else [], error, truncated)
        out = dict(rec)
        out["label"] = label
        return out

    def heuristic(self, rec: Record) -> Record:
        """Label with the transparent non-LLM scorer (phitools.llm.heuristic), marked as such."""
        from phitools.llm.heuristic import NAME
        from phitools.llm.heuristic import score as hscore

        raw = rec.get(self.text_field)
        # the whole document: truncation is a prompt-length concern and would break the syntax check
        s, why, feats = hscore(raw if isinstance(raw, str) else str(raw or ""))
        label: dict[str, Any] = {
            "score": s,
            "rationale": why,
            "model": NAME,
            "rubric": self.rubric.name,
            "attempts": 1,
            "heuristic": True,
            "features": feats,
        }
        self.diagnostics.add(s, [], None, False)
        out = dict(rec)
        out["label"] = label
        return out


def _tidy(x: float) -> int | float:
    return int(x) if float(x).is_integer() else round(x, 4)


def label_records(records: Iterable[Record], labeller: Labeller, runner=None) -> Iterator[Record]:
    """Label a stream of records, in order. `runner` is an LLMRunner; None means the heuristic scorer."""
    if runner is None:
        for rec in records:
            yield labeller.heuristic(rec)
        return
    for rec, results in runner.run_groups((rec, labeller.requests(rec)) for rec in records):
        yield labeller.finish(rec, results)
