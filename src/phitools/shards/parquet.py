"""Reading parquet: local files, or any fsspec URL (hf://datasets/ORG/NAME/... through huggingface_hub's
HfFileSystem), one row group at a time and only the columns asked for.

Memory is bounded whatever the file size: local files are streamed page by page in batches of about 4 MB of
decoded data, so even one huge row group stays small; remote files pre-buffer one row group's projected
columns (few large range requests). benchmarks/parquet_ingest.py measures peak RSS. Every failure is a
`DataError` naming the file, and the row group when it happened while reading one.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from phitools.errors import DataError, UsageError

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow (~0.2 s to import) is imported where a parquet file is opened, so `ingest` of plain files never pays for it

PARQUET_SUFFIX = ".parquet"
BATCH_BYTES = 4 << 20  # decoded bytes per batch (estimated from the footer): what is alive at once, in Arrow and Python
LOCAL_BUFFER = 1 << 20  # local files are read as a stream through this buffer, page by page


@dataclass(frozen=True)
class ParquetSource:
    """One parquet file: where to open it, the id prefix of its rows, and how messages name it."""

    path: str  # a local path, or a path on `fs`
    rel: str  # the record id prefix: the path relative to the parent of the root the user gave
    display: str  # the user's spelling (a local path or hf://...)
    fs: Any = None  # an fsspec filesystem for remote files; None for local ones


def is_url(path: str | os.PathLike) -> bool:
    """hf://..., s3://..., memory://...: opened through fsspec."""
    return "://" in os.fspath(path)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def remote_error(e: BaseException, url: str) -> DataError:
    """A remote listing or read failure as one line: offline, gated/private, not found, or other."""
    name = type(e).__name__
    msg = _one_line(e)
    if isinstance(e, FileNotFoundError) or name in (
        "EntryNotFoundError",
        "RepositoryNotFoundError",
        "RevisionNotFoundError",
    ):
        return DataError(
            f"not found ({name}: {msg})",
            source=url,
            hint="check the ORG/NAME and the path inside the dataset; "
            "a private or gated dataset needs a token (HF_TOKEN)",
        )
    if name in ("GatedRepoError",) or "401" in msg or "403" in msg:
        return DataError(
            f"access denied ({name}: {msg})",
            source=url,
            hint="accept the dataset's terms on its Hub page and set HF_TOKEN (or run `hf auth login`)",
        )
    if (
        name in ("OfflineModeIsEnabled",)
        or any(k in name for k in ("Connect", "Timeout", "Network", "Transport"))
        or isinstance(e, (ConnectionError, TimeoutError))
    ):
        return DataError(
            f"cannot reach the Hub ({name}: {msg})",
            source=url,
            hint="no network here? download the files where there is one "
            "(`hf download ORG/NAME --repo-type dataset --include 'data/python/*' --local-dir stack/`) "
            "and ingest the local folder",
        )
    return DataError(f"cannot read ({name}: {msg})", source=url, hint="check the URL and the network")


