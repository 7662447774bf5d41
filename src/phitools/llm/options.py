"""The LLM options shared by every tool that talks to a model (label, synth, eval), and the one factory that
turns them into a configured runner.

    opts = LLMOptions(api_base="http://localhost:8000/v1", model=["Qwen/Qwen2.5-7B-Instruct"])
    with open_runner(opts, output="labeled/", seed=0) as (runner, backend):
        for res in runner.run(requests): ...
    manifest["llm"] = llm_manifest(runner)      # backend, usage, cost, cache, limits (never the key)

`EndpointOptions` are how to reach a model (backend, server, limits, retries, cache, price); `LLMOptions` add
the sampling knobs that label and synth expose (temperature, max tokens, structured output); eval samples
with its own flags and waits longer per answer (`GenerationEndpointOptions`). Defaults that depend on the tool
(temperature, max_tokens) are None here; the tool fills them in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from phitools.errors import UsageError
from phitools.options import check, option

PANEL = "LLM"  # --help panel

API_KEY_ENV = "OPENAI_API_KEY"
#: seconds per attempt for label and synth (answers of a few hundred tokens)
REQUEST_TIMEOUT_S = 120.0
#: seconds per attempt for eval's completions (`eval --request-timeout`). A loaded vLLM or TGI server queues
#: requests behind its running batch, then decodes up to --max-tokens (512) at tens of ms per token per
#: sequence, so one answer can take minutes; 600 s is also the OpenAI Python client's default. Unrelated to
#: the sandbox's per-check CPU limit (eval --timeout).
GENERATION_REQUEST_TIMEOUT_S = 600.0
MAX_ATTEMPTS = 5
STRUCTURED = ("auto", "json_schema", "json_object", "text")
DEFAULT_CONCURRENCY = 8
_TIMEOUT_HELP = "Seconds to wait for one answer (per attempt; a timeout is retried like any transport error)."


@dataclass
class EndpointOptions:
    """How to reach a model: backend, server, limits, retries, cache and price."""

    backend: str | None = option(
        None,
        "--backend",
        panel=PANEL,
        show_default=False,
        help="local (embedded SmolLM2-135M, offline; the default without --api-base), openai (any OpenAI-compatible "
        "server: OpenAI, vLLM, llama.cpp, Ollama, TGI) or heuristic (a documented non-LLM scorer; label only).",
    )
    api_base: str | None = option(
        None,
        "--api-base",
        panel=PANEL,
        show_default=False,
        help="Base URL of an OpenAI-compatible server, with its version path, e.g. http://localhost:8080/v1. "
        "Implies --backend openai.",
    )
    model: list[str] | None = option(
        None,
        "--model",
        panel=PANEL,
        show_default=False,
        help="Model name on the server; for --backend local a .gguf file, model directory or Hub id (default: the "
        "embedded SmolLM2-135M-Instruct). Repeat where a tool accepts several.",
    )
    api_key_env: str = option(
        API_KEY_ENV,
        "--api-key-env",
        panel=PANEL,
        help="Name of the environment variable holding the API key (the key itself is never written anywhere).",
    )
    concurrency: int | None = option(
        None,
        "--concurrency",
        min=1,
        panel=PANEL,
        show_default=False,
        help="Requests in flight at once (default 8; llama.cpp's server answers one at a time unless started with "
        "--parallel).",
    )
    rpm: float | None = option(
        None,
        "--rpm",
        min=0.001,
        panel=PANEL,
        show_default=False,
        help="Client-side limit: requests per minute (server x-ratelimit-* headers are obeyed as well).",
    )
    tpm: float | None = option(
        None,
        "--tpm",
        min=1,
        panel=PANEL,
        show_default=False,
        help="Client-side limit: tokens per minute (prompt estimate + max_tokens, corrected by reported usage).",
    )
    request_timeout: float = option(
        REQUEST_TIMEOUT_S, "--request-timeout", "--timeout", min=0.1, panel=PANEL, help=_TIMEOUT_HELP
    )
    max_attempts: int = option(
        MAX_ATTEMPTS,
        "--max-attempts",
        min=1,
        panel=PANEL,
        help="Tries per request (429, 5xx, timeouts, dropped connections, malformed or unparseable answers); then "
        "the record is written as failed with the reason.",
    )
    cache: str | None = option(
        None,
        "--cache",
        panel=PANEL,
        show_default=False,
        help="Request cache (SQLite): PATH, or 'off'. Default: llm-cache.sqlite in the -o directory (or next to the "
        "-o file; ~/.cache/phitools/ for stdout). A re-run sends only unanswered requests.",
    )
    price_per_1k: str | None = option(
        None,
        "--price-per-1k",
        panel=PANEL,
        show_default=False,
        help="Price per 1000 tokens, 'P' or 'PROMPT,COMPLETION', to report the cost in the manifest and on stderr.",
    )

    def __post_init__(self) -> None:
        self.model = list(self.model or [])
        check(self)

    @property
    def kind(self) -> str:
        """The backend kind these options select."""
        return self.backend or ("openai" if self.api_base else "local")

    @property
    def models(self) -> list:
        """The --model values, or [None] for the backend's default."""
        return list(self.model or []) or [None]


