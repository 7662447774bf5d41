"""`phitools classify train/apply` end to end through real pipes, on records labelled by the real `label` path."""

from __future__ import annotations

import json
import math

import orjson
import pytest
from conftest import run_phitools
from typer.testing import CliRunner

from phitools.cli import app


def _read(path):
    from phitools.shards import read_records

    return list(read_records([path]))


@pytest.fixture(scope="module")
def pipeline(stdlib_small, tmp_path_factory):
    """The issue's three lines (label with the offline heuristic backend), on a small stdlib corpus."""
    d = tmp_path_factory.mktemp("classify-e2e")
    run_phitools("ingest", stdlib_small, "-o", d / "corpus", check=True)
    run_phitools("label", d / "corpus", "--sample", "60", "--backend", "heuristic", "-o", d / "labeled", check=True)
    train = run_phitools(
        "classify",
        "train",
        d / "labeled",
        "--features",
        "hash",
        "--estimator",
        "lgbm",
        "--n-estimators",
        "30",
        "--folds",
        "3",
        "-o",
        d / "clf",
        check=True,
    )
    apply = run_phitools(
        "classify",
        "apply",
        d / "clf",
        d / "corpus",
        "--keep-top",
        "0.3",
        "--rejects",
        d / "rejects.jsonl.zst",
        "-o",
        d / "filtered",
        "--workers",
        "2",
        check=True,
    )
    return d, train, apply


@pytest.mark.slow
def test_label_train_apply_as_written(pipeline):
    d, train, apply = pipeline
    assert b"ROC-AUC" in train.stderr and b"calibration" in train.stderr and train.stdout == b""
    report = json.loads((d / "clf" / "report.json").read_text())
    assert report["labels"]["used"] == 60 and report["evaluation"]["metrics"]["roc_auc"] is not None
    corpus = _read(d / "corpus")
    kept, rejected = _read(d / "filtered"), _read(d / "rejects.jsonl.zst")
    assert len(kept) == math.floor(0.3 * len(corpus) + 0.5) and len(kept) + len(rejected) == len(corpus)
    # order is the input's, every record carries its score, and nothing else changed
    order = {r["id"]: i for i, r in enumerate(corpus)}
    for part in (kept, rejected):
        assert [order[r["id"]] for r in part] == sorted(order[r["id"]] for r in part)
    by_id = {r["id"]: r for r in corpus}
    for r in kept + rejected:
        q = r.pop("quality")
        assert set(q) == {"score", "classifier"} and q["classifier"].startswith("clf@") and 0 <= q["score"] <= 5
        assert r == by_id[r["id"]]
    assert min(r["quality"]["score"] for r in _read(d / "filtered")) >= max(
        r["quality"]["score"] for r in _read(d / "rejects.jsonl.zst")
    )
    m = json.loads((d / "filtered" / "manifest.json").read_text())
    res = m["classify"]["result"]
    assert (
        res["kept"] == len(kept)
        and sum(res["histogram"]["counts"]) == len(corpus)
        and res["quantile"].startswith("exact")
    )
    assert m["stats"]["dropped"] == {"below_cut": len(rejected)}
    assert (d / "rejects.jsonl.zst.manifest.json").exists()
    assert b"kept" in apply.stderr and b"#" in apply.stderr  # counts and histogram on stderr


