"""phitools.steps.tokenize as a library: the same token shards, manifest and records as `phitools tokenize`.

Each test runs the command (a real subprocess) and the Python call on the same input and compares the outputs
byte for byte; manifests are compared whole apart from argv and the time (and the input's name where the
command reads stdin and Python passes records)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_phitools

from phitools.errors import DataError, UsageError
from phitools.pipeline import Context, IOOptions
from phitools.shards import RecordReader
from phitools.shards.tokens import open_token_dir
from phitools.steps.tokenize import Tokenize, TokenizeIO, TokenizeOptions, tokenize

RUN_ONLY = {"argv", "created"}  # what differs between any two runs


@pytest.fixture(scope="module")
def corpus(stdlib_small, tmp_path_factory):
    """The stdlib slice as a record directory, as one JSONL file (the same records), and as dicts."""
    d = tmp_path_factory.mktemp("api")
    run_phitools("ingest", stdlib_small, "-o", d / "corpus", check=True)
    records = list(RecordReader([str(d / "corpus")]))
    jsonl = d / "corpus.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    return {"dir": d / "corpus", "jsonl": jsonl, "records": records}


def _bins(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if not p.name.startswith("manifest")}


def _manifest(d: Path, ignore: set[str] = RUN_ONLY, name: str = "manifest.json") -> dict:
    m = json.loads((d / name).read_text())
    return {k: v for k, v in m.items() if k not in ignore}


def _same_output(cli: Path, py: Path, returned: dict, ignore: set[str] = RUN_ONLY) -> None:
    """Byte-identical token shards and tokenizer.json; the same manifest, which the call also returned."""
    assert _bins(cli) == _bins(py) and any(n.endswith(".bin") for n in _bins(py))
    assert _manifest(cli, ignore) == _manifest(py, ignore)
    assert {k: v for k, v in returned.items() if k not in ignore} == _manifest(py, ignore)


def test_packed_from_a_directory(corpus, tmp_path):
    flags = ["--seq-len", "256", "--shard-size", "20000", "--workers", "2"]
    run_phitools("tokenize", corpus["dir"], *flags, "-o", tmp_path / "cli", "-q", check=True)
    got = tokenize(
        TokenizeIO(inputs=[str(corpus["dir"])], output=str(tmp_path / "py"), shard_size="20000"),
        TokenizeOptions(seq_len=256, workers=2),
    )
    _same_output(tmp_path / "cli", tmp_path / "py", got)
    assert got["packed"] and len(got["shards"]) > 1 and got["tokenizer_source"] == "stdlib-8k"
    assert open_token_dir(tmp_path / "py").total_tokens == got["tokens"]


def test_no_pack_from_python_records_equals_stdin(corpus, tmp_path):
    """Records from Python are what stdin is to the command: the same shards, the input named <records>."""
    run_phitools(
        "tokenize", "--no-pack", "--limit", "40", "-o", tmp_path / "cli", "-q", input=corpus["jsonl"].read_bytes()
    )
    got = tokenize(
        TokenizeIO(output=str(tmp_path / "py"), limit=40),
        TokenizeOptions(pack=False),
        records=iter(corpus["records"]),
    )
    _same_output(tmp_path / "cli", tmp_path / "py", got, RUN_ONLY | {"inputs"})
    assert got["inputs"] == ["<records>"] and _manifest(tmp_path / "cli")["inputs"] == ["<stdin>"]
    assert got["documents"] == got["stats"]["records_in"] == 40 and got["stats"]["tail_tokens_dropped"] == 0


def test_train_tokenizer_from_a_file(corpus, tmp_path):
    flags = ["--train-tokenizer", "--vocab-size", "512", "--seq-len", "128"]
    run_phitools("tokenize", corpus["jsonl"], *flags, "-o", tmp_path / "cli", "-q", check=True)
    got = tokenize(
        TokenizeIO(inputs=[str(corpus["jsonl"])], output=str(tmp_path / "py")),
        TokenizeOptions(train_tokenizer=True, vocab_size=512, seq_len=128),
    )
    _same_output(tmp_path / "cli", tmp_path / "py", got)
    assert got["tokenizer_source"] == "trained" and got["vocab_size"] == 512
    # the file was read twice (train, then encode) and counted once
    assert got["stats"]["records_in"] == len(corpus["records"]) == got["documents"]


def test_train_tokenizer_from_a_python_iterable(corpus, tmp_path):
    """A generator is read once, like stdin: spooled while the tokenizer trains, then encoded from the spool."""
    flags = ["--train-tokenizer", "--vocab-size", "512", "--limit", "50"]
    run_phitools("tokenize", *flags, "-o", tmp_path / "cli", "-q", input=corpus["jsonl"].read_bytes(), check=True)
    got = tokenize(
        TokenizeIO(output=str(tmp_path / "py"), limit=50),
        TokenizeOptions(train_tokenizer=True, vocab_size=512),
        records=(r for r in corpus["records"]),
    )
    _same_output(tmp_path / "cli", tmp_path / "py", got, RUN_ONLY | {"inputs"})
    assert got["documents"] == 50 and sorted(p.name for p in (tmp_path / "py").iterdir()) == sorted(
        p.name for p in (tmp_path / "cli").iterdir()
    )  # the spool is gone


def test_sharded_python_records_slice_as_stdin_does(corpus, tmp_path):
    data = corpus["jsonl"].read_bytes()
    for k in range(2):
        run_phitools("tokenize", "--shard", f"{k}/2", "--no-pack", "-o", tmp_path / "cli", "-q", input=data, check=True)
        tokenize(
            TokenizeIO(output=str(tmp_path / "py"), shard=f"{k}/2"),
            TokenizeOptions(pack=False),
            records=corpus["records"],
        )
    assert _bins(tmp_path / "cli") == _bins(tmp_path / "py")
    for k in range(2):
        name = f"manifest-{k:05d}-of-00002.json"
        assert _manifest(tmp_path / "cli", RUN_ONLY | {"inputs"}, name) == _manifest(
            tmp_path / "py", RUN_ONLY | {"inputs"}, name
        )
    assert open_token_dir(tmp_path / "py").manifest["documents"] == len(corpus["records"])


def test_stdout_records(corpus, capfd):
    cli = run_phitools("tokenize", corpus["dir"], "--limit", "5", "-q", check=True).stdout
    capfd.readouterr()
    got = tokenize(TokenizeIO(inputs=[str(corpus["dir"])], limit=5))
    out = capfd.readouterr().out.encode()
    assert out == cli and len(cli.splitlines()) == 5
    assert got["documents"] == 5 and got["tokens"] == sum(len(json.loads(x)["tokens"]) for x in cli.splitlines())
    # the step alone, on dicts in memory: the same records
    step = Tokenize(TokenizeOptions())
    assert list(step(corpus["records"][:5], Context())) == [json.loads(x) for x in cli.splitlines()]
    assert step.manifest()["documents"] == 5 and step.manifest()["tokenizer_source"] == "stdlib-8k"


def test_progress_is_reported_through_the_callback(corpus, tmp_path):
    from contextlib import contextmanager

    seen: dict[str, int] = {}

    class Bar:
        def __init__(self, name: str) -> None:
            self.name = name

        def advance(self, n: int = 1) -> None:
            seen[self.name] = seen.get(self.name, 0) + n

    @contextmanager
    def progress(name, total=None, unit="records", *, stats=None):
        yield Bar(name)

    tokenize(
        TokenizeIO(output=str(tmp_path / "t"), limit=20),
        TokenizeOptions(train_tokenizer=True, vocab_size=300),
        records=corpus["records"],
        progress=progress,
    )
    assert seen == {"training tokenizer": 20, "tokenize": 20}


# ---- the command's checks, from Python -----------------------------------------------------------------
@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: TokenizeOptions(train_tokenizer=True, tokenizer="x.json"), "not both"),
        (lambda: TokenizeOptions(seq_len=0), "--seq-len must be at least 1"),
        (lambda: TokenizeOptions(batch_size=0), "--batch-size must be at least 1"),
        (lambda: TokenizeOptions(train_tokenizer=True, vocab_size=100), "--vocab-size 100 is too small"),
        (lambda: TokenizeOptions(vocab_size="8k"), "--vocab-size expects integer"),
        (lambda: TokenizeIO(output="out.jsonl"), "tokenize writes a directory of token shards"),
        (lambda: TokenizeIO(shard_size="lots"), "--shard-size 'lots' is not a number"),
        (lambda: TokenizeIO(shard="3/2"), "--shard"),
        (lambda: tokenize(TokenizeIO(), TokenizeOptions(train_tokenizer=True)), "--train-tokenizer needs -o DIR"),
        (
            lambda: tokenize(TokenizeIO(output="o", shard="0/2"), TokenizeOptions(train_tokenizer=True)),
            "cannot be combined with --shard",
        ),
        (lambda: tokenize(TokenizeIO(inputs=["a"], output="o"), records=[]), "inputs or records, not both"),
        (lambda: Tokenize(TokenizeOptions(train_tokenizer=True)), "--train-tokenizer needs -o DIR"),
        (lambda: Tokenize(TokenizeOptions(), trained=object()), "goes with train_tokenizer=True"),
    ],
)
def test_usage_errors(build, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=message):
        build()
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_plain_io_options_are_refused():
    with pytest.raises(TypeError, match="TokenizeIO"):
        tokenize(IOOptions(output="tok"))  # a record IOOptions: -o and --shard-size would mean other things


def test_bad_python_records(tmp_path):
    good = [{"id": i, "text": f"def f{i}():\n    return {i}\n"} for i in range(30)]
    bad = good[:10] + [{"id": "x", "text": 5}] + good[10:] + [{"id": "y"}, "not a record", {"text": "\ud800"}]
    with pytest.raises(DataError, match=r"<records>:11: field 'text' is int, not a string"):
        tokenize(TokenizeIO(output=str(tmp_path / "t")), TokenizeOptions(seq_len=8), records=bad)
    assert list((tmp_path / "t").iterdir()) == []  # a failed run leaves nothing
    got = tokenize(TokenizeIO(output=str(tmp_path / "t"), skip_bad=True), TokenizeOptions(seq_len=8), records=bad)
    assert got["documents"] == 30
    assert got["stats"]["skipped_bad"] == {
        "lone_surrogate": 1,
        "missing_text": 1,
        "not_object": 1,
        "not_string_text": 1,
    }
    with pytest.raises(DataError, match="no documents to tokenize"):
        tokenize(TokenizeIO(output=str(tmp_path / "e")), records=[])
    assert list((tmp_path / "e").iterdir()) == []
