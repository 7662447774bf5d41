"""`model:CKPT` features: mean-pooled hidden states of a (tiny, random) Phi checkpoint with its own tokenizer."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from phitools.errors import CheckpointError


@pytest.fixture(scope="module")
def ckpt(labelled, tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from phitools.model.checkpoint import save_checkpoint
    from phitools.model.phi import Phi, preset_config

    d = tmp_path_factory.mktemp("embed")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        [r["text"] for r in labelled[:20]],
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    tok.save(str(d / "tokenizer.json"))
    cfg = preset_config("tiny", vocab_size=512, max_seq_len=128)
    torch.manual_seed(0)
    return save_checkpoint(
        d / "ckpt", Phi(cfg), cfg, {"note": "test"}, extra_files={"tokenizer.json": d / "tokenizer.json"}
    )


def test_mean_pooling_ignores_padding(ckpt):
    from phitools.steps.classify.embed import Embedder

    e = Embedder(ckpt, max_tokens=64, batch_size=4, device="cpu")
    texts = ["def f(x):\n    return x\n", "import os\n" * 30, "", "a"]
    together = e.embed(texts)
    alone = np.vstack([e.embed([t]) for t in texts])
    assert together.shape == (4, 128) and np.allclose(together, alone, atol=1e-5)
    assert np.all(together[2] == 0)  # an empty document has no tokens: a zero vector
    assert e.describe()["weights_sha256"] and e.describe()["d_model"] == 128


@pytest.mark.slow
def test_train_and_apply_with_model_features(ckpt, labelled, heldout, tmp_path):
    from phitools.steps.classify.features import parse_features
    from phitools.steps.classify.hashing import HashSettings
    from phitools.steps.classify.saved import load_classifier
    from phitools.steps.classify.train import TrainOptions, train

    pipe = parse_features(
        f"hash,model:{ckpt}", hash_settings=HashSettings(n_features=1 << 12), max_tokens=64, device="cpu"
    )
    clf, report = train(
        iter(copy.deepcopy(labelled[:30])), pipe, TrainOptions(estimator="lgbm", n_estimators=15, folds=2)
    )
    assert pipe.dim == (1 << 12) + 14 + 128 and report["features"] == f"hash,model:{ckpt}"
    clf.save(tmp_path / "clf", report=report)
    loaded = load_classifier(tmp_path / "clf", device="cpu")
    texts = [r["text"] for r in heldout[:10]]
    assert np.allclose(loaded.score(texts), clf.score(texts), atol=1e-6)
    # the checkpoint moved: point at it; a different checkpoint is refused
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(ckpt, moved)
    relocated = load_classifier(tmp_path / "clf", checkpoint=str(moved), device="cpu")
    assert np.allclose(relocated.score(texts), clf.score(texts), atol=1e-6)
    import torch

    from phitools.model.checkpoint import save_checkpoint
    from phitools.model.phi import Phi, preset_config

    cfg = preset_config("tiny", vocab_size=512, max_seq_len=128)
    torch.manual_seed(1)
    other = save_checkpoint(
        tmp_path / "other", Phi(cfg), cfg, {}, extra_files={"tokenizer.json": ckpt / "tokenizer.json"}
    )
    with pytest.raises(CheckpointError, match="weights_sha256"):
        load_classifier(tmp_path / "clf", checkpoint=str(other), device="cpu").score(texts)


def test_missing_tokenizer_is_a_clear_error(ckpt, tmp_path):
    import shutil

    from phitools.steps.classify.embed import Embedder

    bare = tmp_path / "bare"
    shutil.copytree(ckpt, bare)
    (bare / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="tokenizer"):
        Embedder(bare, device="cpu")
