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

from typing import Annotated

import typer

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


from phitools.llm.options import (  # noqa: E402 - the library's options and factory, re-exported for the commands
    API_KEY_ENV,
    GENERATION_REQUEST_TIMEOUT_S,
    MAX_ATTEMPTS,
    REQUEST_TIMEOUT_S,
    LLMOptions,
    build_backend,
    build_runner,
    cache_for,
    concurrency_for,
    llm_manifest,
    open_runner,
    usage_summary,
)

STRUCTURED = "auto"

__all__ = [
    "API_KEY_ENV",
    "GENERATION_REQUEST_TIMEOUT_S",
    "MAX_ATTEMPTS",
    "REQUEST_TIMEOUT_S",
    "STRUCTURED",
    "LLMOptions",
    "build_backend",
    "build_runner",
    "cache_for",
    "concurrency_for",
    "llm_manifest",
    "open_runner",
    "usage_summary",
]
