"""`phitools eval`: not built yet."""

from phitools.cli._stub import not_built


def register(app):
    not_built(app, "eval", "HumanEval / MBPP pass@k in a hardened sandbox, and perplexity.", "see issue 4")
