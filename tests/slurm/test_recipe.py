"""examples/slurm_label_classify_tokenize.sh without a cluster: `local` end to end and its repairs, the task entry
point (N is never the array's size), and `submit`'s sbatch flags and rollback against recording stand-ins for
sbatch/squeue/scancel/scontrol. The real cluster run is tests/slurm/test_selftest.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_phitools

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "examples" / "slurm_label_classify_tokenize.sh"
SETTINGS = {
    "LABEL_ARGS": "--backend heuristic",
    "LABEL_FRACTION": "1",
    "CLF_FEATURES": "hash",
    "CLF_ARGS": "--estimator lgbm",
    "TOKENIZER": "stdlib-8k",
    "SEQ_LEN": "64",
    "TOKENIZE_ARGS": "--no-pack",
    "BENCHMARKS": "-b humaneval --no-download",
    "TRAIN": "0",
    "CPUS": "1",
}


def recipe(
    *args: str, cwd: Path, env: dict | None = None, path_prefix: Path | None = None
) -> subprocess.CompletedProcess:
    e = {
        k: v
        for k, v in os.environ.items()
        if k not in ("WORK", "CORPUS", "DATA_DIR", "N", "RUN") and not k.startswith("SLURM_")
    }
    e.update(SETTINGS)
    e["PATH"] = os.pathsep.join(
        ([str(path_prefix)] if path_prefix else []) + [str(Path(sys.executable).parent), e["PATH"]]
    )
    e.pop("PHITOOLS_VERBOSE", None)
    e.update(env or {})
    return subprocess.run(["bash", str(RECIPE), *args], cwd=cwd, env=e, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def data(tmp_path_factory, request) -> Path:
    """A data directory holding corpus/: 40 standard-library modules, ingested."""
    stdlib_small = request.getfixturevalue("stdlib_small")
    d = tmp_path_factory.mktemp("recipe")
    files = sorted(stdlib_small.glob("*.py"))[:40]
    lib = d / "lib"
    lib.mkdir()
    for f in files:
        (lib / f.name).write_bytes(f.read_bytes())
    run_phitools("ingest", "lib", "-o", "corpus/", cwd=d, check=True)
    return d


def verify(path: Path, parts: int) -> dict:
    r = run_phitools("verify", str(path), "--json", "--quick", "--parts", str(parts))
    return json.loads(r.stdout)


@pytest.mark.slow
def test_local_runs_every_stage_then_repairs_only_what_is_missing(data: Path) -> None:
    r = recipe("local", cwd=data, env={"WORK": "w", "N": "2"})
    assert r.returncode == 0, r.stderr
    for stage in ("labeled", "filtered", "clean", "tok"):
        assert verify(data / "w" / stage, 2)["complete"], stage
    # every task says when it started, what it ran, its numbers and how it ended
    assert r.stderr.count("[recipe] label task 1 of 2: start on ") == 1
    assert "[recipe] tokenize task 1 of 2: tokenize: records in " in r.stderr
    assert r.stderr.count(": exit 0 after ") == 9  # 4 arrays x 2 + classify train
    s = recipe("status", cwd=data, env={"WORK": "w"})
    assert s.returncode == 0, s.stdout + s.stderr
    before = (data / "w" / "tok" / "tokens-00000-of-00002-00000.bin").read_bytes()

    # a lost part and a damaged one: `local` again re-runs exactly those two tasks
    for p in (data / "w" / "labeled").glob("*-00001-of-00002*"):
        p.unlink()
    (data / "w" / "tok" / "tokens-00000-of-00002-00000.bin").write_bytes(b"\0" * 10)
    s = recipe("status", cwd=data, env={"WORK": "w"})
    assert s.returncode == 1
    assert [ln.split()[-1] for ln in s.stdout.splitlines()[1:] if ln.split()[0] in ("label", "tokenize")] == ["1", "0"]
    r = recipe("local", cwd=data, env={"WORK": "w"})  # N comes from what WORK was started with
    assert r.returncode == 0, r.stderr
    ran = sorted(re.findall(r"^\[recipe\] (\S+ task \d+ of \d+): exit 0 after ", r.stderr, re.M))
    assert ran == ["label task 1 of 2", "tokenize task 0 of 2"]
    assert (data / "w" / "tok" / "tokens-00000-of-00002-00000.bin").read_bytes() == before
    assert recipe("status", cwd=data, env={"WORK": "w"}).returncode == 0


def test_a_task_takes_n_from_its_arguments_never_from_the_array_size(data: Path, tmp_path: Path) -> None:
    slurm = {
        "SLURM_JOB_ID": "7",
        "SLURM_ARRAY_JOB_ID": "7",
        "SLURM_ARRAY_TASK_ID": "1",
        "SLURM_ARRAY_TASK_COUNT": "1",
        "SLURM_JOB_NAME": "phi-label",
        "WORK": str(tmp_path / "w"),
    }
    r = recipe("label", cwd=data, env=slurm)  # sbatch --array=1 ... label: which N? refused, not guessed
    assert r.returncode == 2
    assert "needs the stage's true N" in r.stderr
    assert not (tmp_path / "w" / "labeled").exists()
    r = recipe("label", "3", cwd=data, env=slurm)  # --array=1 with the true N: shard 1 of 3
    assert r.returncode == 0, r.stderr
    rep = verify(tmp_path / "w" / "labeled", 3)
    assert rep["present"] == [1] and rep["missing"] == [0, 2]
    r = recipe("label", "3", cwd=data, env={**slurm, "SLURM_ARRAY_TASK_ID": "3"})
    assert r.returncode == 2 and "not below N=3" in r.stderr


FAKE = r"""#!/usr/bin/env bash
# a recording stand-in for {name}: appends its argv (JSON) to $FAKE_LOG
"{python}" -c 'import json, sys; print(json.dumps(sys.argv[1:]))' {name} "$@" >> "$FAKE_LOG"
case {name} in
  squeue) printf '%s' "${{FAKE_SQUEUE:-}}" ;;
  sbatch)
    n=$(grep -c '^\["sbatch"' "$FAKE_LOG")
    if [ "$n" = "${{FAKE_FAIL_AT:-0}}" ]; then echo "sbatch: error: invalid partition specified: nope" >&2; exit 1; fi
    echo $((100 + n)) ;;
