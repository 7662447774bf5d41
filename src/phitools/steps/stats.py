"""Diversity statistics over any records: distinct-n, repeated openings, near-duplicates, coverage.

Definitions (all over the `text` field unless told otherwise; words as in `ngrams.words`: lowercased
runs of letters, digits and underscore):

* distinct-n (n = 1, 2, 3): the number of distinct word n-grams in the whole corpus divided by the total
  number of word n-grams (Li et al., 2016). N-grams do not cross record boundaries. Exact up to 64-bit
  hash collisions.
* repeated-opening rate: the fraction of records whose opening -- their first k = 5 words -- is shared
  with at least one other record. Records with fewer than k words use all their words; records with no
  words are left out. The most common openings are listed.
* near-duplicate rate: see `neardup` (MinHash + LSH, exact Jaccard >= 0.8 on 5-word shingles, keep-first).
* coverage: for records that carry `synth.draw` (what `phitools synth` drew), the count of each value of
  each dimension; with the spec, the declared values never drawn.

`phitools stats` from Python: `run_stats(StatsOptions(inputs=["synth/"]))` returns the report (and writes what
the command writes); the `Diversity` step passes records through (without near-duplicates with --dedup) and
gives `report()` at the end, for any iterable of records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from phitools.errors import UsageError
from phitools.options import check, option
from phitools.pipeline import Context, IOOptions, io_option, limited, no_progress, read
from phitools.records import Record
from phitools.runtime.console import warn
from phitools.runtime.files import atomic_write
from phitools.shards import RecordWriter, Stats
from phitools.shards.spec import ShardSpec, parse_shard
from phitools.steps.neardup import MinHashParams, NearDupIndex, dedup_records
from phitools.steps.ngrams import WordHasher, ngram_hashes, sorted_unique, words

_COMPACT_AT = 1 << 22  # compact accumulated n-gram hashes into a unique set after this many
NEVER_DRAWN_LISTED = 50  # coverage lists at most this many never-drawn values (and counts them all)


class DistinctCounter:
    """Exact distinct / total n-gram counts over a stream of word-hash sequences."""

    def __init__(self, n: int):
        self.n = n
        self.total = 0
        self._uniq = np.zeros(0, dtype=np.uint64)
        self._pending: list[np.ndarray] = []
        self._pending_size = 0

    def add(self, h: np.ndarray) -> None:
        """Add one record's word hashes."""
        g = ngram_hashes(h, self.n)
        if not g.size:
            return
        self.total += int(g.size)
        self._pending.append(g)
        self._pending_size += int(g.size)
        if self._pending_size >= _COMPACT_AT:
            self._compact()

    def _compact(self) -> None:
        if self._pending:
            self._uniq = sorted_unique(np.concatenate([self._uniq, *self._pending]))
            self._pending.clear()
            self._pending_size = 0

    @property
    def distinct(self) -> int:
        self._compact()
        return int(self._uniq.size)

    def ratio(self) -> float:
        return self.distinct / self.total if self.total else 0.0


class Coverage:
    """Counts of each drawn value of each dimension, from records' `synth.draw`."""

    def __init__(self, declared: dict[str, Sequence[str]] | None = None):
        self.counts: dict[str, Counter] = {}
        self.records = 0
        self.declared = {k: list(v) for k, v in (declared or {}).items()}

    def add_draw(self, draw: dict) -> None:
        """Count one record's drawn values."""
        self.records += 1
        for dim, value in draw.items():
            self.counts.setdefault(dim, Counter())[str(value)] += 1

    def add_record(self, rec: Record) -> None:
        """Count a record's `synth.draw`, if it has one."""
        synth = rec.get("synth")
        if isinstance(synth, dict) and isinstance(synth.get("draw"), dict):
            self.add_draw(synth["draw"])

    def report(self) -> dict:
        """{dimension: {distinct, counts (most common first), [declared, never_drawn]}}."""
        out: dict = {}
        for dim in sorted(set(self.counts) | set(self.declared)):
            c = self.counts.get(dim, Counter())
            d: dict = {"distinct": len(c), "counts": dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))}
            if dim in self.declared:
                decl = list(dict.fromkeys(self.declared[dim]))
                d["declared"] = len(decl)
                never = [v for v in decl if v not in c]
                d["never_drawn_count"] = len(never)
                d["never_drawn"] = never[:NEVER_DRAWN_LISTED]
            out[dim] = d
        return out


