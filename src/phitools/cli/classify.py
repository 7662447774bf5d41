"""`phitools classify`: not built yet."""

import typer

from phitools.cli._stub import not_built


def register(app):
    sub = typer.Typer(help="Learn the labeller's judgement and filter a corpus (train / apply). Not built yet: see issue 6.", no_args_is_help=True)
    not_built(sub, "train", "Train a quality classifier on labelled records.", "see issue 6")
    not_built(sub, "apply", "Score and filter records with a trained classifier.", "see issue 6")
    app.add_typer(sub, name="classify")
