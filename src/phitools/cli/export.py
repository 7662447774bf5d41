"""`phitools export`: not built yet."""

from phitools.cli._stub import not_built


def register(app):
    not_built(app, "export", "Convert a checkpoint between phitools and Hugging Face Phi formats.", "see issue 3")
