"""Throughput of `phitools classify apply` against a plain scikit-learn pipeline, in the same run.

    .venv/bin/python benchmarks/classify_throughput.py                 # stdlib corpus, hash features
    .venv/bin/python benchmarks/classify_throughput.py --model small   # also the model: path on a random 'small' Phi

What it does:
  1. corpus: `phitools ingest` of this Python's standard library (site-packages excluded), or --corpus DIR;
  2. labels: `phitools label --sample N --backend heuristic` (offline, deterministic);
  3. ours: `phitools classify train --features hash --estimator lgbm`, then `phitools classify apply` as a real
     subprocess (start-up, reading, scoring, writing .jsonl.zst shards and manifest all included), with
     --workers 1 and --workers N, for --score-only and for the issue's `--keep-top 0.3 --rejects`;
  4. baseline: one process, scikit-learn HashingVectorizer (default word analyzer, 2^18 features) + a LightGBM
     booster trained on the same labels (200 rounds, num_threads=1), reading with RecordReader and writing
     the same records with a `quality` field through RecordWriter, run as a subprocess like ours (start-up
     and imports included on both sides);
  5. scoring only: featurise + predict on texts already in memory, one process each, CPU seconds (the
     per-core cost of the two feature pipelines without start-up and I/O).
  Tokens are counted as UTF-8 bytes of `text` / 4. Timings are wall-clock, best of --repeat runs; CPU seconds
  (user + system, workers included) are printed too, as they suffer less when other processes share the
  machine. The load average is printed so a reader can judge the noise.
  6. --model PRESET: a randomly initialised Phi of that preset with a BPE tokenizer trained here is saved as a
     checkpoint, a classifier is trained on `model:` features, and apply's docs/s and model tokens/s (tokens
     actually run through the model, after truncation to --max-tokens) are measured on --model-docs records.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def phitools(*args: str, quiet: bool = True, cpu: bool = False):
    """Run the CLI as a subprocess; returns wall seconds (and CPU seconds of it and its workers with cpu=True)."""
    cmd = [sys.executable, "-m", "phitools", *map(str, args)] + (["--quiet"] if quiet else [])
    c0 = _cpu(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr.decode(errors='replace')}")
    return (dt, _cpu(resource.RUSAGE_CHILDREN) - c0) if cpu else dt


def corpus_size(corpus: Path) -> tuple[int, int]:
    from phitools.shards import read_records

    n = b = 0
    for r in read_records([corpus]):
        n += 1
        b += len(r["text"].encode("utf-8", "surrogatepass"))
    return n, b


BASELINE_BATCH = 256


def train_baseline(labeled: Path, model_txt: Path) -> None:
    """Fit the baseline's LightGBM on HashingVectorizer features of the same labels; save LightGBM's text model."""
    import lightgbm as lgb
    import numpy as np
    from sklearn.feature_extraction.text import HashingVectorizer

    from phitools.shards import read_records

    recs = [r for r in read_records([labeled]) if (r.get("label") or {}).get("score") is not None]
    X = HashingVectorizer(n_features=1 << 18).transform([r["text"] for r in recs])
    y = np.array([r["label"]["score"] for r in recs], float)
    booster = lgb.train(
        {
            "objective": "regression",
            "learning_rate": 0.05,
            "num_leaves": 15,
            "min_data_in_leaf": 5,
            "verbosity": -1,
            "num_threads": 1,
            "seed": 0,
        },
        lgb.Dataset(X, label=y),
        num_boost_round=200,
    )
    booster.save_model(str(model_txt))


def run_baseline(corpus: str, model_txt: str, out: str) -> None:
    """The baseline as a user would run it: one process, read -> HashingVectorizer -> LightGBM -> write."""
    import lightgbm as lgb
    from sklearn.feature_extraction.text import HashingVectorizer

    from phitools.shards import RecordReader, RecordWriter

    vec = HashingVectorizer(n_features=1 << 18)
    booster = lgb.Booster(model_file=model_txt)
    with RecordWriter(out, tool="baseline") as w:
        batch: list = []

        def flush() -> None:
            scores = booster.predict(vec.transform([r["text"] for r in batch]), num_threads=1)
            for r, s in zip(batch, scores.tolist()):
                r["quality"] = {"score": round(s, 6), "classifier": "sklearn-baseline"}
                w.write(r)
            batch.clear()

        for r in RecordReader([corpus], required=("text",)):
            batch.append(r)
            if len(batch) >= BASELINE_BATCH:
                flush()
        if batch:
            flush()


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, children included) of a subprocess."""
    c0 = _cpu(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr.decode(errors='replace')}")
    return dt, _cpu(resource.RUSAGE_CHILDREN) - c0