esac
"""


@pytest.fixture
def fake_slurm(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("sbatch", "squeue", "scancel", "scontrol"):
        p = bin_dir / name
        p.write_text(FAKE.format(name=name, python=sys.executable))
        p.chmod(0o755)
    return bin_dir, tmp_path / "calls.jsonl"


def calls(log: Path) -> list[list[str]]:
    return [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []


def flags(call: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) if "=" in a else (a[2:], "") for a in call if a.startswith("--"))


def test_submit_cpu_defaults_gpus_only_for_model_features_and_sbatch_args(
    data: Path, tmp_path: Path, fake_slurm
) -> None:
    bin_dir, log = fake_slurm
    env = {
        "FAKE_LOG": str(log),
        "WORK": str(tmp_path / "w"),
        "N": "4",
        "SBATCH_ARGS": "--partition=cpu --account=proj",
        "TOKENIZE_SBATCH": "--cpus-per-task=8",
        "CPUS": "",
    }  # (empty: the script's default)
    r = recipe("submit", cwd=data, env=env, path_prefix=bin_dir)
    assert r.returncode == 0, r.stderr
    sb = [c for c in calls(log) if c[0] == "sbatch"]
    assert [flags(c)["job-name"] for c in sb] == [
        "phi-label",
        "phi-classify-train",
        "phi-apply",
        "phi-decontam",
        "phi-tokenize",
    ]
    for c in sb:
        f = flags(c)
        assert not any(k.startswith("gpus") or k == "gres" for k in f), c  # hash features: no GPU anywhere
        assert f["partition"] == "cpu" and f["account"] == "proj" and f["mem"] == "4G" and "hold" in f
        assert f["kill-on-invalid-dep"] == "yes" and f["chdir"] == str(data)
    assert [c[-1] for c in sb] == ["4", "classify-train", "4", "4", "4"]  # the true N goes on the command line
    assert [flags(c).get("array") for c in sb] == ["0-3", None, "0-3", "0-3", "0-3"]
    assert [flags(c).get("dependency") for c in sb] == [
        None,
        "afterok:101",
        "afterok:102",
        "afterok:103",
        "afterok:104",
    ]
    assert flags(sb[0])["cpus-per-task"] == "2"  # the small-node default; a stage's own flags come later and win
    assert sb[4].index("--cpus-per-task=2") < sb[4].index("--cpus-per-task=8")
    rel = [c for c in calls(log) if c[0] == "scontrol"]
    assert rel == [["scontrol", "release", "101", "102", "103", "104", "105"]]
    assert r.stdout.split() == [
        "label",
        "101",
        "classify-train",
        "102",
        "apply",
        "103",
        "decontam",
        "104",
        "tokenize",
        "105",
    ]
    assert not (tmp_path / "w" / "tokenizer").exists()  # stdlib-8k is bundled: nothing fetched

    log.unlink()
    r = recipe(
        "submit",
        cwd=data,
        env={**env, "CLF_FEATURES": "hash,model:/models/phi-1", "CLF_GPUS": "2", "WORK": str(tmp_path / "w2")},
        path_prefix=bin_dir,
    )
    assert r.returncode == 0, r.stderr
    gpus = {flags(c)["job-name"]: flags(c).get("gpus") for c in calls(log) if c[0] == "sbatch"}
    assert gpus == {
        "phi-label": None,
        "phi-classify-train": "2",
        "phi-apply": "2",
        "phi-decontam": None,
        "phi-tokenize": None,
    }


def test_a_failed_sbatch_cancels_exactly_what_this_submit_queued(data: Path, tmp_path: Path, fake_slurm) -> None:
    bin_dir, log = fake_slurm
    r = recipe(
        "submit",
        cwd=data,
        env={"FAKE_LOG": str(log), "FAKE_FAIL_AT": "4", "WORK": str(tmp_path / "w")},
        path_prefix=bin_dir,
    )
    assert r.returncode == 1
    assert "sbatch for stage decontam failed: sbatch: error: invalid partition" in r.stderr
    assert [c for c in calls(log) if c[0] in ("scancel", "scontrol")] == [["scancel", "101", "102", "103"]]
    assert r.stdout == ""


def test_submit_refuses_a_work_dir_started_with_another_n(data: Path, tmp_path: Path, fake_slurm) -> None:
    bin_dir, log = fake_slurm
    env = {"FAKE_LOG": str(log), "WORK": str(tmp_path / "w")}
    assert recipe("submit", cwd=data, env={**env, "N": "2"}, path_prefix=bin_dir).returncode == 0
    log.unlink()
    r = recipe("submit", cwd=data, env={**env, "N": "3"}, path_prefix=bin_dir)
    assert r.returncode == 2 and "was started with N=2 tasks per stage, not N=3" in r.stderr
    assert not calls(log)


def test_submit_stops_on_parts_of_another_n_with_verify_s_word(data: Path, tmp_path: Path, fake_slurm) -> None:
    bin_dir, log = fake_slurm
    work = tmp_path / "w"
    task = {"SLURM_JOB_ID": "7", "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "0", "WORK": str(work)}
    assert recipe("label", "3", cwd=data, env=task).returncode == 0  # a part of an N=3 run, by hand
    r = recipe("submit", cwd=data, env={"FAKE_LOG": str(log), "WORK": str(work), "N": "2"}, path_prefix=bin_dir)
    assert r.returncode == 1
    assert "labeled: manifests of different runs (--shard K/3); expected --shard K/2" in r.stderr
    assert not [c for c in calls(log) if c[0] == "sbatch"]


def test_submit_keeps_running_tasks_replaces_stale_ones_and_leaves_other_work_dirs_alone(
    data: Path, tmp_path: Path, fake_slurm
) -> None:
    bin_dir, log = fake_slurm
    work = tmp_path / "w"
    queue = (
        "\n".join(
            [  # squeue -h -r -o '%F|%K|%i|%j|%T|%r|%k'
                # another chain's
                "200|0|200_0|phi-label|PENDING|DependencyNeverSatisfied|phitools-recipe /elsewhere/work",
                f"201|1|201_1|phi-label|RUNNING|None|phitools-recipe {work}",  # ours, at work
                f"202|0|202_0|phi-apply|PENDING|DependencyNeverSatisfied|phitools-recipe {work}",  # ours, stuck
            ]
        )
        + "\n"
    )
    r = recipe(
        "submit",
        cwd=data,
        env={"FAKE_LOG": str(log), "FAKE_SQUEUE": queue, "WORK": str(work), "N": "3"},
        path_prefix=bin_dir,
    )
    assert r.returncode == 0, r.stderr
    sb = [flags(c) for c in calls(log) if c[0] == "sbatch"]
    assert sb[0]["array"] == "0,2"  # task 1 is running: not submitted twice
    assert sb[1]["dependency"] == "afterok:101:201_1"  # classify train waits for the new tasks and the running one
    assert sb[2]["array"] == "0-2"
    assert [c for c in calls(log) if c[0] == "scancel"] == [["scancel", "202_0"]]  # ours and stuck; not 200_0


def test_submit_refuses_to_resubmit_a_part_whose_writer_holds_its_lock(data: Path, tmp_path: Path, fake_slurm) -> None:
    bin_dir, log = fake_slurm
    work = tmp_path / "w"
    (work / "labeled").mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(120)",
            str(work / "labeled" / ".lock-00001-of-00003"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = recipe("submit", cwd=data, env={"FAKE_LOG": str(log), "WORK": str(work), "N": "3"}, path_prefix=bin_dir)
    finally:
        holder.terminate()
        holder.wait()
    assert r.returncode == 1
    assert "task 1 of label is being written right now" in r.stderr
    assert not [c for c in calls(log) if c[0] == "sbatch"]


def test_a_task_never_downloads_a_tokenizer(data: Path, tmp_path: Path) -> None:
    task = {
        "SLURM_JOB_ID": "7",
        "SLURM_ARRAY_JOB_ID": "7",
        "SLURM_ARRAY_TASK_ID": "0",
        "WORK": str(tmp_path / "w"),
        "TOKENIZER": "microsoft/phi-1",
        "HF_HUB_OFFLINE": "1",
    }
    r = recipe("tokenize", "2", cwd=data, env=task)
    assert r.returncode == 2
    assert "is a Hub id and" in r.stderr and "run submit (it saves it on the login node)" in r.stderr
    assert not (tmp_path / "w" / "tok").exists()


def test_submit_replaces_a_job_stuck_on_a_failed_dependency_even_when_nothing_before_it_changed(
    data: Path, tmp_path: Path, fake_slurm
) -> None:
    bin_dir, log = fake_slurm
    work = tmp_path / "w"
    c = f"phitools-recipe {work}"
    queue = (
        "\n".join(
            [f"201|{k}|201_{k}|phi-label|RUNNING|None|{c}" for k in range(3)]
            + [
                f"203|N/A|203|phi-classify-train|PENDING|Dependency|{c}",  # waits on label: fine
                f"202|0|202_0|phi-apply|PENDING|DependencyNeverSatisfied|{c}",  # waits forever: replace it
            ]
        )
        + "\n"
    )
    r = recipe(
        "submit",
        cwd=data,
        env={"FAKE_LOG": str(log), "FAKE_SQUEUE": queue, "WORK": str(work), "N": "3"},
        path_prefix=bin_dir,
    )
    assert r.returncode == 0, r.stderr
    sb = [flags(c) for c in calls(log) if c[0] == "sbatch"]
    assert [f["job-name"] for f in sb] == ["phi-apply", "phi-decontam", "phi-tokenize"]
    assert sb[0]["array"] == "0-2" and sb[0]["dependency"] == "afterok:203"
    assert [c for c in calls(log) if c[0] == "scancel"] == [["scancel", "202_0"]]
