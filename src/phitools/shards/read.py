"""Reading records from files, directories, globs and stdin, with zstd/gzip detected by name or magic bytes."""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import os
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from phitools.errors import DataError
from phitools.records import Record, RecordParseError, loads_record
from phitools.shards.complete import DATA_SUFFIXES, MANIFEST_RE, inspect_output, load_manifest
from phitools.shards.manifest import Stats
from phitools.shards.spec import ShardSpec

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
STDIN = "-"
_READ_BUFFER = 1 << 20


@dataclass(frozen=True)
class InputFile:
    """One file to read, with what its manifest says it is (None: nothing to check against)."""

    name: str  # a path, or '-' for stdin
    bytes: int | None = None
    sha256: str | None = None


def expand_inputs(inputs: Sequence[str | os.PathLike] | None, *, allow_partial: bool = False) -> list[str]:
    """Turn CLI inputs into an ordered list of files ('-' for stdin); see `resolve_inputs`."""
    return [f.name for f in resolve_inputs(inputs, allow_partial=allow_partial)]


def resolve_inputs(
    inputs: Sequence[str | os.PathLike] | None, *, allow_partial: bool = False, notes: list | None = None
) -> list[InputFile]:
    """Turn CLI inputs into an ordered list of files to read ('-' for stdin), each with its expected size and sha256.

    A directory written by a phitools `-o DIR` is read as the complete set its manifests describe (see
    shards/complete.py) and refused when it is not whole, unless `allow_partial` (then what checks out is read
    and a note for the manifest is appended to `notes`). A directory without manifests contributes its data
    files and those of its subdirectories, in sorted order. Globs give their sorted matches. No input means stdin.
    """
    if not inputs:
        return [InputFile(STDIN)]
    files: list[InputFile] = []
    sidecars = _Sidecars()
    for raw in inputs:
        item = os.fspath(raw)
        if item == STDIN:
            files.append(InputFile(STDIN))
            continue
        p = Path(item)
        if p.is_dir():
            found = _resolve_dir(p, allow_partial, notes if notes is not None else [])
            if not found:
                from phitools.shards.ownership import temp_files

                temps = temp_files(p)
                if temps:
                    who = f"pid {temps[0].pid}" + (f" on {temps[0].host}" if temps[0].host else "")
                    raise DataError(
                        f"no finished output yet: only {len(temps)} temporary file(s) of a run that is still "
                        f"writing or was killed ({who})",
                        source=item,
                        hint="wait for it to finish, "
                        "or re-run the command that writes it (phitools verify DIR says more)",
                    )
                raise DataError(
                    "directory holds no record shards (*.jsonl, *.jsonl.zst, *.jsonl.gz)",
                    source=item,
                    hint="point at the shards or the directory a phitools -o wrote",
                )
            files.extend(found)
        elif p.exists():
            files.append(sidecars.expect(p))
        elif glob.has_magic(item):
            matched = sorted(q for q in glob.glob(item, recursive=True) if Path(q).is_file())
            if not matched:
                raise DataError(
                    "glob matched no files",
                    source=item,
                    hint="check the pattern; quote it so the shell does not expand it",
                )
            files.extend(sidecars.expect(Path(q)) for q in matched)
        else:
            raise DataError("no such file or directory", source=item, hint="check the path")
    return files


