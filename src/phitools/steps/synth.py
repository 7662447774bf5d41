"""synth: synthetic textbooks, exercises and stories from an LLM, with injected randomness.

The plan is a pure function of the command line: record i (0 <= i < n; with --shard K/N only i = K mod N)
draws its dimension values from an RNG seeded by (seed, i), fills the template, and asks the model with a
sampling seed derived from (seed, i) as well. So the same command always sends the same requests; with the
request cache a re-run after a crash re-sends only what was not answered, and N sharded runs together make
exactly the records of one unsharded run.

What comes back is parsed by kind: textbooks and stories must be non-empty; an exercise must hold a Python
function with a docstring and a body, and the whole must parse (`synth_prompts.parse_exercise`). An answer
that does not parse is retried (with a shifted sampling seed) up to --max-attempts, then the record fails:
it is counted in the manifest and, with --failed, written there with its reason -- never emitted as data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from phitools.records import Record
from phitools.shards.spec import ShardSpec
from phitools.steps.synth_prompts import Exercise, Template, clean_prose, doctest_examples, parse_exercise, render
from phitools.steps.synth_spec import Spec

# Defaults for --max-tokens: modest, because the embedded model writes ~10 tokens/s on two CPU cores.
MAX_TOKENS_LOCAL = 192
MAX_TOKENS_HTTP = {"textbook": 1024, "exercise": 512, "story": 512}
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95


@dataclass
class SynthPlan:
    """Everything that determines the requests of a synth run."""

    kind: str
    spec: Spec
    template: Template
    n: int
    seed: int = 0
    shard: ShardSpec | None = None
    model: str | None = None
    temperature: float = DEFAULT_TEMPERATURE
    top_p: float | None = DEFAULT_TOP_P
    max_tokens: int = 512
    system: str | None = None
    descriptions: dict[str, str] = field(default_factory=dict)

    def indices(self) -> Iterator[int]:
        """The record indices this process makes: all of range(n), or those congruent to K mod N."""
        if self.shard and self.shard.count > 1:
            return iter(range(self.shard.index, self.n, self.shard.count))
        return iter(range(self.n))

    def count(self) -> int:
        """How many records this process attempts."""
        if self.shard and self.shard.count > 1:
            k, N = self.shard.index, self.shard.count
            return max(0, (self.n - k + N - 1) // N)
        return self.n

    def sampling_seed(self, index: int) -> int:
        """The sampling seed sent with record `index` (30 bits: fits every server's seed type)."""
        ss = np.random.SeedSequence([self.seed % 2**64, index, 1])
        return int(ss.generate_state(1, dtype=np.uint32)[0]) >> 2

    def record_id(self, index: int) -> str:
        return f"synth-{self.kind}-s{self.seed}-{index:07d}"

    def describe(self) -> dict:
        """The manifest's view of the plan."""
        return {
            "kind": self.kind,
            "n": self.n,
            "seed": self.seed,
            "template": self.template.describe(),
            "spec": self.spec.describe(),
            "sampling": self.sampling(),
            "model": self.model,
            "system_override": self.system is not None,
        }

    def sampling(self) -> dict:
        d = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.top_p is not None:
            d["top_p"] = self.top_p
        return d


def parser_for(kind: str) -> Callable[[str], object]:
    """The answer validator for a kind (raises SynthParseError, a ValueError, when unusable)."""
    return parse_exercise if kind == "exercise" else clean_prose


def build_requests(plan: SynthPlan) -> Iterator:
    """The LLMRequests of the plan, lazily, each tagged with (index, draw)."""
    from phitools.llm.client import LLMRequest

    parse = parser_for(plan.kind)
    for i in plan.indices():
        draw = plan.spec.draw(plan.seed, i)
        msgs = render(plan.template, draw, system=plan.system, descriptions=plan.descriptions)
        yield LLMRequest(
            messages=msgs,
            model=plan.model,
            temperature=plan.temperature,
            top_p=plan.top_p,
            max_tokens=plan.max_tokens,
            seed=plan.sampling_seed(i),
            parse=parse,
            tag=(i, draw),
        )


@dataclass
class SynthCounters:
    """Per-run tallies for the manifest."""

    attempted: int = 0
    written: int = 0
    failed: Counter = field(default_factory=Counter)
    truncated: int = 0
    check: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict:
        d = {
            "attempted": self.attempted,
            "written": self.written,
            "failed": dict(sorted(self.failed.items())),
            "failed_total": sum(self.failed.values()),
            "truncated": self.truncated,
        }
        if self.check:
            d["check"] = dict(sorted(self.check.items()))
        return d


def _failure_kind(error: str, had_text: bool) -> str:
    if not had_text:
        return "request_failed"
    if "unparseable" in error:
        return "unparseable"
    return "answer_failed"


def make_record(plan: SynthPlan, res, backend_model: str) -> tuple[bool, Record]:
    """(ok, record) for one LLMResult. A failed record carries `synth.error` and the raw answer, no `text`."""
    index, draw = res.tag
    req = res.request
    prov = {
        "kind": plan.kind,
        "index": index,
        "seed": plan.seed,
        "draw": draw,
        "model": res.model or req.model or backend_model,
        "sampling": req.sampling(),
        "template": plan.template.describe(),
        "attempts": res.attempts,
        "finish_reason": res.finish_reason,
    }
    if plan.spec.sha256:
        prov["spec_sha256"] = plan.spec.sha256
    rid = plan.record_id(index)
    if not res.ok:
        prov["error"] = res.error
        rec: Record = {"id": rid, "synth": prov}
        if res.text is not None:
            rec["raw"] = res.text
        return False, rec
    if res.finish_reason == "length":
        prov["truncated"] = True
    if plan.kind == "exercise":
        ex = res.parsed if isinstance(res.parsed, Exercise) else parse_exercise(res.text or "")
        prov["doctests"] = doctest_examples(ex)
        return True, {
            "id": rid,
            "text": ex.text,
            "prompt": ex.prompt,
            "solution": ex.solution,
            "entry_point": ex.entry_point,
            "synth": prov,
        }
    text = res.parsed if isinstance(res.parsed, str) else clean_prose(res.text or "")
    return True, {"id": rid, "text": text, "synth": prov}


def synthesize(
    plan: SynthPlan,
    runner,
    *,
    counters: SynthCounters,
    on_failed: Callable[[Record], None] | None = None,
    check: Callable[[Record], str | None] | None = None,
) -> Iterator[Record]:
    """Run the plan through an LLMRunner; yield good records in index order.

    Failed records go to `on_failed`. `check(record)` (optional) returns None when the record passes, or
    the reason it fails (e.g. a doctest); a record that fails the check is a failed record.
    """
    backend_model = getattr(runner.backend, "model", "") or ""
    for res in runner.run(build_requests(plan)):
        counters.attempted += 1
        ok, rec = make_record(plan, res, backend_model)
        if ok and check is not None:
            reason = check(rec)
            counters.check["passed" if reason is None else "failed"] += 1
            if reason is not None:
                ok = False
                rec = {
                    "id": rec["id"],
                    "raw": rec.get("text"),
                    "synth": {**rec["synth"], "error": f"check failed: {reason}"},
                }
                counters.failed["check_failed"] += 1
        elif not ok:
            counters.failed[_failure_kind(res.error or "", res.text is not None)] += 1
        if not ok:
            if on_failed is not None:
                on_failed(rec)
            continue
        if rec["synth"].get("truncated"):
            counters.truncated += 1
        counters.written += 1
        yield rec
