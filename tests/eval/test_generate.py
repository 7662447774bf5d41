"""Generation: batched KV-cache sampling from a checkpoint, stop sequences, chat code extraction, endpoints."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from phitools.eval import generate as gen
from phitools.eval.benchmarks import HUMANEVAL_STOPS, Problem

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def make_checkpoint(root: Path, *, max_seq_len: int = 256) -> Path:
    """A tiny random Phi checkpoint with its tokenizer.json (a small BPE trained on stdlib code)."""
    import torch

    from phitools.model.checkpoint import save_checkpoint
    from phitools.model.phi import Phi, preset_config
    from phitools.steps import tokenize as T

    root.mkdir(parents=True, exist_ok=True)
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(STDLIB.glob("*.py"))[:20]]
    tok = T.train_tokenizer(texts, 400)
    tok.save(str(root / "tokenizer.json"))
    torch.manual_seed(0)
    m = Phi(
        preset_config(
            "tiny",
            vocab_size=tok.get_vocab_size(with_added_tokens=True),
            n_layer=2,
            d_model=64,
            n_head=4,
            d_mlp=128,
            max_seq_len=max_seq_len,
            init_std=0.2,
        )
    )
    return save_checkpoint(root / "ckpt", m, extra_files={"tokenizer.json": root / "tokenizer.json"})


@pytest.fixture(scope="module")
def sampler(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return gen.CheckpointSampler(make_checkpoint(tmp_path_factory.mktemp("gen")), device="cpu")


def test_truncate_at_the_earliest_stop():
    assert gen.truncate("    return 1\n\ndef g():\n    pass\n", HUMANEVAL_STOPS) == "    return 1\n"
    assert gen.truncate("    x = 1\n    # fine\n#top\n", HUMANEVAL_STOPS) == "    x = 1\n    # fine"
    assert gen.truncate("no stop here", HUMANEVAL_STOPS) == "no stop here"


def test_greedy_batches_equal_single_prompts(sampler):
    # Left-padding a short prompt next to a long one must not change what it generates (mask + positions).
    prompts = ["def add(a, b):\n", "import os\nimport sys\n\n\nclass Thing:\n    def method(self, x):\n"]
    kw = dict(n=1, max_new_tokens=12, temperature=0.0, top_p=1.0, stops=(), seed=0)
    together = sampler.sample(prompts, batch_size=2, **kw)
    alone = [sampler.sample([p], batch_size=1, **kw)[0] for p in prompts]
    assert together == alone
    assert all(len(t[0]) > 0 for t in together)


def test_sampling_is_seeded(sampler):
    kw = dict(n=3, max_new_tokens=10, temperature=1.0, top_p=0.95, stops=(), batch_size=3)
    a = sampler.sample(["def f(x):\n"], seed=1, **kw)
    b = sampler.sample(["def f(x):\n"], seed=1, **kw)
    c = sampler.sample(["def f(x):\n"], seed=2, **kw)
    assert a == b and a != c
    assert len(set(a[0])) > 1  # the samples of one prompt differ


def test_samples_from_checkpoint_format(sampler):
    probs = [
        Problem(task_id=f"t/{i}", prompt=f"def f{i}(x):\n", test="", style="humaneval", entry_point=f"f{i}")
        for i in range(2)
    ]
    recs = gen.samples_from_checkpoint(
        probs, sampler, n=2, max_new_tokens=8, temperature=0.8, top_p=0.95, seed=0, batch_size=4
    )
    assert [r["task_id"] for r in recs] == ["t/0", "t/0", "t/1", "t/1"]
    assert all(
        isinstance(r["completion"], str) and not any(s in r["completion"] for s in HUMANEVAL_STOPS) for r in recs
    )


def test_extract_code_from_chat_answers():
    p = Problem(task_id="t", prompt="def add(a, b):\n", test="", style="humaneval", entry_point="add")
    ans = "Sure!\n```python\nimport math\n```\nand\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert gen.extract_code(ans, p) == "\ndef add(a, b):\n    return a + b\n"
    assert gen.extract_code("```\n    return a + b\n```", p) == "    return a + b\n"  # a bare body continues the prompt
    m = Problem(task_id="m", prompt="", test="assert f(1) == 1\n", style="mbpp")
    assert gen.extract_code("```py\ndef f(x):\n    return x\n```", m) == "def f(x):\n    return x\n"


def test_endpoint_completions_and_chat():
    from phitools.llm.backends import make_backend
    from phitools.llm.client import LLMRunner
    from phitools.llm.testing import FakeLLMServer

    p = Problem(task_id="t/0", prompt="def add(a, b):\n", test="", style="humaneval", entry_point="add")

    def answer(body):
        if "messages" in body:
            return "Here:\n```python\ndef add(a, b):\n    return a + b\n```\n"
        assert set(body["stop"]) <= set(HUMANEVAL_STOPS) and len(body["stop"]) <= 4
        return "    return a + b\n\n\ndef unrelated():\n    pass\n"

    with FakeLLMServer(answer=answer) as srv:
        backend = make_backend("openai", api_base=srv.url, model="fake-model")
        with LLMRunner(backend, concurrency=2) as runner:
            for chat in (False, True):
                reqs = list(
                    gen.endpoint_requests(
                        [p], n=2, chat=chat, temperature=0.8, top_p=0.95, max_tokens=64, seed=0, model="fake-model"
                    )
                )
                recs = [gen.sample_from_result(r, chat) for r in runner.run(reqs)]
                assert len(recs) == 2
                want = "\ndef add(a, b):\n    return a + b\n" if chat else "    return a + b\n\n"
                assert [r["completion"] for r in recs] == [want, want]
