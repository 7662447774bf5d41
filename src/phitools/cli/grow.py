"""`phitools grow`: a bigger checkpoint from a smaller one, reusing its weights."""

from __future__ import annotations

from typing import Annotated

import typer

from phitools.cli.common import Quiet, Seed, handle_errors, setup


@handle_errors("grow")
def grow(
    src: Annotated[
        str,
        typer.Argument(
            help="Source checkpoint: a phitools checkpoint or a Hugging Face Phi directory.", show_default=False
        ),
    ],
    output: Annotated[
        str, typer.Option("-o", "--output", help="Directory for the grown phitools checkpoint.", show_default=False)
    ],
    d_model: Annotated[
        int | None,
        typer.Option("--d-model", help="New model width (tile: an integer multiple).", show_default=False, min=1),
    ] = None,
    heads: Annotated[
        int | None,
        typer.Option(
            "--heads", help="New head count (tile: fixed by --d-model, head_dim is kept).", show_default=False, min=1
        ),
    ] = None,
    d_mlp: Annotated[
        int | None,
        typer.Option("--d-mlp", help="New MLP inner size (default: scaled with --d-model).", show_default=False, min=1),
    ] = None,
    layers: Annotated[int | None, typer.Option("--layers", help="New layer count.", show_default=False, min=1)] = None,
    depth: Annotated[
        str,
        typer.Option(
            "--depth",
            help="New layers: 'interpolate' (layer i <- old round(i*L_old/L_new), half up) or "
            "'identity' (same map; the repeated copies get zero dense/fc2: function-preserving).",
        ),
    ] = "interpolate",
    width_mode: Annotated[
        str,
        typer.Option(
            "--width-mode",
            help="'tile' (function-preserving, integer factors) or 'embed' "
            "(source in the top-left block, random init elsewhere; any size, NOT function-preserving).",
        ),
    ] = "tile",
    noise: Annotated[
        float,
        typer.Option(
            "--noise",
            help="Tile mode: zero-sum noise across copies (std = S * weight std) to break symmetry; keeps the function.",
            min=0.0,
        ),
    ] = 0.0,
    seed: Seed = 0,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Compare the grown model's logits with the source's on random inputs; print max|diff| to stderr.",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing checkpoint at -o.")] = False,
    quiet: Quiet = False,
) -> None:
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
    import sys

    from phitools.cli import console
    from phitools.model.grow import grow_checkpoint

    plan, report = grow_checkpoint(
        src,
        output,
        d_model=d_model,
        n_head=heads,
        d_mlp=d_mlp,
        n_layer=layers,
        depth=depth,
        width_mode=width_mode,
        noise=noise,
        seed=seed,
        check=check,
        overwrite=overwrite,
    )
    s, d = plan.src, plan.dst
    console.info(
        f"grew {s.n_layer}x{s.d_model} ({s.n_head} heads, mlp {s.d_mlp}) -> {d.n_layer}x{d.d_model} "
        f"({d.n_head} heads, mlp {d.d_mlp}) into {output}; layer map {plan.layer_map}"
    )
    if report is not None:
        note = "function-preserving" if report["function_preserving"] else "not function-preserving by design"
        sys.stderr.write(
            f"grow --check: max|dlogits| = {report['max_abs_diff']:.3e} (max|logit| {report['max_abs_logit']:.3g}), "
            f"argmax agreement {report['argmax_agree']:.4f} on {report['tokens']} random tokens ({note})\n"
        )


def register(app: typer.Typer) -> None:
    app.command("grow")(grow)
