"""Build a backend from plain arguments: 'openai' (any OpenAI-compatible URL), 'local' or 'heuristic'."""

from __future__ import annotations

import os

from phitools.errors import ConfigError, UsageError
from phitools.llm.client import Backend

BACKENDS = ("local", "openai", "heuristic")
OPENAI_URL = "https://api.openai.com/v1"


def make_backend(
    kind: str | None = None,
    *,
    api_base: str | None = None,
    model: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 8,
    structured: str = "auto",
    allowed: tuple[str, ...] = BACKENDS,
    batch_size: int = 8,
) -> Backend:
    """The backend for these settings. No kind: 'openai' when api_base is given, else 'local'.

    The key is read from the environment variable `api_key_env` here and only handed to the HTTP client.
    """
    kind = kind or ("openai" if api_base else "local")
    if kind not in BACKENDS:
        raise UsageError(f"--backend {kind!r} is not one of {', '.join(BACKENDS)}")
    if kind not in allowed:
        raise UsageError(f"--backend {kind} cannot be used here", hint=f"use one of: {', '.join(allowed)}")
    if kind != "openai" and api_base:
        raise UsageError(
            f"--api-base is for --backend openai, not {kind}", hint="drop --backend to use the server at --api-base"
        )
    if kind == "openai":
        from phitools.llm.openai_compat import OpenAIBackend

        base = api_base or OPENAI_URL
        if not base.startswith(("http://", "https://")):
            raise UsageError(f"--api-base {base!r} is not an http(s) URL", hint="e.g. http://localhost:8080/v1")
        key = os.environ.get(api_key_env) or None
        if key is None and base.startswith(OPENAI_URL):
            raise ConfigError(
                f"no API key: the environment variable {api_key_env} is not set",
                hint=f"export {api_key_env}=... or name another variable with --api-key-env",
            )
        if not model:
            raise UsageError(
                "--model is required with an OpenAI-compatible server",
                hint="the name the server knows, e.g. --model gpt-4o-mini, or the file name llama.cpp reports",
            )
        return OpenAIBackend(base, model, api_key=key, concurrency=concurrency, structured=structured)
    if kind == "local":
        from phitools.llm.local import LocalBackend

        return LocalBackend(model, batch_size=batch_size)
    from phitools.llm.heuristic import HeuristicBackend

    if model and model != "heuristic":
        raise UsageError("--backend heuristic takes no --model")
    return HeuristicBackend()
