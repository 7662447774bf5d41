"""Parquet files shaped like The Stack's (bigcode/the-stack-dedup), written in-test: the columns and types of the
real schema (licenses as a list of strings, nullable star counts, 40-hex shas), nulls where the real data has
them, real Python source as content, plus a nested struct column."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

STDLIB = Path(sysconfig.get_paths()["stdlib"])

SCHEMA = pa.schema(
    [
        ("hexsha", pa.string()),
        ("size", pa.int64()),
        ("ext", pa.string()),
        ("lang", pa.string()),
        ("max_stars_repo_path", pa.string()),
        ("max_stars_repo_name", pa.string()),
        ("max_stars_repo_licenses", pa.list_(pa.string())),
        ("max_stars_count", pa.int64()),
        ("repo", pa.struct([("name", pa.string()), ("topics", pa.list_(pa.string()))])),
        ("content", pa.string()),
        ("avg_line_length", pa.float64()),
        ("alphanum_fraction", pa.float64()),
    ]
)


def stack_rows(n: int, *, start: int = 0) -> list[dict]:
    """n rows of real standard-library code; row i has a null path when i % 7 == 3, a null star count when
    i % 3, no licences when i % 4 == 0, null content when i % 11 == 5, empty content when i % 13 == 6."""
    files = sorted(STDLIB.glob("*.py"))
    rows = []
    for i in range(start, start + n):
        src = files[i % len(files)]
        text = src.read_text(encoding="utf-8", errors="replace")
        if i % 11 == 5:
            text = None
        elif i % 13 == 6:
            text = ""
        lines = (text or "").splitlines() or [""]
        rows.append(
            {
                "hexsha": f"{i:040x}",
                "size": len((text or "").encode()),
                "ext": "py",
                "lang": "Python",
                "max_stars_repo_path": None if i % 7 == 3 else f"lib/{src.name}",
                "max_stars_repo_name": f"org{i % 5}/repo{i % 9}",
                "max_stars_repo_licenses": [] if i % 4 == 0 else ["MIT", "Apache-2.0"][: 1 + i % 2],
                "max_stars_count": None if i % 3 else i * 10,
                "repo": {"name": f"repo{i % 9}", "topics": ["python", f"t{i % 4}"]},
                "content": text,
                "avg_line_length": sum(map(len, lines)) / len(lines),
                "alphanum_fraction": 0.5,
            }
        )
    return rows


def write_stack(path: Path, rows: list[dict], *, row_group_size: int = 8, **kwargs) -> Path:
    """One parquet file with the Stack-like schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path, row_group_size=row_group_size, **kwargs)
    return path


def expected_kept(rows: list[dict]) -> list[dict]:
    """The rows ingest keeps: text present and not blank."""
    return [r for r in rows if r["content"] is not None and r["content"].strip()]


def corrupt_column_chunk(path: Path, group: int, column: str, n: int = 48) -> None:
    """Overwrite the page header at the start of one column chunk of one row group with garbage."""
    md = pq.ParquetFile(path).metadata
    rg = md.row_group(group)
    j = [rg.column(k).path_in_schema for k in range(rg.num_columns)].index(column)
    c = rg.column(j)
    off = c.dictionary_page_offset if c.has_dictionary_page and c.dictionary_page_offset else c.data_page_offset
    data = bytearray(path.read_bytes())
    data[off : off + n] = bytes((7 * k + 201) % 256 for k in range(n))
    path.write_bytes(bytes(data))
