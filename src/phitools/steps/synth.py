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

`Synth` is the `phitools synth` command as a library object: options in (`SynthOptions`, `SynthLLMOptions`,
`SynthIO` -- synth reads no records, so its I/O options are the record tools' -o/--shard/--shard-size/--seed),
the plan, dedup, coverage and diversity wired as the command wires them. From Python

    run = Synth(SynthOptions(topics="examples/topics.txt", n=100), SynthLLMOptions(api_base=URL, model=["m"]),
                SynthIO(output="textbooks/"))
    stats = write(run)                  # exactly the command: records, --failed, manifest (synth, llm, diversity)
    records = list(Synth(opts, llm).records())        # or the records themselves, in memory
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from phitools.errors import DataError, PhitoolsError, UsageError
from phitools.llm.options import LLMOptions, build_backend, build_runner, cache_for, llm_manifest
from phitools.options import check as check_options
from phitools.options import option, option_like
from phitools.pipeline import IOOptions
from phitools.records import Record
from phitools.runtime import console
from phitools.runtime.progress import NullReporter, Reporter
from phitools.shards import RecordWriter, Stats, parse_shard
from phitools.shards.spec import ShardSpec
from phitools.steps.stats import Coverage, DiversityStats
from phitools.steps.synth_prompts import (
    Exercise,
    Template,
    builtin_template,
    builtin_template_text,
    check_template,
    clean_prose,
    default_dimensions,
    doctest_examples,
    load_template,
    parse_exercise,
    render,
)
from phitools.steps.synth_spec import KINDS, Spec, load_spec, merge_dimensions, topics_dimension

# Defaults for --max-tokens: modest, because the embedded model writes ~10 tokens/s on two CPU cores.
MAX_TOKENS_LOCAL = 192
MAX_TOKENS_HTTP = {"textbook": 1024, "exercise": 512, "story": 512}
DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95
#: tries per record: an unusable answer is asked again with a shifted sampling seed, then the record fails
MAX_ATTEMPTS = 3
LOCAL_NOTE = (
    "no --api-base: using the embedded SmolLM2-135M on CPU (~10 tokens/s on two cores). It shows the "
    "pipeline works offline; real synthetic data needs a capable model behind --api-base (docs/synth.md)"
)


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


# ---- the command as a library: options, the run, the writer ----------------------------------------------
@dataclass
class SynthOptions:
    """What to make: the dimensions (--topics, --spec), the kind and template, how many, and what to keep."""

    topics: str | None = option(
        None, show_default=False, help="File of topics, one per line ('#' comments): the `topic` dimension."
    )
    spec: str | None = option(
        None,
        show_default=False,
        help="TOML spec declaring dimensions (lists or files, optional weights, conditional values) and defaults; see "
        "docs/synth.md.",
    )
    kind: str | None = option(
        None,
        show_default=False,
        help="textbook (explanations interleaved with code), exercise (signature + docstring, then solution) or story "
        "(TinyStories-style). Default: the spec's, else textbook.",
    )
    template: str | None = option(
        None,
        show_default=False,
        help="Prompt template FILE with {dimension} placeholders ({constraints}: the dimensions it does not name; "
        "optional [system]/[user] sections).",
    )
    system: str | None = option(None, show_default=False, help="System message (replaces the template's; '' for none).")
    n: int = option(10, min=0, help="Number of records to make (over all shards).")
    top_p: float | None = option(None, min=0.0, max=1.0, show_default=False, help="Nucleus sampling (default 0.95).")
    check: bool = option(
        False, help="exercise: run each solution's doctests in the sandbox; failures are failed records."
    )
    dedup: bool = option(
        False,
        help="Drop near-duplicates (MinHash, Jaccard >= 0.8 on 5-word shingles; keep the first). With --shard: within "
        "each part only (said in the manifest); dedup the union with `phitools stats --dedup`.",
    )
    stats: bool = option(
        False,
        help="After generation, print diversity statistics (as `phitools stats`) on stderr and store them in the "
        "manifest.",
    )
    failed: str | None = option(
        None, show_default=False, help="Also write failed records (with synth.error and the raw answer) here."
    )
    dry_run: bool = option(
        False, help="Call no model: write each record's draw and rendered prompt (messages) instead."
    )
    # for the command (it prints the template and exits); from Python: template_text(opts)
    show_template: bool = option(False, help="Print the template that would be used and exit.")

    def __post_init__(self) -> None:
        check_options(self)


@dataclass
class SynthLLMOptions(LLMOptions):
    """The LLM options as synth uses them: 3 tries per record, and plain-text answers (no --structured)."""

    max_attempts: int = option_like(LLMOptions, "max_attempts", default=MAX_ATTEMPTS)
    structured: str = option_like(LLMOptions, "structured", cli=False)


@dataclass
class SynthIO:
    """Where synth's records go and which of them this run makes: the record tools' options of the same names
    (synth reads no records, so it has no inputs, --skip-bad or --limit)."""

    output: str | None = option_like(IOOptions, "output")
    shard: str | None = option_like(IOOptions, "shard")
    shard_size: str = option_like(IOOptions, "shard_size")
    seed: int = option_like(IOOptions, "seed")

    def __post_init__(self) -> None:
        check_options(self)
        self.shard_spec: ShardSpec | None = parse_shard(self.shard)


def _kind_and_template(opts: SynthOptions) -> tuple[Spec, str, str | None]:
    """The spec (or an empty one), the kind (--kind, the spec's, else textbook) and the template file, if any."""
    spec = load_spec(opts.spec) if opts.spec else Spec()
    kind = opts.kind or spec.kind or "textbook"
    if kind not in KINDS:
        raise UsageError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    return spec, kind, opts.template or spec.template


def template_text(opts: SynthOptions) -> str:
    """The prompt template these options would use, as text (`--show-template`)."""
    _, kind, path = _kind_and_template(opts)
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read()
    return builtin_template_text(kind)


class Synth:
    """One `phitools synth` run: the plan from the options, then the records (`records()`) and the manifest's
    sections (`manifest()`); `write(synth)` writes them as the command does.

    Building it reads the spec, topics and template and checks them and the options (one-line errors, as the
    command's); the backend is chosen but nothing is loaded or connected until `records()` runs. Near-duplicates
    (--dedup) are dropped within this run only: with --shard, within this part.
    """

    name = "synth"

    def __init__(self, opts: SynthOptions, llm: SynthLLMOptions | None = None, io: SynthIO | None = None) -> None:
        self.opts = opts
        self.llm = llm = llm if llm is not None else SynthLLMOptions()
        self.io = io = io if io is not None else SynthIO()
        spec, kind, tpl_path = _kind_and_template(opts)
        if not opts.topics and not opts.spec:
            raise UsageError(
                "synth needs --topics FILE and/or --spec FILE",
                hint="e.g. --topics examples/topics.txt, or --spec examples/spec.toml (docs/synth.md)",
            )
        tpl = load_template(tpl_path) if tpl_path else builtin_template(kind)
        plan_spec = merge_dimensions(spec, [topics_dimension(opts.topics)] if opts.topics else [])
        plan_spec = merge_dimensions(plan_spec, default_dimensions(kind, tpl, list(plan_spec.dimensions)))
        check_template(tpl, list(plan_spec.dimensions))
        if opts.check and kind != "exercise":
            raise UsageError("--check runs exercise doctests; it needs --kind exercise")
        models = llm.models
        if len(models) > 1:
            raise UsageError("synth takes one --model")
        self.plan = SynthPlan(
            kind=kind,
            spec=plan_spec,
            template=tpl,
            n=opts.n,
            seed=io.seed,
            shard=io.shard_spec,
            model=models[0] if llm.kind == "openai" else None,
            temperature=llm.temperature if llm.temperature is not None else DEFAULT_TEMPERATURE,
            top_p=opts.top_p if opts.top_p is not None else DEFAULT_TOP_P,
            max_tokens=llm.max_tokens or (MAX_TOKENS_LOCAL if llm.kind == "local" else MAX_TOKENS_HTTP[kind]),
            system=opts.system if opts.system is not None else spec.system,
            descriptions={k: d.description for k, d in plan_spec.dimensions.items() if d.description},
        )
        self.inputs = [p for p in (opts.spec, opts.topics, tpl_path) if p]
        self.counters = SynthCounters()
        self.coverage = Coverage(plan_spec.declared_values())
        generating = not opts.dry_run
        self.diversity = DiversityStats(declared=plan_spec.declared_values()) if opts.stats and generating else None
        self.near = None
        if opts.dedup and generating:
            from phitools.steps.neardup import NearDupIndex

            self.near = NearDupIndex()
        self.backend = build_backend(llm, models[0], allowed=("local", "openai")) if generating else None
        self.runner = None
        self.check_detail: dict | None = None
        self._checker = self._cache = None
        self._opened = False

    @property
    def sharded(self) -> bool:
        return bool(self.plan.shard and self.plan.shard.count > 1)

    def open(self) -> None:
        """Start what the run needs before it writes anything: the --check sandbox, the request cache and the
        runner (`records()` does this itself when not done). Idempotent; `close()` ends them."""
        if self._opened or self.opts.dry_run:
            return
        self._opened = True
        if self.near is not None and self.sharded:
            console.warn(
                f"--dedup with --shard {self.plan.shard}: near-duplicates are dropped within this part only (the "
                "parts cannot see each other); for the unsharded answer run `phitools stats PARTS/ --dedup OUT/` on "
                "the union"
            )
        if self.llm.kind == "local":
            console.warn(LOCAL_NOTE)
        try:
            self._checker = _doctest_checker(self.plan.seed) if self.opts.check else None
            self._cache = cache_for(self.llm, self.io.output)
            self.runner = build_runner(self.llm, self.backend, cache=self._cache, seed=self.plan.seed)
            self.runner.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the runner (its usage is final then), the sandbox and the cache; safe to call twice."""
        if self.runner is not None:
            self.runner.close()
        if self._checker is not None:
            self.check_detail = self._checker.describe()
            self._checker.close()
            self._checker = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    def records(
        self,
        *,
        stats: Stats | None = None,
        progress: Reporter | None = None,
        on_failed: Callable[[Record], None] | None = None,
    ) -> Iterator[Record]:
        """The run's records, in index order (with --dry-run: each record's draw and messages, no model call).

        Failed records (unusable answers, failed --check) go to `on_failed`; near-duplicates are dropped. The
        counters go to `stats` (records in = attempted, dropped by reason); `progress` advances per record
        attempted. Raises DataError at the end when every record failed.
        """
        if self.opts.dry_run:
            yield from self._dry_run()
            return
        plan, counters, st = self.plan, self.counters, stats if stats is not None else Stats()
        bar = progress if progress is not None else NullReporter()

        def failed(rec: Record) -> None:
            bar.advance()  # a failed record is progress too
            st.records_in += 1
            if on_failed is not None:
                on_failed(rec)

        self.open()
        try:
            for rec in synthesize(plan, self.runner, counters=counters, on_failed=failed, check=self._checker):
                bar.advance()
                st.records_in += 1
                if self.near is not None and self.near.check([rec["text"]])[0] is not None:
                    st.drop("near_duplicate")
                    continue
                self.coverage.add_record(rec)
                if self.diversity is not None:
                    self.diversity.add(rec)
                yield rec
        finally:
            self.close()
        st.records_in = counters.attempted
        for reason, k in counters.failed.items():
            st.drop(reason, k)
        if counters.attempted and not counters.written:
            raise DataError(
                f"no record survived: all {counters.attempted} failed ({self.reasons()})",
                source="synth",
                hint="see --failed FILE for the answers; raise --max-tokens or use a stronger model",
            )

    def _dry_run(self) -> Iterator[Record]:
        """Records with the draw and the rendered messages, no model call (to inspect the randomness)."""
        plan = self.plan
        for i in plan.indices():
            draw = plan.spec.draw(plan.seed, i)
            self.coverage.add_draw(draw)
            msgs = render(plan.template, draw, system=plan.system, descriptions=plan.descriptions)
            yield {
                "id": plan.record_id(i),
                "messages": msgs,
                "synth": {
                    "kind": plan.kind,
                    "index": i,
                    "seed": plan.seed,
                    "draw": draw,
                    "sampling": {**plan.sampling(), "seed": plan.sampling_seed(i)},
                    "template": plan.template.describe(),
                    "dry_run": True,
                },
            }

    def manifest(self) -> dict:
        """The manifest's `synth` section (plan, counters, coverage, dedup, check), `llm` and `diversity`."""
        section: dict[str, Any] = self.plan.describe()
        out: dict[str, Any] = {"synth": section}
        if self.opts.dry_run:
            section["dry_run"] = True
            section["coverage"] = self.coverage.report()
            return out
        section.update(self.counters.to_dict())
        section["coverage"] = self.coverage.report()
        if self.near is not None:
            section["dedup"] = self.near.report()
            section["dedup"]["scope"] = f"per shard: part {self.plan.shard} only" if self.sharded else "all records"
        if self.runner is not None:
            out["llm"] = llm_manifest(self.runner)
        if self.check_detail is not None:
            section["check_detail"] = self.check_detail
        if self.diversity is not None:
            out["diversity"] = self.diversity.report()
        return out

    def reasons(self) -> str:
        """Why records failed, e.g. 'unparseable: 3, check_failed: 1'."""
        return ", ".join(f"{k}: {v}" for k, v in sorted(self.counters.failed.items()))

    def warnings(self) -> list[str]:
        """What a user should hear after the run: records that failed (and where they are kept)."""
        c = self.counters
        if not c.failed:
            return []
        kept = "" if self.opts.failed else "; --failed FILE keeps them"
        return [f"{sum(c.failed.values())} of {c.attempted} record(s) failed ({self.reasons()}){kept}"]


