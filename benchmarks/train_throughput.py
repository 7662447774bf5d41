"""Training throughput: phitools' Trainer against a plain PyTorch loop, same model, batch and sequence length.

Both sides build the same Phi model (same seed), read (seq_len + 1)-token windows from the same memory-mapped
token file, run forward + cross-entropy + backward + grad-norm clipping + AdamW, and are timed over the same
number of steps after the same warmup. Rounds alternate (plain, phitools, plain, phitools, ...) so load from
other processes hits both alike; the ratio reported is the median of per-round ratios, both in wall-clock
tokens/s and in tokens per CPU-second of this process (`time.process_time`: far less sensitive to other jobs
on a shared machine; meaningful with --threads 1 on CPU).

    phitools:steps  Trainer.train_step() in a loop: sampler, memmap reads, accumulation, clipping, NaN check, schedule
    phitools:fit    Trainer.fit(): the above plus the metrics.jsonl line per step and the final eval + checkpoint

Usage:
    python benchmarks/train_throughput.py                       # tiny preset, seq 128, batch 8, CPU
    python benchmarks/train_throughput.py --preset small --seq-len 256 --rounds 5
    python benchmarks/train_throughput.py --preset phi-1-small --seq-len 2048 --batch-size 8 --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def make_tokens(d: Path, vocab: int, n_tokens: int, seed: int = 0) -> Path:
    """A token directory of random ids (throughput does not depend on the text)."""
    from phitools.shards import write_manifest
    from phitools.shards.tokens import FORMAT, dtype_for_vocab

    d.mkdir(parents=True, exist_ok=True)
    dt = dtype_for_vocab(vocab)
    ids = np.random.default_rng(seed).integers(0, vocab, n_tokens).astype(dt)
    ids.tofile(d / "tokens-00000.bin")
    (d / "tokenizer.json").write_text("{}")
    shards = [{"path": "tokens-00000.bin", "tokens": n_tokens, "sha256": "benchmark"}]
    write_manifest(
        d / "manifest.json",
        tool="benchmark",
        argv=[],
        outputs=shards,
        extra={
            "format": FORMAT,
            "dtype": dt.name,
            "vocab_size": vocab,
            "eot_id": 0,
            "seq_len": 0,
            "packed": False,
            "tokens": n_tokens,
            "documents": 1,
            "shards": shards,
            "tokenizer_sha256": "benchmark",
        },
    )
    return d


def plain_loop(args, tok_dir: Path, steps: int, warmup: int) -> float:
    """nanoGPT-style loop; returns tokens/s over `steps` after `warmup`."""
    from phitools.model.phi import Phi, preset_config

    torch.manual_seed(args.seed)
    dev = torch.device(args.device)
    model = Phi(preset_config(args.preset, vocab_size=args.vocab)).to(dev)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and not n.startswith("wte")]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or n.startswith("wte")]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.95),
        **({"fused": True} if dev.type == "cuda" else {"foreach": True}),
    )
    data = np.memmap(
        tok_dir / "tokens-00000.bin", dtype=np.dtype("<u2") if args.vocab <= 65536 else np.dtype("<u4"), mode="r"
    )
    rng = np.random.default_rng(args.seed)
    B, T = args.batch_size, args.seq_len
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else None
    t0 = c0 = None
    for i in range(warmup + steps):
        if i == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
        starts = rng.integers(0, len(data) - T - 1, B)
        xy = torch.from_numpy(np.stack([data[s : s + T + 1].astype(np.int64) for s in starts])).to(dev)
        x, y = xy[:, :-1], xy[:, 1:]
        if amp:
            with amp:
                logits = model(x)
        else:
            logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return steps * B * T / (time.perf_counter() - t0), steps * B * T / (time.process_time() - c0)


def _trainer(args, tok_dir: Path, out: Path, max_steps: int):
    from phitools.train.config import resolve
    from phitools.train.loop import Trainer

    cfg = resolve(
        {
            "data": str(tok_dir),
            "output": str(out),
            "preset": args.preset,
            "model": {"vocab_size": args.vocab},
            "seq_len": args.seq_len,
            "batch_size": args.batch_size,
            "max_steps": max_steps,
            "seed": args.seed,
            "device": args.device,
            "eval_every": 0,
            "eval_batches": 1,
            "save_every": 0,
            "eval_fraction": 0.001,
            "compile": args.compile,
        }
    )
    return Trainer(cfg)


def phitools_steps(args, tok_dir: Path, steps: int, warmup: int) -> float:
    with tempfile.TemporaryDirectory() as td:
        t = _trainer(args, tok_dir, Path(td) / "run", warmup + steps)
        for _ in range(warmup):
            t.train_step()
        if t.device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            t.train_step()  # ends with .item(): synchronised
        return steps * t.tokens_per_step / (time.perf_counter() - t0), steps * t.tokens_per_step / (
            time.process_time() - c0
        )


def phitools_fit(args, tok_dir: Path, steps: int) -> float:
    """Whole fit() wall time (per-step metrics, final eval and checkpoint included)."""
    with tempfile.TemporaryDirectory() as td:
        t = _trainer(args, tok_dir, Path(td) / "run", steps)
        t0, c0 = time.perf_counter(), time.process_time()
        t.fit()
        return steps * t.tokens_per_step / (time.perf_counter() - t0), steps * t.tokens_per_step / (
            time.process_time() - c0
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as td:
        tok = make_tokens(
            Path(td) / "tok",
            args.vocab,
            max(200_000, 4 * args.batch_size * (args.seq_len + 1) * (args.steps + args.warmup)),
        )
        plain, steps, fit = [], [], []  # (wall tok/s, CPU tok/s) per round
        for r in range(args.rounds):
            plain.append(plain_loop(args, tok, args.steps, args.warmup))
            steps.append(phitools_steps(args, tok, args.steps, args.warmup))
            fit.append(phitools_fit(args, tok, args.steps + args.warmup))
            print(
                f"round {r + 1}: wall tok/s plain {plain[-1][0]:,.0f}, "
                f"phitools steps {steps[-1][0]:,.0f} ({steps[-1][0] / plain[-1][0]:.3f}x), "
                f"fit {fit[-1][0]:,.0f} ({fit[-1][0] / plain[-1][0]:.3f}x) | "
                f"per CPU-second: plain {plain[-1][1]:,.0f}, "
                f"steps {steps[-1][1]:,.0f} ({steps[-1][1] / plain[-1][1]:.3f}x), "
                f"fit {fit[-1][1]:,.0f} ({fit[-1][1] / plain[-1][1]:.3f}x)",
                file=sys.stderr,
            )

    def med_ratio(a, b, k):
        return statistics.median(x[k] / y[k] for x, y in zip(a, b))

    res = {
        "preset": args.preset,
        "seq_len": args.seq_len,
        "batch_size": args.batch_size,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "rounds": args.rounds,
        "plain_tok_s": statistics.median(x[0] for x in plain),
        "phitools_steps_tok_s": statistics.median(x[0] for x in steps),
        "phitools_fit_tok_s": statistics.median(x[0] for x in fit),
        "ratio_steps": med_ratio(steps, plain, 0),
        "ratio_fit": med_ratio(fit, plain, 0),
        "ratio_steps_cpu": med_ratio(steps, plain, 1),
        "ratio_fit_cpu": med_ratio(fit, plain, 1),
    }
    from phitools.model.phi import Phi, preset_config
    from phitools.train.loop import device_peak_flops

    with torch.device("meta"):
        fpt = Phi(preset_config(args.preset, vocab_size=args.vocab)).flops_per_token(args.seq_len)
    peak = device_peak_flops(
        torch.device(args.device), torch.bfloat16 if args.device.startswith("cuda") else torch.float32, None
    )
    res["flops_per_token"] = fpt
    if peak:  # MFU against the device's dense bf16 peak (known GPUs only; see docs/train.md)
        res.update(
            peak_flops=peak,
            device_name=torch.cuda.get_device_name(),
            mfu_plain=fpt * res["plain_tok_s"] / peak,
            mfu_phitools_steps=fpt * res["phitools_steps_tok_s"] / peak,
            mfu_phitools_fit=fpt * res["phitools_fit_tok_s"] / peak,
        )
    print(json.dumps(res))


if __name__ == "__main__":
    main()
