"""`hash` features: hashed word, sub-word and character n-grams with TF-IDF weighting, tokenised for code.

Everything is vectorised over a whole batch of documents (numpy; no Python loop per token):

- the batch is one byte buffer: the UTF-8 documents, each followed by a NUL separator;
- a polynomial prefix hash over the buffer, H[i] = sum_{j<i} b[j] p^j (mod 2^64), gives the hash of any
  span [s, e) as (H[e] - H[s]) * p^-s: exact integer arithmetic that does not depend on where the span
  sits, so a document's features never depend on its neighbours (nor on batch size or worker count);
- the span hash is finalised (add a per-family seed, xor-shift, multiply) and its top bits pick one of
  `n_features` buckets.

Token families (each normalised by its own count in the document):
  word    whole identifiers/words (runs of [A-Za-z0-9_] and non-ASCII bytes), case kept: getHTTPResponse_code
  sub     identifier pieces split on underscores and case changes, lowercased: get, http, response, code
  bigram  consecutive whole words: (self, assertEqual)
  charN   byte N-grams of the lowercased text, for each N in `char_ngrams`

Bucket f of document d is  idf[f] * sum_families count(d, family, f) / n(d, family)  -- relative term
frequency times the smoothed inverse document frequency learnt in training -- and after the buckets come a
few dense document statistics (DENSE_STATS: size, line lengths, character classes) n-grams cannot see.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

_P = 0x9E3779B97F4A7C15           # polynomial base: odd, so invertible mod 2^64
_P_INV = pow(_P, -1, 1 << 64)
_MIX = 0xD6E8FEB86659FD93         # finaliser multiplier (odd)
U64 = np.uint64

DENSE_STATS = ("log_bytes", "log_lines", "log_mean_line", "log_max_line", "frac_space", "frac_alpha", "frac_digit",
               "frac_punct", "frac_nonascii", "log_mean_word")

_pow_cache: dict[str, np.ndarray] = {}


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """p^i and p^-i (mod 2^64) for i < n; cached and grown geometrically."""
    have = _pow_cache.get("p")
    if have is None or len(have) < n:
        m = max(n, 2 * len(have) if have is not None else 1 << 16)
        for key, base in (("p", _P), ("q", _P_INV)):
            a = np.full(m, base, U64)
            a[0] = 1
            _pow_cache[key] = np.cumprod(a, dtype=U64)
    return _pow_cache["p"][:n], _pow_cache["q"][:n]


def _seed(name: str) -> np.uint64:
    """A fixed per-family seed (FNV-1a of the family name): stable across runs, processes and machines."""
    h = 1469598103934665603
    for ch in name.encode():
        h = ((h ^ ch) * 1099511628211) & ((1 << 64) - 1)
    return U64(h)


@dataclass
class HashSettings:
    """Everything that defines the `hash` feature space; saved in the classifier's JSON."""

    n_features: int = 1 << 18
    char_ngrams: tuple = (3, 4, 5)
    words: bool = True
    subwords: bool = True
    bigrams: bool = True
    max_bytes: int = 100_000  # only the first max_bytes of each document are featurised
    version: int = 1

    def __post_init__(self) -> None:
        self.char_ngrams = tuple(sorted({int(n) for n in self.char_ngrams}))
        if self.n_features < 16 or self.n_features > (1 << 26) or self.n_features & (self.n_features - 1):
            raise ValueError(f"n_features must be a power of two between 16 and 2^26, got {self.n_features}")
        if any(n < 1 or n > 16 for n in self.char_ngrams):
            raise ValueError(f"char n-gram sizes must be 1..16, got {list(self.char_ngrams)}")
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if not (self.words or self.subwords or self.bigrams or self.char_ngrams):
            raise ValueError("no token family enabled")

    @property
    def bits(self) -> int:
        return self.n_features.bit_length() - 1

    @property
    def n_dense(self) -> int:
        return len(DENSE_STATS)

    @property
    def dim(self) -> int:
        """Columns: the hashed buckets, then the dense statistics."""
        return self.n_features + self.n_dense

    def families(self) -> list[str]:
        fams = (["word"] if self.words else []) + (["bigram"] if self.bigrams else []) + (["sub"] if self.subwords else [])
        return fams + [f"char{n}" for n in self.char_ngrams]

    def to_json(self) -> dict:
        d = asdict(self)
        d["char_ngrams"] = list(self.char_ngrams)
        d["dense_stats"] = list(DENSE_STATS)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "HashSettings":
        if d.get("version", 1) != 1:
            raise ValueError(f"unknown hash feature version {d.get('version')!r}")
        if list(d.get("dense_stats", DENSE_STATS)) != list(DENSE_STATS):
            raise ValueError("dense statistics differ from this phitools version's")
        return cls(**{k: d[k] for k in ("n_features", "char_ngrams", "words", "subwords", "bigrams", "max_bytes", "version") if k in d})


