"""The saved classifier: round trip, nothing pickled, tampering is a CheckpointError."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from phitools.errors import CheckpointError, UsageError
from phitools.steps.classify.features import parse_features
from phitools.steps.classify.hashing import HashSettings
from phitools.steps.classify.saved import load_classifier
from phitools.steps.classify.train import TrainOptions, train


@pytest.fixture(scope="module", params=["lgbm", "rf", "logreg"])
def saved(request, labelled, tmp_path_factory):
    pipe = parse_features("hash", hash_settings=HashSettings(n_features=1 << 16))
    clf, report = train(
        iter(copy.deepcopy(labelled)), pipe, TrainOptions(estimator=request.param, n_estimators=20, folds=2)
    )
    path = tmp_path_factory.mktemp(f"clf-{request.param}") / "clf"
    clf.save(path, report=report, inputs=["labelled.jsonl"], seed=0)
    return clf, path


def test_round_trip_scores_identically(saved, heldout):
    clf, path = saved
    texts = [r["text"] for r in heldout]
    loaded = load_classifier(path)
    assert np.array_equal(clf.score(texts), loaded.score(texts))
    assert loaded.estimator == clf.estimator and loaded.decision == clf.decision and loaded.tag.startswith("clf@")
    doc = json.loads((path / "classifier.json").read_text())
    assert doc["label_source"]["field"] == "label.score" and doc["packages"]["numpy"]
    assert json.loads((path / "report.json").read_text())["evaluation"]["metrics"]["n"] == 60


def test_no_pickle_anywhere(saved):
    _, path = saved
    for f in path.iterdir():
        head = f.read_bytes()[:2]
        assert head != b"\x80\x04" and head[:1] != b"\x80", f"{f.name} looks like a pickle"
    names = {f.name for f in path.iterdir()}
    assert names >= {"classifier.json", "features.safetensors", "manifest.json", "report.json"}
    assert names & {"model.txt", "forest.safetensors", "linear.safetensors"}


def _copy(path, tmp_path):
    import shutil

    dst = tmp_path / "clf"
    shutil.copytree(path, dst)
    return dst


def test_tampered_files_fail_safely(saved, tmp_path):
    _, path = saved
    model_file = json.loads((path / "classifier.json").read_text())["model_file"]
    for victim in ("classifier.json", "features.safetensors", model_file):
        dst = _copy(path, tmp_path / victim)
        data = bytearray((dst / victim).read_bytes())
        data[len(data) // 2] ^= 0x01
        (dst / victim).write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="sha256 does not match"):
            load_classifier(dst)
    dst = _copy(path, tmp_path / "missing")
    (dst / model_file).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_classifier(dst)
    dst = _copy(path, tmp_path / "nomanifest")
    (dst / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="manifest"):
        load_classifier(dst)
    with pytest.raises(CheckpointError):
        load_classifier(tmp_path / "nowhere")


def test_consistent_edit_of_a_file_and_its_hash_is_still_validated(saved, tmp_path):
    """Someone who also rewrites the manifest gets past the sha256, but not past the parsers' checks."""
    from phitools.runtime.files import sha256_file

    _, path = saved
    dst = _copy(path, tmp_path / "edited")
    doc = json.loads((dst / "classifier.json").read_text())
    doc["dim"] = 7
    (dst / "classifier.json").write_text(json.dumps(doc))
    man = json.loads((dst / "manifest.json").read_text())
    for o in man["outputs"]:
        if o["path"] == "classifier.json":
            o["sha256"] = sha256_file(dst / "classifier.json")
    (dst / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match="dim"):
        load_classifier(dst)


def test_refuses_to_overwrite_a_foreign_directory(saved, tmp_path):
    clf, _ = saved
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError):
        clf.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("estimator", ["lgbm", "logreg"])
def test_identical_training_gives_the_same_id(labelled, tmp_path, estimator):
    ids = []
    for run in ("a", "b"):
        pipe = parse_features("hash", hash_settings=HashSettings(n_features=1 << 14))
        clf, report = train(
            iter(copy.deepcopy(labelled)), pipe, TrainOptions(estimator=estimator, n_estimators=10, folds=2)
        )
        clf.save(tmp_path / run / "clf", report=report, inputs=["labelled.jsonl"], seed=0)
        ids.append(load_classifier(tmp_path / run / "clf").id)
    assert ids[0] == ids[1]  # the id hashes what was learnt, not how long it took


def test_replacing_a_classifier_never_leaves_the_path_without_one(saved, tmp_path, monkeypatch):
    """Saving over a classifier swaps the new directory in whole: if the swap fails, the old one is still there."""
    import os

    import phitools.runtime.files as files

    clf, path = saved
    dst = _copy(path, tmp_path)
    before = load_classifier(dst).id

    real_rename, real_replace = os.rename, os.replace

    def broken(real):
        def move(a, b, **kw):
            if os.path.isdir(a):  # moving a directory into place fails (files inside it still write)
                raise OSError("disk gone")
            return real(a, b, **kw)

        return move

    monkeypatch.setattr(files, "_exchange", lambda a, b: False)  # the portable path: two renames
    monkeypatch.setattr(os, "rename", broken(real_rename))
    monkeypatch.setattr(os, "replace", broken(real_replace))
    with pytest.raises(OSError):
        clf.save(dst, report={"evaluation": None})
    monkeypatch.undo()
    assert load_classifier(dst).id == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf"]  # no temporary directory left behind


def test_saved_directory_has_the_usual_permissions(saved, tmp_path):
    import os
    import stat

    clf, _ = saved
    umask = os.umask(0o022)
    try:
        out = clf.save(tmp_path / "new", report={})
    finally:
        os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert {stat.S_IMODE(f.stat().st_mode) for f in out.iterdir()} == {0o644}


def test_a_loaded_classifier_saves_again(saved, tmp_path, heldout):
    _, path = saved
    texts = [r["text"] for r in heldout]
    loaded = load_classifier(path)
    again = load_classifier(loaded.save(tmp_path / "again"))
    assert np.array_equal(again.score(texts), loaded.score(texts))