class DiversityStats:
    """Accumulate every statistic in one streaming pass; `report()` at the end."""

    def __init__(
        self,
        *,
        field: str = "text",
        opening_words: int = 5,
        top: int = 10,
        near_dup: bool = True,
        params: MinHashParams | None = None,
        declared: dict[str, Sequence[str]] | None = None,
        batch: int = 512,
    ):
        self.field = field
        self.k = opening_words
        self.top = top
        self.hasher = WordHasher()
        self.distinct = [DistinctCounter(n) for n in (1, 2, 3)]
        self.openings: Counter = Counter()
        self.records = 0
        self.no_text = 0
        self.words_total = 0
        self.coverage = Coverage(declared)
        self.near = NearDupIndex(params, hasher=self.hasher) if near_dup else None
        self._batch: list[np.ndarray] = []
        self._batch_size = batch

    def add(self, rec: Record) -> None:
        """Account for one record."""
        self.records += 1
        self.coverage.add_record(rec)
        text = rec.get(self.field)
        if not isinstance(text, str):
            self.no_text += 1
            text = ""
        toks = words(text)
        self.words_total += len(toks)
        if toks:
            self.openings[" ".join(toks[: self.k])] += 1
        h = self.hasher.hashes(toks)
        for dc in self.distinct:
            dc.add(h)
        if self.near is not None:
            self._batch.append(h)  # the word hashes: the near-duplicate index does not tokenise again
            if len(self._batch) >= self._batch_size:
                self._flush()

    def add_all(self, recs: Iterable[Record]) -> None:
        """Account for many records."""
        for r in recs:
            self.add(r)

    def _flush(self) -> None:
        if self.near is not None and self._batch:
            self.near.check([""] * len(self._batch), word_hashes=self._batch)
            self._batch.clear()

    def report(self) -> dict:
        """The JSON report."""
        self._flush()
        with_words = sum(self.openings.values())
        repeated = sum(c for c in self.openings.values() if c > 1)
        rep: dict = {
            "records": self.records,
            "field": self.field,
            "records_without_text": self.no_text,
            "words": {
                "definition": "lowercased runs of letters, digits and underscore (regex \\w+); punctuation and "
                "whitespace ignored",
                "total": self.words_total,
                "mean_per_record": round(self.words_total / self.records, 3) if self.records else 0.0,
            },
            "distinct": {
                "definition": "distinct word n-grams / total word n-grams over the corpus (n-grams do not cross "
                "records)",
                **{f"distinct_{dc.n}": round(dc.ratio(), 6) for dc in self.distinct},
                "counts": {f"{dc.n}": {"distinct": dc.distinct, "total": dc.total} for dc in self.distinct},
            },
            "openings": {
                "k_words": self.k,
                "definition": f"fraction of records (with at least one word) whose first {self.k} words are shared "
                "with another record",
                "repeated_opening_rate": round(repeated / with_words, 6) if with_words else 0.0,
                "distinct_openings": len(self.openings),
                "top": [[o, c] for o, c in self.openings.most_common(self.top) if c > 1],
            },
        }
        if self.near is not None:
            rep["near_duplicates"] = self.near.report()
        cov = self.coverage.report()
        if cov:
            rep["coverage"] = cov
        return rep


def compute_stats(recs: Iterable[Record], **kwargs) -> dict:
    """One-shot: the report for an iterable of records (see DiversityStats for the options)."""
    s = DiversityStats(**kwargs)
    s.add_all(recs)
    return s.report()


# ---- the command: options, the step, the run ---------------------------------------------------------------
@dataclass
class StatsOptions:
    """What `phitools stats` reads, which statistics it computes, and where the report (and with --dedup the
    records without near-duplicates) go."""

    inputs: list[str] | None = io_option("inputs")
    output: str | None = option(
        None, "-o", "--output", show_default=False, help="Write the JSON report to this file instead of stdout."
    )
    field: str = option("text", "--field", help="The record field holding the text.")
    opening_words: int = option(5, "--opening-words", min=1, help="k: an opening is a record's first k words.")
    top: int = option(10, "--top", min=0, help="List this many most common repeated openings.")
    near_dup: bool = option(True, "--near-dup/--no-near-dup", help="Compute the MinHash near-duplicate rate.")
    threshold: float = option(
        0.8, "--threshold", min=0.01, max=1.0, help="Jaccard similarity at which two texts are near-duplicates."
    )
    shingle: int = option(5, "--shingle", min=1, help="Words per shingle.")
    num_perm: int = option(128, "--num-perm", min=1, help="MinHash permutations (= bands x rows).")
    bands: int = option(32, "--bands", min=1, help="LSH bands.")
    spec: str | None = option(
        None, "--spec", show_default=False, help="The synth spec: coverage then also lists declared values never drawn."
    )
    dedup: str | None = option(
        None,
        "--dedup",
        show_default=False,
        help="Also write the records without near-duplicates (keeping the first) to PATH ('-' for stdout; then the "
        "report needs -o).",
    )
    shard: str | None = io_option("shard")
    shard_size: str = io_option("shard_size")
    skip_bad: bool = io_option("skip_bad")
    allow_partial: bool = io_option("allow_partial")
    limit: int | None = io_option("limit")

    def __post_init__(self) -> None:
        check(self)
        if self.num_perm % self.bands:
            raise UsageError(
                f"--num-perm {self.num_perm} is not a multiple of --bands {self.bands}",
                hint="e.g. --num-perm 128 --bands 32",
            )
        if self.dedup == "-" and self.output in (None, "-"):
            raise UsageError(
                "--dedup - writes records to stdout, so the report needs -o FILE", hint="e.g. -o report.json"
            )
        self.shard_spec: ShardSpec | None = parse_shard(self.shard)

    def params(self) -> MinHashParams:
        """The near-duplicate parameters."""
        return MinHashParams(
            num_perm=self.num_perm,
            bands=self.bands,
            rows=self.num_perm // self.bands,
            shingle=self.shingle,
            threshold=self.threshold,
        )

    def io(self) -> IOOptions:
        """The reading side (and, with --dedup, the records' output) as the shared record-tool options."""
        return IOOptions(
            inputs=self.inputs,
            output=self.dedup,
            shard=self.shard,
            shard_size=self.shard_size,
            skip_bad=self.skip_bad,
            allow_partial=self.allow_partial,
            limit=self.limit,
        )


