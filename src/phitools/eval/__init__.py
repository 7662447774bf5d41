"""Evaluation: HumanEval / MBPP pass@k in a sandbox that model-written code cannot fool or escape,
generation from checkpoints and endpoints, and perplexity on token shards.

    from phitools.eval import EvalOptions, run
    summary = run(EvalOptions(benchmark="humaneval", samples="samples.jsonl", output="results/"))

`run` and `EvalOptions` live in `evaluate.py` (what `phitools eval` does, as a call); the sandbox in
`sandbox.py`; perplexity in `perplexity.py`.

Kept import-light: the sandbox's zygote imports the private `_*` modules of this package and nothing heavy, so
the names above are imported on first use.
"""

from __future__ import annotations

from typing import Any

_LAZY = ("EvalOptions", "run")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from phitools.eval import evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["EvalOptions", "run"]
