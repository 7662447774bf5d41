"""`phitools label`: rate records for educational value with an LLM; adds `label: {score, rationale, ...}`."""

from __future__ import annotations

import itertools
from typing import Annotated

import typer

from phitools.cli import console
from phitools.cli.common import (
    AllowPartial,
    Inputs,
    Limit,
    Output,
    ProgressEvery,
    Quiet,
    Seed,
    Shard,
    ShardSize,
    SkipBad,
    ToolIO,
    handle_errors,
    setup,
)
from phitools.cli.llm_options import (
    API_KEY_ENV,
    MAX_ATTEMPTS,
    REQUEST_TIMEOUT_S,
    STRUCTURED,
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
    StructuredOpt,
    TemperatureOpt,
    TpmOpt,
)
from phitools.errors import UsageError

LOCAL_NOTE = (
    "the embedded SmolLM2-135M model proves the plumbing, not the judgement: its scores carry next to no "
    "signal. For real labels point --api-base at a capable model (see docs/label.md)"
)


MAX_CHARS_DEFAULT = 8000
LOCAL_MAX_CHARS = 1500
LOCAL_PREFILL = "Educational score:"


@handle_errors("label")
def label(
    inputs: Inputs = None,
    output: Output = None,
    rubric: Annotated[
        str,
        typer.Option(
            "--rubric",
            help="code (phi-1: educational value for a student learning basic coding concepts), web (FineWeb-Edu-style additive 0-5), or a template FILE containing {text}.",
        ),
    ] = "code",
    fraction: Annotated[
        float | None,
        typer.Option(
            "--fraction",
            help="Label a deterministic fraction F of the records (hash of --seed and the record id/text; streaming).",
            show_default=False,
        ),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample",
            min=0,
            help="Label a uniform sample of N records (a seeded reservoir; output in input order, after the input ends). With --shard K/N each part reads the whole input and labels its share of the same N records: N in all, not N per part.",
            show_default=False,
        ),
    ] = None,
    max_chars: Annotated[
        int | None,
        typer.Option(
            "--max-chars",
            min=100,
            help="Truncate documents to this many characters in the prompt (recorded in label.truncated/chars). Default 8000; 1500 with the embedded model.",
            show_default=False,
        ),
    ] = None,
    max_score: Annotated[
        int, typer.Option("--max-score", min=1, help="Top of the score scale the rubric asks for (scores are 0..N).")
    ] = 5,
    votes: Annotated[
        int,
        typer.Option(
            "--votes",
            min=1,
            help="Samples per record and per --model; with several, label.score is their mean and agreement is reported.",
        ),
    ] = 1,
    backend: BackendOpt = None,
    api_base: ApiBaseOpt = None,
    model: ModelOpt = None,
    api_key_env: ApiKeyEnvOpt = API_KEY_ENV,
    concurrency: ConcurrencyOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    request_timeout: RequestTimeoutOpt = REQUEST_TIMEOUT_S,
    max_attempts: MaxAttemptsOpt = MAX_ATTEMPTS,
    cache: CacheOpt = None,
    price_per_1k: PriceOpt = None,
    temperature: TemperatureOpt = None,
    max_tokens: MaxTokensOpt = None,
    structured: StructuredOpt = STRUCTURED,
    shard: Shard = None,
    shard_size: ShardSize = "100000",
    skip_bad: SkipBad = False,
    allow_partial: AllowPartial = False,
    seed: Seed = 0,
    limit: Limit = None,
    quiet: Quiet = False,
    progress_every: ProgressEvery = 30.0,
) -> None:
    """Rate the educational value of records with an LLM: each record gets label: {score, rationale, model, rubric, attempts}.

    phi-1 asked GPT-4 for the "educational value for a student whose goal is to learn basic coding
    concepts" of ~100k files and trained a classifier on the answers (`phitools classify`). Without
    --api-base the embedded SmolLM2-135M runs offline: it proves the pipeline, not the judgement.
    --backend heuristic is a transparent non-LLM scorer (label.heuristic = true). A label that cannot be
    obtained or parsed after --max-attempts is written with score null and label.error. Answers are
    cached (SQLite) so a re-run after a crash sends only what was not answered.

    Examples:

        phitools label corpus.jsonl --sample 20
        phitools label corpus/ --sample 200 -o labeled/
        phitools label corpus/ --fraction 0.01 --api-base http://localhost:8000/v1 --model Qwen/Qwen2.5-7B-Instruct \\
            --concurrency 32 -o labeled/
        phitools label web.jsonl --rubric web --votes 3 --api-base https://api.openai.com/v1 --model gpt-4o-mini \\
            --price-per-1k 0.00015,0.0006 -o web-labeled.jsonl.zst
    """
    setup(quiet, progress_every)
    from phitools.cli.llm_options import build_backend, build_runner, cache_for, llm_manifest, usage_summary
    from phitools.steps.label import Labeller, label_records, load_rubric, sample_fraction, sample_n, sample_n_of_part

    if fraction is not None and sample is not None:
        raise UsageError("--fraction and --sample are exclusive", hint="pick one")
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
        structured=structured,
    )
    kind = opts.kind
    rub = load_rubric(rubric, max_score=max_score)
    models = opts.models
    if kind == "heuristic":
        if votes > 1 or len(models) > 1:
            raise UsageError("--backend heuristic is deterministic: --votes and several --model make no sense")
    elif len(models) > 1 and kind != "openai":
        raise UsageError(
            "several --model values need an OpenAI-compatible server (--api-base)",
            hint="the embedded backend runs one model",
        )
    n_req = votes * len(models)
    temp = opts.temperature if opts.temperature is not None else (0.0 if votes == 1 else 0.7)
    if votes > 1 and temp == 0.0:
        console.warn("--votes > 1 at --temperature 0: a deterministic server returns the same answer for every vote")
    max_tok = opts.max_tokens or (24 if kind == "local" else 256)
    if max_chars is None:  # with the embedded model, prompt processing on a CPU is the bottleneck
        max_chars = LOCAL_MAX_CHARS if kind == "local" else MAX_CHARS_DEFAULT

    sampling: dict = {"seed": seed}
    if fraction is not None:
        sampling["fraction"] = fraction
    if sample is not None:
        sampling["sample"] = sample
    extra: dict = {"label": {}}
    with ToolIO(
        "label",
        inputs,
        output,
        shard=shard,
        skip_bad=skip_bad,
        required=("text",),
        seed=seed,
        limit=limit,
        shard_size=shard_size,
        manifest_extra=extra,
        allow_partial=allow_partial,
    ) as io:
        recs = io.records()
        if fraction is not None:
            recs = sample_fraction(recs, fraction, seed)
        elif sample is not None and io.shard and io.shard.count > 1:
            # every part reads the whole input to find the unsharded sample, and labels only its share of it
            tagged = io.reader.tagged()
            recs = sample_n_of_part(
                itertools.islice(tagged, limit) if limit is not None else tagged, sample, seed, stats=sampling
            )
            sampling["scope"] = f"the unsharded sample of {sample}; part {io.shard} labels its share"
        elif sample is not None:
            recs = sample_n(recs, sample, seed, stats=sampling)
        backend_obj = build_backend(opts, models[0], allowed=("local", "openai", "heuristic"))
        resolved_models = [backend_obj.model] if (kind == "local" or models == [None]) else list(models)
        labeller = Labeller(
            rub,
            models=resolved_models,
            votes=votes,
            temperature=temp,
            max_tokens=max_tok,
            max_chars=max_chars,
            seed=seed,
            structured=opts.structured != "text",
            prefill=LOCAL_PREFILL if kind == "local" else None,
        )
        if kind == "local":
            console.warn(LOCAL_NOTE)
        runner = None
        cache_obj = None
        try:
            if kind != "heuristic":
                cache_obj = cache_for(opts, output)
                runner = build_runner(opts, backend_obj, cache=cache_obj, seed=seed)
                runner.start()
            with console.progress("label", total=sample, unit="records", stats=io.stats) as bar:
                for rec in label_records(recs, labeller, runner):
                    io.writer.write(rec)
                    bar.advance()
        finally:
            if runner is not None:
                runner.close()
            if cache_obj is not None:
                cache_obj.close()
        diag = labeller.diagnostics
        extra["label"] = {
            "rubric": rub.describe(),
            "backend": kind,
            "models": resolved_models,
            "votes": votes,
            "requests_per_record": n_req,
            "temperature": temp,
            "max_tokens": max_tok,
            "max_chars": max_chars,
            "sampling": sampling,
            "diagnostics": diag.to_dict(),
        }
        if kind == "local":
            extra["label"]["note"] = LOCAL_NOTE
        if kind == "heuristic":
            extra["label"]["note"] = (
                "scores from the deterministic heuristic in phitools.llm.heuristic, not from an LLM"
            )
        if runner is not None:
            extra["llm"] = llm_manifest(runner)
        io.writer.manifest_extra.update(extra)
        for line in diag.summary_lines():
            console.info(f"phitools label: {line}")
        if runner is not None:
            console.info(usage_summary(runner, "label"))
        if not diag.discriminates():
            top = max(diag.histogram, key=diag.histogram.get)
            console.warn(
                f"the labeller does not discriminate: {diag.top_share:.0%} of {diag.labelled} labelled records "
                f"scored {top}; check the rubric and use a capable model"
            )
        if diag.failed:
            console.warn(f"{diag.failed} record(s) could not be labelled (label.score is null; see label.error)")


def register(app: typer.Typer) -> None:
    app.command("label")(label)
