"""Near-duplicate detection: MinHash signatures + LSH banding, verified by exact Jaccard similarity.

Method (parameters are the `MinHashParams` defaults, all reported in every output):

* A text is the set of its 5-word shingles (words as in `ngrams.words`; a text of fewer than 5 words is
  one shingle of all its words; a text with no words takes no part).
* Signature: for each of `num_perm`=128 hash functions h_k(x) = (a_k * x + b_k mod 2^64) >> 32 (multiply-
  shift, a_k odd), the minimum over the shingle hashes. Computed for a whole batch of texts at once with
  numpy (one (perm, shingle) matrix per chunk, then `minimum.reduceat` at text boundaries).
* LSH: the signature is cut into `bands`=32 bands of `rows`=4 values; two texts that agree on every value
  of any band become candidates. A pair with Jaccard J is a candidate with probability 1 - (1 - J^4)^32:
  0.99999995 at J = 0.8, 0.87 at J = 0.5, 0.28 at J = 0.3 -- recall at the threshold is essentially
  complete and the false candidates are removed by the next step.
* Verification: a candidate pair counts only if the exact Jaccard of the two shingle sets is >= 0.8.
* Keep-first: texts are processed in input order; a text is a near-duplicate if it matches an earlier text
  that was itself kept. The near-duplicate rate is the fraction of texts `--dedup` would remove.

The hash functions come from a fixed seed: they are part of the method, so results do not depend on --seed.
Memory: the shingle hashes of kept texts (8 bytes per distinct shingle) plus 32 bucket keys per kept text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from phitools.errors import UsageError
from phitools.steps.ngrams import WordHasher, mix64, ngram_hashes, sorted_unique

_CHUNK_ELEMENTS = 1 << 20  # (perm x shingle) matrix elements per numpy step: 8 MiB of uint64 stays in cache


@dataclass(frozen=True)
class MinHashParams:
    """Near-duplicate parameters; `bands * rows` must equal `num_perm`."""

    num_perm: int = 128
    bands: int = 32
    rows: int = 4
    shingle: int = 5
    threshold: float = 0.8
    hash_seed: int = 1234567

    def __post_init__(self) -> None:
        if self.num_perm <= 0 or self.bands <= 0 or self.rows <= 0:
            raise UsageError("MinHash num_perm, bands and rows must be positive")
        if self.bands * self.rows != self.num_perm:
            raise UsageError(
                f"MinHash bands x rows = {self.bands} x {self.rows} = {self.bands * self.rows}, "
                f"not num_perm = {self.num_perm}",
                hint="choose bands and rows whose product is num_perm, e.g. 32 x 4 = 128",
            )
        if not 0.0 < self.threshold <= 1.0:
            raise UsageError(f"near-duplicate threshold {self.threshold} is not in (0, 1]")
        if self.shingle <= 0:
            raise UsageError("shingle size must be positive")

    def describe(self) -> dict:
        """The parameters as reported in manifests and stats."""
        d = asdict(self)
        d["shingles"] = f"{self.shingle}-word shingles (lowercased \\w+ words)"
        d["jaccard_threshold"] = d.pop("threshold")
        d["candidate_probability_at_threshold"] = round(1.0 - (1.0 - self.threshold**self.rows) ** self.bands, 8)
        d["verification"] = "exact Jaccard of shingle sets"
        d["policy"] = "keep first; a text is a near-duplicate if it matches an earlier kept text"
        return d


class MinHasher:
    """Batch MinHash signatures of shingle sets."""

    def __init__(self, params: MinHashParams):
        self.params = params
        rng = np.random.default_rng(params.hash_seed)
        P = params.num_perm
        self.a = (rng.integers(0, 2**63, size=P, dtype=np.uint64) * np.uint64(2) + np.uint64(1)).reshape(P, 1)
        self.b = rng.integers(0, 2**63, size=P, dtype=np.uint64).reshape(P, 1)
        # per-band salt so equal row values in different bands are different buckets
        self.band_salt = rng.integers(0, 2**63, size=params.bands, dtype=np.uint64)

    def signatures(self, sets: Sequence[np.ndarray]) -> np.ndarray:
        """Signatures, shape (len(sets), num_perm) uint32; every set must be non-empty."""
        P = self.params.num_perm
        out = np.empty((len(sets), P), dtype=np.uint32)
        i = 0
        while i < len(sets):
            # take as many sets as fit one chunk (always at least one)
            j, total = i, 0
            while j < len(sets) and (j == i or (total + len(sets[j])) * P <= _CHUNK_ELEMENTS):
                total += len(sets[j])
                j += 1
            if j == i + 1 and total * P > _CHUNK_ELEMENTS:  # one big set: take the minimum over column chunks
                out[i] = self._one_large(sets[i])
                i = j
                continue
            x = np.concatenate(sets[i:j])
            offsets = np.zeros(j - i, dtype=np.int64)
            np.cumsum([len(s) for s in sets[i : j - 1]], out=offsets[1:])
            out[i:j] = np.minimum.reduceat(self._hash(x), offsets, axis=1).T.astype(np.uint32)
            i = j
        return out

    def _hash(self, x: np.ndarray) -> np.ndarray:
        """(a_k * x + b_k mod 2^64) >> 32 for every permutation k and value x: shape (P, len(x)), in place."""
        with np.errstate(over="ignore"):
            hv = self.a * x[None, :]
            hv += self.b
            hv >>= np.uint64(32)
        return hv

    def _one_large(self, s: np.ndarray) -> np.ndarray:
        cols = max(1, _CHUNK_ELEMENTS // self.params.num_perm)
        m = np.full(self.params.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
        for k in range(0, s.size, cols):
            np.minimum(m, self._hash(s[k : k + cols]).min(axis=1), out=m)
        return m.astype(np.uint32)

    def band_keys(self, sigs: np.ndarray) -> np.ndarray:
        """LSH bucket keys, shape (n, bands) uint64: a hash of each band's rows, salted by band."""
        n = sigs.shape[0]
        p = self.params
        s = sigs.reshape(n, p.bands, p.rows).astype(np.uint64)
        with np.errstate(over="ignore"):
            acc = np.zeros((n, p.bands), dtype=np.uint64)
            for r in range(p.rows):
                acc = acc * np.uint64(0x100000001B3) + s[:, :, r]
            acc ^= self.band_salt[None, :]
        return mix64(acc)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted unique uint64 arrays."""
    inter = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - inter
    return inter / union if union else 0.0


class NearDupIndex:
    """Streaming keep-first near-duplicate detector.

    `check(texts)` returns, for each text in order, None (kept: new content, or no words at all) or the
    position (0-based, over every text ever checked) of the earlier kept text it nearly duplicates.
    """

    def __init__(self, params: MinHashParams | None = None, hasher: WordHasher | None = None):
        self.params = params or MinHashParams()
        self.minhash = MinHasher(self.params)
        self.words = hasher or WordHasher()
        self._buckets: dict[int, list[int]] = {}
        self._kept: dict[int, np.ndarray] = {}
        self.seen = 0
        self.duplicates = 0
        self.no_words = 0
        self.cluster_sizes: dict[int, int] = {}  # kept position -> number of duplicates found of it

    def shingles(self, text: str) -> np.ndarray:
        """Sorted unique shingle hashes of a text (empty when it has no words)."""
        return self.shingles_of(self.words.text(text))

    def shingles_of(self, word_hashes: np.ndarray) -> np.ndarray:
        """Sorted unique shingle hashes from a text's word hashes (`WordHasher`)."""
        return sorted_unique(ngram_hashes(word_hashes, self.params.shingle, short=True))

    def check(self, texts: Sequence[str], *, word_hashes: Sequence[np.ndarray] | None = None) -> list[int | None]:
        """Classify a batch of texts (in order, against everything kept so far and each other).

        Pass `word_hashes` (one array per text, from this index's WordHasher) to skip tokenising again.
        """
        if word_hashes is not None:
            sets = [self.shingles_of(h) for h in word_hashes]
        else:
            sets = [self.shingles(t) for t in texts]
        nonempty = [k for k, s in enumerate(sets) if s.size]
        keys = np.zeros((len(texts), self.params.bands), dtype=np.uint64)
        if nonempty:
            sigs = self.minhash.signatures([sets[k] for k in nonempty])
            keys[nonempty] = self.minhash.band_keys(sigs)
        key_lists = keys.tolist()
        thr = self.params.threshold
        buckets = self._buckets
        result: list[int | None] = []
        for k, s in enumerate(sets):
            pos = self.seen
            self.seen += 1
            if not s.size:
                self.no_words += 1
                result.append(None)
                continue
            kl = key_lists[k]
            cands: set = set()
            for key in kl:
                lst = buckets.get(key)
                if lst:
                    cands.update(lst)
            dup_of = None
            for c in sorted(cands):
                if jaccard(s, self._kept[c]) >= thr:
                    dup_of = c
                    break
            if dup_of is None:
                self._kept[pos] = s
                for key in kl:
                    buckets.setdefault(key, []).append(pos)
            else:
                self.duplicates += 1
                self.cluster_sizes[dup_of] = self.cluster_sizes.get(dup_of, 0) + 1
            result.append(dup_of)
        return result

    def report(self) -> dict:
        """Counts and parameters, for a manifest or the stats report."""
        n = self.seen
        return {
            "texts": n,
            "near_duplicates": self.duplicates,
            "rate": round(self.duplicates / n, 6) if n else 0.0,
            "clusters": len(self.cluster_sizes),
            "largest_cluster": (max(self.cluster_sizes.values()) + 1) if self.cluster_sizes else 1 if n else 0,
            "texts_without_words": self.no_words,
            "params": self.params.describe(),
        }