def _resolve_dir(d: Path, allow_partial: bool, notes: list) -> list[InputFile]:
    rep = inspect_output(d, sha256=False, probe_locks=False)
    if rep.kind == "tokens":
        raise DataError(
            "this is a token directory (tokenize -o), not records",
            source=str(d),
            hint="give train --data this directory; records are read from the directory tokenize read",
        )
    if rep.kind in ("plain", "empty"):  # no manifest: a directory of data files someone made; nothing to check
        out = [(str(f), InputFile(str(f))) for f in rep.plain_files if f.name.endswith(DATA_SUFFIXES)]
        try:
            subdirs = sorted(e.name for e in os.scandir(d) if e.is_dir() and not e.name.startswith("."))
        except OSError:
            subdirs = []
        for sub in subdirs:
            out.extend((f.name, f) for f in _resolve_dir(d / sub, allow_partial, notes))
        return [f for _, f in sorted(out, key=lambda t: t[0])]
    if rep.problems:
        if not allow_partial:
            raise DataError(rep.summary(), source=str(d), hint=rep.hint())
        from phitools.runtime.console import warn

        warn(f"{d}: {rep.summary()}; reading what checks out (--allow-partial)")
        notes.append(
            {
                "path": str(d),
                "parts": rep.parts,
                "missing_parts": rep.missing,
                "problems": [p.message for p in rep.problems],
            }
        )
        if not rep.manifests:  # an unfinished run: its finished shards
            return [InputFile(str(f)) for f in rep.plain_files if f.name.endswith(DATA_SUFFIXES)]
    return [InputFile(str(f.path), f.bytes, f.sha256) for f in rep.files_to_read()]


