"""Print the quickstart's summary from the manifests and metrics it left behind (stderr by the caller)."""

import json
import sys
from pathlib import Path

run, seconds = Path(sys.argv[1]), int(sys.argv[2])


def manifest(name):
    p = run / name / "manifest.json"
    return json.loads(p.read_text()) if p.exists() else {}


def last_metric(run_dir, key):
    p = run / run_dir / "metrics.jsonl"
    vals = [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []
    vals = [v for v in vals if v.get(key) is not None]
    return vals[-1][key] if vals else None


def fmt(x):
    return f"{x:.3f}" if isinstance(x, (int, float)) else "?"


corpus, filtered, clean, tok = manifest("corpus"), manifest("filtered"), manifest("clean"), manifest("tok")
summary = (
    json.loads((run / "results" / "summary.json").read_text()) if (run / "results" / "summary.json").exists() else {}
)
pass1 = summary.get("pass_at_k", {}).get("pass@1")
lines = [
    "",
    f"phitools quickstart finished in {seconds // 60} min {seconds % 60} s; everything is under {run}/",
    f"  files ingested        {corpus.get('stats', {}).get('records_out', '?'):,}" if corpus else "",
    f"  kept by classifier    {filtered.get('stats', {}).get('records_out', '?')}",
    f"  after decontam        {clean.get('stats', {}).get('records_out', '?')}",
    f"  tokens                {tok.get('tokens', 0):,} (vocab {tok.get('vocab_size')}, seq_len {tok.get('seq_len')})",
    (
        f"  tiny model loss       train {fmt(last_metric('runs/tiny', 'loss'))}, "
        f"held-out {fmt(last_metric('runs/tiny', 'eval_loss'))}"
    ),
    (
        f"  grown model loss      train {fmt(last_metric('runs/grown', 'loss'))}, "
        f"held-out {fmt(last_metric('runs/grown', 'eval_loss'))}"
    ),
    (
        f"  HumanEval pass@1      {pass1} on {summary.get('tasks', '?')} problems "
        "(a tiny model scores 0; the pipeline is the point)"
    ),
    f"  results               {run}/results/",
]
print("\n".join(x for x in lines if x))
