"""Words and hashed n-grams: the one tokenisation behind `stats`, near-duplicate detection and `decontam`.

A *word* is a maximal run of Unicode letters, digits and underscores, lowercased; punctuation and
whitespace separate words and are otherwise ignored. That makes every measure here insensitive to
formatting (indentation, quote style, spacing around operators), which is what you want for diversity
and overlap statistics on both prose and code.

Words hash to stable 64-bit values (blake2b, the same in every process and on every machine, unlike
Python's salted `hash`), and n-grams to 64-bit rolling hashes computed with numpy. Two different n-grams
share a hash with probability ~n^2 / 2^64: negligible at corpus scale.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

WORD_RE = re.compile(r"\w+")
_MASK64 = (1 << 64) - 1
_ROLL = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier for the rolling combination
_EMPTY = np.zeros(0, dtype=np.uint64)


def words(text: str) -> list[str]:
    """The words of `text`: lowercased runs of letters, digits and underscore."""
    return WORD_RE.findall(text.lower())


class WordHasher:
    """Map words to stable uint64 hashes, memoising the (slow) cryptographic hash per distinct word."""

    def __init__(self, max_cache: int = 2_000_000):
        self._cache: dict[str, int] = {}
        self._max = max_cache

    def _hash(self, w: str) -> int:
        h = int.from_bytes(hashlib.blake2b(w.encode("utf-8"), digest_size=8).digest(), "little")
        if len(self._cache) >= self._max:
            self._cache.clear()  # bounded memory on corpora with huge vocabularies
        self._cache[w] = h
        return h

    def hashes(self, toks: list[str]) -> np.ndarray:
        """uint64 hashes of a list of words, shape (len(toks),)."""
        out = list(map(self._cache.get, toks))
        if None in out:  # a C-level scan; the Python loop below runs only when there are new words
            for i, h in enumerate(out):
                if h is None:
                    out[i] = self._hash(toks[i])
        return np.array(out, dtype=np.uint64) if out else _EMPTY

    def text(self, text: str) -> np.ndarray:
        """uint64 hashes of the words of `text`."""
        return self.hashes(words(text))


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised: spreads the bits of each uint64 (wrapping arithmetic)."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def ngram_hashes(h: np.ndarray, n: int, *, short: bool = False) -> np.ndarray:
    """Hashes of every n-gram of the word-hash sequence `h`, shape (len(h) - n + 1,).

    The combination is order-sensitive (a rolling polynomial then a mix). With `short=True` a sequence
    shorter than n yields one hash of the whole sequence instead of nothing (used for shingling short texts).
    """
    L = int(h.shape[0])
    tag = n
    if L < n:
        if not short or L == 0:
            return _EMPTY
        n = L
        tag = (1 << 32) | L  # a whole short text: never equal to a full n-gram of the same words
    m = L - n + 1
    with np.errstate(over="ignore"):
        acc = h[:m].copy()
        for t in range(1, n):
            acc = acc * _ROLL + h[t : t + m]
        acc ^= np.uint64(tag)
        return mix64(acc)


def sorted_unique(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a 1-d array (sort + mask: many times faster than np.unique on uint64 here)."""
    if x.size < 2:
        return x.copy()
    s = np.sort(x)
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]
