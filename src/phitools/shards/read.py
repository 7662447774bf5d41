"""Reading records from files, directories, globs and stdin, with zstd/gzip detected by name or magic bytes."""

from __future__ import annotations

import glob
import gzip
import io
import os
import sys
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import zstandard

from phitools.errors import DataError
from phitools.records import Record, RecordParseError, loads_record
from phitools.shards.manifest import Stats
from phitools.shards.spec import ShardSpec

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
DATA_SUFFIXES = (".jsonl", ".jsonl.zst", ".jsonl.gz", ".ndjson", ".ndjson.zst", ".ndjson.gz", ".zst", ".gz")
STDIN = "-"
_READ_BUFFER = 1 << 20


def _is_data_file(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.name.endswith(DATA_SUFFIXES)


def expand_inputs(inputs: Sequence[str | os.PathLike] | None) -> list[str]:
    """Turn CLI inputs into an ordered list of files ('-' for stdin).

    Directories contribute their data files (recursively, sorted); globs their sorted matches.
    No input at all means stdin.
    """
    if not inputs:
        return [STDIN]
    files: list[str] = []
    for raw in inputs:
        item = os.fspath(raw)
        if item == STDIN:
            files.append(STDIN)
            continue
        p = Path(item)
        if p.is_dir():
            found = sorted(str(q) for q in p.rglob("*") if _is_data_file(q))
            if not found:
                raise DataError("directory holds no record shards (*.jsonl, *.jsonl.zst, *.jsonl.gz)", source=item,
                                hint="point at the shards or the directory a phitools -o wrote")
            files.extend(found)
        elif p.exists():
            files.append(item)
        elif glob.has_magic(item):
            found = sorted(q for q in glob.glob(item, recursive=True) if Path(q).is_file())
            if not found:
                raise DataError("glob matched no files", source=item, hint="check the pattern; quote it so the shell does not expand it")
            files.extend(found)
        else:
            raise DataError("no such file or directory", source=item, hint="check the path")
    return files


def _open_binary(name: str) -> BinaryIO:
    if name == STDIN:
        return sys.stdin.buffer
    try:
        return open(name, "rb", buffering=_READ_BUFFER)
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror}", source=name) from None


def _peek(stream: BinaryIO, n: int) -> bytes:
    if hasattr(stream, "peek"):
        try:
            return stream.peek(n)[:n]
        except (OSError, ValueError):
            return b""
    return b""


def open_text_stream(name: str) -> BinaryIO:
    """Open a file or stdin and return a binary line-iterable stream, decompressing zstd/gzip transparently."""
    raw = _open_binary(name)
    if not hasattr(raw, "peek"):
        raw = io.BufferedReader(raw, buffer_size=_READ_BUFFER)  # type: ignore[arg-type]
    head = _peek(raw, 4)
    if head.startswith(ZSTD_MAGIC) or (not head and name.endswith(".zst")):
        return io.BufferedReader(_ZstdRaw(raw, closefd=name != STDIN), buffer_size=_READ_BUFFER)
    if head.startswith(GZIP_MAGIC):
        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), buffer_size=_READ_BUFFER)  # type: ignore[arg-type]
    return raw


class TruncatedStreamError(Exception):
    """The compressed stream ended in the middle of a frame."""


class _ZstdRaw(io.RawIOBase):
    """zstd decompression as a raw stream that notices a truncated last frame (stream_reader does not)."""

    def __init__(self, fh: BinaryIO, closefd: bool):
        self._fh = fh
        self._closefd = closefd
        self._dctx = zstandard.ZstdDecompressor()
        self._dobj = self._dctx.decompressobj()
        self._buf = memoryview(b"")
        self._in_frame = False
        self._done = False

    def readable(self) -> bool:
        return True

    def _feed(self, chunk: bytes) -> bytes:
        outs = []
        while chunk:
            self._in_frame = True
            outs.append(self._dobj.decompress(chunk))
            if self._dobj.eof:  # frame finished; anything left over starts the next frame
                chunk = self._dobj.unused_data
                self._dobj = self._dctx.decompressobj()
                self._in_frame = False
            else:
                chunk = b""
        return b"".join(outs)

    def readinto(self, b) -> int:  # type: ignore[override]
        while not self._buf:
            if self._done:
                return 0
            chunk = self._fh.read(_READ_BUFFER)
            if not chunk:
                self._done = True
                if self._in_frame:
                    raise TruncatedStreamError("zstd stream ends in the middle of a frame (truncated file?)")
                return 0
            self._buf = memoryview(self._feed(chunk))
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def close(self) -> None:
        if self._closefd and not self.closed:
            self._fh.close()
        super().close()