@dataclass
class Family:
    """The hashed items of one token family over a batch.

    bucket[i] is item i's bucket; start[i] its first byte in the batch buffer (None: item i starts at byte i);
    valid (None: all) masks out items that would cross a document boundary.
    """

    name: str
    bucket: np.ndarray
    start: np.ndarray | None
    valid: np.ndarray | None
    inv_count: np.ndarray  # (n_docs,) 1 / number of this family's items in each document (0 when none)


@dataclass
class HashedBatch:
    """A featurised batch: hashed families, dense statistics, and where each document sits in the buffer."""

    n_docs: int
    seps: np.ndarray        # (n_docs,) position of each document's separator byte = its end
    families: list = field(default_factory=list)
    dense: np.ndarray | None = None  # (n_docs, n_dense)

    def doc_of(self, pos: np.ndarray) -> np.ndarray:
        """Document index of byte positions."""
        return np.searchsorted(self.seps, pos, side="left")

    def doc_per_byte(self) -> np.ndarray:
        lens = np.diff(self.seps, prepend=-1)
        return np.repeat(np.arange(self.n_docs, dtype=np.int64), lens)

    def items(self, fam: Family, docid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(doc, bucket) of the valid items of one family."""
        b, pos = fam.bucket, fam.start
        if pos is None:
            pos = np.arange(len(b), dtype=np.int64)
        if fam.valid is not None:
            b, pos = b[fam.valid], pos[fam.valid]
        d = docid[pos] if docid is not None else self.doc_of(pos)
        return d, b


def hash_batch(texts: Sequence[str], settings: HashSettings) -> HashedBatch:
    """Tokenise and hash a batch of documents. A pure function of each document: batching does not matter."""
    n = len(texts)
    cap = settings.max_bytes
    enc = [t.encode("utf-8", "surrogatepass") for t in texts]
    enc = [e if len(e) <= cap else e[:cap] for e in enc]
    lens = np.fromiter((len(e) for e in enc), np.int64, n)
    buf = np.frombuffer(b"\x00".join(enc) + b"\x00", np.uint8)
    L = len(buf)
    seps = np.cumsum(lens + 1) - 1
    out = HashedBatch(n_docs=n, seps=seps)
    P, Q = _powers(L + 1)
    shift = U64(64 - settings.bits)

    def finish(h: np.ndarray, fam: str) -> np.ndarray:
        # in place: h is a temporary we own
        h += _seed(fam)
        h ^= h >> U64(29)
        h *= U64(_MIX)
        h >>= shift
        return h.view(np.int64)

    def inv(counts: np.ndarray) -> np.ndarray:
        r = np.zeros(n, np.float64)
        nz = counts > 0
        r[nz] = 1.0 / counts[nz]
        return r

    def prefix(b: np.ndarray) -> np.ndarray:
        H = np.empty(L + 1, U64)
        H[0] = 0
        np.cumsum(np.multiply(b.astype(U64), P[:L]), out=H[1:])
        return H

    # byte classes by arithmetic (faster than table look-ups)
    upper = (buf - np.uint8(65)) < 26
    lower = (buf - np.uint8(97)) < 26
    digit = (buf - np.uint8(48)) < 10
    nonascii = buf >= 128
    low = buf + upper.view(np.uint8) * np.uint8(32)
    HL = prefix(low)
    # ---- words: runs of [A-Za-z0-9_] and non-ASCII bytes ----
    isw = upper | lower | digit | nonascii | (buf == 95)
    edge = np.diff(isw.view(np.int8), prepend=np.int8(0))  # +1 where a run starts, -1 just after it ends
    ws = np.flatnonzero(edge == 1)
    we = np.flatnonzero(edge == -1)  # every run ends, at the latest at its document's separator
    wdoc = out.doc_of(ws)
    wcount = np.bincount(wdoc, minlength=n)
    if settings.words or settings.bigrams:
        H = prefix(buf)
        wh = (H[we] - H[ws]) * Q[ws] + (we - ws).astype(U64) * U64(_MIX)
        if settings.words:
            out.families.append(Family("word", finish(wh.copy(), "word"), ws, None, inv(wcount)))
        if settings.bigrams:
            same = wdoc[1:] == wdoc[:-1]
            bh = wh[:-1] * U64(_P) + wh[1:]
            out.families.append(Family("bigram", finish(bh, "bigram"), ws[:-1], same, inv(np.maximum(wcount - 1, 0))))
        del H
    if settings.subwords:
        # a piece is a run of letters/digits (no '_') that also breaks at lower->Upper (getX -> get, x) and
        # before the last capital of a capital run followed by lowercase (HTTPResponse -> http, response)
        piece = isw & (buf != 95)
        cap_ = upper
        low_or_digit = lower | digit | nonascii
        start = piece.copy()
        start[1:] &= ~piece[:-1] | (cap_[1:] & low_or_digit[:-1]) | (cap_[1:] & cap_[:-1] & np.append(lower[2:], False))
        end = piece.copy()
        end[:-1] &= ~piece[1:] | start[1:]
        ss = np.flatnonzero(start)
        se = np.flatnonzero(end) + 1
        sh = (HL[se] - HL[ss]) * Q[ss] + (se - ss).astype(U64) * U64(_MIX)
        out.families.append(Family("sub", finish(sh, "sub"), ss, None, inv(np.bincount(out.doc_of(ss), minlength=n))))
    # ---- byte n-grams of the lowercased text; those that would cross a separator are masked out ----
    for k in settings.char_ngrams:
        m = L - k + 1
        if m <= 0:
            out.families.append(Family(f"char{k}", np.zeros(0, np.int64), None, None, np.zeros(n)))
            continue
        g = HL[k:k + m] - HL[:m]
        g *= Q[:m]
        valid = np.ones(m, bool)
        bad = (seps[:, None] - np.arange(k)[None, :]).ravel()
        valid[bad[(bad >= 0) & (bad < m)]] = False
        out.families.append(Family(f"char{k}", finish(g, f"char{k}"), None, valid, inv(np.maximum(lens - k + 1, 0))))
    out.dense = _dense_stats(buf, out, lens, ws, we, wdoc, wcount, upper | lower, digit, nonascii)
    return out


def _dense_stats(buf, batch: HashedBatch, lens, ws, we, wdoc, wcount, alpha, digit, nonascii) -> np.ndarray:
    """Per-document statistics (DENSE_STATS): size, line lengths, character classes, mean word length."""
    n = batch.n_docs
    space = (buf == 32) | ((buf - np.uint8(9)) < 5)
    punct = ((buf - np.uint8(33)) < 94) & ~alpha & ~digit
    # class code per byte, counted per document in one bincount
    code = alpha.view(np.uint8) + digit.view(np.uint8) * np.uint8(2) + space.view(np.uint8) * np.uint8(3) \
        + punct.view(np.uint8) * np.uint8(4) + nonascii.view(np.uint8) * np.uint8(5)
    docid = batch.doc_per_byte()
    counts = np.bincount(docid * 6 + code, minlength=6 * n).reshape(n, 6).astype(np.float64)
    counts[:, 0] = 0  # code 0 (other, and the separator) is not used
    nbytes = lens.astype(np.float64)
    safe = np.maximum(nbytes, 1.0)
    brk = np.flatnonzero((buf == 10) | (buf == 0))
    brk = brk[(buf[brk] == 10) | np.isin(brk, batch.seps)]  # NUL inside a document is not a line break
    linelen = np.diff(brk, prepend=-1) - 1
    bdoc = batch.doc_of(brk)
    firsts = np.flatnonzero(np.diff(bdoc, prepend=-1) != 0)  # every doc has at least its separator
    lines = np.diff(np.append(firsts, len(brk))).astype(np.float64)
    maxline = np.maximum.reduceat(linelen, firsts).astype(np.float64)
    wlen_sum = np.bincount(wdoc, weights=(we - ws).astype(np.float64), minlength=n)
    out = np.empty((n, len(DENSE_STATS)), np.float64)
    out[:, 0] = np.log1p(nbytes)
    out[:, 1] = np.log1p(lines)
    out[:, 2] = np.log1p(nbytes / lines)
    out[:, 3] = np.log1p(maxline)
    out[:, 4] = counts[:, 3] / safe
    out[:, 5] = counts[:, 1] / safe
    out[:, 6] = counts[:, 2] / safe
    out[:, 7] = counts[:, 4] / safe
    out[:, 8] = counts[:, 5] / safe
    out[:, 9] = np.log1p(wlen_sum / np.maximum(wcount, 1))
    return out


# ---- consumers ------------------------------------------------------------------------------------------

def idf_from_df(df: np.ndarray, n_docs: int) -> np.ndarray:
    """Smoothed inverse document frequency, ln((1 + n) / (1 + df)) + 1, as float32 (as scikit-learn's smooth_idf)."""
    return (np.log((1.0 + n_docs) / (1.0 + np.asarray(df, np.float64))) + 1.0).astype(np.float32)


def to_csr(batch: HashedBatch, settings: HashSettings, idf: np.ndarray | None = None):
    """The full (n_docs, dim) feature matrix as scipy CSR (training); idf=None gives plain term frequencies."""
    import scipy.sparse as sp

    docid = batch.doc_per_byte()
    rows, cols, vals = [], [], []
    for fam in batch.families:
        d, b = batch.items(fam, docid)
        rows.append(d)
        cols.append(b)
        vals.append(fam.inv_count[d] * idf[b] if idf is not None else fam.inv_count[d])
    n = batch.n_docs
    rows.append(np.repeat(np.arange(n), settings.n_dense))
    cols.append(np.tile(np.arange(settings.n_features, settings.dim), n))
    vals.append(batch.dense.ravel())
    # tocsr() sums duplicate (doc, bucket) entries
    return sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, settings.dim)).tocsr()


