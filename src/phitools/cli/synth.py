"""`phitools synth`: not built yet."""

from phitools.cli._stub import not_built


def register(app):
    not_built(app, "synth", "Write synthetic textbooks and exercises with an LLM, with injected randomness.", "see issue 5")
