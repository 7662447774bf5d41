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
from same_as_cli import VOLATILE, files

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


# files that hold wall-clock figures or times (compared without them); a checkpoint's config.json lists
# state.json's digest, and state.json holds the elapsed time
TIMED = ("report.json", "metrics.jsonl", "summary.json", "state.json", "config.json", "results.jsonl")


def _timed(key: str) -> bool:
    """Keys that differ between two runs of the same work: times, and the run's own cgroup paths."""
    return (
        key.endswith(("_s", "seconds"))
        or "time" in key
        or "elapsed" in key
        or key in VOLATILE
        or key in TIMED
        or key == "paths"
    )


def untimed(blob: bytes):
    """JSON (or JSON lines) without the keys `_timed` names."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if not _timed(k)}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    try:
        return clean(json.loads(blob))
    except json.JSONDecodeError:
        return [clean(json.loads(line)) for line in blob.splitlines() if line.strip()]


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
        env = {
            **os.environ,
            **KNOBS,
            "CORPUS": str(stdlib_small),
            "RUN": str(tmp_path / "run"),
            "PATH": bindir + os.pathsep + os.environ["PATH"],
        }
        sh = subprocess.run(
            ["bash", str(REPO / "examples" / "quickstart.sh")],
            env={**env, "LLM_FLAGS": f"--api-base {srv.url} --model fake"},
            cwd=tmp_path,
            capture_output=True,
            timeout=900,
        )
        assert sh.returncode == 0, sh.stderr.decode(errors="replace")[-3000:]
        (tmp_path / "run").rename(tmp_path / "sh")  # both write into the same RUN, so that paths agree
        py = subprocess.run(
            [sys.executable, str(REPO / "examples" / "quickstart.py")],
            env={**env, "API_BASE": srv.url, "MODEL": "fake"},
            cwd=tmp_path,
            capture_output=True,
            timeout=900,
        )
        assert py.returncode == 0, py.stderr.decode(errors="replace")[-3000:]
        (tmp_path / "run").rename(tmp_path / "py")
    assert py.stdout == b""  # data only ever goes to files here; the script's messages go to stderr
    for name in STEPS:
        a, b = tmp_path / "sh" / name, tmp_path / "py" / name
        assert a.exists() and b.exists(), name
        fa, fb = files(a), files(b)
        assert sorted(fa) == sorted(fb), name
        for rel in fa:
            if rel.endswith(TIMED):
                assert untimed(fa[rel]) == untimed(fb[rel]), f"{name}/{rel} differs"
            else:
                assert fa[rel] == fb[rel], f"{name}/{rel} differs"
        man_a = a / "manifest.json" if a.is_dir() else a.parent / "manifest.json"
        if a.is_dir() and man_a.exists():
            ma, mb = untimed(man_a.read_bytes()), untimed((b / "manifest.json").read_bytes())
            for m in (ma, mb):  # files with timings inside were compared without them, above
                m["outputs"] = [
                    {k: v for k, v in o.items() if not (k == "sha256" and str(o.get("path")).endswith(TIMED))}
                    for o in m.get("outputs", [])
                ]
            assert ma == mb, name
    for run in ("runs/tiny", "runs/grown"):
        losses = [
            [(m.get("step"), m.get("loss")) for m in map(json.loads, (tmp_path / s / run / "metrics.jsonl").open())]
            for s in ("sh", "py")
        ]
        assert losses[0] == losses[1], run
    sums = [json.loads((tmp_path / s / "results" / "summary.json").read_text()) for s in ("sh", "py")]
    assert sums[0]["pass_at_k"] == sums[1]["pass_at_k"] and sums[0]["status"] == sums[1]["status"]
