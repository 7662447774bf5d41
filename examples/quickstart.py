"""The quickstart (examples/quickstart.sh) written against the Python API: the same ten steps, the same
options, the same outputs for the same seeds.

    .venv/bin/python examples/quickstart.py            # RUN=quickstart-py-run by default

The knobs are the shell script's environment variables (RUN, CORPUS, LABEL_LLM_SAMPLE, LABEL_SAMPLE, SYNTH_N,
SYNTH_TOKENS, TRAIN_STEPS, GROW_STEPS, EVAL_PROBLEMS); the LLM steps use the embedded local model unless
API_BASE and MODEL name an OpenAI-compatible server. tests/examples/test_quickstart_py.py runs both scripts
on a small corpus and compares what they wrote. Each call below is one command of quickstart.sh, shown above
it.
"""

from __future__ import annotations

import os
import sysconfig
import time
from pathlib import Path

from phitools import pipeline
from phitools.errors import PhitoolsError
from phitools.eval import EvalOptions
from phitools.eval import run as evaluate
from phitools.llm.options import LLMOptions
from phitools.model.grow import grow
from phitools.model.options import GrowOptions
from phitools.pipeline import IOOptions
from phitools.runtime import console
from phitools.steps.classify.apply import Apply, ApplyOptions
from phitools.steps.classify.train import TrainOptions, train_classifier
from phitools.steps.decontam import Decontam, DecontamOptions
from phitools.steps.ingest import IngestOptions, ingest
from phitools.steps.label import Label, LabelOptions
from phitools.steps.synth import Synth, SynthIO, SynthLLMOptions, SynthOptions, write
from phitools.steps.tokenize import TokenizeIO, TokenizeOptions, tokenize
from phitools.train import TrainConfig
from phitools.train import run as train

HERE = Path(__file__).resolve().parent


