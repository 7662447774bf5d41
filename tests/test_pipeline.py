"""phitools.pipeline: one contract for record steps; reading, --shard, --limit, counters and writing in one place."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from phitools.pipeline import Context, IOOptions, run


class Upper:
    """A step for the tests: upper-cases text, drops empty texts (and counts them)."""

    name = "upper"
    required = ("text",)

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, records: Iterable[dict], ctx: Context) -> Iterator[dict]:
        for rec in records:
            self.seen += 1
            if not rec["text"]:
                ctx.stats.drop("empty")
                continue
            yield {**rec, "text": rec["text"].upper()}

    def manifest(self) -> dict:
        return {"upper": {"seen": self.seen}}


def _write(path, texts):
    path.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)))


def test_a_step_applies_to_plain_dicts_without_files():
    out = list(Upper()([{"text": "a"}, {"text": ""}, {"text": "b"}], Context()))
    assert [r["text"] for r in out] == ["A", "B"]


def test_run_reads_limits_writes_and_records_the_steps_manifest(tmp_path):
    src = tmp_path / "in.jsonl"
    _write(src, ["a", "", "b", "c"])
    out = tmp_path / "out"
    stats = run(Upper(), IOOptions(inputs=[str(src)], output=str(out), limit=3))
    assert (stats.records_in, stats.records_out, dict(stats.dropped)) == (3, 2, {"empty": 1})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["upper"] == {"seen": 3} and manifest["tool"] == "upper"


def test_shards_union_to_the_whole(tmp_path):
    src = tmp_path / "in.jsonl"
    _write(src, [f"t{i}" for i in range(10)])
    got = []
    for k in range(3):
        out = tmp_path / f"part{k}.jsonl"
        run(Upper(), IOOptions(inputs=[str(src)], output=str(out), shard=f"{k}/3"))
        got += [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(got, key=int) == [str(i) for i in range(10)]


class Mine:
    """A whole-input step for the tests: writes the records of its own part, and notes what it saw."""

    name = "mine"
    required = ("text",)
    whole_input = True

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def __call__(self, pairs: Iterable[tuple[dict, bool]], ctx: Context) -> Iterator[dict]:
        for rec, mine in pairs:
            self.seen.append((rec["id"], mine))
            if mine:
                yield rec

    def manifest(self) -> dict:
        return {}


def test_a_whole_input_step_sees_every_record_and_which_are_its_part(tmp_path):
    src = tmp_path / "in.jsonl"
    _write(src, [f"t{i}" for i in range(7)])
    ours = []
    for k in range(3):
        step = Mine()
        stats = run(step, IOOptions(inputs=[str(src)], output=str(tmp_path / f"p{k}.jsonl"), shard=f"{k}/3"))
        assert [i for i, _ in step.seen] == [str(i) for i in range(7)]  # the whole input, in order
        assert [i for i, m in step.seen if m] == [str(i) for i in range(k, 7, 3)]  # the part's share, as --shard
        assert stats.records_in == stats.records_out == len(range(k, 7, 3))  # counted: this part's records
        ours += [i for i, m in step.seen if m]
    assert sorted(ours, key=int) == [str(i) for i in range(7)]
    step = Mine()
    run(step, IOOptions(inputs=[str(src)], output=str(tmp_path / "all.jsonl")))
    assert all(m for _, m in step.seen) and len(step.seen) == 7  # without --shard every record is ours
