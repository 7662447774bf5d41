"""Token shards -> training batches: a flat memory-mapped stream, a held-out split, a resumable sampler.

The `.bin` shards of a token directory are read as one flat stream of ids (train's `--seq-len` need not equal
the `seq_len` tokenize packed with). The last `eval_fraction` of the stream is held out for eval loss; the rest
is cut into non-overlapping windows of `seq_len + 1` tokens (inputs + shifted targets; consecutive windows share
their boundary token, as in nanoGPT). Each epoch visits every training window once, in an order drawn from
`(seed, epoch)`. A step consumes one global batch of windows; rank r of W takes the r-th contiguous slice of it,
so a run's data does not depend on the number of processes. The sampler position `(epoch, index)` goes into
every checkpoint: a resumed loader yields exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from phitools.errors import CheckpointError, DataError


class TokenStream:
    """Several memory-mapped token arrays read as one flat stream."""

    def __init__(self, arrays: list):
        self.arrays = [a for a in arrays if len(a)]
        lengths = np.array([len(a) for a in self.arrays], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)  # offsets[i] = start of array i
        self.total = int(self.offsets[-1])

    def __len__(self) -> int:
        return self.total

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) as int64, crossing shard boundaries when needed."""
        if start < 0 or start + length > self.total:
            raise IndexError(f"token range [{start}, {start + length}) outside stream of {self.total}")
        i = int(np.searchsorted(self.offsets, start, side="right")) - 1
        local = start - int(self.offsets[i])
        arr = self.arrays[i]
        if local + length <= len(arr):  # the common case: one shard
            return np.asarray(arr[local : local + length], dtype=np.int64)
        out = np.empty(length, dtype=np.int64)
        filled = 0
        while filled < length:
            arr = self.arrays[i]
            take = min(length - filled, len(arr) - local)
            out[filled : filled + take] = arr[local : local + take]
            filled += take
            i, local = i + 1, 0
        return out


@dataclass(frozen=True)
class Windows:
    """Non-overlapping (seq_len + 1)-token windows over tokens [start, stop) of a stream."""

    stream: TokenStream
    start: int
    stop: int
    seq_len: int

    def __len__(self) -> int:
        return max(0, (self.stop - self.start - 1) // self.seq_len)

    def get(self, ids) -> np.ndarray:
        """Windows `ids` stacked: (len(ids), seq_len + 1) int64."""
        out = np.empty((len(ids), self.seq_len + 1), dtype=np.int64)
        for row, w in enumerate(ids):
            out[row] = self.stream.read(self.start + int(w) * self.seq_len, self.seq_len + 1)
        return out


class WindowSampler:
    """A seeded, resumable order over `n` windows: epoch e visits them all in permutation(seed, e).

    The state is `(epoch, index)`: the next window is position `index` of epoch `epoch`'s permutation.
    """

    def __init__(self, n: int, seed: int, *, shuffle: bool = True):
        if n <= 0:
            raise ValueError("a sampler needs at least one window")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.index = 0, 0
        self._perm_epoch, self._perm = -1, None

    def _order(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            if self.shuffle:
                self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            else:
                self._perm = np.arange(self.n)
            self._perm_epoch = epoch
        return self._perm

    def take(self, k: int) -> np.ndarray:
        """The next k window ids (crossing into the next epoch when this one runs out)."""
        out = np.empty(k, dtype=np.int64)
        got = 0
        while got < k:
            order = self._order(self.epoch)
            m = min(k - got, self.n - self.index)
            out[got : got + m] = order[self.index : self.index + m]
            got += m
            self.index += m
            if self.index == self.n:
                self.epoch, self.index = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "n": self.n, "shuffle": self.shuffle}

    def load_state_dict(self, state: dict) -> None:
        if (
            int(state["n"]) != self.n
            or int(state["seed"]) != self.seed
            or bool(state.get("shuffle", True)) != self.shuffle
        ):
            raise CheckpointError(
                f"data sampler mismatch: checkpoint has {state['n']} windows (seed {state['seed']}), "
                f"this run has {self.n} (seed {self.seed})",
                hint="resume with the same --data, --seq-len, --eval-fraction and --seed as the original run",
            )
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


class TokenData:
    """A token directory opened for training: train windows, held-out windows, and the sampler."""

    def __init__(self, path: str | os.PathLike, *, seq_len: int, seed: int, eval_fraction: float = 0.01):
        from phitools.shards.tokens import open_token_dir

        if seq_len < 1:
            raise DataError(f"--seq-len must be >= 1, got {seq_len}")
        if not 0.0 <= eval_fraction < 1.0:
            raise DataError(f"--eval-fraction must be in [0, 1), got {eval_fraction}")
        self.dir = open_token_dir(path)  # refuses an incomplete or damaged directory (sizes and sha256)
        self.seq_len = seq_len
        self.stream = TokenStream(self.dir.arrays)
        n = len(self.stream)
        n_eval = int(n * eval_fraction)
        split = n - n_eval
        self.train = Windows(self.stream, 0, split, seq_len)
        self.heldout = Windows(self.stream, split, n, seq_len)
        if len(self.train) == 0:
            raise DataError(
                f"only {split} training tokens: too few for one window of --seq-len {seq_len} + 1",
                source=str(path),
                hint="tokenize more text or lower --seq-len",
            )
        self.sampler = WindowSampler(len(self.train), seed)

    @property
    def vocab_size(self) -> int:
        return self.dir.vocab_size

    def describe(self) -> dict:
        """Provenance of the data: the directory, its shards (with sha256) and tokenizer hash, and the split."""
        m = self.dir.manifest
        return {
            "path": str(self.dir.path),
            "tokens": len(self.stream),
            "vocab_size": self.dir.vocab_size,
            "tokenizer_sha256": self.dir.tokenizer_sha256,
            "eot_id": self.dir.eot_id,
            "shards": [
                {"path": s.get("path"), "tokens": s.get("tokens"), "sha256": s.get("sha256")}
                for s in m.get("shards", [])
            ],
            "train_tokens": self.train.stop - self.train.start,
            "heldout_tokens": self.heldout.stop - self.heldout.start,
            "train_windows": len(self.train),
            "heldout_windows": len(self.heldout),
            "seq_len": self.seq_len,
        }

    def check_same_as(self, recorded: dict) -> None:
        """Raise when a resumed run points at different token data than it was trained on."""
        now = [s.get("sha256") for s in self.describe()["shards"]]
        then = [s.get("sha256") for s in recorded.get("shards", [])]
        if now != then or recorded.get("tokenizer_sha256") != self.dir.tokenizer_sha256:
            raise CheckpointError(
                f"--data {self.dir.path} is not the token data this run was trained on ({recorded.get('path')})",
                hint="resume with the original --data, or start a new run with --init CHECKPOINT",
            )


def rank_slice(batch_size: int, rank: int, world_size: int) -> slice:
    """The rows of a global batch that belong to `rank` (contiguous, equal sizes)."""
    per = batch_size // world_size
    return slice(rank * per, (rank + 1) * per)


def heldout_ids(n_windows: int, count: int) -> np.ndarray:
    """The fixed held-out windows one eval pass uses: the first `count` (all when fewer), in order."""
    return np.arange(min(n_windows, count), dtype=np.int64)