def dedup_records(
    records: Iterable[dict], index: NearDupIndex, *, field: str = "text", batch: int = 512, on_drop=None
) -> Iterator[dict]:
    """Yield records whose `field` is not a near-duplicate of an earlier kept one (streaming, in batches).

    `on_drop(record, dup_of_position)` is called for each dropped record (e.g. to count it).
    """
    buf: list[dict] = []

    def flush() -> Iterator[dict]:
        verdicts = index.check([_text_of(r, field) for r in buf])
        for r, v in zip(buf, verdicts):
            if v is None:
                yield r
            elif on_drop is not None:
                on_drop(r, v)
        buf.clear()

    for rec in records:
        buf.append(rec)
        if len(buf) >= batch:
            yield from flush()
    if buf:
        yield from flush()


def _text_of(rec: dict, field: str) -> str:
    v = rec.get(field)
    return v if isinstance(v, str) else ""


def pairs_above(texts: Sequence[str], params: MinHashParams | None = None) -> list[tuple[int, int, float]]:
    """All LSH-candidate pairs (i < j) whose exact Jaccard >= threshold: for analysis and tests."""
    idx = NearDupIndex(params)
    sets = [idx.shingles(t) for t in texts]
    ok = [k for k, s in enumerate(sets) if s.size]
    if not ok:
        return []
    keys = idx.minhash.band_keys(idx.minhash.signatures([sets[k] for k in ok]))
    groups: dict[int, list[int]] = {}
    for row, k in zip(keys.tolist(), ok):
        for key in row:
            groups.setdefault(key, []).append(k)
    cand = {(a, b) for g in groups.values() if len(g) > 1 for ai, a in enumerate(g) for b in g[ai + 1 :]}
    out = []
    for a, b in sorted(cand):
        j = jaccard(sets[a], sets[b])
        if j >= idx.params.threshold:
            out.append((a, b, j))
    return out