def to_columns(batch: HashedBatch, settings: HashSettings, idf: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Only the given columns, dense (n_docs, len(columns)): all a tree model reads. Equal to to_csr()[:, columns]."""
    n = batch.n_docs
    k = len(columns)
    slot = np.full(settings.dim, -1, np.int64)
    slot[columns] = np.arange(k)
    X = np.zeros(n * k, np.float64)
    for fam in batch.families:
        s = slot[fam.bucket]
        hit = np.flatnonzero(s >= 0)
        if fam.valid is not None:
            hit = hit[fam.valid[hit]]
        if len(hit) == 0:
            continue
        d = batch.doc_of(hit if fam.start is None else fam.start[hit])
        X += np.bincount(d * k + s[hit], weights=fam.inv_count[d], minlength=n * k)
    X = X.reshape(n, k)
    hashed = columns < settings.n_features
    X[:, hashed] *= idf[columns[hashed]]
    dense_cols = np.flatnonzero(~hashed)
    if len(dense_cols):
        X[:, dense_cols] = batch.dense[:, columns[dense_cols] - settings.n_features]
    return X


def dot(batch: HashedBatch, settings: HashSettings, idf: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """X @ weights without building X (for a linear model over every bucket): (n_docs,) float64."""
    wi = weights[: settings.n_features] * idf
    docid = batch.doc_per_byte()
    acc = np.zeros(batch.n_docs, np.float64)
    for fam in batch.families:
        w = wi[fam.bucket]
        if fam.valid is not None:
            w = w * fam.valid
        d = docid[: len(w)] if fam.start is None else docid[fam.start]
        acc += np.bincount(d, weights=w, minlength=batch.n_docs) * fam.inv_count
    return acc + batch.dense @ weights[settings.n_features:]
