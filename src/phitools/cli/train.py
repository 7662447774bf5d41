"""`phitools train`: not built yet."""

from phitools.cli._stub import not_built


def register(app):
    not_built(app, "train", "Train a phi-architecture decoder on token shards.", "see issue 3")