@pytest.mark.slow
def test_workers_stdin_and_shards_agree(pipeline):
    d, _, _ = pipeline
    # the fixture ran with --workers 2; one worker writes byte-identical shards
    run_phitools(
        "classify",
        "apply",
        d / "clf",
        d / "corpus",
        "--keep-top",
        "0.3",
        "--rejects",
        d / "rejects1.jsonl.zst",
        "-o",
        d / "filtered1",
        "--workers",
        "1",
        "-q",
        check=True,
    )
    for a, b in (("filtered", "filtered1"), ("rejects.jsonl.zst", "rejects1.jsonl.zst")):
        pa = sorted((d / a).glob("*.jsonl.zst")) if (d / a).is_dir() else [d / a]
        pb = sorted((d / b).glob("*.jsonl.zst")) if (d / b).is_dir() else [d / b]
        assert [p.read_bytes() for p in pa] == [p.read_bytes() for p in pb]
    scored = _read(d / "filtered") + _read(d / "rejects.jsonl.zst")
    # stdin: the same scores; --keep-top from a pipe is the streaming path (exact within its warm-up window)
    corpus = b"".join(orjson.dumps(r) + b"\n" for r in _read(d / "corpus"))
    piped = run_phitools(
        "classify", "apply", d / "clf", "--keep-top", "0.5", "--workers", "1", "-q", input=corpus, check=True
    ).stdout
    scores = {r["id"]: r["quality"]["score"] for r in scored}
    got = [json.loads(x) for x in piped.splitlines()]
    assert len(got) == math.floor(0.5 * len(scores) + 0.5) and all(
        r["quality"]["score"] == scores[r["id"]] for r in got
    )
    # --shard K/N through typer's runner: the two halves together are the whole
    runner = CliRunner()
    ids = []
    for k in (0, 1):
        res = runner.invoke(
            app,
            [
                "classify",
                "apply",
                str(d / "clf"),
                str(d / "corpus"),
                "--score-only",
                "--workers",
                "1",
                "--shard",
                f"{k}/2",
                "-o",
                str(d / f"shard{k}.jsonl"),
                "-q",
            ],
        )
        assert res.exit_code == 0, res.output
        ids += [json.loads(x)["id"] for x in (d / f"shard{k}.jsonl").read_text().splitlines()]
    assert sorted(ids) == sorted(scores)


def test_errors_are_one_line(tmp_path):
    runner = CliRunner()
    unlabelled = tmp_path / "u.jsonl"
    unlabelled.write_bytes(
        b"".join(
            orjson.dumps({"id": i, "text": "x = 1", "label": {"score": None, "error": "timeout"}}) + b"\n"
            for i in range(5)
        )
    )
    res = runner.invoke(app, ["classify", "train", str(unlabelled), "-o", str(tmp_path / "clf")])
    assert res.exit_code == 1 and "no labels" in res.output and "5 failed labels" in res.output
    assert not (tmp_path / "clf").exists()
    res = runner.invoke(app, ["classify", "train", str(unlabelled)])
    assert res.exit_code == 2 and "-o" in res.output
    res = runner.invoke(
        app, ["classify", "apply", str(tmp_path), str(unlabelled), "--keep-top", "0.3", "--threshold", "2"]
    )
    assert res.exit_code == 2 and "--keep-top" in res.output
    res = runner.invoke(app, ["classify", "apply", str(tmp_path / "nope"), str(unlabelled)])
    assert res.exit_code == 1 and "classifier directory" in res.output
    for bad in ("0", "1.5"):
        res = runner.invoke(app, ["classify", "apply", str(tmp_path), str(unlabelled), "--keep-top", bad])
        assert res.exit_code == 2


@pytest.mark.slow
def test_tampered_classifier_is_refused(pipeline, tmp_path):
    import shutil

    d, _, _ = pipeline
    shutil.copytree(d / "clf", tmp_path / "clf")
    model = tmp_path / "clf" / "model.txt"
    model.write_text(model.read_text().replace("leaf_value=", "leaf_value=9", 1))
    proc = run_phitools("classify", "apply", tmp_path / "clf", d / "corpus", "--score-only")
    assert proc.returncode == 1 and proc.stdout == b""
    assert b"sha256 does not match" in proc.stderr and proc.stderr.count(b"\n") == 1


def test_help_has_examples():
    for cmd in ("train", "apply"):
        res = CliRunner().invoke(app, ["classify", cmd, "--help"])
        assert res.exit_code == 0 and "Example" in res.output and "classify apply clf/" in res.output
