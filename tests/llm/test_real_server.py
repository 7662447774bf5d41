"""label, synth and eval against a real OpenAI-compatible server no one here wrote: `transformers serve` on
SmolLM2-135M-Instruct (tests/real_server.py), with each tool's default request timeout and concurrency.

The fake server (phitools.llm.testing.FakeLLMServer) proves the fault handling; these prove the protocol:
every request answered, every record complete. Few records and small --max-tokens keep them to seconds on a
CPU (the server generates one request at a time). A 135M model is a poor judge, so label uses a one-line
rubric it can answer with a number; whether its answers are good is not the question here.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

# one server per test session; `-n 2 --dist loadgroup` keeps these on one worker, hence one server
real_server = pytest.mark.xdist_group("transformers_serve")


def _manifest(path: Path) -> dict:
    return json.loads(path.read_text())


def _llm_ok(llm: dict, requests: int, *, parse_failures_allowed: bool = False) -> None:
    """Every request was answered by the server: no timeout, refused or dropped connection, HTTP error or
    malformed body, on any attempt (a label the model's answer did not give may still fail to parse)."""
    usage = llm["usage"]
    assert usage["requests"] == requests and usage["completion_tokens"] > 0, usage
    assert set(usage["errors"]) <= ({"unparseable"} if parse_failures_allowed else set()), usage
    if not parse_failures_allowed:
        assert usage["failures"] == 0 and usage["sent"] == requests, usage


def test_model_cache_is_safe_when_runs_race(tmp_path, monkeypatch):
    # several runs converting at once: one conversion, one complete directory, every run gets it
    import threading
    import time

    import real_server

    import phitools.llm.local

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF model bytes")
    monkeypatch.setattr(phitools.llm.local, "default_gguf_path", lambda: gguf)
    calls = []

    def fake_convert(src, out):
        calls.append(out)
        time.sleep(0.3)  # long enough for every other run to arrive meanwhile
        (out / "model.safetensors").write_bytes(b"w")
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(real_server, "convert_gguf", fake_convert)
    got = []
    runs = [
        threading.Thread(target=lambda: got.append(real_server.smollm2_model_dir(tmp_path / "cache"))) for _ in range(4)
    ]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert len(calls) == 1 and len(got) == 4 and len(set(got)) == 1
    root = got[0].parent
    assert sorted(p.name for p in root.iterdir()) == [".convert.lock", got[0].name]  # no half-made directory left
    assert (got[0] / "config.json").is_file() and (got[0] / "model.safetensors").is_file()


@pytest.mark.slow
@real_server
def test_the_server_names_its_model(transformers_server):
    assert transformers_server.models() == [transformers_server.model]


@pytest.mark.slow
@real_server
def test_label(transformers_server, tmp_path, phitools):
    texts = [
        'def add(a, b):\n    """Return the sum of a and b."""\n    return a + b\n',
        "x=1;y=2;print(x+y)\n",
        "import os\nfor name in os.listdir('.'):\n    # show every file\n    print(name)\n",
    ]
    (tmp_path / "c.jsonl").write_bytes(
        b"".join(orjson.dumps({"id": f"r{i}", "text": t}) + b"\n" for i, t in enumerate(texts))
    )
    (tmp_path / "rubric.txt").write_text("Rate this code from 0 to 5:\n\n{text}\n")
    r = phitools(
        "label",
        "c.jsonl",
        "--rubric",
        "rubric.txt",
        "--api-base",
        transformers_server.url,
        "--model",
        transformers_server.model,
        "--max-tokens",
        "16",
        "-o",
        "labeled.jsonl",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr.decode() + transformers_server.log_tail()
    out = [orjson.loads(x) for x in (tmp_path / "labeled.jsonl").read_bytes().splitlines()]
    assert [o["id"] for o in out] == ["r0", "r1", "r2"] and all(o["text"] == t for o, t in zip(out, texts))
    for o in out:  # a label for every record: a score, or the model's unparseable answer, never a lost request
        lab = o["label"]
        assert lab["model"] == transformers_server.model
        assert lab["score"] is not None or lab["error"].startswith("unparseable answer"), lab
    assert any(o["label"]["score"] is not None for o in out)
    m = _manifest(tmp_path / "labeled.jsonl.manifest.json")
    assert m["llm"]["timeout_s"] == 120 and m["llm"]["concurrency"] == 8  # the defaults
    _llm_ok(m["llm"], 3, parse_failures_allowed=True)


@pytest.mark.slow
@real_server
def test_synth(transformers_server, tmp_path, phitools):
    (tmp_path / "topics.txt").write_text("lists\nloops\n")
    r = phitools(
        "synth",
        "--topics",
        "topics.txt",
        "--n",
        "2",
        "--api-base",
        transformers_server.url,
        "--model",
        transformers_server.model,
        "--max-tokens",
        "48",
        "-o",
        "synth/",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr.decode() + transformers_server.log_tail()
    out = [orjson.loads(x) for x in phitools("cat", "synth/", cwd=tmp_path, check=True).stdout.splitlines()]
    assert len(out) == 2 and all(o["text"].strip() and o["synth"]["model"] == transformers_server.model for o in out)
    m = _manifest(tmp_path / "synth" / "manifest.json")
    assert m["stats"]["records_out"] == 2 and m["stats"]["dropped"] == {}
    assert m["llm"]["timeout_s"] == 120
    _llm_ok(m["llm"], 2)


@pytest.mark.slow
@real_server
def test_eval_completions_with_default_flags(transformers_server, tmp_path, phitools):
    # the case: raw /v1/completions, eval's defaults (512 tokens, 600 s per request, sandbox --timeout 3)
    r = phitools(
        "eval",
        "--api-base",
        transformers_server.url,
        "--model",
        transformers_server.model,
        "--limit",
        "2",
        "-o",
        "he/",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr.decode() + transformers_server.log_tail()
    samples = [json.loads(x) for x in (tmp_path / "he" / "samples.jsonl").read_text().splitlines()]
    assert [s["task_id"] for s in samples] == ["HumanEval/0", "HumanEval/1"]
    assert not any("generation_error" in s for s in samples), samples
    m = _manifest(tmp_path / "he" / "manifest.json")
    gen = m["generation"]
    assert gen["chat"] is False and gen["max_new_tokens"] == 512 and gen["llm"]["timeout_s"] == 600
    _llm_ok(gen["llm"], 2)
    summary = json.loads((tmp_path / "he" / "summary.json").read_text())
    assert summary["samples"] == 2 and sum(summary["status"].values()) == 2


@pytest.mark.slow
@real_server
def test_eval_chat(transformers_server, tmp_path, phitools):
    r = phitools(
        "eval",
        "--api-base",
        transformers_server.url,
        "--model",
        transformers_server.model,
        "--chat",
        "--limit",
        "1",
        "--max-tokens",
        "64",
        "-o",
        "chat/",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr.decode() + transformers_server.log_tail()
    (s,) = [json.loads(x) for x in (tmp_path / "chat" / "samples.jsonl").read_text().splitlines()]
    assert "generation_error" not in s and s["raw"].strip()
    _llm_ok(_manifest(tmp_path / "chat" / "manifest.json")["generation"]["llm"], 1)
