"""examples/quickstart.py (the recipe through the Python API) writes what examples/quickstart.sh (the commands)
writes: the same records, classifier, tokens, weights and eval results for the same seeds, step by step.

Both run at toy scale on the same small corpus, their LLM steps against one loopback OpenAI-compatible server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from same_as_cli import comparable, files

from phitools.llm.testing import FakeLLMServer, default_answer

REPO = Path(__file__).resolve().parents[2]

TEXTBOOK = "## Loops\n\nA for loop repeats a block once per item.\n\n```python\nfor x in [1, 2]:\n    print(x)\n```\n"
EXERCISE = (
    '```python\ndef double(x: int) -> int:\n    """Return 2 * x.\n\n    >>> double(2)\n    4\n    """\n'
    "    return 2 * x\n```\n"
)

KNOBS = {
    "LABEL_LLM_SAMPLE": "2",
    "LABEL_SAMPLE": "60",
    "SYNTH_N": "2",
    "SYNTH_TOKENS": "64",
    "TRAIN_STEPS": "4",
    "GROW_STEPS": "2",
    "EVAL_PROBLEMS": "1",
}

# the outputs to compare: each step's directory (or file), as both scripts name them
STEPS = [
    "corpus",
    "labeled-llm",
    "labeled",
    "clf",
    "filtered",
    "rejects.jsonl.zst",
    "synth-textbook",
    "synth-exercise",
    "clean",
    "tok",
    "runs/tiny/final",
    "runs/grown-init",
    "runs/grown/final",
    "results",
]


def _answer(body: dict) -> str:
    text = json.dumps(body)
    if "textbook" in text.lower() and "exercise" not in text.lower():
        return TEXTBOOK
    if "exercise" in text.lower():
        return EXERCISE
    return default_answer(body)  # label's rating requests


@pytest.mark.slow
def test_quickstart_py_writes_what_quickstart_sh_writes(tmp_path, stdlib_small):
    bindir = str(Path(sys.executable).parent)
    with FakeLLMServer(answer=_answer) as srv:
        env = {**os.environ, **KNOBS, "CORPUS": str(stdlib_small), "PATH": bindir + os.pathsep + os.environ["PATH"]}
        sh = subprocess.run(
            ["bash", str(REPO / "examples" / "quickstart.sh")],
            env={**env, "RUN": str(tmp_path / "sh"), "LLM_FLAGS": f"--api-base {srv.url} --model fake"},
            cwd=tmp_path,
            capture_output=True,
            timeout=900,
        )
        assert sh.returncode == 0, sh.stderr.decode(errors="replace")[-3000:]
        py = subprocess.run(
            [sys.executable, str(REPO / "examples" / "quickstart.py")],
            env={**env, "RUN": str(tmp_path / "py"), "API_BASE": srv.url, "MODEL": "fake"},
            cwd=tmp_path,
            capture_output=True,
            timeout=900,
        )
        assert py.returncode == 0, py.stderr.decode(errors="replace")[-3000:]
    assert py.stdout == b""  # data only ever goes to files here; the script's messages go to stderr
    for name in STEPS:
        a, b = tmp_path / "sh" / name, tmp_path / "py" / name
        assert a.exists() and b.exists(), name
        fa, fb = files(a), files(b)
        assert sorted(fa) == sorted(fb), name
        for rel in fa:
            if rel.endswith("report.json") or rel.endswith("metrics.jsonl") or rel.endswith("summary.json"):
                continue  # timings inside; compared below without them
            assert fa[rel] == fb[rel], f"{name}/{rel} differs"
        man_a = a / "manifest.json" if a.is_dir() else a.parent / "manifest.json"
        if a.is_dir() and man_a.exists():
            assert comparable(man_a, tmp_path / "sh") == comparable(b / "manifest.json", tmp_path / "py"), name
    for run in ("runs/tiny", "runs/grown"):
        losses = [
            [(m.get("step"), m.get("loss")) for m in map(json.loads, (tmp_path / s / run / "metrics.jsonl").open())]
            for s in ("sh", "py")
        ]
        assert losses[0] == losses[1], run
    sums = [json.loads((tmp_path / s / "results" / "summary.json").read_text()) for s in ("sh", "py")]
    assert sums[0]["pass_at_k"] == sums[1]["pass_at_k"] and sums[0]["status"] == sums[1]["status"]
