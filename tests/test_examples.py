"""The example recipes stay valid shell: `bash -n` parses every examples/*.sh (cheap; catches a broken edit)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.sh"))


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_parses(script: Path) -> None:
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, f"{script.name}: {r.stderr}"


def test_examples_found() -> None:
    names = {p.name for p in EXAMPLES}
    assert {
        "slurm_label_classify_tokenize.sh",
        "torchrun_phi1_small.sh",
        "grow_phi1_small_to_phi1.sh",
        "eval_vllm.sh",
        "exp_filtering.sh",
        "exp_randomness.sh",
        "exp_grow_tokens.sh",
    } <= names
