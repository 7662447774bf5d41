"""`phitools stats`: diversity statistics of any records (and near-duplicate removal)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from phitools.cli import console
from phitools.cli.declare import RunOptions, command
from phitools.steps.stats import StatsOptions, report_json, run_stats


@command("stats")
def stats(
    opts: StatsOptions,
    run: RunOptions,
    table: Annotated[
        bool | None,
        typer.Option(
            "--table/--no-table",
            help="Print a table on stderr (default: when stderr is a terminal).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Diversity statistics of records: distinct-1/2/3, repeated openings, near-duplicate rate, coverage.

    Words are lowercased runs of letters, digits and underscore. distinct-n = distinct word n-grams /
    all word n-grams in the corpus. Repeated-opening rate = share of records whose first k (5) words
    another record shares. Near-duplicates: MinHash (128 permutations) with LSH (32 bands x 4 rows) on
    5-word shingles, confirmed by exact Jaccard >= 0.8; the rate is the share of records that match an
    earlier kept record (what --dedup removes). Coverage: counts of each value of each synth.draw
    dimension. The JSON report goes to stdout (or -o FILE); a table goes to stderr on a terminal.

    Examples:

        phitools stats synth/ | jq .distinct
        phitools synth --spec examples/spec.toml --n 200 -o synth/ && phitools stats synth/ --spec examples/spec.toml
        phitools stats corpus/ --dedup deduped/ -o report.json
    """
    report = run_stats(opts, progress=console.progress)
    if not opts.output or opts.output == "-":
        sys.stdout.buffer.write(report_json(report))
        sys.stdout.flush()
    print_table(report, force=bool(table))


def print_table(report: dict, *, force: bool = False) -> None:
    """A short rich table of a stats report on stderr (on a terminal, or when forced)."""
    if quiet_or_not_tty() and not force:
        return
    from rich.table import Table

    t = Table(title=f"diversity of {report.get('records', 0):,} records", show_header=True, header_style="bold")
    t.add_column("statistic")
    t.add_column("value", justify="right")
    t.add_column("how", style="dim")
    d = report.get("distinct", {})
    for k in (1, 2, 3):
        c = d.get("counts", {}).get(str(k), {})
        t.add_row(
            f"distinct-{k}",
            f"{d.get(f'distinct_{k}', 0):.4f}",
            f"{c.get('distinct', 0):,} / {c.get('total', 0):,} word {k}-grams",
        )
    o = report.get("openings", {})
    t.add_row(
        "repeated openings",
        f"{o.get('repeated_opening_rate', 0):.4f}",
        f"first {o.get('k_words')} words; {o.get('distinct_openings', 0):,} distinct",
    )
    nd = report.get("near_duplicates")
    if nd:
        p = nd.get("params", {})
        t.add_row(
            "near-duplicates",
            f"{nd.get('rate', 0):.4f}",
            f"{nd.get('near_duplicates', 0):,} near-duplicate texts; Jaccard >= {p.get('jaccard_threshold')} on "
            f"{p.get('shingle')}-word shingles, "
            f"{p.get('num_perm')} perms, {p.get('bands')}x{p.get('rows')} LSH",
        )
    for dim, c in (report.get("coverage") or {}).items():
        counts = c.get("counts", {})
        desc = f"{c.get('distinct', 0)} values drawn"
        if "declared" in c:
            desc += f" of {c['declared']} ({c.get('never_drawn_count', 0)} never)"
        if counts:
            desc += f"; min {min(counts.values())}, max {max(counts.values())} per value"
        t.add_row(f"coverage: {dim}", "", desc)
    console.console.print(t)


def quiet_or_not_tty() -> bool:
    return not console.interactive()


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
