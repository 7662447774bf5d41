"""hash features: code-aware tokens, exact batch independence, and the three consumers agreeing."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from phitools.steps.classify import hashing
from phitools.steps.classify.hashing import DENSE_STATS, HashSettings, hash_batch, to_columns, to_csr


def _bucket_set(texts, fam, s):
    hb = hash_batch(texts, s)
    f = next(f for f in hb.families if f.name == fam)
    d, b = hb.items(f)
    return [sorted(b[d == i].tolist()) for i in range(len(texts))]


def test_subwords_split_on_case_and_underscores():
    s = HashSettings(n_features=1 << 20)
    # the pieces of one identifier hash like the same pieces written as separate lowercase words
    a = _bucket_set(["getHTTPResponse_code"], "sub", s)[0]
    b = _bucket_set(["get http response code"], "sub", s)[0]
    assert a == b and len(a) == 4
    # whole words keep their case and their underscores
    w1 = _bucket_set(["getHTTPResponse_code"], "word", s)[0]
    w2 = _bucket_set(["gethttpresponse_code"], "word", s)[0]
    assert len(w1) == 1 and w1 != w2


def test_char_ngrams_never_cross_documents():
    s = HashSettings(char_ngrams=(3,), words=False, subwords=False, bigrams=False)
    hb = hash_batch(["ab", "abc", ""], s)
    d, _ = hb.items(hb.families[0])
    assert np.bincount(d, minlength=3).tolist() == [0, 1, 0]
    assert hb.families[0].inv_count.tolist() == [0.0, 1.0, 0.0]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(max_size=60), min_size=1, max_size=6), st.integers(0, 5))
def test_features_do_not_depend_on_the_batch(texts, split):
    s = HashSettings(n_features=1 << 12)
    idf = np.linspace(1, 2, s.n_features).astype(np.float32)
    whole = to_csr(hash_batch(texts, s), s, idf).toarray()
    k = min(split, len(texts))
    parts = [to_csr(hash_batch(t, s), s, idf).toarray() for t in (texts[:k], texts[k:]) if t]
    assert np.array_equal(whole, np.vstack(parts))  # bit-identical, not just close


def test_consumers_agree(stdlib_small):
    texts = [p.read_text(errors="replace") for p in sorted(stdlib_small.glob("*.py"))[:12]]
    s = HashSettings()
    hb = hash_batch(texts, s)
    rng = np.random.default_rng(0)
    idf = (1 + rng.random(s.n_features)).astype(np.float32)
    X = to_csr(hb, s, idf)
    cols = np.sort(rng.choice(s.dim, 300, replace=False))
    cols[-1] = s.dim - 1  # include a dense statistic
    assert np.allclose(X[:, cols].toarray(), to_columns(hb, s, idf, cols), rtol=1e-12, atol=0)
    w = rng.normal(size=s.dim)
    assert np.allclose(X @ w, hashing.dot(hb, s, idf, w), rtol=1e-9)
    # each family's term frequencies sum to one per document
    tf = to_csr(hb, s)[:, : s.n_features]
    assert np.allclose(np.asarray(tf.sum(axis=1)).ravel(), len(s.families()))


def test_dense_statistics():
    s = HashSettings()
    doc = 'def f(x):\n    """Doc."""\n    # a comment\n\n    return x  ' + "y" * 120 + "\n"
    hb = hash_batch([doc, ""], s)
    d = dict(zip(DENSE_STATS, hb.dense[0]))
    assert np.isclose(d["log_bytes"], np.log1p(len(doc)))
    assert np.isclose(d["log_lines"], np.log1p(6))  # five lines and the empty one after the last newline
    assert np.isclose(d["frac_comment_lines"], 1 / 6) and np.isclose(d["frac_blank_lines"], 2 / 6)
    assert np.isclose(d["frac_long_lines"], 1 / 6) and np.isclose(d["triple_quotes_per_line"], 2 / 6)
    assert np.isfinite(hb.dense).all() and hb.dense[1, 0] == 0


def test_settings_validate_and_round_trip():
    s = HashSettings(n_features=1 << 10, char_ngrams=(5, 3))
    assert HashSettings.from_json(s.to_json()) == s
    for bad in (
        {"n_features": 1000},
        {"char_ngrams": (0,)},
        {"words": False, "subwords": False, "bigrams": False, "char_ngrams": ()},
    ):
        try:
            HashSettings(**bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")