def write(synth: Synth, *, progress: Callable[..., Any] | None = None) -> Stats:
    """Run `synth` and write what the command writes: the records to `io.output` (stdout, a file or shards) with
    their manifest, and with --failed the failed records there. Returns the counters.

    `progress(name, total=, stats=)` is a context manager yielding a reporter (as for `pipeline.run`). Nothing
    is written before the run has started (sandbox, cache, runner); from then on nothing the model answered is
    lost: the --failed file is kept even when the run stops."""
    opts, io, st = synth.opts, synth.io, Stats()

    def output() -> RecordWriter:
        return RecordWriter(
            io.output,
            tool="synth",
            shard_size=io.shard_size,
            shard=io.shard_spec,
            stats=st,
            seed=io.seed,
            inputs=synth.inputs,
        )

    if opts.dry_run:
        with output() as writer:
            writer.write_many(synth.records())
            writer.manifest_extra.update(synth.manifest())
        return st
    synth.open()
    try:
        failed = None
        if opts.failed:
            failed = RecordWriter(
                opts.failed,
                tool="synth",
                seed=io.seed,
                inputs=synth.inputs,
                shard=io.shard_spec,
                manifest_extra={"synth_failed": True},
            )
        try:
            with output() as writer:
                bars = (
                    progress("synth", total=synth.plan.count(), stats=st) if progress else nullcontext(NullReporter())
                )
                with bars as bar:
                    on_failed = failed.write if failed is not None else None
                    for rec in synth.records(stats=st, progress=bar, on_failed=on_failed):
                        writer.write(rec)
                writer.manifest_extra.update(synth.manifest())
        finally:
            if failed is not None:
                failed.close()
    finally:
        synth.close()
    return st


def _doctest_checker(seed: int):
    """A DoctestChecker (check(record) -> None | reason) over the eval sandbox."""
    try:
        from phitools.eval import sandbox  # noqa: F401
    except ImportError:
        raise PhitoolsError(
            "--check needs the evaluation sandbox (phitools.eval.sandbox), which is not installed",
            hint="run without --check; solutions are still parsed",
        ) from None
    from phitools.steps.synth_check import DoctestChecker

    return DoctestChecker(seed=seed)
