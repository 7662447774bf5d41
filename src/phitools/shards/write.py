"""Writing records: stdout, a single file, or a directory of rolling zstd shards, each with a manifest.

Files are written under temporary names and renamed when complete; the manifest is written last, so a
directory without a manifest is never mistaken for a finished output. On failure everything this run
created is removed.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO, Iterable

import orjson
import zstandard

from phitools.errors import UsageError
from phitools.records import Record, dumps_record
from phitools.shards.manifest import Stats, write_manifest
from phitools.shards.spec import ShardSpec, parse_size

STDOUT = "-"
FILE_SUFFIXES = (".jsonl", ".jsonl.zst", ".jsonl.gz", ".ndjson", ".ndjson.zst", ".ndjson.gz")
ZSTD_LEVEL = 3
_FLUSH_BYTES = 1 << 16
_FLUSH_SECONDS = 1.0
_WRITE_BUFFER = 1 << 20  # one write(2) per MB, not one per record (records of a few KB bypass an 8 KB buffer)


class _HashingFile:
    """A file wrapper that sha256-hashes and counts what goes to disk."""

    def __init__(self, path: Path):
        self._f = open(path, "wb", buffering=_WRITE_BUFFER)
        self.sha = hashlib.sha256()
        self.nbytes = 0

    def write(self, b) -> int:
        self.sha.update(b)
        self.nbytes += len(b)
        return self._f.write(b)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class _OpenShard:
    def __init__(self, final: Path, compression: str):
        self.final = final
        self.tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        self.hfile = _HashingFile(self.tmp)
        self.compression = compression
        if compression == "zst":
            self.stream: Any = zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(self.hfile, closefd=False)
        elif compression == "gz":
            self.stream = gzip.GzipFile(fileobj=self.hfile, mode="wb", mtime=0)  # type: ignore[arg-type]
        else:
            self.stream = self.hfile
        self.records = 0
        self.raw_bytes = 0

    def write(self, data: bytes, nrec: int) -> None:
        self.stream.write(data)
        self.records += nrec
        self.raw_bytes += len(data)

    def finish(self) -> dict:
        if self.compression == "zst":
            self.stream.flush(zstandard.FLUSH_FRAME)
            self.stream.close()
        elif self.compression == "gz":
            self.stream.close()
        self.hfile.flush()
        os.fsync(self.hfile._f.fileno())
        self.hfile.close()
        os.replace(self.tmp, self.final)
        return {"path": self.final.name, "records": self.records, "bytes": self.hfile.nbytes,
                "uncompressed_bytes": self.raw_bytes, "sha256": self.hfile.sha.hexdigest()}

    def abort(self) -> None:
        try:
            self.hfile.close()
        except Exception:
            pass
        self.tmp.unlink(missing_ok=True)


def _compression_for(name: str) -> str:
    if name.endswith(".zst"):
        return "zst"
    if name.endswith(".gz"):
        return "gz"
    return "none"


def output_kind(output: str | os.PathLike | None) -> str:
    """'stdout', 'file' (a name ending in .jsonl[.zst|.gz]) or 'dir'."""
    if output is None or os.fspath(output) == STDOUT:
        return "stdout"
    if os.fspath(output).endswith(FILE_SUFFIXES):
        return "file"
    return "dir"


class RecordWriter:
    """Write records to stdout (default), one file, or a directory of rolling shards plus manifest.json.

    Use as a context manager: a clean exit commits (renames the last shard, writes the manifest); an
    exception removes every file this writer created and leaves no manifest.
    """

    def __init__(
        self,
        output: str | os.PathLike | None = None,
        *,
        tool: str,
        shard_size: str | int = "100000",
        shard: ShardSpec | None = None,
        stats: Stats | None = None,
        seed: int | None = None,
        inputs: list[str] | None = None,
        argv: list[str] | None = None,
        prefix: str = "part",
        manifest_extra: dict | None = None,
    ):
        self.kind = output_kind(output)
        self.output = os.fspath(output) if output is not None else STDOUT
        self.tool = tool
        self.stats = stats if stats is not None else Stats()
        self.seed = seed
        self.inputs = inputs or []
        self.argv = argv
        self.shard = shard
        self.prefix = prefix
        self.manifest_extra: dict = dict(manifest_extra or {})
        self.max_records, self.max_bytes = parse_size(str(shard_size))
        self.outputs: list[dict] = []
        self._current: _OpenShard | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._last_flush = time.monotonic()
        self._created: list[Path] = []
        self._closed = False
        self.manifest_path: Path | None = None
        if self.kind == "dir":
            self.dir = Path(self.output)
            if self.dir.exists() and not self.dir.is_dir():
                raise UsageError(f"-o {self.output}: exists and is not a directory", hint="name a directory, or a file ending in .jsonl/.jsonl.zst")
            self.dir.mkdir(parents=True, exist_ok=True)
            tag = f"-{shard.index:05d}-of-{shard.count:05d}" if shard and shard.count > 1 else ""
            self._name_tag = tag
            self.manifest_path = self.dir / f"manifest{tag}.json"
            self._clear_previous(self.manifest_path)
            self._clear_stale_tmp()
        elif self.kind == "file":
            path = Path(self.output)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.manifest_path = path.with_name(path.name + ".manifest.json")
            self.manifest_path.unlink(missing_ok=True)

    # -- previous outputs ------------------------------------------------------------------------------
    def _clear_previous(self, manifest: Path) -> None:
        """A re-run replaces what the previous run of this output wrote (only files its manifest lists)."""
        if not manifest.exists():
            return
        try:
            old = orjson.loads(manifest.read_bytes())
            names = [o["path"] for o in old.get("outputs", []) if isinstance(o, dict) and "path" in o]
        except (orjson.JSONDecodeError, OSError, TypeError):
            names = []
        manifest.unlink(missing_ok=True)
        for name in names:
            p = self.dir / name
            if p.parent == self.dir and p.is_file():
                p.unlink()

    def _clear_stale_tmp(self) -> None:
        """Remove temporary shards left by a killed writer (its pid is gone)."""
        for p in self.dir.glob(f".{self.prefix}*.tmp-*"):
            pid = p.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
                p.unlink(missing_ok=True)

    # -- writing ---------------------------------------------------------------------------------------
    def _new_shard(self) -> _OpenShard:
        if self.kind == "file":
            final = Path(self.output)
            comp = _compression_for(self.output)
        else:
            n = len(self.outputs)
            final = self.dir / f"{self.prefix}{self._name_tag}-{n:05d}.jsonl.zst"
            comp = "zst"
        sh = _OpenShard(final, comp)
        return sh

    def write(self, rec: Record) -> None:
        """Write one record."""
        self.write_line(dumps_record(rec))

    def write_many(self, recs: Iterable[Record]) -> None:
        """Write many records."""
        for r in recs:
            self.write_line(dumps_record(r))

    def write_line(self, line: bytes) -> None:
        """Write one already-serialised JSONL line (ending in a newline)."""
        self.stats.records_out += 1
        if self.kind == "stdout":
            self._pending.append(line)
            self._pending_bytes += len(line)
            if self._pending_bytes >= _FLUSH_BYTES or (time.monotonic() - self._last_flush) > _FLUSH_SECONDS:
                self._flush_stdout()
            return
        if self._current is None:
            self._current = self._new_shard()
        cur = self._current
        cur.write(line, 1)
        if self.kind == "dir" and (
            (self.max_records is not None and cur.records >= self.max_records)
            or (self.max_bytes is not None and cur.raw_bytes >= self.max_bytes)
        ):
            self._roll()

    def _flush_stdout(self) -> None:
        if self._pending:
            out = sys.stdout.buffer
            out.write(b"".join(self._pending))
            out.flush()
            self._pending.clear()
            self._pending_bytes = 0
        self._last_flush = time.monotonic()

    def _roll(self) -> None:
        if self._current is not None:
            info = self._current.finish()
            self._created.append(self._current.final)
            self.outputs.append(info)
            self._current = None

    # -- finishing -------------------------------------------------------------------------------------
    def close(self) -> dict | None:
        """Commit: finish the last shard and write the manifest. Returns the manifest (None for stdout)."""
        if self._closed:
            return None
        self._closed = True
        if self.kind == "stdout":
            self._flush_stdout()
            return None
        if self._current is None and not self.outputs and self.kind == "file":
            self._current = self._new_shard()  # an empty result is still a (valid, empty) file
        self._roll()
        assert self.manifest_path is not None
        return write_manifest(
            self.manifest_path,
            tool=self.tool,
            argv=self.argv,
            seed=self.seed,
            inputs=self.inputs,
            stats=self.stats,
            outputs=self.outputs,
            shard=str(self.shard) if self.shard else None,
            extra=self.manifest_extra,
        )

    def abort(self) -> None:
        """Remove everything this writer created; leave no manifest."""
        if self._closed:
            return
        self._closed = True
        if self.kind == "stdout":
            try:
                self._flush_stdout()
            except (BrokenPipeError, ValueError):
                pass
            return
        if self._current is not None:
            self._current.abort()
            self._current = None
        for p in self._created:
            p.unlink(missing_ok=True)
        if self.manifest_path is not None:
            self.manifest_path.unlink(missing_ok=True)

    def __enter__(self) -> "RecordWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
