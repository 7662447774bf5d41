"""Writing records: stdout, a single file, or a directory of rolling zstd shards, each with a manifest.

The contract (docs/formats.md, "Reading and writing safely"):

- Every file is written under a hidden temporary name that carries its writer (shards/ownership.py) and stays
  hidden until the run succeeds; then, in one short commit, the previous output of the same slice is replaced
  (its manifest first removed, the new shards renamed into place, its other shards removed) and the manifest
  is written last. Until that commit the previous output stays whole and readable, so an output may overlap an
  input (`cat c -o c`, `label DIR -o DIR`): what is read is never touched before the reading is done.
- A failure at any point (the manifest write included) removes what this run wrote: the previous output stays
  if the failure came before the commit, and nothing of this slice is left if it came during it.
- One writer per output and slice: a lock (`DIR/.lock`, `DIR/.lock-K-of-N`) refuses a second concurrent writer;
  commits into one directory are serialised (`DIR/.lock-commit`); a `--shard K/N` run into a directory that
  holds a run of another N (or an unsharded one) is refused.
- Temp files of a killed writer are removed by the next writer of the same slice only when provably stale
  (this host, this pid namespace, pid gone); those of other hosts are left (`phitools verify` lists them).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import zstandard

from phitools.errors import UsageError
from phitools.records import Record, dumps_record
from phitools.shards import ownership
from phitools.shards.commit import DirectoryClaim
from phitools.shards.complete import slice_tag
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
        self.tmp = ownership.tmp_path(final)
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
        return {
            "path": self.final.name,
            "records": self.records,
            "bytes": self.hfile.nbytes,
            "uncompressed_bytes": self.raw_bytes,
            "sha256": self.hfile.sha.hexdigest(),
        }

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

    Use as a context manager: a clean exit commits (swaps the new shards in, writes the manifest); an
    exception removes every file this writer created and leaves the previous output as it was.
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
        self._done: list[tuple[Path, Path]] = []  # finished shards: (temp, final), swapped in at commit
        self._closed = False
        self._claim: DirectoryClaim | None = None
        self._file_lock: ownership.Lock | None = None
        self.manifest_path: Path | None = None
        if self.kind == "dir":
            self.dir = Path(self.output)
            if self.dir.exists() and not self.dir.is_dir():
                raise UsageError(
                    f"-o {self.output}: exists and is not a directory",
                    hint="name a directory, or a file ending in .jsonl/.jsonl.zst",
                )
            self._name_tag = slice_tag(shard)
            self._claim = DirectoryClaim(
                self.dir, shard, own_names=rf"{re.escape(prefix + self._name_tag)}-\d{{5}}\.jsonl\.zst"
            )
            self.manifest_path = self._claim.manifest_path
        elif self.kind == "file":
            path = Path(self.output)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.manifest_path = path.with_name(path.name + ".manifest.json")
            self._file_lock = ownership.Lock(path.with_name(f".{path.name}.lock"), what=f"-o {path}")
            ownership.remove_stale_temps(path.parent, re.compile(rf"^{re.escape(path.name)}(?:\.manifest\.json)?$"))

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
            cur, self._current = self._current, None
            self._done.append((cur.tmp, cur.final))
            self.outputs.append(cur.finish())

    # -- finishing -------------------------------------------------------------------------------------
    def _write_manifest(self, path: Path) -> dict:
        return write_manifest(
            path,
            tool=self.tool,
            argv=self.argv,
            seed=self.seed,
            inputs=self.inputs,
            stats=self.stats,
            outputs=self.outputs,
            shard=str(self.shard) if self.shard else None,
            extra=self.manifest_extra,
        )

    def close(self) -> dict | None:
        """Commit: finish the last shard, swap the shards in, write the manifest.

        Returns the manifest (None for stdout).
        """
        if self._closed:
            return None
        if self.kind == "stdout":
            self._closed = True
            self._flush_stdout()
            return None
        try:
            if self._current is None and not self.outputs and self.kind == "file":
                self._current = self._new_shard()  # an empty result is still a (valid, empty) file
            self._roll()
            if self._claim is not None:
                manifest = self._claim.commit(self._done, self._write_manifest)
            else:
                manifest = self._commit_file()
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._release()
        return manifest

    def _commit_file(self) -> dict:
        assert self.manifest_path is not None
        ((tmp, final),) = self._done
        self.manifest_path.unlink(missing_ok=True)
        os.replace(tmp, final)
        try:
            return self._write_manifest(self.manifest_path)
        except BaseException:
            final.unlink(missing_ok=True)
            raise

    def abort(self) -> None:
        """Remove every file this writer created (the previous output, if any, stays); leave no manifest."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.kind == "stdout":
                try:
                    self._flush_stdout()
                except (BrokenPipeError, ValueError):
                    pass
                return
            if self._current is not None:
                self._current.abort()
                self._current = None
            temps = [t for t, _ in self._done]
            if self._claim is not None:
                self._claim.discard(temps)
            else:
                for t in temps:
                    t.unlink(missing_ok=True)
                if self.manifest_path is not None:
                    ownership.tmp_path(self.manifest_path).unlink(missing_ok=True)
        finally:
            self._release()

    def _release(self) -> None:
        if self._claim is not None:
            self._claim.release()
        if self._file_lock is not None:
            self._file_lock.release()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self):  # a writer dropped without close/abort must not keep its lock
        try:
            if not self._closed:
                self._release()
        except Exception:
            pass
