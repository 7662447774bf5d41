"""LLM client throughput against a loopback OpenAI-compatible server with a fixed latency.

For each concurrency C the ideal rate is C / latency requests per second; we report the measured rate as a
fraction of it (target >= 0.9 at 64 in flight), for the full client (LLMRunner: ordered results, retries,
rate limiter, SQLite cache) and for a bare httpx loop in the same run (the floor any client pays here), plus
the client's CPU time per request. The server runs in its own process so it does not share our GIL.

    .venv/bin/python benchmarks/llm_throughput.py                 # latency 0.5 s, C = 1, 8, 64
    .venv/bin/python benchmarks/llm_throughput.py --latency 0.1 --concurrency 64 --requests 2000

"bare" is one httpx.AsyncClient with C connections and a semaphore: what a straightforward client gets.
The ceiling on a small machine is CPU: rate <= available cores / (client + server CPU per request).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time

import httpx
import orjson

from phitools.llm import LLMRequest, LLMRunner, RateLimiter, RequestCache
from phitools.llm.openai_compat import OpenAIBackend


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "phitools.llm.testing", "--latency", str(latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    url = proc.stdout.readline().strip()
    return proc, url


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process `pid` (Linux /proc)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def requests(n: int, tag: str):
    for i in range(n):
        yield LLMRequest(
            messages=[{"role": "user", "content": f"{tag} document {i}: def f(x): return x + {i}"}], max_tokens=16
        )


def bench_runner(url: str, c: int, n: int, tag: str, cache_dir: str) -> tuple[float, float]:
    backend = OpenAIBackend(url, "bench", concurrency=c)
    cache = RequestCache(os.path.join(cache_dir, f"{tag}.sqlite"))
    with LLMRunner(backend, concurrency=c, limiter=RateLimiter(), cache=cache) as r:
        list(r.run(requests(min(n, 2 * c), tag + "-warm")))  # connections up
        cpu0, t0 = time.process_time(), time.perf_counter()
        got = sum(1 for res in r.run(requests(n, tag)) if res.ok)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    cache.close()
    assert got == n, f"{n - got} requests failed"
    return wall, cpu


def bench_bare(url: str, c: int, n: int, tag: str) -> tuple[float, float]:
    async def go() -> tuple[float, float]:
        sem = asyncio.Semaphore(c)
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=c, max_keepalive_connections=c)) as client:

            async def one(i: int) -> None:
                body = orjson.dumps(
                    {
                        "model": "bench",
                        "max_tokens": 16,
                        "messages": [{"role": "user", "content": f"{tag} bare {i}: def f(x): return x + {i}"}],
                    }
                )
                async with sem:
                    r = await client.post(
                        url + "/chat/completions", content=body, headers={"Content-Type": "application/json"}
                    )
                    orjson.loads(r.content)["choices"][0]["message"]["content"]

            await asyncio.gather(*(one(i) for i in range(min(n, 2 * c))))
            cpu0, t0 = time.process_time(), time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            return time.perf_counter() - t0, time.process_time() - cpu0

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latency", type=float, default=0.5, help="seconds per answer (LLM calls take 0.5-30 s)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--requests", type=int, default=0, help="per concurrency (default: 8 s of ideal time)")
    args = ap.parse_args()
    proc, url = start_server(args.latency)
    print(f"server {url}, latency {args.latency * 1000:.0f} ms, cpus {os.cpu_count()}")
    print(
        f"{'C':>4} {'N':>6} {'ideal/s':>8} {'runner/s':>9} {'ratio':>6} {'bare/s':>8} {'ratio':>6} {'cpu ms/req':>11} "
        f"{'bare cpu':>9} {'server cpu':>11}"
    )
    try:
        with tempfile.TemporaryDirectory() as d:
            for c in args.concurrency:
                ideal = c / args.latency
                n = args.requests or max(20, int(ideal * 8))
                s0 = proc_cpu(proc.pid)
                wall, cpu = bench_runner(url, c, n, f"c{c}", d)
                scpu = (proc_cpu(proc.pid) - s0) / (n + min(n, 2 * c))
                bwall, bcpu = bench_bare(url, c, n, f"c{c}")
                rate, brate = n / wall, n / bwall
                print(
                    f"{c:>4} {n:>6} {ideal:>8.1f} {rate:>9.1f} {rate / ideal:>6.3f} "
                    f"{brate:>8.1f} {brate / ideal:>6.3f} "
                    f"{cpu / n * 1000:>11.2f} {bcpu / n * 1000:>9.2f} {scpu * 1000:>11.2f}",
                    flush=True,
                )
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
