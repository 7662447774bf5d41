"""Do phitools' HumanEval+ / MBPP+ verdicts agree with evalplus's own? (Agreement, not speed.)

Ordinary samples (each canonical solution, one-edit mutants, an empty body, a syntax error, another task's
solution: phitools.eval.selfcheck) are judged twice: by evalplus's `untrusted_check` (base inputs, then plus
inputs; expected outputs from its `trusted_exec`; MBPP+ inputs through its `mbpp_deserialize_inputs`), run
from a checkout of evalplus, and by phitools' sandbox. Prints how many samples each passes and every sample on
which they differ.

    git clone https://github.com/evalplus/evalplus /tmp/evalplus && pip install psutil
    python benchmarks/evalplus_agreement.py --evalplus-src /tmp/evalplus --data-dir DATA -b mbpp+ --limit 120

evalplus runs the samples with none of phitools' isolation (its own reliability guard only): ordinary
samples only, never untrusted ones.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import sys
import time


def _evalplus(src: str):
    """evalplus's checker pieces, loaded from a source checkout without its heavy package imports."""
    sys.path.insert(0, src)
    from evalplus.eval import PASS, untrusted_check  # needs numpy and psutil
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
    from evalplus.gen.util import trusted_exec

    # evalplus.data imports `datasets`; take just the one function from its file
    tree = ast.parse(open(f"{src}/evalplus/data/mbpp.py").read())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "mbpp_deserialize_inputs")
    ns: dict = {}
    exec(compile(ast.Module([fn], []), "mbpp.py", "exec"), ns)
    return PASS, untrusted_check, MBPP_OUTPUT_NOT_NONE_TASKS, trusted_exec, ns["mbpp_deserialize_inputs"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--evalplus-src", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("-b", "--benchmark", choices=["humaneval+", "mbpp+"], default="mbpp+")
    ap.add_argument("--limit", type=int, default=None, help="the first N tasks")
    ap.add_argument("-j", "--workers", type=int, default=2)
    args = ap.parse_args()
    sys.set_int_max_str_digits(0)

    from phitools.eval import benchmarks as bm
    from phitools.eval.sandbox import Limits, Sandbox, run_checks
    from phitools.eval.selfcheck import ordinary_samples

    PASS, untrusted_check, not_none, trusted_exec, deserialize = _evalplus(args.evalplus_src)
    bench = bm.load_benchmark(args.benchmark, args.data_dir)
    samples = list(ordinary_samples(bench, limit=args.limit))
    fname = "MbppPlus" if args.benchmark == "mbpp+" else "HumanEvalPlus"
    raw = {r["task_id"]: r for r in map(json.loads, gzip.open(f"{args.data_dir}/evalplus/{fname}.jsonl.gz"))}
    dataset = "mbpp" if args.benchmark == "mbpp+" else "humaneval"

    t0 = time.time()
    theirs = []
    oracle: dict = {}
    for s in samples:
        p = raw[s["task_id"]]
        if s["task_id"] not in oracle:
            if dataset == "mbpp":
                p["base_input"] = deserialize(s["task_id"], p["base_input"])
                p["plus_input"] = deserialize(s["task_id"], p["plus_input"])
            nn = dataset == "mbpp" and p["entry_point"] in not_none
            code = p["prompt"] + p["canonical_solution"]
            oracle[s["task_id"]] = [
                trusted_exec(code, p[k], p["entry_point"], record_time=True, output_not_none=nn)
                for k in ("base_input", "plus_input")
            ]
        (b, bt), (q, qt) = oracle[s["task_id"]]
        solution = p["prompt"] + s["completion"]
        base, _ = untrusted_check(
            dataset, solution, p["base_input"], p["entry_point"], b, p["atol"], bt, fast_check=True
        )
        plus, _ = untrusted_check(
            dataset, solution, p["plus_input"], p["entry_point"], q, p["atol"], qt, fast_check=True
        )
        theirs.append(base == plus == PASS)
    t_theirs = time.time() - t0

    t0 = time.time()
    byid = bench.by_id()
    lim = Limits(cpu=bm.default_cpu_limit(args.benchmark))
    with Sandbox(workers=args.workers) as sb:
        ours = run_checks(sb, [byid[s["task_id"]].job(s["completion"], lim) for s in samples], workers=args.workers)
    t_ours = time.time() - t0

    diff = [
        (s["task_id"], s["kind"], t, o.status, o.reason[:160])
        for s, t, o in zip(samples, theirs, ours)
        if t != o.passed
    ]
    print(
        f"{args.benchmark}: {len(samples)} samples over {len({s['task_id'] for s in samples})} tasks; "
        f"evalplus passes {sum(theirs)} ({t_theirs:.0f} s), phitools {sum(o.passed for o in ours)} "
        f"({t_ours:.0f} s, {args.workers} workers); {len(diff)} differ"
    )
    for d in diff:
        print("  ", d)


if __name__ == "__main__":
    main()
