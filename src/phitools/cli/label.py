"""`phitools label`: not built yet."""

from phitools.cli._stub import not_built


def register(app):
    not_built(app, "label", "Rate records for educational value with an LLM (adds label.score).", "see issue 5")
