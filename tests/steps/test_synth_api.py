"""`phitools synth` from Python: Synth/write give the command's records, failed records and manifest; its errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from same_as_cli import comparable, files, jsonl
from typer.testing import CliRunner

import phitools.steps.synth as synth_mod
from phitools.cli import app
from phitools.errors import DataError, PhitoolsError, UsageError
from phitools.llm.testing import FakeLLMServer, request_text
from phitools.shards import read_records
from phitools.steps.synth import Synth, SynthIO, SynthLLMOptions, SynthOptions, template_text, write

REPO = Path(__file__).resolve().parents[2]
TOPICS = str(REPO / "examples" / "topics.txt")
SPEC = str(REPO / "examples" / "spec.toml")


def answer(body: dict) -> str:
    """An exercise or a section that depends on the prompt and the seed; one answer in five is unusable."""
    text = request_text(body)
    tag = hashlib.sha256(f"{text}|{body.get('seed')}".encode()).hexdigest()[:10]
    if int(tag, 16) % 5 == 0:
        return "no code here"
    if "exercise" in text:
        doc = f'    """Add one.\n\n    >>> f_{tag}(1)\n    2\n    """\n'
        return f"```python\ndef f_{tag}(x: int) -> int:\n{doc}    return x + 1\n```\n"
    code = "```python\nfor i in range(3):\n    print(i)\n```\n"
    return f"# Section {tag}\n\nA loop repeats a block of code ({tag}).\n\n{code}"


@pytest.fixture(scope="module")
def server():
    with FakeLLMServer(answer=answer) as srv:
        yield srv


def test_dry_run_to_a_directory_and_in_memory_is_the_commands(tmp_path, phitools):
    args = ["--spec", SPEC, "--n", "20", "--dry-run", "--seed", "7", "--shard", "1/3"]
    phitools("synth", *args, "-o", tmp_path / "cli", check=True)
    opts = SynthOptions(spec=SPEC, n=20, dry_run=True)
    stats = write(Synth(opts, io=SynthIO(output=str(tmp_path / "py"), seed=7, shard="1/3")))
    assert files(tmp_path / "py") == files(tmp_path / "cli") and stats.records_out == 7  # i = 1, 4, ..., 19
    name = "manifest-00001-of-00003.json"
    assert comparable(tmp_path / "py" / name) == comparable(tmp_path / "cli" / name)
    stdout = phitools("synth", *args, check=True).stdout
    assert list(Synth(opts, io=SynthIO(seed=7, shard="1/3")).records()) == jsonl(stdout)


def test_against_a_server_records_failed_records_and_manifest_are_the_commands(server, tmp_path, phitools):
    flags = ["--spec", SPEC, "--n", "12", "--seed", "4", "--max-attempts", "1", "--stats", "--top-p", "0.5"]
    flags += ["--api-base", server.url, "--model", "fake"]
    cli = tmp_path / "cli"
    phitools("synth", *flags, "-o", cli / "out", "--failed", cli / "failed.jsonl", check=True)
    py = tmp_path / "py"
    opts = SynthOptions(spec=SPEC, n=12, stats=True, top_p=0.5, failed=str(py / "failed.jsonl"))
    job = Synth(
        opts, SynthLLMOptions(api_base=server.url, model=["fake"], max_attempts=1), SynthIO(str(py / "out"), seed=4)
    )
    stats = write(job)
    assert files(py) == files(cli)
    failed = jsonl((py / "failed.jsonl").read_bytes())
    assert failed and all(f["raw"] == "no code here" and "text" not in f for f in failed)
    assert (stats.records_in, stats.records_out) == (12, 12 - len(failed))
    m_py = comparable(py / "out" / "manifest.json", py)
    assert m_py == comparable(cli / "out" / "manifest.json", cli)
    assert set(m_py) >= {"synth", "llm", "diversity"} and m_py["synth"]["failed"] == {"unparseable": len(failed)}
    assert m_py["llm"]["max_attempts"] == 1 and m_py["synth"]["sampling"]["top_p"] == 0.5
    assert comparable(py / "failed.jsonl.manifest.json", py) == comparable(cli / "failed.jsonl.manifest.json", cli)
    assert job.warnings() == [f"{len(failed)} of 12 record(s) failed (unparseable: {len(failed)})"]


def test_in_memory_with_a_server_is_the_commands_stdout(server, phitools):
    flags = ["--topics", TOPICS, "--n", "6", "--cache", "off", "--api-base", server.url, "--model", "fake"]
    stdout = phitools("synth", *flags, check=True).stdout
    failed: list = []
    llm = SynthLLMOptions(api_base=server.url, model=["fake"], cache="off")
    got = list(Synth(SynthOptions(topics=TOPICS, n=6), llm).records(on_failed=failed.append))
    assert got == jsonl(stdout) and len(got) + len(failed) == 6


def test_dedup_per_part_is_the_commands(tmp_path, phitools):
    same = "# Loops\n\n" + " ".join(f"word{i}" for i in range(80))
    with FakeLLMServer(answer=same) as srv:
        flags = ["--topics", TOPICS, "--n", "6", "--dedup", "--shard", "0/2", "--api-base", srv.url, "--model", "fake"]
        r = phitools("synth", *flags, "-o", tmp_path / "cli")
        assert r.returncode == 0 and b"within this part only" in r.stderr
        opts, llm = SynthOptions(topics=TOPICS, n=6, dedup=True), SynthLLMOptions(api_base=srv.url, model=["fake"])
        stats = write(Synth(opts, llm, SynthIO(output=str(tmp_path / "py"), shard="0/2")))
    assert files(tmp_path / "py") == files(tmp_path / "cli") and dict(stats.dropped) == {"near_duplicate": 2}
    name = "manifest-00000-of-00002.json"
    m = comparable(tmp_path / "py" / name, tmp_path / "py")
    assert m == comparable(tmp_path / "cli" / name, tmp_path / "cli")
    assert m["synth"]["dedup"]["scope"] == "per shard: part 0/2 only"


def test_every_record_failed_is_an_error_that_keeps_the_answers(tmp_path):
    with FakeLLMServer(answer="no code here") as srv:
        opts = SynthOptions(topics=TOPICS, kind="exercise", n=3, failed=str(tmp_path / "failed.jsonl"))
        llm = SynthLLMOptions(api_base=srv.url, model=["fake"], max_attempts=2)
        with pytest.raises(DataError, match=r"no record survived: all 3 failed \(unparseable: 3\)"):
            write(Synth(opts, llm, SynthIO(output=str(tmp_path / "ex.jsonl"))))
    assert not (tmp_path / "ex.jsonl").exists() and not (tmp_path / "ex.jsonl.manifest.json").exists()
    assert len(list(read_records([str(tmp_path / "failed.jsonl")]))) == 3


def test_a_run_stopped_before_any_model_call_leaves_no_failed_file(tmp_path, monkeypatch):
    def no_sandbox(seed):
        raise PhitoolsError("no sandbox here")

    monkeypatch.setattr(synth_mod, "_doctest_checker", no_sandbox)
    opts = SynthOptions(topics=TOPICS, kind="exercise", n=3, check=True, failed=str(tmp_path / "failed.jsonl"))
    job = Synth(opts, SynthLLMOptions(api_base="http://127.0.0.1:9/v1", model=["m"]), SynthIO(str(tmp_path / "o")))
    with pytest.raises(PhitoolsError, match="no sandbox here"):
        write(job)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither an output nor an empty --failed file


def test_show_template_is_template_text():
    for args, opts in ((["--kind", "story"], SynthOptions(kind="story")), (["--spec", SPEC], SynthOptions(spec=SPEC))):
        res = CliRunner().invoke(app, ["synth", "--show-template", *args])
        assert res.exit_code == 0 and res.stdout == template_text(opts) and "{" in res.stdout


def test_llm_options_are_synths():
    llm = SynthLLMOptions()
    assert llm.max_attempts == 3 and llm.structured == "auto"  # plain-text answers: no --structured flag
    res = CliRunner().invoke(app, ["synth", "--topics", TOPICS, "--dry-run", "--structured", "text"])
    assert res.exit_code == 2 and "No such option" in res.output


@pytest.mark.parametrize(
    ("build", "cli_args", "msg"),
    [
        (lambda: SynthOptions(n=-1), None, "--n must be at least 0, got -1"),
        (lambda: SynthOptions(top_p=1.5), None, "--top-p must be at most 1, got 1.5"),
        (lambda: SynthIO(shard="3/2"), ["--topics", TOPICS, "--shard", "3/2"], "--shard"),
        (lambda: Synth(SynthOptions()), [], "synth needs --topics FILE and/or --spec FILE"),
        (lambda: Synth(SynthOptions(topics=TOPICS, kind="novel")), ["--topics", TOPICS, "--kind", "novel"], "novel"),
        (
            lambda: Synth(SynthOptions(topics=TOPICS, check=True)),
            ["--topics", TOPICS, "--check"],
            "--check runs exercise doctests; it needs --kind exercise",
        ),
        (
            lambda: Synth(SynthOptions(topics=TOPICS), SynthLLMOptions(api_base="http://x/v1", model=["a", "b"])),
            ["--topics", TOPICS, "--api-base", "http://x/v1", "--model", "a", "--model", "b"],
            "synth takes one --model",
        ),
        (
            lambda: Synth(SynthOptions(topics=TOPICS), SynthLLMOptions(backend="heuristic")),
            ["--topics", TOPICS, "--backend", "heuristic"],
            "--backend heuristic cannot be used here",
        ),
    ],
)
def test_errors_from_python_are_the_commands(build, cli_args, msg):
    with pytest.raises(UsageError) as err:
        build()
    assert msg in str(err.value) and "\n" not in str(err.value)
    if cli_args is not None:
        res = CliRunner().invoke(app, ["synth", *cli_args])
        assert res.exit_code == 2 and f"phitools synth: error: {err.value}" in res.output, res.output


def test_the_manifest_names_no_key(tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-SECRET-123456")
    llm = SynthLLMOptions(api_base=server.url, model=["fake"])
    write(Synth(SynthOptions(topics=TOPICS, n=2), llm, SynthIO(output=str(tmp_path / "o"))))
    assert "sk-SECRET" not in json.dumps(json.loads((tmp_path / "o" / "manifest.json").read_text()))