@dataclass
class LLMOptions(EndpointOptions):
    """Endpoint options plus the sampling knobs label and synth expose."""

    temperature: float | None = option(
        None,
        "--temperature",
        min=0.0,
        panel=PANEL,
        show_default=False,
        help="Sampling temperature (the tool's default when not given).",
    )
    max_tokens: int | None = option(
        None,
        "--max-tokens",
        min=1,
        panel=PANEL,
        show_default=False,
        help="Maximum tokens per answer (the tool's default when not given).",
    )
    structured: str = option(
        "auto",
        "--structured",
        choices=STRUCTURED,
        panel=PANEL,
        help="Structured output: auto (json_schema, falling back to json_object+schema, then text), json_schema, "
        "json_object, or text (prompt + tolerant parser only).",
    )


@dataclass
class GenerationEndpointOptions(EndpointOptions):
    """Endpoint options for long completions (eval): a longer wait per answer."""

    request_timeout: float = option(
        GENERATION_REQUEST_TIMEOUT_S,
        "--request-timeout",
        min=0.1,
        panel=PANEL,
        help="Seconds to wait for one completion from --api-base (per attempt). Separate from --timeout, the "
        "sandbox's CPU limit per check: a loaded vLLM/TGI server can take minutes to queue and generate "
        "--max-tokens.",
    )


def concurrency_for(opts: EndpointOptions) -> int:
    """Requests in flight: --concurrency, or the default."""
    return opts.concurrency or DEFAULT_CONCURRENCY


def build_backend(opts: EndpointOptions, model: str | None = None, *, allowed: tuple[str, ...] = ("local", "openai")):
    """One backend for `model` (default: the first --model). Raises UsageError/ConfigError with a hint."""
    from phitools.llm.backends import make_backend

    return make_backend(
        opts.kind,
        api_base=opts.api_base,
        model=model if model is not None else opts.models[0],
        api_key_env=opts.api_key_env,
        concurrency=concurrency_for(opts),
        structured=getattr(opts, "structured", "auto"),
        allowed=allowed,
    )


def cache_for(opts: EndpointOptions, output: str | None):
    """The RequestCache these options and this output call for (None with --cache off)."""
    from phitools.llm.cache import RequestCache, default_cache_path

    if opts.cache is not None and opts.cache.lower() in ("off", "none", "no", "false", "0"):
        return None
    path = opts.cache if opts.cache else default_cache_path(output)
    return RequestCache(path) if path is not None else None


def build_runner(opts: EndpointOptions, backend, *, cache=None, seed: int | None = None):
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
    opts: EndpointOptions,
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


__all__ = [
    "EndpointOptions",
    "LLMOptions",
    "GenerationEndpointOptions",
    "build_backend",
    "build_runner",
    "cache_for",
    "open_runner",
    "llm_manifest",
    "usage_summary",
    "concurrency_for",
]
