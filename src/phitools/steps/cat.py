"""`cat`: records through unchanged (what the shard layer does on the way is the point: decompress, convert,
re-shard, validate, select a --shard slice)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from phitools.pipeline import Context
from phitools.records import Record


class Cat:
    """The identity step."""

    name = "cat"
    required: tuple[str, ...] = ()

    def __call__(self, records: Iterable[Record], ctx: Context) -> Iterator[Record]:
        return iter(records)

    def manifest(self) -> dict:
        return {}
