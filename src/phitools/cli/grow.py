"""`phitools grow`: not built yet."""

from phitools.cli._stub import not_built


def register(app):
    not_built(app, "grow", "Grow a checkpoint in width and depth, reusing its weights.", "see issue 3")
