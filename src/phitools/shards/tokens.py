"""Token shards: the format `tokenize -o DIR` writes and `train` reads.

A token directory holds `tokenizer.json`, raw little-endian `tokens-*.bin` streams (uint16 when the vocabulary
fits, else uint32; every document's ids followed by end-of-text; with packing each shard is a whole number of
`seq_len` rows) and `manifest.json`. Processes run with `--shard K/N` write `manifest-K-of-N.json` and
`tokens-K-of-N-*.bin` into the same directory; `open_token_dir` reads the union once all N are complete.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from phitools.errors import DataError
from phitools.shards.spec import ShardSpec, parse_size

FORMAT = "phitools-tokens"
_MANIFEST_RE = re.compile(r"^manifest(?:-(\d+)-of-(\d+))?\.json$")


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32 (always little-endian)."""
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


class TokenShardWriter:
    """Write token ids into rolling `.bin` shards, packing into whole `seq_len` rows when asked.

    Files are written under temporary names and renamed when complete. Call `close()` to flush the last
    shard (dropping a packed tail shorter than one row, counted in `tail_dropped`); `abort()` removes
    everything this writer created.
    """

    def __init__(self, directory: str | os.PathLike, *, vocab_size: int, seq_len: int, packed: bool = True,
                 shard_tokens: int = 100_000_000, shard: ShardSpec | None = None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dtype = dtype_for_vocab(vocab_size)
        self.seq_len = seq_len
        self.packed = packed
        self.tag = f"-{shard.index:05d}-of-{shard.count:05d}" if shard and shard.count > 1 else ""
        # shards hold whole rows when packed
        self.shard_tokens = max(seq_len, (shard_tokens // seq_len) * seq_len) if packed else max(1, shard_tokens)
        self.shards: list[dict] = []
        self.created: list[Path] = []
        self.tokens = 0
        self.tail_dropped = 0
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._fh = None
        self._tmp: Path | None = None
        self._final: Path | None = None
        self._sha = None
        self._in_shard = 0

    def _open(self) -> None:
        n = len(self.shards)
        self._final = self.dir / f"tokens{self.tag}-{n:05d}.bin"
        self._tmp = self.dir / f".{self._final.name}.tmp-{os.getpid()}"
        self._fh = open(self._tmp, "wb")
        self._sha = hashlib.sha256()
        self._in_shard = 0

    def _close_shard(self) -> None:
        if self._fh is None:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self._final)
        self.created.append(self._final)
        self.shards.append({"path": self._final.name, "tokens": self._in_shard, "sha256": self._sha.hexdigest()})
        self._fh = None

    def _emit(self, arr: np.ndarray) -> None:
        """Write arr (already in dtype) across shard boundaries."""
        i = 0
        while i < len(arr):
            if self._fh is None:
                self._open()
            room = self.shard_tokens - self._in_shard
            piece = arr[i:i + room]
            b = piece.tobytes()
            self._fh.write(b)
            self._sha.update(b)
            self._in_shard += len(piece)
            self.tokens += len(piece)
            i += len(piece)
            if self._in_shard >= self.shard_tokens:
                self._close_shard()

    def add(self, ids: np.ndarray) -> None:
        """Append one document's ids (end-of-text already appended)."""
        arr = ids.astype(self.dtype, copy=False)
        if not self.packed:
            self._emit(arr)
            return
        self._pending.append(arr)
        self._pending_n += len(arr)
        if self._pending_n >= (1 << 20):
            self._flush_rows()

    def _flush_rows(self) -> None:
        if not self._pending:
            return
        buf = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        whole = (len(buf) // self.seq_len) * self.seq_len
        if whole:
            self._emit(buf[:whole])
        rest = buf[whole:]
        self._pending = [rest] if len(rest) else []
        self._pending_n = len(rest)

    def close(self) -> None:
        """Finish: write remaining whole rows, drop (and count) a packed tail, close the last shard."""
        if self.packed:
            self._flush_rows()
            self.tail_dropped = self._pending_n
            self._pending, self._pending_n = [], 0
        self._close_shard()

    def abort(self) -> None:
        """Remove every file this writer created."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            if self._tmp is not None:
                self._tmp.unlink(missing_ok=True)
        for p in self.created:
            p.unlink(missing_ok=True)


@dataclass
class TokenDir:
    """An opened token directory: memory-mapped shards plus the manifest facts train needs."""

    path: Path
    manifest: dict
    arrays: list
    dtype: np.dtype
    vocab_size: int
    eot_id: int
    seq_len: int
    total_tokens: int
    tokenizer_path: Path
    tokenizer_sha256: str
    shard_paths: list


def _load_json(p: Path) -> dict:
    try:
        return orjson.loads(p.read_bytes())
    except (orjson.JSONDecodeError, OSError) as e:
        raise DataError(f"unreadable manifest ({e})", source=str(p), hint="re-run phitools tokenize -o for this directory") from None


def open_token_dir(path: str | os.PathLike, *, verify: bool = False) -> TokenDir:
    """Open a token directory written by `phitools tokenize -o` (or the union of its --shard K/N parts)."""
    d = Path(path)
    if not d.is_dir():
        raise DataError("not a token directory", source=str(d), hint="make one with: phitools tokenize INPUT -o DIR")
    manifests = sorted(p for p in d.iterdir() if _MANIFEST_RE.match(p.name))
    if not manifests:
        raise DataError("no manifest.json: the directory is incomplete or not a token directory", source=str(d),
                        hint="re-run phitools tokenize -o; a run that failed leaves no manifest")
    parts = [_load_json(p) for p in manifests]
    for m, p in zip(parts, manifests):
        if m.get("format") != FORMAT:
            raise DataError(f"manifest format is {m.get('format')!r}, not {FORMAT!r}", source=str(p), hint="point --data at a directory written by phitools tokenize -o")
    counts = {m.get("shard") for m in parts}
    if len(parts) > 1 or (parts and parts[0].get("shard")):
        n = int(str(parts[0].get("shard") or "0/1").split("/")[1])
        if len(parts) != n:
            raise DataError(f"{len(parts)} of {n} --shard parts are complete", source=str(d), hint="wait for the remaining tokenize processes or re-run them")
    first = parts[0]
    for key in ("dtype", "vocab_size", "tokenizer_sha256", "eot_id"):
        if any(m.get(key) != first.get(key) for m in parts):
            raise DataError(f"shard manifests disagree on {key}", source=str(d), hint="all parts must use the same tokenizer")
    del counts
    dtype = np.dtype(first["dtype"]).newbyteorder("<")
    arrays, shard_paths, total = [], [], 0
    for m in parts:
        for s in m.get("shards", []):
            sp = d / s["path"]
            if not sp.is_file():
                raise DataError("token shard listed in the manifest is missing", source=str(sp), hint="re-run phitools tokenize -o")
            expect = int(s["tokens"]) * dtype.itemsize
            if sp.stat().st_size != expect:
                raise DataError(f"token shard is {sp.stat().st_size} bytes, manifest says {expect}", source=str(sp), hint="the file is truncated or replaced; re-run phitools tokenize -o")
            if verify:
                from phitools.shards.manifest import file_sha256

                if file_sha256(sp) != s["sha256"]:
                    raise DataError("token shard sha256 does not match the manifest", source=str(sp), hint="re-run phitools tokenize -o")
            if int(s["tokens"]):
                arrays.append(np.memmap(sp, dtype=dtype, mode="r"))
                shard_paths.append(sp)
            total += int(s["tokens"])
    tok = d / "tokenizer.json"
    if not tok.is_file():
        raise DataError("tokenizer.json is missing", source=str(d), hint="re-run phitools tokenize -o")
    manifest = dict(first)
    if len(parts) > 1:
        manifest["tokens"] = total
        manifest["shards"] = [s for m in parts for s in m.get("shards", [])]
        manifest["documents"] = sum(int(m.get("documents", 0)) for m in parts)
    return TokenDir(path=d, manifest=manifest, arrays=arrays, dtype=dtype, vocab_size=int(first["vocab_size"]),
                    eot_id=int(first["eot_id"]), seq_len=int(first.get("seq_len") or 0), total_tokens=total,
                    tokenizer_path=tok, tokenizer_sha256=str(first["tokenizer_sha256"]), shard_paths=shard_paths)


__all__ = ["FORMAT", "TokenDir", "TokenShardWriter", "dtype_for_vocab", "open_token_dir", "parse_size"]
