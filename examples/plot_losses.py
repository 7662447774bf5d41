"""Plot loss against tokens for several `phitools train` runs and write a markdown table.

Each --run is LABEL=RUN_DIR[@PARENT_LABEL]: a run with a parent (a grown model) continues the parent's x axes,
so its tokens and training FLOPs count what its lineage spent. Two panels: loss vs tokens and loss vs training
FLOPs (flops_per_token x tokens, summed over the lineage). Eval loss (held-out) is a line with markers, train
loss a faint line (moving average).

    python examples/plot_losses.py --run small=runs/small --run grown=runs/grown@small --run scratch=runs/scratch \
        --png docs/grow_experiment.png --md docs/grow_experiment.md --title "grow vs scratch"
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_run(path: Path) -> dict:
    lines = [json.loads(ln) for ln in (path / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    man = json.loads((path / "manifest.json").read_text())["train"]
    return {
        "train": [r for r in lines if r.get("type") == "train"],
        "eval": [r for r in lines if r.get("type") == "eval"],
        "manifest": man,
    }


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
    ap.add_argument("--run", action="append", required=True, help="LABEL=RUN_DIR[@PARENT_LABEL]")
    ap.add_argument("--png", required=True)
    ap.add_argument("--md", help="write a markdown table here (with --header prepended)")
    ap.add_argument("--header", help="markdown file whose text goes above the table")
    ap.add_argument("--title", default="loss vs tokens")
    args = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, axf) = plt.subplots(1, 2, figsize=(13, 5), dpi=110, sharey=True)
    rows, ends = [], {}
    for i, spec in enumerate(args.run):
        label, _, rest = spec.partition("=")
        path, _, parent = rest.partition("@")
        if parent and parent not in ends:
            raise SystemExit(f"--run {spec}: parent {parent!r} must be listed before it")
        tok0, flop0 = ends.get(parent, (0, 0.0)) if parent else (0, 0.0)
        r = read_run(Path(path))
        m = r["manifest"]
        fpt = m["flops_per_token"]
        color = f"C{i}"
        tr, ev = r["train"], r["eval"]
        if tr:
            ys = smooth([x["loss"] for x in tr], 10)
            ax.plot([tok0 + x["tokens"] for x in tr], ys, color=color, alpha=0.3, lw=1)
            axf.plot([flop0 + fpt * x["tokens"] for x in tr], ys, color=color, alpha=0.3, lw=1)
        if ev:
            ey = [x["eval_loss"] for x in ev]
            ax.plot(
                [tok0 + x["tokens"] for x in ev], ey, color=color, marker="o", ms=3, lw=1.8, label=f"{label} (eval)"
            )
            fx = [
                (flop0 + fpt * x["tokens"], y) for x, y in zip(ev, ey) if flop0 + fpt * x["tokens"] > 0
            ]  # log axis: no 0
            axf.plot(
                [a for a, _ in fx], [b for _, b in fx], color=color, marker="o", ms=3, lw=1.8, label=f"{label} (eval)"
            )
        model = m["model"]
        tokens = tr[-1]["tokens"] if tr else 0
        ends[label] = (tok0 + tokens, flop0 + fpt * tokens)
        rows.append(
            {
                "run": label,
                "shape": f"{model['n_layer']}L d{model['d_model']} h{model['n_head']} mlp{model['d_mlp']}",
                "params": m["params"],
                "start": tok0,
                "tokens": tokens,
                "end": tok0 + tokens,
                "flops": fpt * tokens,
                "lineage_flops": flop0 + fpt * tokens,
                "first_eval": ev[0]["eval_loss"] if ev else None,
                "final_eval": ev[-1]["eval_loss"] if ev else None,
                "final_train": smooth([x["loss"] for x in tr], 10)[-1] if tr else None,
                "wall_s": (m.get("summary") or {}).get("elapsed_s"),
            }
        )
    ax.set_xlabel("tokens seen (a grown run continues its parent's count)")
    axf.set_xlabel("training FLOPs (6N + attention, summed over the lineage)")
    axf.set_xscale("log")
    ax.set_ylabel("loss (nats/token)")
    for a in (ax, axf):
        a.grid(alpha=0.3)
    ax.legend()
    fig.suptitle(args.title)
    fig.tight_layout()
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png)

    if args.md:

        def f(x, fmt):
            return "-" if x is None else format(x, fmt)

        lines = [
            "| run | shape | params | tokens trained | tokens (lineage) | train FLOPs (lineage) | "
            "first eval | final eval | final train (avg 10) | train time (s) |",
            "|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['run']} | {r['shape']} | {r['params'] / 1e6:.2f}M | {r['tokens']:,} | "
                f"{r['start']:,} -> {r['end']:,} | "
                f"{r['lineage_flops']:.2e} | {f(r['first_eval'], '.4f')} | {f(r['final_eval'], '.4f')} | "
                f"{f(r['final_train'], '.4f')} | {f(r['wall_s'], '.0f')} |"
            )
        header = Path(args.header).read_text() if args.header else ""
        Path(args.md).write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
