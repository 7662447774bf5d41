"""The LLM options shared by every command that talks to a model (label, synth, eval), and the one
function that turns them into a runner.

A command declares the options it wants in its signature with these types, builds an `LLMOptions` from its
own flags, by name (never from `locals()`: eval's sandbox `--timeout` once became the HTTP timeout that way),
then:

    opts = LLMOptions(api_base=api_base, model=list(model or []), request_timeout=request_timeout, ...)
    with open_runner(opts, output=output, seed=seed) as (runner, backend):
        for res in runner.run(requests): ...
    manifest_extra["llm"] = llm_manifest(runner)     # backend, usage, cost, cache, limits (no key)

The dataclass's defaults are the shared ones, and the signatures use the same constants. Defaults that depend
on the tool (temperature, max_tokens; eval's longer request timeout) are the tool's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

import typer

from phitools.errors import UsageError

_P = "LLM"  # help panel name

BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="local (embedded SmolLM2-135M, offline; the default without --api-base), openai (any OpenAI-compatible server: OpenAI, vLLM, llama.cpp, Ollama, TGI) or heuristic (a documented non-LLM scorer; label only).",
        show_default=False,
        rich_help_panel=_P,
    ),
]
ApiBaseOpt = Annotated[
    str | None,
    typer.Option(
        "--api-base",
        help="Base URL of an OpenAI-compatible server, with its version path, e.g. http://localhost:8080/v1. Implies --backend openai.",
        show_default=False,
        rich_help_panel=_P,
    ),
]
ModelOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        help="Model name on the server; for --backend local a .gguf file, model directory or Hub id (default: the embedded SmolLM2-135M-Instruct). Repeat where a tool accepts several.",
        show_default=False,
        rich_help_panel=_P,
    ),
]
ApiKeyEnvOpt = Annotated[
    str,
    typer.Option(
        "--api-key-env",
        help="Name of the environment variable holding the API key (the key itself is never written anywhere).",
        rich_help_panel=_P,
    ),
]
ConcurrencyOpt = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        min=1,
        help="Requests in flight at once (default 8; llama.cpp's server answers one at a time unless started with --parallel).",
        show_default=False,
        rich_help_panel=_P,
    ),
]
RpmOpt = Annotated[
    float | None,
    typer.Option(
        "--rpm",
        min=0.001,
        help="Client-side limit: requests per minute (server x-ratelimit-* headers are obeyed as well).",
        show_default=False,
        rich_help_panel=_P,
    ),
]
TpmOpt = Annotated[
    float | None,
    typer.Option(
        "--tpm",
        min=1,
        help="Client-side limit: tokens per minute (prompt estimate + max_tokens, corrected by reported usage).",
        show_default=False,
        rich_help_panel=_P,
    ),
]
RequestTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--request-timeout",
        "--timeout",
        min=0.1,
        help="Seconds to wait for one answer (per attempt; a timeout is retried like any transport error).",
        rich_help_panel=_P,
    ),
]
MaxAttemptsOpt = Annotated[
    int,
    typer.Option(
        "--max-attempts",
        min=1,
        help="Tries per request (429, 5xx, timeouts, dropped connections, malformed or unparseable answers); then the record is written as failed with the reason.",
        rich_help_panel=_P,
    ),
]
CacheOpt = Annotated[
    str | None,
    typer.Option(
        "--cache",
        help="Request cache (SQLite): PATH, or 'off'. Default: llm-cache.sqlite in the -o directory (or next to the -o file; ~/.cache/phitools/ for stdout). A re-run sends only unanswered requests.",
        show_default=False,
        rich_help_panel=_P,
    ),
]
PriceOpt = Annotated[
    str | None,
    typer.Option(
        "--price-per-1k",
        help="Price per 1000 tokens, 'P' or 'PROMPT,COMPLETION', to report the cost in the manifest and on stderr.",
        show_default=False,
        rich_help_panel=_P,
    ),
]
TemperatureOpt = Annotated[
    float | None,
    typer.Option(
        "--temperature",
        min=0.0,
        help="Sampling temperature (the tool's default when not given).",
        show_default=False,
        rich_help_panel=_P,
    ),
]
MaxTokensOpt = Annotated[
    int | None,
    typer.Option(
        "--max-tokens",
        min=1,
        help="Maximum tokens per answer (the tool's default when not given).",
        show_default=False,
        rich_help_panel=_P,
    ),
]
StructuredOpt = Annotated[
    str,
    typer.Option(
        "--structured",
        help="Structured output: auto (json_schema, falling back to json_object+schema, then text), json_schema, json_object, or text (prompt + tolerant parser only).",
        rich_help_panel=_P,
    ),
]


API_KEY_ENV = "OPENAI_API_KEY"
#: seconds per attempt for label and synth (answers of a few hundred tokens)
REQUEST_TIMEOUT_S = 120.0
#: seconds per attempt for eval's completions (`eval --request-timeout`). A loaded vLLM or TGI server queues
#: requests behind its running batch, then decodes up to --max-tokens (512) at tens of ms per token per
#: sequence, so one answer can take minutes; 600 s is also the OpenAI Python client's default. Unrelated to
#: the sandbox's per-check CPU limit (eval --timeout).
GENERATION_REQUEST_TIMEOUT_S = 600.0
MAX_ATTEMPTS = 5
STRUCTURED = "auto"


@dataclass
class LLMOptions:
    """The values of the shared LLM options."""

    backend: str | None = None
    api_base: str | None = None
    model: list[str] = field(default_factory=list)
    api_key_env: str = API_KEY_ENV
    concurrency: int | None = None
    rpm: float | None = None
    tpm: float | None = None
    request_timeout: float = REQUEST_TIMEOUT_S
    max_attempts: int = MAX_ATTEMPTS
    cache: str | None = None
    price_per_1k: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    structured: str = STRUCTURED

    def __post_init__(self) -> None:
        self.model = list(self.model or [])

    @property
    def kind(self) -> str:
        """The backend kind these options select."""
        return self.backend or ("openai" if self.api_base else "local")

    @property
    def models(self) -> list:
        """The --model values, or [None] for the backend's default."""
        return list(self.model) or [None]


