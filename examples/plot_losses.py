"""Plot loss against tokens for several `phitools train` runs and write a markdown table.

Each --run is LABEL=RUN_DIR[@TOKEN_OFFSET]: the offset shifts a run's x axis (a grown model continues from
the tokens its parent already saw). Eval loss (held-out) is drawn as a line with markers, train loss as a
faint line (moving average).

    python examples/plot_losses.py --run small=runs/small --run grown=runs/grown@409600 --run scratch=runs/scratch \
        --png docs/grow_experiment.png --md docs/grow_experiment.md --title "grow vs scratch"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_run(path: Path) -> dict:
    lines = [json.loads(l) for l in (path / "metrics.jsonl").read_text().splitlines() if l.strip()]
    man = json.loads((path / "manifest.json").read_text())["train"]
    return {"train": [r for r in lines if r.get("type") == "train"], "eval": [r for r in lines if r.get("type") == "eval"], "manifest": man}


def smooth(xs: list[float], k: int) -> list[float]:
    out, acc = [], []
    for x in xs:
        acc.append(x)
        if len(acc) > k:
            acc.pop(0)
        out.append(sum(acc) / len(acc))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, help="LABEL=RUN_DIR[@TOKEN_OFFSET]")
    ap.add_argument("--png", required=True)
    ap.add_argument("--md", help="write a markdown table here (with --header prepended)")
    ap.add_argument("--header", help="markdown file whose text goes above the table")
    ap.add_argument("--title", default="loss vs tokens")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    rows = []
    for i, spec in enumerate(args.run):
        label, _, rest = spec.partition("=")
        path, _, off = rest.partition("@")
        offset = int(off or 0)
        r = read_run(Path(path))
        color = f"C{i}"
        tr = r["train"]
        if tr:
            ax.plot([offset + x["tokens"] for x in tr], smooth([x["loss"] for x in tr], 10), color=color, alpha=0.35, lw=1)
        ev = r["eval"]
        if ev:
            ax.plot([offset + x["tokens"] for x in ev], [x["eval_loss"] for x in ev], color=color, marker="o", ms=3, lw=1.8, label=f"{label} (eval)")
        m = r["manifest"]
        model = m["model"]
        tokens = tr[-1]["tokens"] if tr else 0
        rows.append({
            "run": label, "shape": f"{model['n_layer']}L d{model['d_model']} h{model['n_head']} mlp{model['d_mlp']}",
            "params": m["params"], "start": offset, "tokens": tokens, "end": offset + tokens,
            "flops": m["flops_per_token"] * tokens, "first_eval": ev[0]["eval_loss"] if ev else None,
            "final_eval": ev[-1]["eval_loss"] if ev else None, "final_train": smooth([x["loss"] for x in tr], 10)[-1] if tr else None,
            "wall_s": (m.get("summary") or {}).get("elapsed_s"), "parent": (m.get("parent") or {}).get("path"),
        })
    ax.set_xlabel("tokens seen (a grown run continues from its parent's count)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png)

    if args.md:
        def f(x, fmt):
            return "-" if x is None else format(x, fmt)

        lines = ["| run | shape | params | tokens trained | tokens (x axis) | train FLOPs | first eval | final eval | final train (avg 10) | train time (s) |",
                 "|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['run']} | {r['shape']} | {r['params'] / 1e6:.2f}M | {r['tokens']:,} | {r['start']:,} -> {r['end']:,} | "
                         f"{r['flops']:.2e} | {f(r['first_eval'], '.4f')} | {f(r['final_eval'], '.4f')} | {f(r['final_train'], '.4f')} | {f(r['wall_s'], '.0f')} |")
        header = Path(args.header).read_text() if args.header else ""
        Path(args.md).write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
