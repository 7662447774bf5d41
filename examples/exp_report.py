"""Tables and plots for the small-scale reproductions of the phi-1 recipe's claims (docs/results.md).

Reads what the experiment scripts left in their work directory and writes a PNG and a markdown fragment.
It computes nothing the tools did not measure: every number comes from a manifest, metrics.jsonl,
perplexity.json or `phitools stats` report in WORKDIR.

    python examples/exp_report.py filtering  WORKDIR --png docs/exp_filtering.png  --md docs/exp_filtering.md
    python examples/exp_report.py randomness WORKDIR --png docs/exp_randomness.png --md docs/exp_randomness.md
    python examples/exp_report.py grow GROW_DIR --long WORKDIR --png docs/exp_grow.png --md docs/exp_grow.md
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
from pathlib import Path


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _metrics(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def _fmt(x: float | None, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---- filtering -------------------------------------------------------------------------------------------
def filtering(w: Path, png: Path, md: Path, wall: str | None, command: str | None) -> None:
    """Probe loss (HumanEval canonical solutions, MBPP reference code) of filtered vs unfiltered runs."""
    tok = {arm: _json(w / f"tok-{arm}" / "manifest.json") for arm in ("unfiltered", "filtered")}
    clf = _json(w / "clf" / "report.json")["evaluation"]["metrics"]
    apply = _json(w / "filtered" / "manifest.json")["classify"]["result"]
    probes = sorted(p.name[len("tok-") :] for p in w.glob("tok-*") if p.name[len("tok-") :] not in tok)
    probe_tokens = {p: _json(w / f"tok-{p}" / "manifest.json")["tokens"] for p in probes}

    runs = {}  # (arm, seed) -> {"steps": {step: {probe: loss}}, "tokens_per_step", "eval_loss", ...}
    for run in sorted((w / "runs").glob("*-s*")):
        arm, seed = run.name.rsplit("-s", 1)
        if not (run / "metrics.jsonl").exists():
            continue
        m = _metrics(run)
        man = _json(run / "manifest.json")["train"]
        per_step = man["config"]["batch_size"] * man["config"]["seq_len"] if "config" in man else None
        ev = [r for r in m if r.get("type") == "eval"]
        tr = [r for r in m if r.get("type") == "train"]
        steps: dict[int, dict[str, float]] = {}
        for pj in sorted((w / "probe-loss" / run.name).glob("step-*/perplexity.json")):
            mo = re.match(r"step-0*(\d+)-(.+)", pj.parent.name)
            steps.setdefault(int(mo.group(1)), {})[mo.group(2)] = _json(pj)["loss"]
        runs[(arm, int(seed))] = {
            "steps": steps,
            "per_step": per_step,
            "eval": ev,
            "train": tr,
            "elapsed": tr[-1]["elapsed_s"] if tr else None,
        }

    plt = _plt()
    fig, axes = plt.subplots(1, max(1, len(probes)), figsize=(6.5 * max(1, len(probes)), 4.6), dpi=110, squeeze=False)
    colors = {"unfiltered": "C0", "filtered": "C3"}
    styles = ["-", "--", ":", "-."]
    for ax, probe in zip(axes[0], probes):
        for (arm, seed), r in sorted(runs.items()):
            pts = sorted((s * (r["per_step"] or 1), v[probe]) for s, v in r["steps"].items() if probe in v)
            if pts:
                ax.plot(
                    [p[0] / 1e6 for p in pts],
                    [p[1] for p in pts],
                    styles[(seed - 1) % 4],
                    marker="o",
                    color=colors.get(arm, "C7"),
                    label=f"{arm} (seed {seed})",
                )
        ax.set_title(f"loss on {probe} ({probe_tokens[probe]:,} tokens)")
        ax.set_xlabel("training tokens (millions)")
        ax.set_ylabel("loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("classifier-filtered vs unfiltered stdlib code: same model, same token budget")
    fig.tight_layout()
    fig.savefig(png)

    out = [
        f"Corpus: {tok['unfiltered']['documents']:,} stdlib .py files, {tok['unfiltered']['tokens']:,} tokens. "
        f"Classifier (lgbm on hashed n-grams, heuristic labels, {clf['n']} labelled files): 5-fold held-out "
        f"Spearman vs labeller {clf['spearman']:.3f}, ROC-AUC {clf['roc_auc']:.3f}. "
        f"`--keep-top` kept {apply['kept']:,} of {apply['scored']:,} files (score cut {apply['cut']:.2f}): "
        f"{tok['filtered']['tokens']:,} tokens "
        f"({tok['filtered']['tokens'] / tok['unfiltered']['tokens']:.0%} of the tokens).",
        "",
        f"![probe loss vs tokens]({png.name})",
        "",
    ]
    head = (
        ["arm", "seed", "steps", "tokens trained", "own held-out loss"]
        + [f"{p} loss" for p in probes]
        + ["train time (s)"]
    )
    out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    finals: dict[str, dict[str, list[float]]] = {}
    for (arm, seed), r in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0] != "unfiltered")):
        if not r["steps"]:
            continue
        last = max(r["steps"])
        vals = r["steps"][last]
        for p in probes:
            if p in vals:
                finals.setdefault(arm, {}).setdefault(p, []).append(vals[p])
        row = [
            arm,
            str(seed),
            str(last),
            f"{last * (r['per_step'] or 0):,}",
            _fmt(r["eval"][-1]["eval_loss"] if r["eval"] else None),
        ]
        row += [_fmt(vals.get(p)) for p in probes] + [_fmt(r["elapsed"], 0)]
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    if "filtered" in finals and "unfiltered" in finals:
        out += [
            "Final-checkpoint probe loss, mean over seeds (spread = max - min over seeds):",
            "",
            "| probe | unfiltered | filtered | filtered - unfiltered | seed spread (unf / filt) |",
            "|---|---|---|---|---|",
        ]
        for p in probes:
            u, f = finals["unfiltered"].get(p, []), finals["filtered"].get(p, [])
            if u and f:
                out.append(
                    f"| {p} | {statistics.mean(u):.3f} | {statistics.mean(f):.3f} | "
                    f"{statistics.mean(f) - statistics.mean(u):+.3f} | {max(u) - min(u):.3f} / {max(f) - min(f):.3f} |"
                )
        out.append("")
    out.append(
        '"own held-out loss" is each run\'s loss on the last 1% of its own token stream: the two arms hold out '
        "different text, so that column is not comparable across arms; the probe columns are."
    )
    if command:
        out += ["", f"Command: `{command}`" + (f" (wall time {wall} s on this shared 2-core CPU)." if wall else "")]
    md.write_text("\n".join(out) + "\n")


# ---- randomness ------------------------------------------------------------------------------------------
def randomness(w: Path, png: Path, md: Path, wall: str | None, command: str | None) -> None:
    """Diversity (distinct-n, repeated openings, near-duplicate rate) of random-spec vs fixed-prompt synth."""
    rows = []
    for rep in sorted(w.glob("stats-*.json")):
        kind, arm = rep.stem[len("stats-") :].rsplit("-", 1)
        s = _json(rep)
        man = _json(w / f"synth-{kind}-{arm}.jsonl.manifest.json")
        prompts = w / f"prompts-{kind}-{arm}.jsonl"
        n_prompts = (
            len({json.dumps(json.loads(ln)["messages"]) for ln in prompts.read_text().splitlines()})
            if prompts.exists()
            else None
        )
        rows.append(
            {
                "kind": kind,
                "arm": arm,
                "records": s["records"],
                "words": s["words"]["mean_per_record"],
                "d1": s["distinct"]["distinct_1"],
                "d2": s["distinct"]["distinct_2"],
                "d3": s["distinct"]["distinct_3"],
                "open": s["openings"]["repeated_opening_rate"],
                "nd": s["near_duplicates"]["rate"],
                "clusters": s["near_duplicates"]["clusters"],
                "prompts": n_prompts,
                "failed": man["synth"]["failed_total"],
                "truncated": man["synth"]["truncated"],
            }
        )
    kinds = sorted({r["kind"] for r in rows})
    order = {"random": 0, "fixed": 1}
    rows.sort(key=lambda r: (r["kind"], order.get(r["arm"], 2)))

    plt = _plt()
    metrics = [
        ("d1", "distinct-1"),
        ("d2", "distinct-2"),
        ("d3", "distinct-3"),
        ("open", "repeated openings"),
        ("nd", "near-duplicate rate"),
    ]
    fig, axes = plt.subplots(1, max(1, len(kinds)), figsize=(6.5 * max(1, len(kinds)), 4.2), dpi=110, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        arms = [r for r in rows if r["kind"] == kind]
        width = 0.8 / max(1, len(arms))
        for j, r in enumerate(arms):
            xs = [i + (j - (len(arms) - 1) / 2) * width for i in range(len(metrics))]
            ax.bar(
                xs,
                [r[k] for k, _ in metrics],
                width,
                label=f"{r['arm']} ({r['records']} records)",
                color="C2" if r["arm"] == "random" else "C7",
            )
        ax.set_xticks(range(len(metrics)), [m[1] for m in metrics], rotation=20)
        ax.set_ylim(0, 1)
        ax.set_title(f"synth --kind {kind}")
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
    fig.suptitle("randomness spec vs one fixed prompt (same model, sampling and count)")
    fig.tight_layout()
    fig.savefig(png)

    out = [
        f"![diversity]({png.name})",
        "",
        "| kind | prompt | records (failed, truncated) | distinct prompts | words/record | distinct-1 | distinct-2 | "
        "distinct-3 | repeated openings | near-dup rate | near-dup clusters |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['kind']} | {r['arm']} | {r['records']} ({r['failed']}, {r['truncated']}) | "
            f"{r['prompts'] if r['prompts'] is not None else '-'} | "
            f"{r['words']:.1f} | {r['d1']:.3f} | {r['d2']:.3f} | {r['d3']:.3f} | "
            f"{r['open']:.3f} | {r['nd']:.3f} | {r['clusters']} |"
        )
    # How much of a difference is noise? The same distinct-n (phitools stats' own code) over many random halves of
    # each arm: if the arms' ranges overlap, 16 records cannot tell them apart.
    from phitools.steps.stats import compute_stats

    out += [
        "",
        "Variability: distinct-2 over 200 random halves of each arm (seeded), mean [5th-95th percentile]:",
        "",
        "| kind | random | fixed |",
        "|---|---|---|",
    ]
    rng = random.Random(0)
    for kind in kinds:
        cells = []
        for arm in ("random", "fixed"):
            path = w / f"synth-{kind}-{arm}.jsonl"
            recs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
            if len(recs) < 4:
                cells.append("-")
                continue
            vals = sorted(
                compute_stats(rng.sample(recs, len(recs) // 2), near_dup=False)["distinct"]["distinct_2"]
                for _ in range(200)
            )
            cells.append(f"{statistics.mean(vals):.3f} [{vals[10]:.3f}-{vals[189]:.3f}]")
        out.append(f"| {kind} | {cells[0]} | {cells[1]} |")
    if command:
        out += ["", f"Command: `{command}`" + (f" (wall time {wall} s on this shared 2-core CPU)." if wall else "")]
    md.write_text("\n".join(out) + "\n")


# ---- grow ------------------------------------------------------------------------------------------------
def _first_reach(evals: list[dict], target: float) -> tuple[int, float] | None:
    """Tokens (linearly interpolated between eval points) at which eval loss first reaches `target`."""
    prev = None
    for e in evals:
        if e["eval_loss"] <= target:
            if prev is None or prev["eval_loss"] == e["eval_loss"]:
                return e["tokens"], e["eval_loss"]
            f = (prev["eval_loss"] - target) / (prev["eval_loss"] - e["eval_loss"])
            return int(prev["tokens"] + f * (e["tokens"] - prev["tokens"])), target
        prev = e
    return None


def grow(g: Path, long_dir: Path | None, png: Path | None, md: Path, wall: str | None, command: str | None) -> None:
    """Tokens (and FLOPs) each grown run needs to reach the from-scratch run's final eval loss.

    G is examples/grow_experiment.sh's work directory (small, scratch, train-grown-*); LONG_DIR holds the longer
    continuations of examples/exp_grow_tokens.sh (long-grown-*)."""

    def load(run: Path) -> tuple[list[dict], float]:
        fpt = _json(run / "manifest.json")["train"]["flops_per_token"]
        return [r for r in _metrics(run) if r.get("type") == "eval"], fpt

    small, small_fpt = load(g / "small")
    scratch, scratch_fpt = load(g / "scratch")
    small_tokens = small[-1]["tokens"]
    small_flops = small_tokens * small_fpt
    target = scratch[-1]["eval_loss"]
    scratch_tokens = scratch[-1]["tokens"]
    scratch_flops = scratch_tokens * scratch_fpt
    runs = [
        (p.name[len("train-") :] + f" ({_json(p / 'train_config.json')['max_steps']} steps)", p, False)
        for p in sorted(g.glob("train-grown-*"))
    ]
    if long_dir is not None:
        runs += [
            (p.name[len("long-") :] + f" ({_json(p / 'train_config.json')['max_steps']} steps)", p, True)
            for p in sorted(long_dir.glob("long-grown-*"))
            if (p / "metrics.jsonl").exists()
        ]

    out = [
        f"Target: the from-scratch large model's final eval loss, **{target:.4f}**, after {scratch_tokens:,} tokens "
        f"({scratch_flops:.3g} FLOPs). Every grown lineage first spent {small_tokens:,} tokens on the small model "
        f"({small_flops:.3g} FLOPs; its FLOPs per token are {small_fpt / scratch_fpt:.2f}x the large model's).",
        "",
        "| run | tokens after growth to reach target | lineage tokens | vs scratch | lineage FLOPs | vs scratch | "
        "final eval loss |",
        "|---|---|---|---|---|---|---|",
        f"| scratch | - | {scratch_tokens:,} | 100% | {scratch_flops:.3g} | 100% | {target:.4f} |",
    ]
    loaded = {}
    for name, run, is_long in runs:
        ev, fpt = load(run)
        loaded[name] = (ev, fpt, is_long)
        reach = _first_reach(ev, target)
        if reach is None:
            out.append(f"| {name} | not reached in {ev[-1]['tokens']:,} | - | - | - | - | {ev[-1]['eval_loss']:.4f} |")
            continue
        tot = reach[0] + small_tokens
        flops = small_flops + reach[0] * fpt
        out.append(
            f"| {name} | {reach[0]:,} | {tot:,} | {tot / scratch_tokens:.0%} | {flops:.3g} | "
            f"{flops / scratch_flops:.0%} | {ev[-1]['eval_loss']:.4f} |"
        )
    out += [
        "",
        "The other way round: the tokens scratch needs to reach each grown run's losses (at the grown run's "
        "last eval point and at its equal-FLOPs point).",
        "",
        "| grown run | its loss | its lineage tokens | scratch reaches that loss after | "
        "scratch loss at equal lineage FLOPs |",
        "|---|---|---|---|---|",
    ]
    for name, (ev, fpt, _) in loaded.items():
        last = ev[-1]
        lineage_tokens = small_tokens + last["tokens"]
        lineage_flops = small_flops + last["tokens"] * fpt
        s_reach = _first_reach(scratch, last["eval_loss"])
        # scratch's eval loss at the same FLOPs (linear interpolation between its eval points)
        eq = None
        for a, b in zip(scratch, scratch[1:]):
            fa, fb = a["tokens"] * scratch_fpt, b["tokens"] * scratch_fpt
            if fa <= lineage_flops <= fb:
                eq = a["eval_loss"] + (lineage_flops - fa) / (fb - fa) * (b["eval_loss"] - a["eval_loss"])
        out.append(
            f"| {name} | {last['eval_loss']:.4f} | {lineage_tokens:,} | "
            f"{f'{s_reach[0]:,} tokens' if s_reach else f'not reached in {scratch_tokens:,}'} | "
            f"{f'{eq:.4f}' if eq is not None else 'beyond the scratch run'} |"
        )
    out += [
        "",
        "Tokens at a loss are interpolated linearly between eval points (every 25 steps = 51,200 tokens), so "
        "they are accurate to about one eval interval. Lineage = small model + grown continuation. FLOPs are "
        "`flops_per_token x tokens` from each run's manifest (6N + attention, as `phitools train` reports).",
    ]
    if png is not None:
        plt = _plt()
        fig, (ax, axf) = plt.subplots(1, 2, figsize=(13, 4.8), dpi=110, sharey=True)
        ax.plot([e["tokens"] / 1e6 for e in small], [e["eval_loss"] for e in small], "o-", color="C7", label="small")
        # the FLOPs axis is logarithmic: leave out the step-0 points (0 FLOPs)
        axf.plot(
            [e["tokens"] * small_fpt for e in small if e["tokens"]],
            [e["eval_loss"] for e in small if e["tokens"]],
            "o-",
            color="C7",
            label="small",
        )
        ax.plot(
            [e["tokens"] / 1e6 for e in scratch], [e["eval_loss"] for e in scratch], "o-", color="C0", label="scratch"
        )
        axf.plot(
            [e["tokens"] * scratch_fpt for e in scratch if e["tokens"]],
            [e["eval_loss"] for e in scratch if e["tokens"]],
            "o-",
            color="C0",
            label="scratch",
        )
        for i, (name, (ev, fpt, is_long)) in enumerate(loaded.items()):
            c, st = f"C{i + 1}", "--" if is_long else "-"
            ax.plot(
                [(small_tokens + e["tokens"]) / 1e6 for e in ev],
                [e["eval_loss"] for e in ev],
                "o" + st,
                ms=3,
                color=c,
                label=name,
            )
            axf.plot(
                [small_flops + e["tokens"] * fpt for e in ev],
                [e["eval_loss"] for e in ev],
                "o" + st,
                ms=3,
                color=c,
                label=name,
            )
        for a in (ax, axf):
            a.axhline(target, color="k", lw=0.8, ls=":", label=f"scratch final ({target:.3f})")
            a.grid(alpha=0.3)
            a.set_ylim(top=min(6.5, max(e["eval_loss"] for e in scratch)))
        ax.set_xlabel("lineage tokens (millions)")
        axf.set_xlabel("lineage training FLOPs")
        axf.set_xscale("log")
        ax.set_ylabel("held-out eval loss")
        ax.legend(fontsize=8)
        fig.suptitle("grow (x2 width, x2 depth) vs scratch: tokens to reach scratch's final loss")
        fig.tight_layout()
        fig.savefig(png)
        out = [f"![grown vs scratch]({png.name})", ""] + out
    if command:
        out += ["", f"Command: `{command}`" + (f" (wall time {wall} s on this shared 2-core CPU)." if wall else "")]
    md.write_text("\n".join(out) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", choices=["filtering", "randomness", "grow"])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--png", type=Path)
    ap.add_argument("--md", type=Path, required=True)
    ap.add_argument("--wall", help="wall-clock seconds of the run, for the table's footnote")
    ap.add_argument("--command", help="the command that made WORKDIR, for the table's footnote")
    ap.add_argument("--long", type=Path, help="grow: the directory holding exp_grow_tokens.sh's long-grown-* runs")
    a = ap.parse_args()
    if a.experiment == "grow":
        grow(a.workdir, a.long, a.png, a.md, a.wall, a.command)
    else:
        if a.png is None:
            ap.error("--png is required")
        {"filtering": filtering, "randomness": randomness}[a.experiment](a.workdir, a.png, a.md, a.wall, a.command)


if __name__ == "__main__":
    main()
