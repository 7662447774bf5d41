"""One run's claim on one slice of an output directory: its lock, its stale temp files, and its commit.

Record writers (write.py) and token writers (tokens.py) write every file under a temporary name
(ownership.tmp_path) and hand the (temporary, final) pairs to `commit()`, which swaps them in:

1. under the directory's commit lock (commits into one directory never interleave);
2. refuse if the directory now holds a run of another N (a racing writer committed first);
3. remove this slice's manifest, so the slice reads as unfinished while the swap runs;
4. rename every new file into place, then remove this slice's other files (the previous run's, and
   any shard of this slice's naming left by a run killed in an earlier commit);
5. write the manifest (temporary name, then rename) and fsync the directory.

A failure inside the commit removes what was moved in and what the previous manifest listed: the slice is
left with nothing rather than a mix. A failure before it leaves the previous output untouched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from phitools.errors import UsageError
from phitools.runtime.files import fsync_dir
from phitools.shards import ownership
from phitools.shards.complete import MANIFEST_RE, load_manifest, manifest_name, slice_tag
from phitools.shards.spec import ShardSpec

COMMIT_LOCK = ".lock-commit"


def lock_name(shard: ShardSpec | None) -> str:
    """The per-slice lock file: `.lock` (unsharded) or `.lock-0000K-of-0000N`."""
    return f".lock{slice_tag(shard)}"


def other_runs(directory: Path, shard: ShardSpec | None) -> list[str]:
    """Manifests in `directory` written by a run of another N than `shard`'s (unsharded counts as N = 1)."""
    n = shard.count if shard else 1
    out = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return out
    for name in names:
        m = MANIFEST_RE.match(name)
        if not m:
            continue
        their_n = int(m.group(2)) if m.group(1) else 1
        if their_n == n:
            continue
        try:
            if load_manifest(directory / name) is None:
                continue  # another program's manifest.json
        except ValueError:
            pass  # unreadable: still in the way
        out.append(name)
    return out


def _refuse_other_runs(directory: Path, shard: ShardSpec | None) -> None:
    others = other_runs(directory, shard)
    if others:
        this = f"--shard {shard}" if shard and shard.count > 1 else "an unsharded run"
        theirs = ", ".join(others[:3]) + (" ..." if len(others) > 3 else "")
        raise UsageError(
            f"-o {directory} holds the output of a run with another --shard N ({theirs}); this is {this}",
            hint="the two would mix: write to another -o, or remove that directory first",
        )


class DirectoryClaim:
    """Lock one slice of `directory` for this run, after removing that slice's provably stale temp files.

    own_names: a regex of the final names this slice's writers create (shards of the slice); the slice's
    manifest name is always included.
    """

    def __init__(self, directory: str | os.PathLike, shard: ShardSpec | None, *, own_names: str, what: str = "-o"):
        self.dir = Path(directory)
        self.shard = shard if shard and shard.count > 1 else None
        self.manifest_path = self.dir / manifest_name(self.shard)
        self.own = re.compile(rf"^(?:{own_names}|{re.escape(self.manifest_path.name)})$")
        self.dir.mkdir(parents=True, exist_ok=True)
        label = f"-o {self.dir}" + (f" --shard {self.shard}" if self.shard else "")
        self.lock = ownership.Lock(self.dir / lock_name(self.shard), what=label)
        try:
            _refuse_other_runs(self.dir, self.shard)
            ownership.remove_stale_temps(self.dir, self.own)
        except BaseException:
            self.lock.release()
            raise
        self.moved: list[Path] = []
        self._committing = False
        self._old: list[str] = []

    def commit(
        self,
        files: Iterable[tuple[Path, Path]],
        write_manifest: Callable[[Path], dict],
        shared: Iterable[tuple[Path, Path]] = (),
    ) -> dict:
        """Swap `files` (temp, final) into place and write the manifest with `write_manifest(path)`.

        `shared`: files every slice of the directory writes alike (tokenize's tokenizer.json), renamed too but
        never removed on failure. Returns what write_manifest returned.
        """
        files = list(files)
        with ownership.Lock(self.dir / COMMIT_LOCK, what=f"-o {self.dir} (commit)", wait=True):
            _refuse_other_runs(self.dir, self.shard)
            self._committing = True
            self._old = self._listed()
            self.manifest_path.unlink(missing_ok=True)
            for tmp, final in shared:
                os.replace(tmp, final)
            for tmp, final in files:
                os.replace(tmp, final)
                self.moved.append(final)
            keep = {final.name for _, final in files}
            for name in self._old + self._strays():
                if name not in keep:
                    (self.dir / name).unlink(missing_ok=True)
            manifest = write_manifest(self.manifest_path)
            fsync_dir(self.dir)
            self._committing = False
        return manifest

    def _listed(self) -> list[str]:
        """Names the slice's current manifest lists (files of this directory only)."""
        try:
            doc = load_manifest(self.manifest_path) if self.manifest_path.exists() else None
        except ValueError:
            doc = None
        names = []
        for o in (doc or {}).get("outputs", []):
            name = o.get("path") if isinstance(o, dict) else None
            if isinstance(name, str) and Path(name).name == name and name not in (".", ".."):
                names.append(name)
        return names

    def _strays(self) -> list[str]:
        """Files of this slice's naming that no manifest lists (left by a commit that was killed)."""
        try:
            return [n for n in os.listdir(self.dir) if self.own.match(n) and n != self.manifest_path.name]
        except OSError:
            return []

    def discard(self, temps: Iterable[Path]) -> None:
        """Remove this run's temp files; during a failed commit also what was moved in and the previous output."""
        for t in temps:
            t.unlink(missing_ok=True)
        ownership.tmp_path(self.manifest_path).unlink(missing_ok=True)
        if self._committing:
            for p in self.moved:
                p.unlink(missing_ok=True)
            for name in self._old:
                (self.dir / name).unlink(missing_ok=True)
            self.manifest_path.unlink(missing_ok=True)
            self._committing = False

    def release(self) -> None:
        self.lock.release()
