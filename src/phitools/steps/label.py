"""Labelling: rate each record's educational value with an LLM (or the heuristic stand-in).

`Label` is the `phitools label` step: options in (`LabelOptions` + `LLMOptions`), records in, labelled records
out, the manifest's `label` and `llm` sections from `manifest()`. It holds the whole policy of the command --
the defaults that depend on the backend, sampling (--fraction, --sample, the exact sharded --sample), the
runner and its request cache -- so from Python

    step = Label(LabelOptions(sample=200), LLMOptions(api_base="http://localhost:8000/v1", model=["m"]))
    pipeline.run(step, IOOptions(inputs=["corpus/"], output="labeled/"))     # what the command does
    labelled = list(Label(LabelOptions(), LLMOptions(backend="heuristic"))(records, Context()))  # in memory

The parts underneath are usable alone too:

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
from phitools.llm.options import LLMOptions, build_backend, build_runner, cache_for, llm_manifest
from phitools.llm.parse import parse_score
from phitools.options import check, option
from phitools.pipeline import Context
from phitools.records import Record
from phitools.runtime import console

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

    def warnings(self) -> list[str]:
        """What a user should hear about these labels: a labeller that does not discriminate, failed records."""
        out = []
        if not self.discriminates():
            top = max(self.histogram, key=self.histogram.get)
            out.append(
                f"the labeller does not discriminate: {self.top_share:.0%} of {self.labelled} labelled records "
                f"scored {top}; check the rubric and use a capable model"
            )
        if self.failed:
            out.append(f"{self.failed} record(s) could not be labelled (label.score is null; see label.error)")
        return out

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


# ---- the step: `phitools label` from Python -------------------------------------------------------------
MAX_CHARS_DEFAULT = 8000
#: with the embedded model, prompt processing on a CPU is the bottleneck
LOCAL_MAX_CHARS = 1500
#: the embedded model is asked to continue this, so its few tokens go to the number
LOCAL_PREFILL = "Educational score:"
LOCAL_NOTE = (
    "the embedded SmolLM2-135M model proves the plumbing, not the judgement: its scores carry next to no "
    "signal. For real labels point --api-base at a capable model (see docs/label.md)"
)
HEURISTIC_NOTE = "scores from the deterministic heuristic in phitools.llm.heuristic, not from an LLM"
#: max_tokens when --max-tokens is not given: the embedded model needs only the number after the prefill
MAX_TOKENS_LOCAL = 24
MAX_TOKENS_HTTP = 256


@dataclass
class LabelOptions:
    """What to label and how (the LLM is `LLMOptions`; the records and the seed are the pipeline's)."""

    rubric: str = option(
        "code",
        help="code (phi-1: educational value for a student learning basic coding concepts), web (FineWeb-Edu-style "
        "additive 0-5), or a template FILE containing {text}.",
    )
    fraction: float | None = option(
        None,
        show_default=False,
        help="Label a deterministic fraction F of the records (hash of --seed and the record id/text; streaming).",
    )
    sample: int | None = option(
        None,
        min=0,
        show_default=False,
        help="Label a uniform sample of N records (a seeded reservoir; output in input order, after the input ends). "
        "With --shard K/N each part reads the whole input and labels its share of the same N records: N in all, not "
        "N per part.",
    )
    max_chars: int | None = option(
        None,
        min=100,
        show_default=False,
        help="Truncate documents to this many characters in the prompt (recorded in label.truncated/chars). Default "
        "8000; 1500 with the embedded model.",
    )
    max_score: int = option(5, min=1, help="Top of the score scale the rubric asks for (scores are 0..N).")
    votes: int = option(
        1,
        min=1,
        help="Samples per record and per --model; with several, label.score is their mean and agreement is reported.",
    )

    def __post_init__(self) -> None:
        check(self)
        if self.fraction is not None and self.sample is not None:
            raise UsageError("--fraction and --sample are exclusive", hint="pick one")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise UsageError(f"--fraction {self.fraction}: expected 0 < F <= 1")


def _tagged(records: Iterable) -> Iterator[tuple[Record, bool]]:
    """(record, mine) pairs from a whole-input reader, or from plain records (all of them ours)."""
    for item in records:
        yield item if isinstance(item, tuple) else (item, True)


class Label:
    """`phitools label` as a pipeline step: samples, labels with the configured backend, keeps diagnostics.

    Building it checks the options together, resolves the backend-dependent defaults (temperature, max_tokens,
    max_chars) and the backend (nothing is loaded or connected yet); calling it opens the runner and its
    request cache (`--cache`; by default next to `ctx.output`) and closes them when the records run out.
    With --sample it reads the whole input (`whole_input`): under --shard K/N each part labels its share of
    the one unsharded sample. One instance is one run: `diagnostics` and `manifest()` describe it.
    """

    name = "label"
    required: tuple[str, ...] = ("text",)

    def __init__(self, opts: LabelOptions | None = None, llm: LLMOptions | None = None):
        self.opts = opts = opts if opts is not None else LabelOptions()
        self.llm = llm = llm if llm is not None else LLMOptions()
        self.kind = kind = llm.kind
        self.rubric = load_rubric(opts.rubric, max_score=opts.max_score)
        models = llm.models
        if kind == "heuristic":
            if opts.votes > 1 or len(models) > 1:
                raise UsageError("--backend heuristic is deterministic: --votes and several --model make no sense")
        elif len(models) > 1 and kind != "openai":
            raise UsageError(
                "several --model values need an OpenAI-compatible server (--api-base)",
                hint="the embedded backend runs one model",
            )
        self.temperature = llm.temperature if llm.temperature is not None else (0.0 if opts.votes == 1 else 0.7)
        self.max_tokens = llm.max_tokens or (MAX_TOKENS_LOCAL if kind == "local" else MAX_TOKENS_HTTP)
        self.max_chars = opts.max_chars
        if self.max_chars is None:
            self.max_chars = LOCAL_MAX_CHARS if kind == "local" else MAX_CHARS_DEFAULT
        self.backend = build_backend(llm, models[0], allowed=("local", "openai", "heuristic"))
        self.models = [self.backend.model] if (kind == "local" or models == [None]) else list(models)
        self.whole_input = opts.sample is not None
        self.total = opts.sample
        self.runner = None
        self.sampling: dict = {}
        self.diagnostics = LabelDiagnostics(max_score=self.rubric.max_score)

    def labeller(self, seed: int) -> Labeller:
        """The Labeller these options make (requests, parsing, diagnostics) for `seed`."""
        return Labeller(
            self.rubric,
            models=self.models,
            votes=self.opts.votes,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            max_chars=self.max_chars,
            seed=seed,
            structured=self.llm.structured != "text",
            prefill=LOCAL_PREFILL if self.kind == "local" else None,
        )

    def select(self, records: Iterable, ctx: Context) -> Iterator[Record]:
        """The records to label: all, a --fraction, the --sample, or this part's share of the sample."""
        opts, seed = self.opts, ctx.seed
        sampling = self.sampling = {"seed": seed}
        if opts.fraction is not None:
            sampling["fraction"] = opts.fraction
            return sample_fraction(records, opts.fraction, seed)
        if opts.sample is None:
            return iter(records)
        sampling["sample"] = opts.sample
        if ctx.shard and ctx.shard.count > 1:
            # every part reads the whole input to find the unsharded sample, and labels only its share of it
            sampling["scope"] = f"the unsharded sample of {opts.sample}; part {ctx.shard} labels its share"
            return sample_n_of_part(_tagged(records), opts.sample, seed, stats=sampling)
        return sample_n((rec for rec, _ in _tagged(records)), opts.sample, seed, stats=sampling)

    def __call__(self, records: Iterable[Record], ctx: Context) -> Iterator[Record]:
        recs = self.select(records, ctx)
        labeller = self.labeller(ctx.seed)
        self.diagnostics = labeller.diagnostics
        return self._label(recs, labeller, ctx)

    def _label(self, recs: Iterator[Record], labeller: Labeller, ctx: Context) -> Iterator[Record]:
        if self.opts.votes > 1 and self.temperature == 0.0:
            console.warn(
                "--votes > 1 at --temperature 0: a deterministic server returns the same answer for every vote"
            )
        if self.kind == "local":
            console.warn(LOCAL_NOTE)
        cache = None
        try:
            if self.kind != "heuristic":
                cache = cache_for(self.llm, ctx.output)
                self.runner = build_runner(self.llm, self.backend, cache=cache, seed=ctx.seed)
                self.runner.start()
            yield from label_records(recs, labeller, self.runner)
        finally:
            if self.runner is not None:
                self.runner.close()
            if cache is not None:
                cache.close()

    def manifest(self) -> dict:
        """The manifest's `label` section (settings, sampling, diagnostics) and, for a model, `llm`."""
        opts = self.opts
        section: dict[str, Any] = {
            "rubric": self.rubric.describe(),
            "backend": self.kind,
            "models": self.models,
            "votes": opts.votes,
            "requests_per_record": opts.votes * len(self.llm.models),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "max_chars": self.max_chars,
            "sampling": self.sampling,
            "diagnostics": self.diagnostics.to_dict(),
        }
        if self.kind == "local":
            section["note"] = LOCAL_NOTE
        if self.kind == "heuristic":
            section["note"] = HEURISTIC_NOTE
        out: dict[str, Any] = {"label": section}
        if self.runner is not None:
            out["llm"] = llm_manifest(self.runner)
        return out
