"""`phitools decontam`: not built yet."""

from phitools.cli._stub import not_built


def register(app):
    not_built(app, "decontam", "Flag or drop records that overlap a benchmark (13-gram and AST match).", "see issue 5")