class Diversity:
    """The stats step: every record is accounted for and passed through; with `opts.dedup` set, records that
    near-duplicate an earlier kept one are dropped (counted as `near_duplicate`). `report()` after the last
    record; `manifest()` is the deduplicated output's `dedup` entry."""

    name = "stats"
    required: tuple[str, ...] = ()

    def __init__(self, opts: StatsOptions | None = None) -> None:
        self.opts = opts = opts or StatsOptions()
        declared = None
        if opts.spec:
            from phitools.steps.synth_spec import load_spec

            declared = load_spec(opts.spec).declared_values()
        params = opts.params()
        self.diversity = DiversityStats(
            field=opts.field,
            opening_words=opts.opening_words,
            top=opts.top,
            near_dup=opts.near_dup and opts.dedup is None,
            params=params,
            declared=declared,
        )
        self.index = NearDupIndex(params) if opts.dedup is not None else None
        self.shard: ShardSpec | None = None

    def __call__(self, records: Iterable[Record], ctx: Context | None = None) -> Iterator[Record]:
        ctx = ctx if ctx is not None else Context()
        self.shard = ctx.shard
        add = self.diversity.add

        def observed(it: Iterable[Record]) -> Iterator[Record]:
            for r in it:
                add(r)
                yield r

        if self.index is None:
            yield from observed(records)
            return
        yield from dedup_records(
            observed(records), self.index, field=self.opts.field, on_drop=lambda r, v: ctx.stats.drop("near_duplicate")
        )

    def manifest(self) -> dict:
        if self.index is None:
            return {}
        sh = self.shard
        return {
            "dedup": {
                **self.index.report(),
                "scope": f"per shard: part {sh} only" if sh and sh.count > 1 else "all records",
            }
        }

    def report(self) -> dict:
        """The JSON report of the records seen so far."""
        rep = self.diversity.report()
        if self.index is not None:
            rep["near_duplicates"] = self.index.report()
        return rep


def report_json(report: dict) -> bytes:
    """The report as `phitools stats` writes it (indented JSON, one trailing newline)."""
    return orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def run_stats(opts: StatsOptions, *, progress: Callable[..., Any] | None = None) -> dict:
    """What `phitools stats` does: read `opts.inputs` (this --shard part, the first --limit records), write the
    records without near-duplicates to `opts.dedup` (with its manifest) when set, write the report to
    `opts.output` when it names a file, and return the report. `progress` is as for `pipeline.run`."""
    step = Diversity(opts)
    io = opts.io()
    stats = Stats()
    reader = read(io, stats=stats)
    ctx = Context(stats=stats, shard=io.shard_spec, inputs=reader.inputs, output=opts.dedup)
    with (progress or no_progress)(step.name, stats=stats) as bar:
        ctx.progress = bar
        records = step(limited(reader, io.limit), ctx)
        if opts.dedup is None:
            for _ in records:
                bar.advance()
        else:
            sh = io.shard_spec
            if sh and sh.count > 1:
                warn(
                    f"--dedup with --shard {sh}: near-duplicates are dropped within this part only; run it unsharded "
                    "on the union for the global answer"
                )
            # no seed: nothing here is random (MinHash's permutations are fixed)
            with RecordWriter(
                opts.dedup, tool=step.name, shard_size=io.shard_size, shard=sh, stats=stats, inputs=reader.inputs
            ) as w:
                for rec in records:
                    w.write(rec)
                    bar.advance()
                w.manifest_extra.update(step.manifest())
    report = step.report()
    if stats.skipped_bad:
        report["skipped_bad"] = dict(stats.skipped_bad)
    report["inputs"] = reader.inputs
    if opts.output and opts.output != "-":
        atomic_write(opts.output, report_json(report))
    return report
