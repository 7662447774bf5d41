"""`phitools grow`: a bigger checkpoint from a smaller one, reusing its weights."""

from __future__ import annotations

import sys

import typer

from phitools.cli import console
from phitools.cli.common import Quiet, setup
from phitools.cli.declare import command
from phitools.model.options import GrowOptions


@command("grow")
def grow(opts: GrowOptions, quiet: Quiet = False) -> None:
    """Grow a checkpoint in width and depth, reusing its weights (phi-1-small -> phi-1 shapes).

    Width tiles every weight HyperCloning-style so the grown model computes the same function; depth
    copies layers by interpolation, or inserts function-preserving copies with --depth identity. The
    result records its parent and the growth parameters, and trains with `phitools train --init DST`.
    Nothing is written to stdout.

    Examples:

        phitools grow runs/small/final -o grown/ --d-model 2048 --layers 24 --depth identity --check
        phitools grow runs/tiny/final -o tiny2x/ --d-model 256 --noise 0.01 --seed 1
        phitools train --data tok/ --init grown/ -o runs/big
    """
    setup(quiet)
    from phitools.model.grow import grow as run_grow

    plan, report = run_grow(opts)
    s, d = plan.src, plan.dst
    console.info(
        f"grew {s.n_layer}x{s.d_model} ({s.n_head} heads, mlp {s.d_mlp}) -> {d.n_layer}x{d.d_model} "
        f"({d.n_head} heads, mlp {d.d_mlp}) into {opts.output}; layer map {plan.layer_map}"
    )
    if report is not None:
        note = "function-preserving" if report["function_preserving"] else "not function-preserving by design"
        sys.stderr.write(
            f"grow --check: max|dlogits| = {report['max_abs_diff']:.3e} (max|logit| {report['max_abs_logit']:.3g}), "
            f"argmax agreement {report['argmax_agree']:.4f} on {report['tokens']} random tokens ({note})\n"
        )


def register(app: typer.Typer) -> None:
    app.command("grow")(grow)