class _Sidecars:
    """Expected size and sha256 of a file named on the command line, from its manifest when it has one."""

    def __init__(self):
        self._dirs: dict[Path, dict[str, dict]] = {}

    def expect(self, p: Path) -> InputFile:
        side = p.with_name(p.name + ".manifest.json")
        listed: dict[str, dict] = {}
        if side.is_file():
            listed = self._listing([side])
        else:
            parent = p.parent
            if parent not in self._dirs:
                try:
                    names = [parent / n for n in os.listdir(parent) if MANIFEST_RE.match(n)]
                except OSError:
                    names = []
                self._dirs[parent] = self._listing(names)
            listed = self._dirs[parent]
        o = listed.get(p.name)
        if not o:
            return InputFile(str(p))
        return InputFile(str(p), o.get("bytes"), o.get("sha256"))

    @staticmethod
    def _listing(manifests: list[Path]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for m in manifests:
            try:
                doc = load_manifest(m)
            except ValueError:
                continue
            for o in (doc or {}).get("outputs", []):
                if isinstance(o, dict) and isinstance(o.get("path"), str):
                    out[o["path"]] = o
        return out


class _CheckedRaw(io.RawIOBase):
    """A raw file stream that hashes what it reads; at its end `problem` says how it differs from the manifest."""

    def __init__(self, fh, expect: InputFile):
        self._fh = fh
        self._expect = expect
        self._sha = hashlib.sha256() if expect.sha256 else None
        self._n = 0
        self._checked = False
        self.problem: str | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        n = self._fh.readinto(b)
        if n:
            self._n += n
            if self._sha is not None:
                self._sha.update(memoryview(b)[:n])
        elif not self._checked:
            self._checked = True
            e = self._expect
            if e.bytes is not None and self._n != e.bytes:
                self.problem = f"file is {self._n} bytes, its manifest says {e.bytes} (changed after it was written?)"
            elif self._sha is not None and self._sha.hexdigest() != e.sha256:
                self.problem = "sha256 differs from its manifest (the file changed after it was written)"
        return n or 0

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


def _open_binary(name: str, expect: InputFile | None = None) -> tuple[BinaryIO, _CheckedRaw | None]:
    if name == STDIN:
        return sys.stdin.buffer, None
    try:
        if expect is not None and (expect.bytes is not None or expect.sha256):
            checker = _CheckedRaw(open(name, "rb", buffering=0), expect)
            return io.BufferedReader(checker, buffer_size=_READ_BUFFER), checker  # type: ignore[return-value]
        return open(name, "rb", buffering=_READ_BUFFER), None
    except OSError as e:
        raise DataError(f"cannot open: {e.strerror}", source=name) from None


def _peek(stream: BinaryIO, n: int) -> bytes:
    if hasattr(stream, "peek"):
        try:
            return stream.peek(n)[:n]
        except (OSError, ValueError):
            return b""
    return b""


def open_text_stream(name: str, expect: InputFile | None = None) -> BinaryIO:
    """Open a file or stdin and return a binary line-iterable stream, decompressing zstd/gzip transparently.

    With `expect`, the file's size and sha256 are checked as it is read (see `_open_checked`).
    """
    return _open_checked(name, expect)[0]


def _open_checked(name: str, expect: InputFile | None = None) -> tuple[BinaryIO, _CheckedRaw | None]:
    """open_text_stream, plus the checker whose `problem` is set once the whole file has been read."""
    raw, checker = _open_binary(name, expect)
    if not hasattr(raw, "peek"):
        raw = io.BufferedReader(raw, buffer_size=_READ_BUFFER)  # type: ignore[arg-type]
    head = _peek(raw, 4)
    if head.startswith(ZSTD_MAGIC) or (not head and name.endswith(".zst")):
        return io.BufferedReader(_ZstdRaw(raw, closefd=name != STDIN), buffer_size=_READ_BUFFER), checker
    if head.startswith(GZIP_MAGIC):
        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), buffer_size=_READ_BUFFER), checker  # type: ignore[arg-type]
    return raw, checker


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

    `required` names fields every record must have (e.g. ("text",)); `str_fields` those that must be valid
    Unicode strings (a lone surrogate such as "\\ud800" is refused there). A `text` field, when present and not
    null, must be a string for every tool. Directories are read as the complete set their manifests describe
    (`allow_partial`: what checks out, noted in `stats.extra["partial_inputs"]`); every file with a manifest is
    checked against its size and sha256 as it is read.
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
        allow_partial: bool = False,
    ):
        self.stats = stats if stats is not None else Stats()
        self.allow_partial = allow_partial
        self.partial_notes: list = []
        resolved = resolve_inputs(inputs, allow_partial=allow_partial, notes=self.partial_notes)
        self._expect = {f.name: f for f in resolved if f.bytes is not None or f.sha256}
        self.all_files = [f.name for f in resolved]
        self.shard = shard
        self.skip_bad = skip_bad
        self.required = tuple(required)
        self.str_fields = tuple(str_fields)
        self.allow_empty = allow_empty
        self.by_file = bool(shard and shard.count > 1 and len(self.all_files) >= shard.count)
        if self.by_file:
            assert shard is not None
            self.files = [f for i, f in enumerate(self.all_files) if i % shard.count == shard.index]
        else:
            self.files = list(self.all_files)
        self.lines_seen = 0
        if self.partial_notes:
            self.stats.extra["partial_inputs"] = self.partial_notes

    @property
    def inputs(self) -> list[str]:
        return [_display(f) for f in self.files]

    def _bad(self, reason_key: str, message: str, source: str, line: int) -> None:
        if self.skip_bad:
            self.stats.skipped_bad[reason_key] += 1
            return
        raise DataError(
            message,
            source=source,
            line=line,
            hint="fix or remove that record, or pass --skip-bad to count and skip such records",
        )

    def __iter__(self) -> Iterator[Record]:
        return self._scan(tagged=False)

    def tagged(self) -> Iterator[tuple[Record, bool]]:
        """Every record of every input, each with whether it belongs to this --shard (for exact sharded sampling)."""
        return self._scan(tagged=True)

    def _scan(self, tagged: bool):  # noqa: C901 - the hot loop, kept in one piece
        record_shard = self.shard if (self.shard and self.shard.count > 1 and not self.by_file) else None
        k = record_shard.index if record_shard else 0
        n = record_shard.count if record_shard else 1
        stats = self.stats
        required = self.required
        str_fields = self.str_fields
        files = self.all_files if tagged else self.files
        my_files = set(self.files)
        global_i = 0
        for name in files:
            source = _display(name)
            stream, checker = _open_checked(name, self._expect.get(name))
            file_mine = name in my_files
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
                        if checker is not None and checker.problem:
                            self._integrity(source, checker.problem)
                        break
                    lineno += 1
                    if not line.strip():
                        continue
                    self.lines_seen += 1
                    idx = global_i
                    global_i += 1
                    mine = file_mine and (n == 1 or idx % n == k)
                    if not mine and not tagged:
                        continue
                    try:
                        rec = loads_record(line)
                    except RecordParseError as e:
                        reason = str(e)
                        key = (
                            "invalid_utf8"
                            if reason.startswith("invalid UTF-8")
                            else "not_object"
                            if reason.startswith("record is")
                            else "too_deep"
                            if reason.startswith("JSON nested")
                            else "malformed_json"
                        )
                        self._bad(key, reason, source, lineno)
                        continue
                    missing = [f for f in required if f not in rec]
                    if missing:
                        self._bad(f"missing_{missing[0]}", f"record has no {missing[0]!r} field", source, lineno)
                        continue
                    text = rec.get("text")
                    if text is not None and not isinstance(text, str):
                        self._bad(
                            "not_string_text", f"field 'text' is {_json_type(text)}, not a string", source, lineno
                        )
                        continue
                    if str_fields:
                        wrong = [f for f in str_fields if not isinstance(rec.get(f), str)]
                        if wrong:
                            self._bad(
                                f"not_string_{wrong[0]}",
                                f"field {wrong[0]!r} is {_json_type(rec.get(wrong[0]))}, not a string",
                                source,
                                lineno,
                            )
                            continue
                        # a lone surrogate can only come from a \\udXXX escape: look only where there is one
                        if b"\\ud" in line or b"\\uD" in line:
                            bad = [f for f in str_fields if not _valid_unicode(rec[f])]
                            if bad:
                                self._bad(
                                    "lone_surrogate",
                                    f"field {bad[0]!r} holds a lone surrogate "
                                    "(a \\ud800-\\udfff escape without its pair), "
                                    "which is not valid Unicode",
                                    source,
                                    lineno,
                                )
                                continue
                    if tagged:
                        if mine:
                            stats.records_in += 1
                        yield rec, mine
                    else:
                        stats.records_in += 1
                        yield rec
            finally:
                if name != STDIN:
                    stream.close()
        if self.lines_seen == 0 and not self.allow_empty and not (self.by_file and not self.files):
            where = ", ".join(self.inputs) or "<no files>"
            raise DataError(
                "input is empty: no records",
                source=where,
                hint="check the input path, or the command upstream of the pipe",
            )

    def _truncated(self, source: str, line: int, message: str) -> None:
        if self.skip_bad:
            self.stats.skipped_bad["truncated_file"] += 1
            return
        raise DataError(
            message,
            source=source,
            line=line,
            hint="the file is cut short or damaged; re-create it, "
            "or pass --skip-bad to keep the records before the damage",
        )

    def _integrity(self, source: str, message: str) -> None:
        if self.allow_partial:
            from phitools.runtime.console import warn

            warn(f"{source}: {message}; its records were read anyway (--allow-partial)")
            self.partial_notes.append({"path": source, "problems": [message]})
            self.stats.extra["partial_inputs"] = self.partial_notes
            return
        raise DataError(
            message,
            source=source,
            hint="re-create it with the command that wrote it (phitools verify DIR lists every damaged "
            "file), or pass --allow-partial to read it anyway",
        )


def _json_type(v) -> str:
    return {dict: "an object", list: "an array", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(v), type(v).__name__
    )


def _valid_unicode(s) -> bool:
    if not isinstance(s, str) or s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_records(inputs: Sequence[str | os.PathLike] | None = None, **kwargs) -> Iterator[Record]:
    """Convenience: iterate records from inputs (see RecordReader)."""
    return iter(RecordReader(inputs, **kwargs))
