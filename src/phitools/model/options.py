"""Options of the checkpoint tools, `grow` and `export`: the single source of their defaults, checks and help.

Kept apart from the code that does the work (model/grow.py, model/export.py import torch) so that declaring
the commands costs no torch import. From Python:

    from phitools.model.export import export
    from phitools.model.grow import grow
    from phitools.model.options import ExportOptions, GrowOptions

    plan, report = grow(GrowOptions("runs/tiny", "grown/", d_model=256, noise=0.01, seed=1, check=True))
    export(ExportOptions("grown/", "grown-hf/", format="hf"))
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass

from phitools.errors import UsageError
from phitools.options import check as check_options
from phitools.options import fspaths, option

EXPORT_FORMATS = ("hf", "phitools")
EXPORT_DTYPES = ("float32", "bfloat16", "float16")
DEPTH_RULES = ("interpolate", "identity")
WIDTH_MODES = ("tile", "embed")


def check_growth(depth: str, width_mode: str, noise: float) -> None:
    """The growth rules that do not depend on the source's shape; UsageError otherwise."""
    if depth not in DEPTH_RULES:
        raise UsageError(f"unknown depth rule {depth!r}", hint="use --depth interpolate or --depth identity")
    if width_mode not in WIDTH_MODES:
        raise UsageError(f"unknown width mode {width_mode!r}", hint="use --width-mode tile or --width-mode embed")
    if noise < 0:
        raise UsageError("--noise must be >= 0")


def check_format(fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise UsageError(f"unknown export format {fmt!r}", hint="use --format hf or --format phitools")


@dataclass
class GrowOptions:
    """A bigger checkpoint from a smaller one: new shapes, how to fill them, and where it goes."""

    src: str = option(
        argument=True,
        show_default=False,
        help="Source checkpoint: a phitools checkpoint or a Hugging Face Phi directory.",
    )
    output: str = option(
        MISSING, "-o", "--output", show_default=False, help="Directory for the grown phitools checkpoint."
    )
    d_model: int | None = option(
        None, "--d-model", min=1, show_default=False, help="New model width (tile: an integer multiple)."
    )
    n_head: int | None = option(
        None,
        "--heads",
        min=1,
        show_default=False,
        help="New head count (tile: fixed by --d-model, head_dim is kept).",
    )
    d_mlp: int | None = option(
        None, "--d-mlp", min=1, show_default=False, help="New MLP inner size (default: scaled with --d-model)."
    )
    n_layer: int | None = option(None, "--layers", min=1, show_default=False, help="New layer count.")
    depth: str = option(
        "interpolate",
        "--depth",
        help="New layers: 'interpolate' (layer i <- old round(i*L_old/L_new), half up) or "
        "'identity' (same map; the repeated copies get zero dense/fc2: function-preserving).",
    )
    width_mode: str = option(
        "tile",
        "--width-mode",
        help="'tile' (function-preserving, integer factors) or 'embed' "
        "(source in the top-left block, random init elsewhere; any size, NOT function-preserving).",
    )
    noise: float = option(
        0.0,
        "--noise",
        min=0.0,
        help="Tile mode: zero-sum noise across copies (std = S * weight std) to break symmetry; keeps the function.",
    )
    seed: int = option(0, "--seed", metavar="INT", help="Random seed; the same seed gives the same output.")
    check: bool = option(
        False,
        "--check",
        help="Compare the grown model's logits with the source's on random inputs; print max|diff| to stderr.",
    )
    overwrite: bool = option(False, "--overwrite", help="Replace an existing checkpoint at -o.")

    def __post_init__(self) -> None:
        fspaths(self, "src", "output")
        check_options(self)
        check_growth(self.depth, self.width_mode, self.noise)


@dataclass
class ExportOptions:
    """A checkpoint converted between phitools and Hugging Face Phi formats."""

    src: str = option(
        argument=True, show_default=False, help="Source: a phitools checkpoint or a Hugging Face Phi directory."
    )
    output: str = option(MISSING, "-o", "--output", show_default=False, help="Output directory.")
    format: str = option(
        "hf",
        "--format",
        help="'hf' (config.json + model.safetensors for transformers' PhiForCausalLM) or 'phitools'.",
    )
    dtype: str | None = option(
        None,
        "--dtype",
        show_default=False,
        help="Store weights as float32, bfloat16 or float16 (default: as stored).",
    )
    overwrite: bool = option(False, "--overwrite", help="Replace an existing checkpoint at -o.")

    def __post_init__(self) -> None:
        fspaths(self, "src", "output")
        check_options(self)
        check_format(self.format)
        if self.dtype is not None and self.dtype not in EXPORT_DTYPES:
            raise UsageError(f"unknown --dtype {self.dtype!r}", hint=f"use one of {', '.join(EXPORT_DTYPES)}")


__all__ = ["GrowOptions", "ExportOptions", "EXPORT_FORMATS", "EXPORT_DTYPES", "check_growth", "check_format"]
