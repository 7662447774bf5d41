"""`phitools stats`: not built yet."""

from phitools.cli._stub import not_built


def register(app):
    not_built(app, "stats", "Diversity statistics of records", " distinct-n, repeated openings, near-duplicates.:see issue 5")