def knob(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def main() -> None:
    run = Path(os.environ.get("RUN", "quickstart-py-run"))
    corpus_src = os.environ.get("CORPUS") or sysconfig.get_paths()["stdlib"]
    llm_sample, label_sample = knob("LABEL_LLM_SAMPLE", 4), knob("LABEL_SAMPLE", 400)
    synth_n, synth_tokens = knob("SYNTH_N", 2), knob("SYNTH_TOKENS", 64)
    train_steps, grow_steps, eval_problems = knob("TRAIN_STEPS", 150), knob("GROW_STEPS", 100), knob("EVAL_PROBLEMS", 5)
    server = {"api_base": os.environ["API_BASE"], "model": [os.environ["MODEL"]]} if "API_BASE" in os.environ else {}
    backend = {} if server else {"backend": "local"}
    run.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()

    def step(text: str) -> None:
        console.info(f"== [{time.monotonic() - start:4.0f}s] {text}")

    step(f"1/10 ingest {corpus_src} -> {run}/corpus/")
    # phitools ingest STDLIB --exclude 'site-packages/*' --exclude 'test/*' --exclude 'tests/*' --dedup -o corpus/
    ingest(
        IngestOptions(
            paths=[corpus_src],
            exclude=["site-packages/*", "test/*", "tests/*"],
            dedup=True,
            output=f"{run}/corpus/",
        )
    )

    step(f"2/10 label: the embedded LLM rates {llm_sample} files; the heuristic rater {label_sample}")
    # phitools label corpus/ --sample 4 --rubric code --backend local --max-tokens 8 --seed 1 -o labeled-llm/
    pipeline.run(
        Label(LabelOptions(sample=llm_sample, rubric="code"), LLMOptions(**backend, **server, max_tokens=8)),
        IOOptions(inputs=[f"{run}/corpus/"], output=f"{run}/labeled-llm/", seed=1),
    )
    # phitools label corpus/ --sample 400 --backend heuristic --seed 1 -o labeled/
    pipeline.run(
        Label(LabelOptions(sample=label_sample), LLMOptions(backend="heuristic")),
        IOOptions(inputs=[f"{run}/corpus/"], output=f"{run}/labeled/", seed=1),
    )

    step("3/10 classify: learn the labels, keep the top half of the corpus")
    # phitools classify train labeled/ --features hash --estimator lgbm --seed 1 -o clf/
    train_classifier(
        TrainOptions(labeled=[f"{run}/labeled/"], features="hash", estimator="lgbm", seed=1, output=f"{run}/clf/")
    )
    # phitools classify apply clf/ corpus/ --keep-top 0.5 --rejects rejects.jsonl.zst -o filtered/
    pipeline.run(
        Apply(ApplyOptions(clf=f"{run}/clf/", keep_top=0.5, rejects=f"{run}/rejects.jsonl.zst")),
        IOOptions(inputs=[f"{run}/corpus/"], output=f"{run}/filtered/"),
    )

    step(f"4/10 synth: {synth_n} textbook sections and {synth_n} exercises")
    llm = SynthLLMOptions(**backend, **server, max_tokens=synth_tokens)
    # phitools synth --topics topics.txt --kind textbook --n 2 --max-tokens 64 --backend local --seed 1 -o ...
    write(
        Synth(
            SynthOptions(topics=str(HERE / "topics.txt"), kind="textbook", n=synth_n),
            llm,
            SynthIO(output=f"{run}/synth-textbook/", seed=1),
        )
    )
    # phitools synth --spec spec.toml --kind exercise --n 2 --max-tokens 64 --backend local --seed 1 -o ...
    try:
        write(
            Synth(
                SynthOptions(spec=str(HERE / "spec.toml"), kind="exercise", n=synth_n),
                llm,
                SynthIO(output=f"{run}/synth-exercise/", seed=1),
            )
        )
    except PhitoolsError as e:
        console.warn(f"no exercise from the small model parsed ({e}); continuing with textbooks only")

    step("5/10 decontam: drop anything overlapping HumanEval or MBPP")
    synth_dirs = [f"{d}/" for d in (run / "synth-textbook", run / "synth-exercise") if (d / "manifest.json").exists()]
    # phitools decontam --benchmark humaneval --benchmark mbpp --drop filtered/ synth-*/ -o clean/
    pipeline.run(
        Decontam(DecontamOptions(benchmarks=["humaneval", "mbpp"], drop=True)),
        IOOptions(inputs=[f"{run}/filtered/", *synth_dirs], output=f"{run}/clean/"),
    )

    step("6/10 tokenize: train a byte-level BPE, pack 256-token rows")
    # phitools tokenize clean/ --train-tokenizer --vocab-size 4096 --seq-len 256 -o tok/
    tokenize(
        TokenizeIO(inputs=[f"{run}/clean/"], output=f"{run}/tok/"),
        TokenizeOptions(train_tokenizer=True, vocab_size=4096, seq_len=256),
    )

    step(f"7/10 train a tiny phi model ({train_steps} steps)")
    # phitools train --data tok/ --preset tiny --seq-len 256 --batch-size 16 --max-steps 150 --lr 3e-3
    #   --eval-every 50 --save-every 50 --seed 7 -o runs/tiny
    shared = {"data": f"{run}/tok/", "seq_len": 256, "batch_size": 16, "eval_every": 50, "save_every": 50}
    train(TrainConfig(**shared, preset="tiny", max_steps=train_steps, lr=3e-3, seed=7, output=f"{run}/runs/tiny"))

    step("8/10 grow it: 2x width (tiled) and 2 -> 4 layers (identity copies), checked function-preserving")
    # phitools grow runs/tiny --d-model 256 --layers 4 --depth identity --check -o runs/grown-init --overwrite
    grow(
        GrowOptions(
            f"{run}/runs/tiny",
            f"{run}/runs/grown-init",
            d_model=256,
            n_layer=4,
            depth="identity",
            check=True,
            overwrite=True,
        )
    )

    step(f"9/10 train the grown model on ({grow_steps} steps)")
    # phitools train --data tok/ --init runs/grown-init --seq-len 256 --batch-size 16 --max-steps 100 --lr 1e-3
    #   --eval-every 50 --save-every 50 --seed 8 -o runs/grown
    train(
        TrainConfig(
            **shared, init=f"{run}/runs/grown-init", max_steps=grow_steps, lr=1e-3, seed=8, output=f"{run}/runs/grown"
        )
    )

    step(f"10/10 eval: HumanEval pass@1 on {eval_problems} problems (sandboxed)")
    # phitools eval runs/grown --benchmark humaneval --n-samples 1 --limit 5 --max-tokens 96 -o results/
    summary = evaluate(
        EvalOptions(
            checkpoint=f"{run}/runs/grown",
            benchmark="humaneval",
            n_samples=1,
            limit=eval_problems,
            max_tokens=96,
            output=f"{run}/results/",
        )
    )
    console.info(f"pass@1 {summary['pass_at_k'].get('pass@1')}; everything is in {run}/")


if __name__ == "__main__":
    main()