def url_to_fs(url: str) -> tuple[Any, str]:
    """The fsspec filesystem and path for a URL (hf:// is huggingface_hub's HfFileSystem)."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise UsageError(
            f"{url}: no file system for this URL ({_one_line(e)})",
            hint="hf://datasets/ORG/NAME/PATH works out of the box; "
            "other schemes need their fsspec package (s3fs, gcsfs)",
        ) from None


def list_remote(url: str, keep: Callable[[str], bool]) -> list[ParquetSource]:
    """The parquet files at a URL (a file, or every *.parquet under a folder), sorted; ids relative to its parent."""
    fs, root = url_to_fs(url)
    protocol = url.split("://", 1)[0]
    root = root.rstrip("/")
    try:
        # info() rather than isdir()/exists(): those turn "offline" or "access denied" into a plain False
        if fs.info(root).get("type") == "directory":
            found = sorted(p for p in fs.find(root) if p.lower().endswith(PARQUET_SUFFIX))
        else:
            found = [root]
    except Exception as e:  # every client library has its own exceptions; all end in one line here
        raise remote_error(e, url) from None
    base = root.rsplit("/", 1)[0] + "/" if "/" in root else ""
    out = []
    for p in found:
        rel = p[len(base) :] if p.startswith(base) else p
        if keep(rel):
            out.append(ParquetSource(path=p, rel=rel, display=f"{protocol}://{p}", fs=fs))
    return out


class ParquetInput:
    """An open parquet file: its schema, row groups, and batches of projected columns, row group by row group."""

    def __init__(self, source: ParquetSource):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.source = source
        self._fh = None
        try:
            if source.fs is None:
                # streamed page by page: memory follows the batch, not the row group (one 190 MB row group
                # peaked at 183 MB RSS this way, 332 MB pre-buffered)
                self.file = pq.ParquetFile(source.path, pre_buffer=False, buffer_size=LOCAL_BUFFER)
            else:
                # remote: pre-buffering coalesces a row group's column chunks into a few range requests
                self._fh = source.fs.open(source.path, "rb")
                self.file = pq.ParquetFile(self._fh, pre_buffer=True)
        except (pa.ArrowException, OSError, EOFError) as e:
            self.close()
            if source.fs is not None and not isinstance(e, pa.ArrowException):
                raise remote_error(e, source.display) from None
            raise DataError(
                f"not a readable parquet file ({_one_line(e)})",
                source=source.display,
                hint="the file is damaged, truncated or not parquet; re-download it",
            ) from None
        except Exception as e:
            self.close()
            if source.fs is None:
                raise
            raise remote_error(e, source.display) from None
        md = self.file.metadata
        self.num_row_groups = md.num_row_groups
        self.num_rows = md.num_rows
        self.group_rows = [md.row_group(g).num_rows for g in range(self.num_row_groups)]
        self.group_bytes = [md.row_group(g).total_byte_size for g in range(self.num_row_groups)]
        self.schema = self.file.schema_arrow

    @property
    def columns(self) -> list[str]:
        """Top-level column names."""
        return list(self.schema.names)

    def batch_rows(self, group: int) -> int:
        """Rows per batch for a row group: about BATCH_BYTES of data at its average row size (16 to 8192)."""
        per_row = self.group_bytes[group] / max(1, self.group_rows[group])
        return int(min(8192, max(16, BATCH_BYTES // max(1.0, per_row))))

    def batches(self, columns: Sequence[str], group: int) -> Iterator[tuple[int, pa.RecordBatch]]:
        """(index in the file of the batch's first row, batch) for one row group, reading only `columns`."""
        import pyarrow as pa

        row = sum(self.group_rows[:group])
        batch_rows = self.batch_rows(group)
        it = self.file.iter_batches(batch_size=batch_rows, row_groups=[group], columns=list(columns))
        while True:
            try:
                batch = next(it)
            except StopIteration:
                return
            except (pa.ArrowException, OSError, EOFError) as e:
                raise CorruptRowGroup(self.source.display, group, self.num_row_groups, _one_line(e)) from None
            except Exception as e:
                if self.source.fs is None:
                    raise
                raise remote_error(e, self.source.display) from None
            yield row, batch
            row += batch.num_rows

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except Exception:
                pass
            self._fh = None

    def __enter__(self) -> ParquetInput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CorruptRowGroup(DataError):
    """A row group that cannot be read or decoded."""

    def __init__(self, source: str, group: int, groups: int, detail: str):
        super().__init__(
            f"row group {group} (of {groups}) cannot be read: {detail}",
            source=source,
            hint="the file is damaged or truncated: re-download it, "
            "or pass --skip-bad to count and skip that row group",
        )
        self.group = group


# ---- Arrow values -> JSON values ----------------------------------------------------------------------------
def _json_native(t: pa.DataType) -> bool:
    """True when to_pylist() gives values orjson writes as they are (no per-value conversion needed)."""
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        return _json_native(t.value_type)
    if (
        pa.types.is_null(t)
        or pa.types.is_boolean(t)
        or pa.types.is_integer(t)
        or pa.types.is_float32(t)
        or pa.types.is_float64(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_date(t)
    ):
        return True
    if pa.types.is_timestamp(t):
        return t.unit != "ns"  # nanoseconds may come back as pandas.Timestamp
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _json_native(t.value_type)
    if pa.types.is_struct(t):
        return all(_json_native(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_map(t):
        return _json_native(t.key_type) and _json_native(t.item_type)
    return False


def to_json_value(v: Any) -> Any:
    """A Python value from Arrow that orjson cannot write (decimal, bytes, duration, numpy scalar) made JSON:
    decimals as exact strings, bytes as UTF-8 text or else base64, durations in seconds, times as ISO 8601."""
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    if isinstance(v, dict):
        return {k: to_json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_json_value(x) for x in v]
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(v).decode("ascii")
    if isinstance(v, _dt.timedelta):
        return v.total_seconds()
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    if hasattr(v, "item"):  # numpy scalars (float16)
        return to_json_value(v.item())
    return str(v)


def column_values(arr: pa.Array | pa.ChunkedArray) -> list:
    """A column as JSON-ready Python values."""
    values = arr.to_pylist()
    if _json_native(arr.type):
        return values
    return [to_json_value(v) for v in values]
