"""The SQLite request cache and the cache key."""

from __future__ import annotations

import sqlite3

from phitools.llm import LLMRequest, LLMResult, RequestCache, default_cache_path


def req(**kw) -> LLMRequest:
    kw.setdefault("messages", [{"role": "user", "content": "hi"}])
    return LLMRequest(**kw)


IDENT = {"kind": "openai", "api_base": "http://h/v1", "model": "m"}


def test_key_covers_everything_sent_and_nothing_local():
    base = req().cache_key(IDENT)
    assert req(parse=lambda t: t, tag="x").cache_key(IDENT) == base
    different = [
        req(sample=1),
        req(temperature=0.5),
        req(max_tokens=9),
        req(seed=1),
        req(top_p=0.9),
        req(stop=["x"]),
        req(model="other"),
        req(json_schema={"type": "object"}),
        req(extra={"top_k": 5}),
        req(messages=[{"role": "user", "content": "ho"}]),
        LLMRequest(prompt="hi"),
    ]
    keys = {r.cache_key(IDENT) for r in different}
    assert base not in keys and len(keys) == len(different)
    assert req().cache_key({**IDENT, "api_base": "http://other/v1"}) != base
    assert req().cache_key({**IDENT, "model": "m2"}) != base


def test_put_get_persist_and_wal(tmp_path):
    path = tmp_path / "c.sqlite"
    c = RequestCache(path)
    c.put(
        "k1",
        LLMResult(
            request=None,
            text="answer",
            model="m",
            finish_reason="stop",
            prompt_tokens=3,
            completion_tokens=1,
            attempts=2,
        ),
    )
    c.close()
    c2 = RequestCache(path)
    hit = c2.get("k1")
    assert hit.text == "answer" and hit.attempts == 2 and hit.prompt_tokens == 3 and hit.cached and hit.ok
    assert c2.get("missing") is None and len(c2) == 1
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_location_follows_the_output(tmp_path, monkeypatch):
    assert default_cache_path(str(tmp_path / "out")) == tmp_path / "out" / "llm-cache.sqlite"
    assert default_cache_path(str(tmp_path / "l.jsonl.zst")) == tmp_path / "l.jsonl.zst.llm-cache.sqlite"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_path(None) == tmp_path / "xdg" / "phitools" / "llm-cache.sqlite"