def _display(name: str) -> str:
    return "<stdin>" if name == STDIN else name


class RecordReader:
    """Iterate records from inputs, honouring --shard K/N and --skip-bad; counts go into `stats`.

    `required` names fields every record must have (e.g. ("text",)).
    Sharding is by file when there are at least N files, else by record (record i goes to process i mod N).
    """

    def __init__(
        self,
        inputs: Sequence[str | os.PathLike] | None,
        *,
        shard: ShardSpec | None = None,
        skip_bad: bool = False,
        required: Sequence[str] = (),
        stats: Stats | None = None,
        allow_empty: bool = False,
        str_fields: Sequence[str] = (),
    ):
        self.all_files = expand_inputs(inputs)
        self.shard = shard
        self.skip_bad = skip_bad
        self.required = tuple(required)
        self.str_fields = tuple(str_fields)
        self.stats = stats if stats is not None else Stats()
        self.allow_empty = allow_empty
        self.by_file = bool(shard and shard.count > 1 and len(self.all_files) >= shard.count)
        if self.by_file:
            assert shard is not None
            self.files = [f for i, f in enumerate(self.all_files) if i % shard.count == shard.index]
        else:
            self.files = list(self.all_files)
        self.lines_seen = 0

    @property
    def inputs(self) -> list[str]:
        return [_display(f) for f in self.files]

    def _bad(self, reason_key: str, message: str, source: str, line: int) -> None:
        if self.skip_bad:
            self.stats.skipped_bad[reason_key] += 1
            return
        raise DataError(message, source=source, line=line, hint="fix or remove that record, or pass --skip-bad to count and skip such records")

    def __iter__(self) -> Iterator[Record]:
        record_shard = self.shard if (self.shard and self.shard.count > 1 and not self.by_file) else None
        k = record_shard.index if record_shard else 0
        n = record_shard.count if record_shard else 1
        stats = self.stats
        required = self.required
        str_fields = self.str_fields
        global_i = 0
        for name in self.files:
            source = _display(name)
            stream = open_text_stream(name)
            lineno = 0
            try:
                while True:
                    try:
                        line = stream.readline()
                    except TruncatedStreamError as e:
                        self._truncated(source, lineno + 1, str(e))
                        break
                    except zstandard.ZstdError as e:
                        self._truncated(source, lineno + 1, f"corrupt zstd data ({e})")
                        break
                    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
                        self._truncated(source, lineno + 1, f"corrupt or truncated compressed data ({e})")
                        break
                    if not line:
                        break
                    lineno += 1
                    if not line.strip():
                        continue
                    self.lines_seen += 1
                    idx = global_i
                    global_i += 1
                    if n > 1 and idx % n != k:
                        continue
                    try:
                        rec = loads_record(line)
                    except RecordParseError as e:
                        reason = str(e)
                        key = "invalid_utf8" if reason.startswith("invalid UTF-8") else ("not_object" if reason.startswith("record is") else "malformed_json")
                        self._bad(key, reason, source, lineno)
                        continue
                    missing = [f for f in required if f not in rec]
                    if missing:
                        self._bad(f"missing_{missing[0]}", f"record has no {missing[0]!r} field", source, lineno)
                        continue
                    if str_fields:
                        wrong = [f for f in str_fields if not isinstance(rec.get(f), str)]
                        if wrong:
                            self._bad(f"not_string_{wrong[0]}", f"field {wrong[0]!r} is {type(rec.get(wrong[0])).__name__}, not a string", source, lineno)
                            continue
                    stats.records_in += 1
                    yield rec
            finally:
                if name != STDIN:
                    stream.close()
        if self.lines_seen == 0 and not self.allow_empty and not (self.by_file and not self.files):
            where = ", ".join(self.inputs) or "<no files>"
            raise DataError("input is empty: no records", source=where, hint="check the input path, or the command upstream of the pipe")

    def _truncated(self, source: str, line: int, message: str) -> None:
        if self.skip_bad:
            self.stats.skipped_bad["truncated_file"] += 1
            return
        raise DataError(message, source=source, line=line, hint="the file is cut short or damaged; re-create it, or pass --skip-bad to keep the records before the damage")


def read_records(inputs: Sequence[str | os.PathLike] | None = None, **kwargs) -> Iterator[Record]:
    """Convenience: iterate records from inputs (see RecordReader)."""
    return iter(RecordReader(inputs, **kwargs))
