"""`phitools tokenize`: not built yet."""

from phitools.cli._stub import not_built


def register(app):
    not_built(app, "tokenize", "Text records -> packed token shards.", "in progress")
