"""How fast is a large answer's digest (eval/_wire.py `digest`), against what sending it would cost?

The answer is Mbpp/255's largest (its canonical solution on (['Dog', 'Cat', 'CatBird', 'Bird', 'Fish'], 77):
1,663,740 tuples of 77 strings), or the first `--fraction` of it. In the same run, alternating, `--repeat`
times: `digest` (what the candidate's process and the judge each do), the wire encoding as JSON that an
ordinary answer gets (encode + dumps, before the 64 MiB limit refuses it), and marshal + sha256 of the whole
value in one call (the floor: no type checks, no streaming, not canonical for sets or mixed numbers). CPU
seconds of this process; ratios against digest.

    .venv/bin/python benchmarks/digest_throughput.py --fraction 0.25 --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import marshal
import statistics
import time
from itertools import combinations_with_replacement


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fraction", type=float, default=0.25, help="of Mbpp/255's largest answer (1.0: all of it)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from phitools.eval import _wire as wire

    full = combinations_with_replacement(["Dog", "Cat", "CatBird", "Bird", "Fish"], 77)
    value = [t for _, t in zip(range(int(1_663_740 * args.fraction)), full)]

    def digest():
        return wire.digest(value, coerce=True)[1]

    def json_wire():
        return len(wire.dumps(wire.encode(value, coerce=True)))

    def marshal_floor():
        b = marshal.dumps(value, 2)
        hashlib.sha256(b).digest()
        return len(b)

    ways = {"digest": digest, "wire JSON": json_wire, "marshal+sha256, one call": marshal_floor}
    times: dict = {k: [] for k in ways}
    sizes = {}
    for _ in range(args.repeat):
        for name, fn in ways.items():
            t = time.process_time()
            sizes[name] = fn()
            times[name].append(time.process_time() - t)
    base = statistics.median(times["digest"])
    print(
        f"{len(value):,} tuples of 77 strings ({args.fraction:g} of Mbpp/255's largest answer); "
        f"median of {args.repeat}, CPU seconds"
    )
    for name in ways:
        m = statistics.median(times[name])
        print(f"  {name:26s} {m:7.2f} s  {sizes[name] / 1e6:8.0f} MB  {m / base:5.2f}x digest's time")


if __name__ == "__main__":
    main()
