"""`phitools synth`: synthetic textbooks, exercises and stories with injected randomness."""

from __future__ import annotations

from typing import Annotated

import typer

from phitools.cli import console
from phitools.cli.common import Output, ProgressEvery, Quiet, Seed, Shard, ShardSize, handle_errors, setup
from phitools.cli.llm_options import (
    API_KEY_ENV,
    REQUEST_TIMEOUT_S,
    ApiBaseOpt,
    ApiKeyEnvOpt,
    BackendOpt,
    CacheOpt,
    ConcurrencyOpt,
    LLMOptions,
    MaxAttemptsOpt,
    MaxTokensOpt,
    ModelOpt,
    PriceOpt,
    RequestTimeoutOpt,
    RpmOpt,
    TemperatureOpt,
    TpmOpt,
)
from phitools.errors import DataError, PhitoolsError, UsageError

LOCAL_NOTE = (
    "no --api-base: using the embedded SmolLM2-135M on CPU (~10 tokens/s on two cores). It shows the "
    "pipeline works offline; real synthetic data needs a capable model behind --api-base (docs/synth.md)"
)


@handle_errors("synth")
def synth(
    topics: Annotated[
        str | None,
        typer.Option(
            "--topics", help="File of topics, one per line ('#' comments): the `topic` dimension.", show_default=False
        ),
    ] = None,
    spec: Annotated[
        str | None,
        typer.Option(
            "--spec",
            help="TOML spec declaring dimensions (lists or files, optional weights, conditional values) and defaults; see docs/synth.md.",
            show_default=False,
        ),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help="textbook (explanations interleaved with code), exercise (signature + docstring, then solution) or story (TinyStories-style). Default: the spec's, else textbook.",
            show_default=False,
        ),
    ] = None,
    template: Annotated[
        str | None,
        typer.Option(
            "--template",
            help="Prompt template FILE with {dimension} placeholders ({constraints}: the dimensions it does not name; optional [system]/[user] sections).",
            show_default=False,
        ),
    ] = None,
    system: Annotated[
        str | None,
        typer.Option("--system", help="System message (replaces the template's; '' for none).", show_default=False),
    ] = None,
    n: Annotated[int, typer.Option("--n", min=0, help="Number of records to make (over all shards).")] = 10,
    top_p: Annotated[
        float | None,
        typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling (default 0.95).", show_default=False),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="exercise: run each solution's doctests in the sandbox; failures are failed records."
        ),
    ] = False,
    dedup: Annotated[
        bool,
        typer.Option(
            "--dedup",
            help="Drop near-duplicates (MinHash, Jaccard >= 0.8 on 5-word shingles; keep the first). With --shard: within each part only (said in the manifest); dedup the union with `phitools stats --dedup`.",
        ),
    ] = False,
    stats: Annotated[
        bool,
        typer.Option(
            "--stats",
            help="After generation, print diversity statistics (as `phitools stats`) on stderr and store them in the manifest.",
        ),
    ] = False,
    failed: Annotated[
        str | None,
        typer.Option(
            "--failed", help="Also write failed records (with synth.error and the raw answer) here.", show_default=False
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Call no model: write each record's draw and rendered prompt (messages) instead."
        ),
    ] = False,
    show_template: Annotated[
        bool, typer.Option("--show-template", help="Print the template that would be used and exit.")
    ] = False,
    backend: BackendOpt = None,
    api_base: ApiBaseOpt = None,
    model: ModelOpt = None,
    api_key_env: ApiKeyEnvOpt = API_KEY_ENV,
    concurrency: ConcurrencyOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    request_timeout: RequestTimeoutOpt = REQUEST_TIMEOUT_S,
    max_attempts: MaxAttemptsOpt = 3,
    cache: CacheOpt = None,
    price_per_1k: PriceOpt = None,
    temperature: TemperatureOpt = None,
    max_tokens: MaxTokensOpt = None,
    output: Output = None,
    shard: Shard = None,
    shard_size: ShardSize = "100000",
    seed: Seed = 0,
    quiet: Quiet = False,
    progress_every: ProgressEvery = 30.0,
) -> None:
    """Write synthetic textbooks, exercises or stories with an LLM, made diverse by seeded random draws.

    Each record i draws one value per dimension (topic, audience, style, ... from --topics/--spec, plus
    the kind's defaults) from an RNG seeded by (--seed, i), fills the prompt template and asks the model.
    Records carry text plus provenance: synth.{draw, seed, index, model, sampling, template}. Exercises
    also hold `prompt` (signature + docstring) and `solution`; solutions must parse, unparseable answers
    are retried then counted as failed. The manifest holds coverage (counts per dimension value), usage
    and failures. --shard K/N makes records i = K mod N; answers are cached, so a re-run after a crash
    sends only unanswered requests. Without --api-base the embedded SmolLM2-135M runs on CPU (slow; the
    default --max-tokens is 192 there, 1024/512/512 for textbook/exercise/story on a server).

    Examples:

        phitools synth --topics examples/topics.txt | phitools tokenize -o tok/
        phitools synth --spec examples/spec.toml --n 1000 --api-base http://localhost:8000/v1 \\
            --model Qwen/Qwen2.5-7B-Instruct --concurrency 32 --check --stats -o exercises/
        phitools synth --topics examples/topics.txt --kind story --n 100 --dry-run | head -n 2
    """
    setup(quiet, progress_every)
    from phitools.steps.synth_prompts import builtin_template, builtin_template_text, load_template
    from phitools.steps.synth_spec import KINDS, Spec, load_spec, merge_dimensions, topics_dimension

    spec_obj = load_spec(spec) if spec else Spec()
    the_kind = kind or spec_obj.kind or "textbook"
    if the_kind not in KINDS:
        raise UsageError(f"--kind {the_kind!r} is not one of {', '.join(KINDS)}")
    tpl_path = template or spec_obj.template
    if show_template:
        if tpl_path:
            with open(tpl_path, encoding="utf-8") as f:
                typer.echo(f.read(), nl=False)
        else:
            typer.echo(builtin_template_text(the_kind), nl=False)
        return
    if not topics and not spec:
        raise UsageError(
            "synth needs --topics FILE and/or --spec FILE",
            hint="e.g. --topics examples/topics.txt, or --spec examples/spec.toml (docs/synth.md)",
        )
    tpl = load_template(tpl_path) if tpl_path else builtin_template(the_kind)
    extra_dims = [topics_dimension(topics)] if topics else []
    plan_spec = merge_dimensions(spec_obj, extra_dims)
    from phitools.steps.synth_prompts import check_template, default_dimensions

    plan_spec = merge_dimensions(plan_spec, default_dimensions(the_kind, tpl, list(plan_spec.dimensions)))
    check_template(tpl, list(plan_spec.dimensions))
    if check and the_kind != "exercise":
        raise UsageError("--check runs exercise doctests; it needs --kind exercise")

    # synth asks for plain text (its parser reads the answer), so no --structured
    opts = LLMOptions(
        backend=backend,
        api_base=api_base,
        model=model,
        api_key_env=api_key_env,
        concurrency=concurrency,
        rpm=rpm,
        tpm=tpm,
        request_timeout=request_timeout,
        max_attempts=max_attempts,
        cache=cache,
        price_per_1k=price_per_1k,
        temperature=temperature,
        max_tokens=max_tokens,
    )
    from phitools.shards import RecordWriter, Stats, parse_shard
    from phitools.steps.synth import (
        DEFAULT_TEMPERATURE,
        DEFAULT_TOP_P,
        MAX_TOKENS_HTTP,
        MAX_TOKENS_LOCAL,
        SynthCounters,
        SynthPlan,
        synthesize,
    )

    shard_spec = parse_shard(shard)
    models = opts.models
    if len(models) > 1:
        raise UsageError("synth takes one --model")
    max_tok = opts.max_tokens or (MAX_TOKENS_LOCAL if opts.kind == "local" else MAX_TOKENS_HTTP[the_kind])
    plan = SynthPlan(
        kind=the_kind,
        spec=plan_spec,
        template=tpl,
        n=n,
        seed=seed,
        shard=shard_spec,
        model=models[0] if opts.kind == "openai" else None,
        temperature=opts.temperature if opts.temperature is not None else DEFAULT_TEMPERATURE,
        top_p=top_p if top_p is not None else DEFAULT_TOP_P,
        max_tokens=max_tok,
        system=(system if system is not None else spec_obj.system),
        descriptions={k: d.description for k, d in plan_spec.dimensions.items() if d.description},
    )
    inputs = [p for p in (spec, topics, tpl_path) if p]
    counters = SynthCounters()
    st = Stats()
    extra: dict = {"synth": plan.describe()}

    if dry_run:
        _dry_run(plan, output, st, inputs, extra, shard_size)
        return

    from phitools.cli.llm_options import build_backend, build_runner, cache_for, llm_manifest, usage_summary
    from phitools.steps.stats import Coverage, DiversityStats

    coverage = Coverage(plan_spec.declared_values())
    diversity = DiversityStats(declared=plan_spec.declared_values()) if stats else None
    near = None
    if dedup:
        from phitools.steps.neardup import NearDupIndex

        near = NearDupIndex()
        if shard_spec and shard_spec.count > 1:
            console.warn(
                f"--dedup with --shard {shard_spec}: near-duplicates are dropped within this part only (the parts "
                "cannot see each other); for the unsharded answer run `phitools stats PARTS/ --dedup OUT/` on the union"
            )
    backend_obj = build_backend(opts, models[0], allowed=("local", "openai"))
    if opts.kind == "local":
        console.warn(LOCAL_NOTE)
    checker = failed_writer = cache_obj = None
    try:
        checker = _doctest_checker(seed) if check else None
        failed_writer = (
            RecordWriter(
                failed, tool="synth", seed=seed, inputs=inputs, shard=shard_spec, manifest_extra={"synth_failed": True}
            )
            if failed
            else None
        )
        cache_obj = cache_for(opts, output)
        runner = build_runner(opts, backend_obj, cache=cache_obj, seed=seed)
        with RecordWriter(
            output,
            tool="synth",
            shard_size=shard_size,
            shard=shard_spec,
            stats=st,
            seed=seed,
            inputs=inputs,
            manifest_extra=extra,
        ) as w:
            with runner, console.progress("synth", total=plan.count(), stats=st) as bar:

                def on_failed(rec: dict) -> None:
                    bar.advance()  # a failed record is progress too
                    st.records_in += 1
                    if failed_writer is not None:
                        failed_writer.write(rec)

                for rec in synthesize(plan, runner, counters=counters, on_failed=on_failed, check=checker):
                    bar.advance()
                    st.records_in += 1
                    if near is not None and near.check([rec["text"]])[0] is not None:
                        st.drop("near_duplicate")
                        continue
                    coverage.add_record(rec)
                    if diversity is not None:
                        diversity.add(rec)
                    w.write(rec)
            st.records_in = counters.attempted
            for reason, k in counters.failed.items():
                st.drop(reason, k)
            extra["synth"].update(counters.to_dict())
            extra["synth"]["coverage"] = coverage.report()
            if near is not None:
                extra["synth"]["dedup"] = near.report()
                extra["synth"]["dedup"]["scope"] = (
                    f"per shard: part {shard_spec} only" if shard_spec and shard_spec.count > 1 else "all records"
                )
            extra["llm"] = llm_manifest(runner)
            if checker is not None:
                extra["synth"]["check_detail"] = checker.describe()
            if diversity is not None:
                extra["diversity"] = diversity.report()
            w.manifest_extra.update(extra)
            if counters.attempted and not counters.written:
                raise DataError(
                    f"no record survived: all {counters.attempted} failed ({_reasons(counters)})",
                    source="synth",
                    hint="see --failed FILE for the answers; raise --max-tokens or use a stronger model",
                )
    finally:
        if checker is not None:
            checker.close()
        if failed_writer is not None:
            failed_writer.close()  # nothing the model answered is lost, even when the run stops
        if cache_obj is not None:
            cache_obj.close()
    console.info(usage_summary(runner, "synth"))
    if counters.failed:
        console.warn(
            f"{sum(counters.failed.values())} of {counters.attempted} record(s) failed ({_reasons(counters)})"
            + ("" if failed else "; --failed FILE keeps them")
        )
    if diversity is not None:
        from phitools.cli.stats import print_table

        if not quiet:
            print_table(extra["diversity"], force=True)


def _reasons(c) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(c.failed.items()))


def _dry_run(plan, output, st, inputs, extra, shard_size) -> None:
    """Records with the draw and the rendered messages, no model call (to inspect the randomness)."""
    from phitools.shards import RecordWriter
    from phitools.steps.stats import Coverage
    from phitools.steps.synth_prompts import render

    coverage = Coverage(plan.spec.declared_values())
    with RecordWriter(
        output,
        tool="synth",
        shard_size=shard_size,
        shard=plan.shard,
        stats=st,
        seed=plan.seed,
        inputs=inputs,
        manifest_extra=extra,
    ) as w:
        for i in plan.indices():
            draw = plan.spec.draw(plan.seed, i)
            coverage.add_draw(draw)
            msgs = render(plan.template, draw, system=plan.system, descriptions=plan.descriptions)
            w.write(
                {
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
            )
        extra["synth"]["dry_run"] = True
        extra["synth"]["coverage"] = coverage.report()
        w.manifest_extra.update(extra)


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


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