def build_backend(opts: LLMOptions, model: str | None = None, *, allowed: tuple[str, ...] = ("local", "openai")):
    """One backend for `model` (default: the first --model). Raises UsageError/ConfigError with a hint."""
    from phitools.llm.backends import make_backend

    if opts.structured not in ("auto", "json_schema", "json_object", "text"):
        raise UsageError(f"--structured {opts.structured!r}: expected auto, json_schema, json_object or text")
    model = model if model is not None else opts.models[0]
    return make_backend(
        opts.kind,
        api_base=opts.api_base,
        model=model,
        api_key_env=opts.api_key_env,
        concurrency=concurrency_for(opts),
        structured=opts.structured,
        allowed=allowed,
    )


def concurrency_for(opts: LLMOptions) -> int:
    return opts.concurrency or 8


def cache_for(opts: LLMOptions, output: str | None):
    """The RequestCache these options and this output call for (None with --cache off)."""
    from phitools.llm.cache import RequestCache, default_cache_path

    if opts.cache is not None and opts.cache.lower() in ("off", "none", "no", "false", "0"):
        return None
    path = opts.cache if opts.cache else default_cache_path(output)
    return RequestCache(path) if path is not None else None


def build_runner(opts: LLMOptions, backend, *, cache=None, seed: int | None = None):
    """An LLMRunner over `backend` with these options' concurrency, limits, retries and pricing."""
    from phitools.llm.client import LLMRunner, Usage, parse_price
    from phitools.llm.ratelimit import RateLimiter

    try:
        pin, pout = parse_price(opts.price_per_1k)
    except ValueError as e:
        raise UsageError(str(e)) from None
    limiter = RateLimiter(opts.rpm, opts.tpm) if (opts.rpm or opts.tpm or backend.kind == "openai") else None
    return LLMRunner(
        backend,
        concurrency=concurrency_for(opts),
        max_attempts=opts.max_attempts,
        timeout=opts.request_timeout,
        limiter=limiter,
        cache=cache,
        usage=Usage(price_in_per_1k=pin, price_out_per_1k=pout),
        seed=seed,
    )


@contextlib.contextmanager
def open_runner(
    opts: LLMOptions,
    *,
    output: str | None,
    seed: int | None = None,
    model: str | None = None,
    allowed: tuple[str, ...] = ("local", "openai"),
    cache=None,
) -> Iterator[tuple]:
    """Context manager yielding (runner, backend); closes both. `cache` overrides the default cache."""
    backend = build_backend(opts, model, allowed=allowed)
    if cache is None:
        cache = cache_for(opts, output)
    runner = build_runner(opts, backend, cache=cache, seed=seed)
    try:
        with runner:
            yield runner, backend
    finally:
        if cache is not None:
            cache.close()


def llm_manifest(runner) -> dict:
    """What goes into the manifest about the model calls: backend, limits, cache, usage and cost. No key."""
    d = {
        "backend": runner.backend.describe(),
        "usage": runner.usage.to_dict(),
        "concurrency": runner.concurrency,
        "max_attempts": runner.max_attempts,
        "timeout_s": runner.timeout,
    }
    if runner.limiter is not None:
        d["rate_limit"] = runner.limiter.describe()
    if runner.cache is not None:
        d["cache"] = runner.cache.describe()
    return d


def usage_summary(runner, tool: str) -> str:
    """The one-line stderr summary."""
    return f"phitools {tool}: {runner.usage.summary()}"