def scoring_only(corpus: Path, clf: Path, model_txt: Path, repeat: int) -> dict:
    """Featurise + predict on texts already in memory, one process each: the per-core cost without I/O."""
    import lightgbm as lgb
    from sklearn.feature_extraction.text import HashingVectorizer

    from phitools.shards import read_records
    from phitools.steps.classify.apply import batches
    from phitools.steps.classify.saved import load_classifier

    recs = list(read_records([corpus]))
    ours = load_classifier(clf)
    vec = HashingVectorizer(n_features=1 << 18)
    booster = lgb.Booster(model_file=str(model_txt))
    ours_batches = [[r["text"] for r in b] for b in batches(iter(recs))]
    base_batches = [[r["text"] for r in recs[i : i + BASELINE_BATCH]] for i in range(0, len(recs), BASELINE_BATCH)]
    out = {"ours": [], "baseline": []}
    for _ in range(repeat):  # interleaved, so both see the same machine
        c0 = _cpu(resource.RUSAGE_SELF)
        for b in ours_batches:
            ours.score(b)
        out["ours"].append(_cpu(resource.RUSAGE_SELF) - c0)
        c0 = _cpu(resource.RUSAGE_SELF)
        for b in base_batches:
            booster.predict(vec.transform(b), num_threads=1)
        out["baseline"].append(_cpu(resource.RUSAGE_SELF) - c0)
    return {k: min(v) for k, v in out.items()}


