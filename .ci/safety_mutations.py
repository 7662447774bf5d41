"""Deletion check: remove each data-safety check, one at a time, and see whether a test notices.

    .venv/bin/python .ci/safety_mutations.py [--only NAME ...] [--list]

Each mutation below deletes (or disables) one safety check of the shard layer, tokenize, ingest or train. The
script copies src/ and tests/ into a temporary directory, applies the mutation there (the working tree is never
touched), runs the tests that should catch it with that copy first on PYTHONPATH, and reports whether they
failed ("noticed") or passed ("UNNOTICED"). Exit status 1 when any mutation went unnoticed.

A hand-made list, not a mutation-testing tool: every entry is a check someone wrote on purpose, so an unnoticed
one is a missing test, not noise. Issue 11 found 7 of 15 such deletions unnoticed; this list is the answer.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Mutation:
    name: str
    file: str  # under src/phitools/
    old: str
    new: str
    tests: list[str]  # pytest node ids / paths, with an optional "::-k expr" suffix kept as -k


S = "tests/shards/"
TOK = S + "test_tokens_safety.py"
MUTATIONS = [
    # -- completeness (shards/complete.py) ------------------------------------------------------------------
    Mutation(
        "complete: missing --shard part",
        "shards/complete.py",
        'for k in rep.missing:\n            rep.problems.append(Problem("missing_part"',
        'for k in []:\n            rep.problems.append(Problem("missing_part"',
        [S + "test_complete.py", S + "test_read_complete.py"],
    ),
    Mutation(
        "complete: listed file missing",
        "shards/complete.py",
        'f.ok = False\n            rep.problems.append(Problem("missing_file"',
        'continue\n            rep.problems.append(Problem("missing_file"',
        [S + "test_complete.py"],
    ),
    Mutation(
        "complete: size mismatch",
        "shards/complete.py",
        "if f.bytes is not None and st.st_size != f.bytes:",
        "if False:",
        [S + "test_complete.py"],
    ),
    Mutation(
        "complete: sha256 mismatch",
        "shards/complete.py",
        "            if got != f.sha256:",
        "            if False:",
        [S + "test_complete.py"],
    ),
    Mutation(
        "complete: extra (unlisted) file",
        "shards/complete.py",
        "        if name not in seen:",
        "        if False:",
        [S + "test_complete.py", S + "test_read_complete.py"],
    ),
    Mutation(
        "complete: runs of different N",
        "shards/complete.py",
        "if len(ns) > 1 or (parts and ns != [parts]):",
        "if False:",
        [S + "test_complete.py", S + "test_read_complete.py"],
    ),
    Mutation(
        "complete: shards without a manifest",
        "shards/complete.py",
        "            if ours:",
        "            if False:",
        [S + "test_complete.py", S + "test_read_complete.py"],
    ),
    Mutation(
        "complete: file listed twice",
        "shards/complete.py",
        "            if name in seen:",
        "            if False:",
        [S + "test_complete.py"],
    ),
    Mutation(
        "complete: manifest naming another part",
        "shards/complete.py",
        'if m.group(1) and recorded != f"{k}/{n}":',
        "if False:",
        [S + "test_complete.py"],
    ),
    Mutation(
        "complete: token parts disagree",
        "shards/complete.py",
        "if any(m.get(key) != first.get(key) for m in docs[1:]):",
        "if False:",
        [TOK],
    ),
    Mutation(
        "complete: tokenizer.json replaced",
        "shards/complete.py",
        "if sha256 and sha256_file(tok) not in want:",
        "if False:",
        [TOK],
    ),
    # -- readers (shards/read.py) ---------------------------------------------------------------------------
    Mutation(
        "read: refuse an incomplete directory",
        "shards/read.py",
        "        if not allow_partial:\n            raise DataError(rep.summary()",
        "        if False:\n            raise DataError(rep.summary()",
        [S + "test_read_complete.py"],
    ),
    Mutation(
        "read: streamed size check",
        "shards/read.py",
        "if e.bytes is not None and self._n != e.bytes:",
        "if False:",
        [S + "test_read_complete.py"],
    ),
    Mutation(
        "read: streamed sha256 check",
        "shards/read.py",
        "elif self._sha is not None and self._sha.hexdigest() != e.sha256:",
        "elif False:",
        [S + "test_read_complete.py"],
    ),
    Mutation(
        "read: act on the streamed check",
        "shards/read.py",
        "if checker is not None and checker.problem:",
        "if False:",
        [S + "test_read_complete.py"],
    ),
    Mutation(
        "read: a named file checked against its manifest",
        "shards/read.py",
        "        o = listed.get(p.name)",
        "        o = None",
        [S + "test_read_complete.py"],
    ),
    Mutation(
        "read: text must be a string",
        "shards/read.py",
        "if text is not None and not isinstance(text, str):",
        "if False:",
        ["tests/cli/test_odd_records.py"],
    ),
    Mutation(
        "read: lone surrogate in a text a tool needs",
        "shards/read.py",
        "                            if bad:\n"
        '                                self._bad(\n                                    "lone_surrogate"',
        "                            if False:\n"
        '                                self._bad(\n                                    "lone_surrogate"',
        ["tests/cli/test_odd_records.py"],
    ),
    Mutation(
        "read: a token directory is not records",
        "shards/read.py",
        '    if rep.kind == "tokens":\n        raise DataError(\n            "this is a token',
        '    if False:\n        raise DataError(\n            "this is a token',
        [S + "test_read_complete.py"],
    ),
    # -- ownership, locks, commit ---------------------------------------------------------------------------
    Mutation(
        "stale: only this host and pid namespace",
        "shards/ownership.py",
        "if self.host != hostname() or self.pidns != pid_namespace() or self.pid == os.getpid():",
        "if self.pid == os.getpid():",
        [S + "test_write_safety.py"],
    ),
    Mutation(
        "stale: only a dead pid",
        "shards/ownership.py",
        "        return not _pid_alive(self.pid)",
        "        return True",
        [S + "test_write_safety.py"],
    ),
    Mutation(
        "stale: only this slice's temps",
        "shards/ownership.py",
        "if finals.match(t.final) and t.stale():",
        "if t.stale():",
        [S + "test_write_safety.py"],
    ),
    Mutation(
        "lock: flock at all",
        "shards/ownership.py",
        "fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))",
        "pass",
        [S + "test_write_safety.py", TOK],
    ),
    Mutation(
        "lock: same process, same output",
        "shards/ownership.py",
        "            if key in _held:",
        "            if False:",
        [S + "test_write_safety.py"],
    ),
    Mutation(
        "lock: re-check the file after locking",
        "shards/ownership.py",
        "if now is None or (now.st_dev, now.st_ino) != key:",
        "if False:",
        [S + "test_write_safety.py"],
    ),
    Mutation(
        "commit: refuse another N at start",
        "shards/commit.py",
        "            _refuse_other_runs(self.dir, self.shard)\n            ownership.remove_stale_temps",
        "            ownership.remove_stale_temps",
        [S + "test_write_safety.py"],
    ),
    Mutation(
        "commit: refuse another N at commit",
        "shards/commit.py",
        "            _refuse_other_runs(self.dir, self.shard)\n            self._committing = True",
        "            self._committing = True",
        [S + "test_write_safety.py"],
    ),
    Mutation(
        "commit: remove the slice's manifest first",
        "shards/commit.py",
        "            self.manifest_path.unlink(missing_ok=True)\n            for tmp, final in shared:",
        "            for tmp, final in shared:",
        [S + "test_write_safety.py"],
    ),
    Mutation(
        "commit: remove the previous run's files",
        "shards/commit.py",
        "for name in self._old + self._strays():",
        "for name in []:",
        [S + "test_write.py", S + "test_write_safety.py", TOK],
    ),
    Mutation(
        "commit: remove a killed commit's strays",
        "shards/commit.py",
        "for name in self._old + self._strays():",
        "for name in self._old:",
        [S + "test_write_safety.py"],
    ),
    Mutation(
        "commit: clean up a failed commit",
        "shards/commit.py",
        "        if self._committing:",
        "        if False:",
        [S + "test_write_safety.py"],
    ),
    Mutation(
        "commit: remove stale temps of the slice",
        "shards/commit.py",
        "            ownership.remove_stale_temps(self.dir, self.own)",
        "            pass",
        [S + "test_write.py", S + "test_write_safety.py", TOK],
    ),
    # -- record writer ----------------------------------------------------------------------------------------
    Mutation(
        "write: abort when the commit fails",
        "shards/write.py",
        "        except BaseException:\n            self.abort()\n            raise",
        "        except BaseException:\n            raise",
        [S + "test_write_safety.py"],
    ),
    Mutation(
        "write: no file without its manifest",
        "shards/write.py",
        "            final.unlink(missing_ok=True)\n            raise",
        "            raise",
        [S + "test_write_safety.py"],
    ),
    Mutation(
        "write: file output's stale temps",
        "shards/write.py",
        "            ownership.remove_stale_temps(path.parent,",
        "            (lambda *a: None)(path.parent,",
        [S + "test_write_safety.py"],
    ),
    # -- token directories and tokenize -------------------------------------------------------------------------
    Mutation(
        "tokens: refuse an incomplete directory", "shards/tokens.py", "    if not rep.complete:", "    if False:", [TOK]
    ),
    Mutation(
        "tokens: sha256 by default",
        "shards/tokens.py",
        'def open_token_dir(path: str | os.PathLike, *, verify: str | bool = "sha256")',
        'def open_token_dir(path: str | os.PathLike, *, verify: str | bool = "size")',
        [TOK],
    ),
    Mutation(
        "tokens: record tokenizer.json's sha256",
        "shards/tokens.py",
        "            tok_sha = sha256_file(self._tokenizer_tmp)",
        "            tok_sha = None",
        [TOK],
    ),
    Mutation(
        "tokens: remove shards on failure",
        "shards/tokens.py",
        "        self.claim.discard(temps)",
        "        pass",
        [TOK],
    ),
    Mutation(
        "tokens: remove stale tokenizer temps and spools",
        "shards/tokens.py",
        '    ownership.remove_stale_temps(claim.dir, re.compile(r"^(?:tokenizer\\.json|spool)$"))',
        "    pass",
        [TOK],
    ),
    Mutation(
        "tokenize: abort on failure",
        "steps/tokenize.py",
        "        if tw is not None:\n            tw.abort()",
        "        if False:\n            tw.abort()",
        [TOK],
    ),
    Mutation(
        "tokenize: split only where it is safe",
        "steps/tokenize.py",
        'if cfg.get("normalizer") is not None or pre.get("type") != "ByteLevel":',
        "if False:",
        ["tests/steps/test_tokenize_pieces.py"],
    ),
    Mutation(
        "tokenize: cut only between non-spaces",
        "steps/tokenize.py",
        "            if p + 1 < n and not text[p - 1].isspace() and not text[p + 1].isspace():",
        "            if p + 1 < n:",
        ["tests/steps/test_tokenize_pieces.py"],
    ),
    Mutation(
        "tokenize: encode huge documents in pieces",
        "steps/tokenize.py",
        "    can_split = split_safe(tok)",
        "    can_split = False",
        ["tests/steps/test_tokenize_pieces.py"],
    ),
    Mutation(
        "train: verify the data (sha256)",
        "train/data.py",
        "        self.dir = open_token_dir(path)",
        '        self.dir = open_token_dir(path, verify="size")',
        [TOK],
    ),
    Mutation(
        "train: any failure marks the run failed",
        "train/loop.py",
        "        except BaseException as e:  # any failure",
        "        except PhitoolsError as e:  # any failure",
        ["tests/train/test_loop.py"],
    ),
    Mutation(
        "train: --config values are type-checked",
        "train/config.py",
        "        from_mapping(TrainConfig, d, source=str(path))",
        "        pass",
        ["tests/train/test_api.py::test_config_values_of_the_wrong_type_are_one_line_errors"],
    ),
    Mutation(
        "train: a [model] table is checked against PhiConfig",
        "train/config.py",
        '        check_mapping(PhiConfig, d["model"], source=f"{path} [model]")',
        "        pass",
        ["tests/train/test_api.py::test_config_values_of_the_wrong_type_are_one_line_errors"],
    ),
    Mutation(
        "train: run() never starts over an existing run",
        "train/loop.py",
        '    elif last is not None or (out / "metrics.jsonl").exists():',
        "    elif False:",
        ["tests/train/test_api.py::test_resume_rules_hold_from_python"],
    ),
    Mutation(
        "train: run() resumes only the recorded trajectory",
        "train/loop.py",
        "            check_same_trajectory(cfg.to_dict(), recorded)",
        "            pass",
        ["tests/train/test_api.py::test_resume_rules_hold_from_python"],
    ),
    Mutation(
        "safetensors: the file size must match its header",
        "runtime/safetensors_io.py",
        "        if self.data_start + pos != size:",
        "        if False:",
        ["tests/runtime/test_safetensors_io.py"],
    ),
    Mutation(
        "cli: OSError as one line",
        "cli/common.py",
        '                console.error(f"phitools {tool}: error: {e}")\n'
        "                raise typer.Exit(1) from None\n            except KeyboardInterrupt",
        "                raise\n            except KeyboardInterrupt",
        [TOK],
    ),
    # -- records, ingest, label, classify -------------------------------------------------------------------------
    Mutation(
        "records: write lone surrogates as escapes",
        "records.py",
        "json.dumps(rec, ensure_ascii=True, allow_nan=True)",
        "json.dumps(rec, ensure_ascii=False, allow_nan=True)",
        ["tests/cli/test_odd_records.py"],
    ),
    Mutation(
        "records: room for 1024 levels when writing",
        "records.py",
        "        _deep_enough()\n        return (json.dumps(rec",
        "        return (json.dumps(rec",
        ["tests/cli/test_odd_records.py"],
    ),
    Mutation(
        "records: too deep is a clean error",
        "records.py",
        "    except RecursionError:\n",
        "    except ZeroDivisionError:\n",
        ["tests/cli/test_odd_records.py"],
    ),
    Mutation(
        "ingest: skip special files",
        "steps/ingest.py",
        '    if not stat.S_ISREG(st.st_mode):\n        return "special_file"\n    if st.st_size',
        "    if st.st_size",
        ["tests/cli/test_ingest.py"],
    ),
    Mutation(
        "ingest: --dedup --shard by size",
        "steps/ingest.py",
        "        by_size = bool(opts.dedup and spec and spec.count > 1)",
        "        by_size = False",
        ["tests/cli/test_ingest.py"],
    ),
    Mutation(
        "label: --sample with --shard is the unsharded sample",
        "steps/label.py",
        "        if ctx.shard and ctx.shard.count > 1:",
        "        if False:",
        ["tests/cli/test_label.py"],
    ),
    Mutation(
        "classify: id without timing",
        "steps/classify/train.py",
        '"model_columns": int(len(model.columns)),\n        },',
        '"model_columns": int(len(model.columns)),\n            "seconds": seconds,\n        },',
        ["tests/steps/classify/test_saved.py"],
    ),
]


def run(m: Mutation, root: Path, timeout: float) -> tuple[str, float, str]:
    target = root / "src" / "phitools" / m.file
    original = target.read_text()
    if original.count(m.old) != 1:
        return "BAD-PATTERN", 0.0, f"pattern occurs {original.count(m.old)} times"
    target.write_text(original.replace(m.old, m.new))
    env = dict(os.environ, PYTHONPATH=str(root / "src"), PYTHONDONTWRITEBYTECODE="1")
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests],
            cwd=root,
            env=env,
            capture_output=True,
            timeout=timeout,
        )
        code, tail = p.returncode, p.stdout.decode(errors="replace").strip().splitlines()[-1:]
    except subprocess.TimeoutExpired:
        code, tail = -1, ["timed out (a hang counts as noticed)"]
    finally:
        target.write_text(original)
    verdict = "noticed" if code != 0 else "UNNOTICED"
    if code not in (0, 1, -1):
        verdict = f"error {code}"
    return verdict, time.monotonic() - t0, " ".join(tail)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="substrings of mutation names to run")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=float, default=900)
    args = ap.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or any(o in m.name for o in args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name:55} {m.file}")
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="phitools-mut-") as td:
        root = Path(td)
        for d in ("src", "tests", "examples"):
            shutil.copytree(REPO / d, root / d, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
        check = subprocess.run(
            [sys.executable, "-c", "import phitools; print(phitools.__file__)"],
            env=dict(os.environ, PYTHONPATH=str(root / "src")),
            capture_output=True,
            text=True,
        )
        assert check.stdout.startswith(str(root)), f"the copy is not the code under test: {check.stdout}"
        for m in chosen:
            verdict, secs, tail = run(m, root, args.timeout)
            results.append((m, verdict))
            print(f"{verdict:11} {secs:6.1f}s  {m.name}  [{tail}]", flush=True)
    missed = [m for m, v in results if v != "noticed"]
    print(
        f"\n{len(results) - len(missed)} of {len(results)} deleted checks noticed by a test"
        + (f"; not noticed: {', '.join(m.name for m in missed)}" if missed else "")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
