"""Token shards: the format `tokenize -o DIR` writes and `train` reads.

A token directory holds `tokenizer.json`, raw little-endian `tokens-*.bin` streams (uint16 when the vocabulary
fits, else uint32; every document's ids followed by end-of-text; with packing each shard is a whole number of
`seq_len` rows) and `manifest.json`. Processes run with `--shard K/N` write `manifest-K-of-N.json` and
`tokens-K-of-N-*.bin` into the same directory; `open_token_dir` reads the union once all N are complete and
every shard checks out against its manifest (size and sha256; shards/complete.py).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phitools.errors import DataError
from phitools.shards import ownership
from phitools.shards.commit import DirectoryClaim
from phitools.shards.complete import TOKENS_FORMAT as FORMAT
from phitools.shards.complete import slice_tag
from phitools.shards.spec import ShardSpec, parse_size


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32 (always little-endian)."""
    return np.dtype("<u2") if vocab_size <= 65536 else np.dtype("<u4")


def token_claim(directory: str | os.PathLike, shard: ShardSpec | None) -> DirectoryClaim:
    """Claim one slice of a token directory: its lock, after removing its provably stale temp files.

    Also removes provably stale temp copies of tokenizer.json and tokenizer-training spools, which every slice
    may write."""
    tag = slice_tag(shard)
    claim = DirectoryClaim(directory, shard, own_names=rf"tokens{re.escape(tag)}-\d{{5}}\.bin")
    ownership.remove_stale_temps(claim.dir, re.compile(r"^(?:tokenizer\.json|spool)$"))
    return claim


