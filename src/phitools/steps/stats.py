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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from phitools.records import Record
from phitools.steps.neardup import MinHashParams, NearDupIndex
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
                "definition": "lowercased runs of letters, digits and underscore (regex \\w+); punctuation and whitespace ignored",
                "total": self.words_total,
                "mean_per_record": round(self.words_total / self.records, 3) if self.records else 0.0,
            },
            "distinct": {
                "definition": "distinct word n-grams / total word n-grams over the corpus (n-grams do not cross records)",
                **{f"distinct_{dc.n}": round(dc.ratio(), 6) for dc in self.distinct},
                "counts": {f"{dc.n}": {"distinct": dc.distinct, "total": dc.total} for dc in self.distinct},
            },
            "openings": {
                "k_words": self.k,
                "definition": f"fraction of records (with at least one word) whose first {self.k} words are shared with another record",
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
