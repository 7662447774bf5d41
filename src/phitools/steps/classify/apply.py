"""Applying a classifier to a corpus: score in batches (optionally on many cores), then keep or drop.

    from phitools import pipeline
    from phitools.steps.classify.apply import Apply, ApplyOptions
    step = Apply(ApplyOptions(clf="clf/", keep_top=0.3, rejects="rejects.jsonl.zst"))
    pipeline.run(step, pipeline.IOOptions(inputs=["corpus/"], output="filtered/"))   # what the command does
    print(step.summary)

Batches are cut by input order and size alone (BATCH_BYTES of text or BATCH_RECORDS records), and a
document's score depends only on its own text, so the output is byte-identical for any --workers.
Workers receive texts and send back scores; the main process keeps a bounded window of batches in flight
and writes them in input order.

Keep policies (`Keep`):
  threshold   keep score >= T
  score_only  keep everything (just add `quality`)
  keep_top F  keep the top fraction F by score. With re-readable inputs (files) this is exact: pass one
              scores everything and spills the scores (8 bytes per record) to a temporary file, an exact
              radix selection over that file finds the k-th largest score (k = round(F * n)), and pass two
              re-reads the records and pairs them with their spilled scores (nothing is scored twice).
              Ties at the cut are kept in input order, so exactly k records are kept.
              From stdin it is a streaming estimate: the first WARMUP records are held back and cut exactly,
              after that each record is cut at the running quantile of a fixed-size reservoir sample of all
              scores so far (ties at the cut kept at random with the rate that hits F). Expect the kept
              fraction within about a percent of F on a well-mixed stream; a stream sorted by quality
              defeats any one-pass rule.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from phitools.errors import DataError, UsageError
from phitools.options import check, option
from phitools.pipeline import Context
from phitools.records import Record
from phitools.runtime import console
from phitools.shards import RecordWriter, Stats
from phitools.steps.classify.saved import Classifier, load_classifier

BATCH_BYTES = 2 << 20
BATCH_RECORDS = 4096
WARMUP_RECORDS = 10_000
WARMUP_BYTES = 64 << 20
RESERVOIR = 100_000


def batches(
    records: Iterable[Record], max_bytes: int = BATCH_BYTES, max_records: int = BATCH_RECORDS
) -> Iterator[list[Record]]:
    """Cut records into batches by count and text size (deterministic: depends on the input only)."""
    cur: list[Record] = []
    size = 0
    for rec in records:
        cur.append(rec)
        t = rec.get("text")
        size += len(t) if isinstance(t, str) else 0
        if size >= max_bytes or len(cur) >= max_records:
            yield cur
            cur, size = [], 0
    if cur:
        yield cur


def texts_of(batch: list[Record]) -> list[str]:
    out = []
    for rec in batch:
        t = rec.get("text")
        if not isinstance(t, str):
            raise DataError(
                f"record {rec.get('id', '?')!r}: `text` is {type(t).__name__}, not a string",
                hint="classify scores the text field; fix or drop such records (e.g. with --skip-bad upstream)",
            )
        out.append(t)
    return out


# ---- scoring, in-process or on a pool ----------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(path: str, load_kwargs: dict) -> None:
    if "clf" not in _WORKER:  # inherited through fork, else loaded (and verified) here
        _WORKER["clf"] = load_classifier(path, **load_kwargs)


def _score(texts: list[str]) -> np.ndarray:
    return _WORKER["clf"].score(texts)


class Scorer:
    """Scores batches in input order; with workers > 1 on a process pool with a bounded window in flight."""

    def __init__(self, clf: Classifier, path: str, *, workers: int = 1, load_kwargs: dict | None = None):
        self.clf = clf
        self.workers = max(1, workers)
        self.pool = None
        if self.workers > 1:
            import multiprocessing as mp

            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            if ctx.get_start_method() == "fork":
                _WORKER["clf"] = clf
            self.pool = ctx.Pool(self.workers, initializer=_init_worker, initargs=(str(path), load_kwargs or {}))

    def map(self, batch_iter: Iterable[list[Record]]) -> Iterator[tuple[list[Record], np.ndarray]]:
        if self.pool is None:
            for b in batch_iter:
                yield b, self.clf.score(texts_of(b))
            return
        window: collections.deque = collections.deque()
        limit = 2 * self.workers + 1
        for b in batch_iter:
            window.append((b, self.pool.apply_async(_score, (texts_of(b),))))
            if len(window) >= limit:
                done, res = window.popleft()
                yield done, res.get()
        while window:
            done, res = window.popleft()
            yield done, res.get()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None
        _WORKER.pop("clf", None)

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---- histogram ------------------------------------------------------------------------------------------------


@dataclass
class Histogram:
    """Counts of scores (all, and kept) in fixed bins over the score range."""

    edges: np.ndarray
    counts: np.ndarray = None  # type: ignore[assignment]
    kept: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.counts = np.zeros(len(self.edges) - 1, np.int64)
        self.kept = np.zeros(len(self.edges) - 1, np.int64)

    def add(self, scores: np.ndarray, keep: np.ndarray) -> None:
        b = np.clip(np.searchsorted(self.edges, scores, side="right") - 1, 0, len(self.counts) - 1)
        self.counts += np.bincount(b, minlength=len(self.counts))
        self.kept += np.bincount(b[keep], minlength=len(self.counts))

    def to_dict(self) -> dict:
        return {
            "edges": [round(float(e), 6) for e in self.edges],
            "counts": self.counts.tolist(),
            "kept": self.kept.tolist(),
        }


def histogram_for(clf: Classifier) -> Histogram:
    lo, hi = (0.0, 1.0) if clf.target == "binary" else clf.score_range
    return Histogram(np.linspace(lo, hi, 11))


# ---- exact selection over spilled scores -------------------------------------------------------------------


def _keys(x: np.ndarray) -> np.ndarray:
    """float64 -> uint64 with the same order (-0.0 counts as 0.0)."""
    b = (x.astype(np.float64) + 0.0).view(np.uint64)
    neg = (b >> np.uint64(63)).astype(bool)
    return np.where(neg, ~b, b | np.uint64(1 << 63))


def _unkey(k: int) -> float:
    k = np.uint64(k)
    b = (k & ~np.uint64(1 << 63)) if (k >> np.uint64(63)) else ~k
    return float(np.array([b], np.uint64).view(np.float64)[0])


def kth_largest(chunks: Callable[[], Iterable[np.ndarray]], k: int) -> tuple[float, int]:
    """Exact k-th largest value over a re-iterable stream of float64 chunks, in O(65536) memory.

    Radix selection, 16 bits per pass (4 passes). Returns (t, m): t is the k-th largest value and m how many
    values equal to t are among the top k (so the top k = all values > t plus the first m values == t).
    """
    prefix, mask, remaining = 0, 0, k
    for shift in (48, 32, 16, 0):
        hist = np.zeros(1 << 16, np.int64)
        for c in chunks():
            keys = _keys(c)
            if mask:
                keys = keys[(keys & np.uint64(mask)) == np.uint64(prefix)]
            hist += np.bincount(((keys >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.int64), minlength=1 << 16)
        from_top = np.cumsum(hist[::-1])
        j = int(np.searchsorted(from_top, remaining))  # first digit (from the top) where the count reaches k
        if j > 0:
            remaining -= int(from_top[j - 1])
        digit = (1 << 16) - 1 - j
        prefix |= digit << shift
        mask |= 0xFFFF << shift
    return _unkey(prefix), remaining


class _Spill:
    """Scores written in order to a temporary file (8 bytes per record), read back in order."""

    def __init__(self, directory: str | None = None):
        self.f = tempfile.TemporaryFile(prefix="phitools-scores-", dir=directory)
        self.n = 0

    def write(self, scores: np.ndarray) -> None:
        np.ascontiguousarray(scores, np.float64).tofile(self.f)
        self.n += len(scores)

    def chunks(self, size: int = 1 << 20) -> Iterator[np.ndarray]:
        self.f.seek(0)
        while True:
            c = np.fromfile(self.f, np.float64, count=size)
            if len(c) == 0:
                return
            yield c

    def close(self) -> None:
        self.f.close()


# ---- the apply loop -------------------------------------------------------------------------------------------


@dataclass
class Keep:
    """What to keep: mode 'threshold' (score >= threshold), 'score_only', or 'keep_top' (fraction)."""

    mode: str
    threshold: float | None = None
    fraction: float | None = None
    seed: int = 0


@dataclass
class Outcome:
    kept: int = 0
    dropped: int = 0
    scored: int = 0
    quantile: str | None = None
    cut: float | None = None
    histogram: Histogram | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {
            "scored": self.scored,
            "kept": self.kept,
            "dropped": self.dropped,
            "kept_fraction": round(self.kept / self.scored, 6) if self.scored else None,
        }
        if self.cut is not None:
            d["cut"] = self.cut
        if self.quantile:
            d["quantile"] = self.quantile
        if self.histogram is not None:
            d["histogram"] = self.histogram.to_dict()
        d.update(self.extra)
        return d


def _tag(batch: list[Record], scores: np.ndarray, tag: str) -> None:
    for rec, s in zip(batch, scores.tolist()):
        rec["quality"] = {"score": s, "classifier": tag}


def select(
    clf: Classifier,
    scorer: Scorer,
    open_records: Callable[[], Iterable[Record]],
    keep: Keep,
    out: Outcome,
    *,
    rereadable: bool,
    tmp_dir: str | None = None,
) -> Iterator[tuple[Record, bool]]:
    """Score every record from open_records() and yield (record, kept) in input order; counts go into `out`.

    open_records() is called once per pass (twice for an exact --keep-top over re-readable input)."""
    tag = clf.tag
    if keep.mode in ("threshold", "score_only"):
        out.cut = keep.threshold if keep.mode == "threshold" else None
        for batch, scores in scorer.map(batches(open_records())):
            _tag(batch, scores, tag)
            k = np.ones(len(batch), bool) if keep.mode == "score_only" else scores >= keep.threshold
            yield from _finish(out, batch, scores, k)
    elif rereadable:
        yield from _keep_top_exact(scorer, open_records, keep, tag, out, tmp_dir)
    else:
        yield from _keep_top_streaming(scorer, open_records, keep, tag, out)


def _finish(out: Outcome, batch: list[Record], scores: np.ndarray, k: np.ndarray) -> Iterator[tuple[Record, bool]]:
    out.histogram.add(scores, k)
    n_kept = int(k.sum())
    out.kept += n_kept
    out.dropped += len(batch) - n_kept
    out.scored += len(batch)
    yield from zip(batch, k.tolist())


def _keep_top_exact(scorer, open_records, keep: Keep, tag, out: Outcome, tmp_dir) -> Iterator[tuple[Record, bool]]:
    spill = _Spill(tmp_dir)
    try:
        for _, scores in scorer.map(batches(open_records())):
            spill.write(scores)
        n = spill.n
        k = int(math.floor(keep.fraction * n + 0.5))
        if k == 0:
            t, m = math.inf, 0
        else:
            t, m = kth_largest(spill.chunks, k)
        out.cut = None if k == 0 else t
        out.quantile = "exact (two passes over the input; ties at the cut kept in input order)"
        out.extra["target_kept"] = k
        ties_left = m
        chunks = spill.chunks()
        buf = np.zeros(0)
        seen = 0
        for batch in batches(open_records()):
            while len(buf) < len(batch):
                nxt = next(chunks, None)
                if nxt is None:
                    raise DataError(
                        f"the input changed between the two passes of --keep-top (now more than {n} records)",
                        hint="do not modify the input files while classify apply runs",
                    )
                buf = np.concatenate([buf, nxt])
            scores, buf = buf[: len(batch)], buf[len(batch) :]
            seen += len(batch)
            _tag(batch, scores, tag)
            kk = scores > t
            eq = np.flatnonzero(scores == t)
            if len(eq) and ties_left > 0:
                take = eq[:ties_left]
                kk[take] = True
                ties_left -= len(take)
            yield from _finish(out, batch, scores, kk)
        if seen != n:
            raise DataError(
                f"the input changed between the two passes of --keep-top ({n} records, then {seen})",
                hint="do not modify the input files while classify apply runs",
            )
    finally:
        spill.close()


def _keep_top_streaming(scorer, open_records, keep: Keep, tag, out: Outcome) -> Iterator[tuple[Record, bool]]:
    frac = keep.fraction
    rng = np.random.default_rng(keep.seed)
    reservoir = np.zeros(0)
    seen = 0
    held: list[tuple[list[Record], np.ndarray]] = []
    held_n = held_bytes = 0
    out.quantile = (
        f"streaming estimate (input is not re-readable): first {WARMUP_RECORDS} records cut exactly, then the running "
        f"quantile of a {RESERVOIR}-score reservoir sample"
    )

    def absorb(scores: np.ndarray) -> None:
        nonlocal reservoir, seen
        room = RESERVOIR - len(reservoir)
        if room > 0:
            reservoir = np.concatenate([reservoir, scores[:room]])
        rest = scores[max(room, 0) :]
        if len(rest):
            pos = seen + max(room, 0) + np.arange(len(rest))  # 0-based index of each in the stream
            j = (rng.random(len(rest)) * (pos + 1)).astype(np.int64)
            hit = j < RESERVOIR
            reservoir[j[hit]] = rest[hit]  # later writes win, as in sequential reservoir sampling
        seen += len(scores)

    def cut() -> tuple[float, float]:
        s = np.sort(reservoir)[::-1]
        k = frac * len(s)
        if k < 1:
            return math.inf, 0.0
        t = s[int(math.ceil(k)) - 1]
        g = int((s > t).sum())
        e = int((s == t).sum())
        return float(t), min(1.0, max(0.0, (k - g) / e))

    def decide(scores: np.ndarray, t: float, p_tie: float) -> np.ndarray:
        kk = scores > t
        eq = scores == t
        if eq.any():
            kk |= eq & (rng.random(len(scores)) < p_tie)
        return kk

    warm = True
    for batch, scores in scorer.map(batches(open_records())):
        _tag(batch, scores, tag)
        if warm:
            held.append((batch, scores))
            held_n += len(batch)
            held_bytes += sum(len(r["text"]) for r in batch)
            absorb(scores)
            if held_n < WARMUP_RECORDS and held_bytes < WARMUP_BYTES:
                continue
            warm = False
            yield from _flush_held(held, frac, out)
            held = []
            continue
        t, p = cut()
        yield from _finish(out, batch, scores, decide(scores, t, p))
        absorb(scores)
    if warm and held:
        yield from _flush_held(held, frac, out)
    if len(reservoir):
        out.cut = cut()[0]


def _flush_held(held, frac: float, out: Outcome) -> Iterator[tuple[Record, bool]]:
    """Cut the warm-up records exactly (top round(frac * n), ties in input order)."""
    allsc = np.concatenate([s for _, s in held])
    k = int(math.floor(frac * len(allsc) + 0.5))
    order = np.lexsort((np.arange(len(allsc)), -allsc))[:k]
    kk = np.zeros(len(allsc), bool)
    kk[order] = True
    i = 0
    for batch, scores in held:
        yield from _finish(out, batch, scores, kk[i : i + len(batch)])
        i += len(batch)


# ---- the step ------------------------------------------------------------------------------------------------


@dataclass
class ApplyOptions:
    """What `classify apply` takes besides the shared record options (`pipeline.IOOptions`)."""

    clf: str = option(argument=True, show_default=False, help="Classifier directory written by `classify train`.")
    threshold: float | None = option(
        None,
        "--threshold",
        show_default=False,
        help="Keep records with score >= this (default: the classifier's: its label threshold for regression, 0.5 "
        "for binary).",
    )
    keep_top: float | None = option(
        None,
        "--keep-top",
        show_default=False,
        help="Keep this fraction of records with the highest scores (exact for files, a streaming estimate from "
        "stdin).",
    )
    score_only: bool = option(False, "--score-only", help="Keep every record; only add `quality`.")
    rejects: str | None = option(
        None, "--rejects", show_default=False, help="Also write the dropped records here (e.g. rejects.jsonl.zst)."
    )
    workers: int = option(
        0, "--workers", min=0, help="Scoring processes (0: one per core). Output is identical for any value."
    )
    model_checkpoint: str | None = option(
        None,
        "--model-checkpoint",
        show_default=False,
        help="model: features: where the checkpoint is now (default: the path used in training).",
    )
    tokenizer: str | None = option(
        None, "--tokenizer", show_default=False, help="model: features: tokenizer.json to use."
    )
    device: str = option("auto", "--device", help="model: features: auto, cpu, cuda ...")
    embed_batch_size: int | None = option(
        None, "--embed-batch-size", min=1, show_default=False, help="model: features: documents per forward pass."
    )
    tmp_dir: str | None = option(
        None, "--tmp-dir", show_default=False, help="Where --keep-top spills scores (8 bytes per record)."
    )

    def __post_init__(self) -> None:
        check(self)
        if self.keep_top is not None and self.threshold is not None:
            raise UsageError("--keep-top and --threshold both choose what to keep", hint="give one of them")
        if self.score_only and (self.keep_top is not None or self.threshold is not None or self.rejects):
            raise UsageError(
                "--score-only keeps everything: it does not combine with --keep-top, --threshold or --rejects"
            )
        if self.keep_top is not None and not 0 < self.keep_top <= 1:
            raise UsageError(
                f"--keep-top {self.keep_top:g} must be a fraction in (0, 1]",
                hint="e.g. --keep-top 0.3 keeps the best 30%",
            )

    @property
    def load_kwargs(self) -> dict:
        """How to load the classifier (where its model: features' checkpoint is now, on which device)."""
        return {
            "checkpoint": self.model_checkpoint,
            "tokenizer": self.tokenizer,
            "device": self.device,
            "embed_batch_size": self.embed_batch_size,
        }


class Apply:
    """`classify apply` as a record step: adds `quality: {score, classifier}`, yields the kept records in input
    order, writes the dropped ones to --rejects. The classifier is loaded (and verified) when the step is built.

    After the last record, `summary` holds the counts, the cut and the score histogram (also in the manifest)."""

    name = "classify apply"
    required: tuple[str, ...] = ("text",)

    def __init__(self, opts: ApplyOptions):
        self.opts = opts
        self.classifier = load_classifier(opts.clf, **opts.load_kwargs)
        workers = opts.workers or default_workers()
        if self.classifier.pipeline.uses_model and workers > 1:
            if opts.workers > 1:
                console.warn(
                    "model: features run in one process (torch uses all cores, or the GPU); ignoring --workers"
                )
            workers = 1
        self.workers = workers
        if opts.score_only:
            self.keep = Keep("score_only")
        elif opts.keep_top is not None:
            self.keep = Keep("keep_top", fraction=opts.keep_top)
        else:
            self.keep = Keep(
                "threshold", threshold=self.classifier.decision if opts.threshold is None else opts.threshold
            )
        self.info = {
            "classifier": self.classifier.tag,
            "path": opts.clf,
            "estimator": self.classifier.estimator,
            "target": self.classifier.target,
            "features": self.classifier.pipeline.spec(),
            "workers": workers,
            "keep": {"mode": self.keep.mode, "threshold": self.keep.threshold, "keep_top": self.keep.fraction},
        }
        self.summary: dict | None = None

    def __call__(self, records: Iterable[Record], ctx: Context) -> Iterator[Record]:
        keep = dataclasses.replace(self.keep, seed=ctx.seed)
        out = Outcome(histogram=histogram_for(self.classifier))
        passes = [records]

        def open_records() -> Iterable[Record]:
            return passes.pop() if passes else ctx.reopen()

        rej_stats = Stats()
        rejects = (
            RecordWriter(
                self.opts.rejects,
                tool="classify apply (rejects)",
                shard=ctx.shard,
                stats=rej_stats,
                seed=ctx.seed,
                inputs=ctx.inputs,
                manifest_extra={"classify": self.info},
                **({} if ctx.shard_size is None else {"shard_size": ctx.shard_size}),
            )
            if self.opts.rejects
            else None
        )
        drop = ctx.stats.drop
        with (
            rejects if rejects is not None else contextlib.nullcontext(),
            Scorer(self.classifier, self.opts.clf, workers=self.workers, load_kwargs=self.opts.load_kwargs) as scorer,
        ):
            chosen = select(
                self.classifier,
                scorer,
                open_records,
                keep,
                out,
                rereadable=ctx.reopen is not None,
                tmp_dir=self.opts.tmp_dir,
            )
            for rec, kept in chosen:
                if kept:
                    yield rec
                else:
                    drop("below_cut")
                    if rejects is not None:
                        rejects.write(rec)
            self.summary = out.to_dict()
            self.info["result"] = self.summary
            ctx.stats.extra["classify"] = {k: self.summary[k] for k in ("scored", "kept", "dropped")}
            rej_stats.extra["classify"] = ctx.stats.extra["classify"]

    def manifest(self) -> dict:
        return {"classify": self.info}


def default_workers() -> int:
    """All the cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