class TokenShardWriter:
    """Write token ids into rolling `.bin` shards, packing into whole `seq_len` rows when asked.

    Shards are written under temporary names and swapped in by `commit()` together with tokenizer.json and
    the manifest (shards/commit.py). `close()` flushes the last shard (dropping a packed tail shorter than
    one row, counted in `tail_dropped`); `abort()` removes everything this writer created and leaves the
    previous output of the directory as it was.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        vocab_size: int,
        seq_len: int,
        packed: bool = True,
        shard_tokens: int = 100_000_000,
        shard: ShardSpec | None = None,
        claim: DirectoryClaim | None = None,
    ):
        self.claim = claim if claim is not None else token_claim(directory, shard)
        self.dir = self.claim.dir
        self.dtype = dtype_for_vocab(vocab_size)
        self.seq_len = seq_len
        self.packed = packed
        self.shard = shard if shard and shard.count > 1 else None
        self.tag = slice_tag(shard)
        # shards hold whole rows when packed
        self.shard_tokens = max(seq_len, (shard_tokens // seq_len) * seq_len) if packed else max(1, shard_tokens)
        self.shards: list[dict] = []
        self.done: list[tuple[Path, Path]] = []  # finished shards (temp, final), swapped in at commit
        self.tokens = 0
        self.tail_dropped = 0
        self._pending: list[np.ndarray] = []
        self._pending_n = 0
        self._fh = None
        self._tmp: Path | None = None
        self._final: Path | None = None
        self._sha = None
        self._in_shard = 0
        self._tokenizer_tmp: Path | None = None
        self._finished = False

    def _open(self) -> None:
        n = len(self.shards)
        self._final = self.dir / f"tokens{self.tag}-{n:05d}.bin"
        self._tmp = ownership.tmp_path(self._final)
        self._fh = open(self._tmp, "wb")
        self._sha = hashlib.sha256()
        self._in_shard = 0

    def _close_shard(self) -> None:
        if self._fh is None:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self.done.append((self._tmp, self._final))
        self.shards.append(
            {
                "path": self._final.name,
                "tokens": self._in_shard,
                "bytes": self._in_shard * self.dtype.itemsize,
                "sha256": self._sha.hexdigest(),
            }
        )
        self._fh = None

    def _emit(self, arr: np.ndarray) -> None:
        """Write arr (already in dtype) across shard boundaries."""
        i = 0
        while i < len(arr):
            if self._fh is None:
                self._open()
            room = self.shard_tokens - self._in_shard
            piece = arr[i : i + room]
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

    def set_tokenizer(self, tok) -> None:
        """Save the tokenizer (a `tokenizers.Tokenizer`) to go in as DIR/tokenizer.json at commit."""
        self._tokenizer_tmp = ownership.tmp_path(self.dir / "tokenizer.json")
        tok.save(str(self._tokenizer_tmp))

    def close(self) -> None:
        """Finish: write remaining whole rows, drop (and count) a packed tail, close the last shard."""
        if self.packed:
            self._flush_rows()
            self.tail_dropped = self._pending_n
            self._pending, self._pending_n = [], 0
        self._close_shard()

    def commit(self, write_manifest) -> dict:
        """Swap the shards and tokenizer.json in and write the manifest: `write_manifest(path, extra)` gets the
        token fields (format, dtype, shards, tokenizer_file_sha256, ...) to record. Releases the lock."""
        from phitools.runtime.files import sha256_file

        shared = []
        tok = self.dir / "tokenizer.json"
        if self._tokenizer_tmp is not None:
            shared.append((self._tokenizer_tmp, tok))
            tok_sha = sha256_file(self._tokenizer_tmp)
        else:
            tok_sha = sha256_file(tok) if tok.is_file() else None
        fields = {
            "format": FORMAT,
            "dtype": self.dtype.name,
            "byteorder": "little",
            "seq_len": self.seq_len,
            "packed": self.packed,
            "tokens": self.tokens,
            "shards": self.shards,
            "tokenizer": "tokenizer.json",
            "tokenizer_file_sha256": tok_sha,
        }
        try:
            manifest = self.claim.commit(self.done, lambda path: write_manifest(path, fields), shared=shared)
        except BaseException:
            self.abort()
            raise
        self._finished = True
        self.claim.release()
        return manifest

    def abort(self) -> None:
        """Remove every file this writer created (the directory's previous output stays) and release the lock."""
        if self._finished:
            return
        self._finished = True
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        temps = [t for t, _ in self.done] + [p for p in (self._tmp, self._tokenizer_tmp) if p is not None]
        self.claim.discard(temps)
        self.claim.release()


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


def open_token_dir(path: str | os.PathLike, *, verify: str | bool = "sha256") -> TokenDir:
    """Open a token directory written by `phitools tokenize -o` (or the union of its --shard K/N parts).

    The directory must be complete (shards/complete.py): every part, every listed shard with its size, and
    (verify="sha256", the default) its sha256, tokenizer.json included. verify="size" checks sizes only.
    """
    from phitools.shards.complete import inspect_output

    mode = "sha256" if verify is True or verify == "sha256" else "size"
    d = Path(path)
    if not d.is_dir():
        raise DataError("not a token directory", source=str(d), hint="make one with: phitools tokenize INPUT -o DIR")
    rep = inspect_output(d, sha256=mode == "sha256")
    if rep.kind != "tokens":
        if rep.kind == "records":
            raise DataError(
                "this holds records, not token shards",
                source=str(d),
                hint="tokenize it first: phitools tokenize DIR -o TOKDIR",
            )
        raise DataError(
            "no manifest.json: the directory is incomplete or not a token directory",
            source=str(d),
            hint="re-run phitools tokenize -o; a run that failed leaves no manifest",
        )
    if not rep.complete:
        raise DataError(rep.summary(), source=str(d), hint=rep.hint(allow_partial=False))
    parts = [rep.manifests[k] for k in rep.present]
    first = parts[0]
    dtype = np.dtype(first["dtype"]).newbyteorder("<")
    arrays, shard_paths, total = [], [], 0
    for f in rep.listed:
        tokens = int(f.tokens or 0)
        if tokens:
            arrays.append(np.memmap(f.path, dtype=dtype, mode="r"))
            shard_paths.append(f.path)
        total += tokens
    manifest = dict(first)
    if len(parts) > 1:
        manifest["tokens"] = total
        manifest["shards"] = [s for m in parts for s in m.get("shards", [])]
        manifest["documents"] = sum(int(m.get("documents", 0)) for m in parts)
    return TokenDir(
        path=d,
        manifest=manifest,
        arrays=arrays,
        dtype=dtype,
        vocab_size=int(first["vocab_size"]),
        eot_id=int(first["eot_id"]),
        seq_len=int(first.get("seq_len") or 0),
        total_tokens=total,
        tokenizer_path=d / str(first.get("tokenizer") or "tokenizer.json"),
        tokenizer_sha256=str(first["tokenizer_sha256"]),
        shard_paths=shard_paths,
    )


__all__ = ["FORMAT", "TokenDir", "TokenShardWriter", "dtype_for_vocab", "open_token_dir", "parse_size", "token_claim"]