def model_path(tmp: Path, corpus: Path, labeled: Path, preset: str, docs: int, max_tokens: int) -> dict:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from phitools.model.checkpoint import save_checkpoint
    from phitools.model.phi import Phi, preset_config
    from phitools.shards import RecordWriter, read_records

    texts = [r["text"] for _, r in zip(range(300), read_records([corpus]))]
    cfg = preset_config(preset)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=min(cfg.vocab_size, 4096),
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tok_path = tmp / "tokenizer.json"
    tok.save(str(tok_path))
    torch.manual_seed(0)
    ckpt = tmp / f"ckpt-{preset}"
    save_checkpoint(
        ckpt,
        Phi(cfg),
        cfg,
        {"note": "random init, benchmark only"},
        extra_files={"tokenizer.json": tok_path},
        overwrite=True,
    )
    sub = tmp / "model-docs.jsonl"
    with RecordWriter(sub, tool="bench") as w:
        for _, r in zip(range(docs), read_records([corpus])):
            w.write(r)
    clf = tmp / f"clf-model-{preset}"
    train_s = phitools(
        "classify",
        "train",
        labeled,
        "--features",
        f"model:{ckpt}",
        "--estimator",
        "lgbm",
        "--folds",
        "2",
        "--max-tokens",
        max_tokens,
        "-o",
        clf,
    )
    ids = tok.encode_batch([r["text"] for r in read_records([sub])])
    ntok = sum(min(len(e.ids), max_tokens, cfg.max_seq_len) for e in ids)
    apply_s, apply_cpu = phitools(
        "classify", "apply", clf, sub, "--score-only", "-o", tmp / "model-out.jsonl.zst", cpu=True
    )
    return {
        "preset": preset,
        "params_M": round(sum(p.numel() for p in Phi(cfg).parameters()) / 1e6, 1),
        "docs": docs,
        "model_tokens": ntok,
        "max_tokens": max_tokens,
        "apply_seconds": round(apply_s, 2),
        "docs_per_s": round(docs / apply_s, 1),
        "model_tokens_per_s": round(ntok / apply_s),
        "apply_cpu_seconds": round(apply_cpu, 2),
        "model_tokens_per_cpu_s": round(ntok / apply_cpu),
        "train_seconds": round(train_s, 1),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--run-baseline":
        run_baseline(*sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, help="records to classify (default: ingest the standard library)")
    ap.add_argument("--labels", type=int, default=200, help="records to label (heuristic backend) for training")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument(
        "--model", default=None, help="also measure the model: path with a random Phi of this preset (e.g. small)"
    )
    ap.add_argument("--model-docs", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=512)
    args = ap.parse_args()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="classify-bench-") as d:
        tmp = Path(d)
        corpus = args.corpus
        if corpus is None:
            corpus = tmp / "corpus"
            stdlib = sysconfig.get_paths()["stdlib"]
            phitools("ingest", stdlib, "--exclude", "site-packages/*", "--exclude", "*/site-packages/*", "-o", corpus)
        n_docs, n_bytes = corpus_size(corpus)
        tokens = n_bytes / 4
        labeled = tmp / "labeled"
        phitools("label", corpus, "--sample", args.labels, "--backend", "heuristic", "-o", labeled)
        clf = tmp / "clf"
        train_s = phitools("classify", "train", labeled, "--features", "hash", "--estimator", "lgbm", "-o", clf)
        rows = []

        def row(name: str, wall: float, cpu: float) -> None:
            rows.append(
                {
                    "pipeline": name,
                    "seconds": round(wall, 3),
                    "cpu_seconds": round(cpu, 3),
                    "docs_per_s": round(n_docs / wall),
                    "Mtokens_per_s": round(tokens / wall / 1e6, 3),
                    "Mtokens_per_cpu_s": round(tokens / cpu / 1e6, 3),
                }
            )

        def ours(name: str, *extra: str) -> None:
            runs = [
                phitools("classify", "apply", clf, corpus, "-o", tmp / "out", *extra, cpu=True)
                for _ in range(args.repeat)
            ]
            row(name, min(w for w, _ in runs), min(c for _, c in runs))

        ours("phitools --score-only --workers 1", "--score-only", "--workers", "1")
        ours(f"phitools --score-only --workers {args.workers}", "--score-only", "--workers", str(args.workers))
        ours(
            f"phitools --keep-top 0.3 --rejects --workers {args.workers}",
            "--keep-top",
            "0.3",
            "--rejects",
            str(tmp / "rej.jsonl.zst"),
            "--workers",
            str(args.workers),
        )
        model_txt = tmp / "baseline-lgbm.txt"
        train_baseline(labeled, model_txt)
        runs = [
            timed([sys.executable, __file__, "--run-baseline", str(corpus), str(model_txt), str(tmp / "baseline-out")])
            for _ in range(args.repeat)
        ]
        row("sklearn HashingVectorizer + LightGBM (1 process)", min(w for w, _ in runs), min(c for _, c in runs))
        base = rows[-1]["seconds"]
        for r in rows:
            r["vs_baseline"] = round(base / r["seconds"], 2)
        print(
            f"corpus: {n_docs} docs, {n_bytes / 1e6:.1f} MB text, {tokens / 1e6:.2f}M tokens (bytes/4); "
            f"classifier trained on {args.labels} heuristic labels in {train_s:.1f}s; cores: {os.cpu_count()}"
        )
        print(
            f"{'pipeline':58s} {'wall s':>7s} {'docs/s':>7s} {'Mtok/s':>7s} {'x base':>7s} "
            f"{'cpu s':>7s} {'Mtok/cpu-s':>10s}"
        )
        for r in rows:
            print(
                f"{r['pipeline']:58s} {r['seconds']:7.2f} {r['docs_per_s']:7d} {r['Mtokens_per_s']:7.2f} "
                f"{r['vs_baseline']:7.2f} "
                f"{r['cpu_seconds']:7.2f} {r['Mtokens_per_cpu_s']:10.2f}"
            )
        core = scoring_only(corpus, clf, model_txt, args.repeat)
        print(
            f"scoring only, texts in memory, 1 process: phitools {n_bytes / core['ours'] / 1e6:.1f} MB/s "
            f"({tokens / core['ours'] / 1e6:.2f}M tokens per CPU-second), "
            f"sklearn {n_bytes / core['baseline'] / 1e6:.1f} MB/s "
            f"({tokens / core['baseline'] / 1e6:.2f}M); ratio {core['baseline'] / core['ours']:.2f}"
        )
        print(f"load average before/after: {load0} / {os.getloadavg()}")
        result = {
            "corpus_docs": n_docs,
            "corpus_bytes": n_bytes,
            "rows": rows,
            "scoring_only_cpu_seconds": core,
            "load_average": [load0, os.getloadavg()],
        }
        if args.model:
            m = model_path(tmp, corpus, labeled, args.model, args.model_docs, args.max_tokens)
            print(
                f"model:{m['preset']} ({m['params_M']}M params, random init, {m['threads']} torch threads, CPU): "
                f"{m['docs']} docs, {m['model_tokens']} model tokens (max {m['max_tokens']}/doc) "
                f"in {m['apply_seconds']}s -> "
                f"{m['docs_per_s']} docs/s, {m['model_tokens_per_s']} model tokens/s "
                f"({m['model_tokens_per_cpu_s']} per CPU-second; "
                f"start-up and model load included)"
            )
            result["model"] = m
        print(json.dumps(result))


if __name__ == "__main__":
    main()
