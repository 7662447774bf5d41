"""`hash` features: hashed word, sub-word and character n-grams with TF-IDF weighting, tokenised for code.

Everything is vectorised over a whole batch of documents (numpy; no Python loop per token):

- the batch is one byte buffer: the UTF-8 documents, each followed by a NUL separator, then zero padding;
- an unaligned 8-byte view of the buffer gives, at every position i, the bytes i..i+7 as one uint64, so a
  byte n-gram (n <= 8) is that word masked to n bytes, and a token is up to four such words (bytes 0-31)
  plus its last 8 bytes and its length, each masked to the token, combined by multiply-xor;
- the key is finalised (xor a per-family seed, multiply by an odd constant) and its top bits pick one of
  `n_features` buckets (multiplicative hashing).
Only a token's own bytes enter its key, so a document's features never depend on its neighbours (nor on
batch size or worker count). Tokens longer than 32 bytes are keyed by their first 32 bytes, last 8 bytes
and length.

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

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

_MIX = 0xD6E8FEB86659FD93  # finaliser multiplier (odd)
_K = [
    np.uint64(k)
    for k in (
        0x9E3779B97F4A7C15,
        0xC2B2AE3D27D4EB4F,
        0x165667B19E3779F9,
        0x27D4EB2F165667C5,
        0x85EBCA77C2B2AE63,
        0xFF51AFD7ED558CCD,
    )
]
U64 = np.uint64
_PAD = 40  # zero bytes after the buffer, so every 8-byte read up to byte 32 of a token stays inside
# MASK[n]: the low n bytes of a little-endian uint64 (n = 0..8)
# byte -> class code for the dense statistics: 0 space, 1 letter, 2 digit, 3 punctuation, 4 non-ASCII, 5 other
_CLASS_TABLE = bytes(
    0
    if b in (9, 10, 11, 12, 13, 32)
    else 1
    if chr(b).isalpha() and b < 128
    else 2
    if 48 <= b <= 57
    else 3
    if 33 <= b <= 126
    else 4
    if b >= 128
    else 5
    for b in range(256)
)
_MASK = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [(1 << 64) - 1], np.uint64)

DENSE_STATS = (
    "log_bytes",
    "log_lines",
    "log_mean_line",
    "log_max_line",
    "frac_space",
    "frac_alpha",
    "frac_digit",
    "frac_punct",
    "frac_nonascii",
    "log_mean_word",
    "frac_blank_lines",
    "frac_comment_lines",
    "frac_long_lines",
    "triple_quotes_per_line",
)


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
    char_ngrams: tuple = (4,)
    words: bool = True
    subwords: bool = True
    bigrams: bool = True
    max_bytes: int = 100_000  # only the first max_bytes of each document are featurised
    version: int = 2

    def __post_init__(self) -> None:
        self.char_ngrams = tuple(sorted({int(n) for n in self.char_ngrams}))
        if self.n_features < 16 or self.n_features > (1 << 26) or self.n_features & (self.n_features - 1):
            raise ValueError(f"n_features must be a power of two between 16 and 2^26, got {self.n_features}")
        if any(n < 1 or n > 8 for n in self.char_ngrams):
            raise ValueError(f"char n-gram sizes must be 1..8, got {list(self.char_ngrams)}")
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
        fams = (
            (["word"] if self.words else []) + (["bigram"] if self.bigrams else []) + (["sub"] if self.subwords else [])
        )
        return fams + [f"char{n}" for n in self.char_ngrams]

    def to_json(self) -> dict:
        d = asdict(self)
        d["char_ngrams"] = list(self.char_ngrams)
        d["dense_stats"] = list(DENSE_STATS)
        return d

    @classmethod
    def from_json(cls, d: dict) -> HashSettings:
        if d.get("version", 2) != 2:
            raise ValueError(f"unknown hash feature version {d.get('version')!r}")
        if list(d.get("dense_stats", DENSE_STATS)) != list(DENSE_STATS):
            raise ValueError("dense statistics differ from this phitools version's")
        return cls(
            **{
                k: d[k]
                for k in ("n_features", "char_ngrams", "words", "subwords", "bigrams", "max_bytes", "version")
                if k in d
            }
        )


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
    seps: np.ndarray  # (n_docs,) position of each document's separator byte = its end
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


def _words8(raw: bytes) -> np.ndarray:
    """(L,) uint64 view: element i is bytes i..i+7 of `raw` (little-endian); raw must carry 8 bytes of padding."""
    return np.ndarray(shape=(len(raw) - 8,), dtype="<u8", buffer=raw, offset=0, strides=(1,))


def _span_keys(V: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """A 64-bit key of each byte span [s, e) from its first 32 bytes, its last 8 and its length."""
    n = e - s
    h = (V[s] & _MASK[np.minimum(n, 8)]) ^ (n.astype(U64) * _K[5])
    for j in (1, 2, 3):
        rest = n - 8 * j
        m = rest > 0
        if not m.any():
            break
        idx = np.flatnonzero(m)  # only spans this long are touched: a key depends on its own span alone
        hi = h[idx] ^ ((V[s[idx] + 8 * j] & _MASK[np.minimum(rest[idx], 8)]) * _K[j])
        hi *= _K[0]
        hi ^= hi >> U64(31)
        h[idx] = hi
    long_ = np.flatnonzero(n > 32)
    if len(long_):
        h[long_] ^= V[e[long_] - 8] * _K[4]
    return h


def hash_batch(texts: Sequence[str], settings: HashSettings) -> HashedBatch:
    """Tokenise and hash a batch of documents. A pure function of each document: batching does not matter."""
    n = len(texts)
    cap = settings.max_bytes
    enc = [t.encode("utf-8", "surrogatepass") for t in texts]
    enc = [e if len(e) <= cap else e[:cap] for e in enc]
    lens = np.fromiter((len(e) for e in enc), np.int64, n)
    raw = b"\x00".join(enc) + b"\x00" * (1 + _PAD)
    L = len(raw) - _PAD
    buf = np.frombuffer(raw, np.uint8, count=L)
    seps = np.cumsum(lens + 1) - 1
    out = HashedBatch(n_docs=n, seps=seps)
    shift = U64(64 - settings.bits)

    def finish(h: np.ndarray, fam: str) -> np.ndarray:
        # in place: h is a temporary we own
        h ^= _seed(fam)
        h *= U64(_MIX)
        h >>= shift
        return h.view(np.int64)

    def inv(counts: np.ndarray) -> np.ndarray:
        r = np.zeros(n, np.float64)
        nz = counts > 0
        r[nz] = 1.0 / counts[nz]
        return r

    # byte classes by arithmetic (faster than table look-ups)
    upper = (buf - np.uint8(65)) < 26
    lower = (buf - np.uint8(97)) < 26
    digit = (buf - np.uint8(48)) < 10
    nonascii = buf >= 128
    low_raw = np.frombuffer(raw, np.uint8) + np.concatenate((upper, np.zeros(_PAD, bool))).view(np.uint8) * np.uint8(32)
    VL = _words8(low_raw.tobytes())  # lowercased text
    # ---- words: runs of [A-Za-z0-9_] and non-ASCII bytes ----
    isw = upper | lower | digit | nonascii | (buf == 95)
    edge = np.diff(isw.view(np.int8), prepend=np.int8(0))  # +1 where a run starts, -1 just after it ends
    ws = np.flatnonzero(edge == 1)
    we = np.flatnonzero(edge == -1)  # every run ends, at the latest at its document's separator
    wdoc = out.doc_of(ws)
    wcount = np.bincount(wdoc, minlength=n)
    if settings.words or settings.bigrams:
        wh = _span_keys(_words8(raw), ws, we)  # case kept
        if settings.words:
            out.families.append(Family("word", finish(wh.copy(), "word"), ws, None, inv(wcount)))
        if settings.bigrams:
            same = wdoc[1:] == wdoc[:-1]
            bh = wh[:-1] * _K[1] ^ wh[1:]
            bh ^= bh >> U64(29)
            out.families.append(Family("bigram", finish(bh, "bigram"), ws[:-1], same, inv(np.maximum(wcount - 1, 0))))
    if settings.subwords:
        # a piece is a run of letters/digits (no '_') that also breaks at lower->Upper (getX -> get, x) and
        # before the last capital of a capital run followed by lowercase (HTTPResponse -> http, response)
        piece = isw & (buf != 95)
        low_or_digit = lower | digit | nonascii
        start = piece.copy()
        start[1:] &= (
            ~piece[:-1] | (upper[1:] & low_or_digit[:-1]) | (upper[1:] & upper[:-1] & np.append(lower[2:], False))
        )
        end = piece.copy()
        end[:-1] &= ~piece[1:] | start[1:]
        ss = np.flatnonzero(start)
        se = np.flatnonzero(end) + 1
        sh = _span_keys(VL, ss, se)
        out.families.append(Family("sub", finish(sh, "sub"), ss, None, inv(np.bincount(out.doc_of(ss), minlength=n))))
    # ---- byte n-grams of the lowercased text; those that would cross a separator are masked out ----
    for k in settings.char_ngrams:
        m = L - k + 1
        if m <= 0:
            out.families.append(Family(f"char{k}", np.zeros(0, np.int64), None, None, np.zeros(n)))
            continue
        g = VL[:m] & _MASK[k]
        valid = np.ones(m, bool)
        bad = (seps[:, None] - np.arange(k)[None, :]).ravel()
        valid[bad[(bad >= 0) & (bad < m)]] = False
        out.families.append(Family(f"char{k}", finish(g, f"char{k}"), None, valid, inv(np.maximum(lens - k + 1, 0))))
    out.dense = _dense_stats(buf, out, lens, ws, we, wdoc, wcount, upper | lower, digit, nonascii)
    return out


def _dense_stats(buf, batch: HashedBatch, lens, ws, we, wdoc, wcount, alpha, digit, nonascii) -> np.ndarray:
    """Per-document statistics (DENSE_STATS): size, line lengths, character classes, mean word length, and line kinds.

    A comment line is one whose first non-blank bytes are '#', '//' or '/*' (Python, shell, C-family).
    """
    n = batch.n_docs
    # class counts per document: one translate of the batch to class codes, one bincount per document
    codes = np.frombuffer(buf.tobytes().translate(_CLASS_TABLE), np.uint8)
    space = codes == 0
    starts = batch.seps - lens
    counts = np.zeros((6, n), np.float64)
    for d in range(n):
        counts[:, d] = np.bincount(codes[starts[d] : batch.seps[d]], minlength=6)
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
    # line kinds: step over each line's leading blanks (indentation is short, so few steps over few lines)
    first = np.concatenate(([0], brk[:-1] + 1))
    todo = np.flatnonzero(space[np.minimum(first, len(buf) - 1)] & (first < brk))
    for _ in range(64):
        if len(todo) == 0:
            break
        first[todo] += 1
        todo = todo[space[first[todo]] & (first[todo] < brk[todo])]
    for i in todo:  # more than 64 blanks: finish these few lines one by one
        rest = np.flatnonzero(~space[first[i] : brk[i]])
        first[i] = first[i] + rest[0] if len(rest) else brk[i]
    blank = first >= brk
    b0 = buf[np.minimum(first, len(buf) - 1)]
    b1 = buf[np.minimum(first + 1, len(buf) - 1)]
    comment = ~blank & ((b0 == 35) | ((b0 == 47) & ((b1 == 47) | (b1 == 42))))
    q = np.flatnonzero((buf == 34) | (buf == 39))  # quotes are rare: test for triples only where one starts
    q = q[q + 2 < len(buf)]
    tq = q[(buf[q + 1] == buf[q]) & (buf[q + 2] == buf[q])]
    tq_count = np.bincount(batch.doc_of(tq), minlength=n).astype(np.float64)
    per_line = [
        np.bincount(bdoc, weights=w.astype(np.float64), minlength=n) / lines for w in (blank, comment, linelen > 100)
    ]
    out = np.empty((n, len(DENSE_STATS)), np.float64)
    out[:, 0] = np.log1p(nbytes)
    out[:, 1] = np.log1p(lines)
    out[:, 2] = np.log1p(nbytes / lines)
    out[:, 3] = np.log1p(maxline)
    out[:, 4] = counts[0] / safe
    out[:, 5] = counts[1] / safe
    out[:, 6] = counts[2] / safe
    out[:, 7] = counts[3] / safe
    out[:, 8] = counts[4] / safe
    out[:, 9] = np.log1p(wlen_sum / np.maximum(wcount, 1))
    out[:, 10], out[:, 11], out[:, 12] = per_line
    out[:, 13] = tq_count / lines
    return out


# ---- consumers ------------------------------------------------------------------------------------------


def idf_from_df(df: np.ndarray, n_docs: int) -> np.ndarray:
    """Smoothed inverse document frequency, ln((1 + n) / (1 + df)) + 1, as float32 (as scikit-learn's smooth_idf)."""
    return (np.log((1.0 + n_docs) / (1.0 + np.asarray(df, np.float64))) + 1.0).astype(np.float32)


def to_csr(batch: HashedBatch, settings: HashSettings, idf: np.ndarray | None = None):
    """The full (n_docs, dim) feature matrix as scipy CSR (training); idf=None gives plain term frequencies.

    Duplicate (doc, bucket) items are summed with a bincount over a dense block of a few documents at a time,
    which is several times faster than sorting all items (coo -> csr).
    """
    import scipy.sparse as sp

    n, F = batch.n_docs, settings.n_features
    docid = batch.doc_per_byte()
    items = [batch.items(fam, docid) + (fam.inv_count,) for fam in batch.families]
    # items are in document order within each family: find each block's slice with searchsorted
    block = max(1, (1 << 22) // F)
    indptr = [np.zeros(1, np.int64)]
    indices, data = [], []
    nnz = 0
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        keys, weights = [], []
        for d, b, inv in items:
            a, z = np.searchsorted(d, [lo, hi])
            if z > a:
                dd = d[a:z]
                keys.append((dd - lo) * F + b[a:z])
                weights.append(inv[dd])
        acc = (
            np.bincount(np.concatenate(keys), weights=np.concatenate(weights), minlength=(hi - lo) * F)
            if keys
            else np.zeros((hi - lo) * F)
        )
        nz = np.flatnonzero(acc)
        rows = nz // F
        cols = nz - rows * F
        vals = acc[nz]
        if idf is not None:
            vals = vals * idf[cols]
        counts = np.bincount(rows, minlength=hi - lo)
        # append the dense statistics after each row's hashed buckets (columns stay sorted)
        row_start = np.concatenate(([0], np.cumsum(counts)))
        nd = settings.n_dense
        out_cols = np.empty(len(nz) + (hi - lo) * nd, np.int64)
        out_vals = np.empty(len(out_cols), np.float64)
        new_start = row_start + np.arange(hi - lo + 1) * nd
        pos_h = np.arange(len(nz)) + np.repeat(np.arange(hi - lo) * nd, counts)
        out_cols[pos_h] = cols
        out_vals[pos_h] = vals
        pos_d = (new_start[1:, None] - nd + np.arange(nd)[None, :]).ravel()
        out_cols[pos_d] = np.tile(np.arange(F, F + nd), hi - lo)
        out_vals[pos_d] = batch.dense[lo:hi].ravel()
        indices.append(out_cols)
        data.append(out_vals)
        indptr.append(new_start[1:] + nnz)
        nnz += len(out_cols)
    m = sp.csr_matrix((np.concatenate(data), np.concatenate(indices), np.concatenate(indptr)), shape=(n, settings.dim))
    m.has_sorted_indices = True
    return m


def to_columns(batch: HashedBatch, settings: HashSettings, idf: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Only the given columns, dense (n_docs, len(columns)): all a tree model reads. Equal to to_csr()[:, columns]."""
    n = batch.n_docs
    k = len(columns)
    used = np.zeros(settings.dim, bool)  # a 1-byte table stays in cache; most items miss it
    used[columns] = True
    slot = np.zeros(settings.dim, np.int64)
    slot[columns] = np.arange(k)
    X = np.zeros(n * k, np.float64)
    for fam in batch.families:
        hit = np.flatnonzero(used[fam.bucket])
        if fam.valid is not None:
            hit = hit[fam.valid[hit]]
        if len(hit) == 0:
            continue
        d = batch.doc_of(hit if fam.start is None else fam.start[hit])
        X += np.bincount(d * k + slot[fam.bucket[hit]], weights=fam.inv_count[d], minlength=n * k)
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
    return acc + batch.dense @ weights[settings.n_features :]
