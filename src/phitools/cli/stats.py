"""`phitools stats`: diversity statistics of any records (and near-duplicate removal)."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer

from phitools.cli import console
from phitools.cli.common import AllowPartial, Inputs, Limit, Quiet, Shard, ShardSize, SkipBad, handle_errors, setup


@handle_errors("stats")
def stats(
    inputs: Inputs = None,
    output: Annotated[
        str | None,
        typer.Option(
            "-o", "--output", help="Write the JSON report to this file instead of stdout.", show_default=False
        ),
    ] = None,
    field: Annotated[str, typer.Option("--field", help="The record field holding the text.")] = "text",
    opening_words: Annotated[
        int, typer.Option("--opening-words", min=1, help="k: an opening is a record's first k words.")
    ] = 5,
    top: Annotated[int, typer.Option("--top", min=0, help="List this many most common repeated openings.")] = 10,
    near_dup: Annotated[
        bool, typer.Option("--near-dup/--no-near-dup", help="Compute the MinHash near-duplicate rate.")
    ] = True,
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold", min=0.01, max=1.0, help="Jaccard similarity at which two texts are near-duplicates."
        ),
    ] = 0.8,
    shingle: Annotated[int, typer.Option("--shingle", min=1, help="Words per shingle.")] = 5,
    num_perm: Annotated[int, typer.Option("--num-perm", min=1, help="MinHash permutations (= bands x rows).")] = 128,
    bands: Annotated[int, typer.Option("--bands", min=1, help="LSH bands.")] = 32,
    spec: Annotated[
        str | None,
        typer.Option(
            "--spec", help="The synth spec: coverage then also lists declared values never drawn.", show_default=False
        ),
    ] = None,
    dedup: Annotated[
        str | None,
        typer.Option(
            "--dedup",
            help="Also write the records without near-duplicates (keeping the first) to PATH ('-' for stdout; then the report needs -o).",
            show_default=False,
        ),
    ] = None,
    table: Annotated[
        bool | None,
        typer.Option(
            "--table/--no-table",
            help="Print a table on stderr (default: when stderr is a terminal).",
            show_default=False,
        ),
    ] = None,
    shard: Shard = None,
    shard_size: ShardSize = "100000",
    skip_bad: SkipBad = False,
    allow_partial: AllowPartial = False,
    limit: Limit = None,
    quiet: Quiet = False,
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
    setup(quiet)
    from phitools.errors import UsageError
    from phitools.shards import RecordReader, RecordWriter, Stats, parse_shard
    from phitools.steps.neardup import MinHashParams, dedup_records
    from phitools.steps.stats import DiversityStats

    if num_perm % bands:
        raise UsageError(
            f"--num-perm {num_perm} is not a multiple of --bands {bands}", hint="e.g. --num-perm 128 --bands 32"
        )
    params = MinHashParams(num_perm=num_perm, bands=bands, rows=num_perm // bands, shingle=shingle, threshold=threshold)
    if dedup is not None and dedup == "-" and output in (None, "-"):
        raise UsageError("--dedup - writes records to stdout, so the report needs -o FILE", hint="e.g. -o report.json")
    declared = None
    if spec:
        from phitools.steps.synth_spec import load_spec

        declared = load_spec(spec).declared_values()
    st = Stats()
    sh = parse_shard(shard)
    reader = RecordReader(inputs, shard=sh, skip_bad=skip_bad, stats=st, allow_partial=allow_partial)
    ds = DiversityStats(
        field=field,
        opening_words=opening_words,
        top=top,
        near_dup=near_dup and dedup is None,
        params=params,
        declared=declared,
    )
    recs = iter(reader)
    if limit is not None:
        import itertools

        recs = itertools.islice(recs, limit)

    def observed(it):
        for r in it:
            ds.add(r)
            yield r

    if dedup is not None:
        from phitools.steps.neardup import NearDupIndex

        index = NearDupIndex(params)
        if sh and sh.count > 1:
            console.warn(
                f"--dedup with --shard {sh}: near-duplicates are dropped within this part only; run it unsharded "
                "on the union for the global answer"
            )
        with RecordWriter(
            dedup,
            tool="stats",
            shard_size=shard_size,
            shard=sh,
            stats=st,
            inputs=reader.inputs,
            manifest_extra={"dedup": {}},
        ) as w:
            for rec in dedup_records(
                observed(recs), index, field=field, on_drop=lambda r, v: st.drop("near_duplicate")
            ):
                w.write(rec)
            w.manifest_extra["dedup"] = {
                **index.report(),
                "scope": f"per shard: part {sh} only" if sh and sh.count > 1 else "all records",
            }
        report = ds.report()
        report["near_duplicates"] = index.report()
    else:
        for _ in observed(recs):
            pass
        report = ds.report()
    if st.skipped_bad:
        report["skipped_bad"] = dict(st.skipped_bad)
    report["inputs"] = reader.inputs
    blob = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    if output and output != "-":
        from pathlib import Path

        p = Path(output)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_bytes(blob)
        tmp.replace(p)
    else:
        sys.stdout.buffer.write(blob)
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
            f"{nd.get('near_duplicates', 0):,} near-duplicate texts; Jaccard >= {p.get('jaccard_threshold')} on {p.get('shingle')}-word shingles, "
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
