"""The shared LLM client: OpenAI-compatible HTTP, the embedded local model, and a heuristic stand-in.

    LLMRequest / LLMResult       one request, one result (client.py)
    LLMRunner                    ordered, bounded-concurrency runner with retries, rate limits, cache
    OpenAIBackend                any OpenAI-compatible server (openai_compat.py)
    LocalBackend                 SmolLM2-135M-Instruct in-process on CPU (local.py)
    HeuristicBackend             a transparent non-LLM scorer for offline labelling (heuristic.py)
    RateLimiter, RequestCache    ratelimit.py, cache.py
    make_backend                 build one from plain arguments (llm/options.py builds one from LLMOptions)

Heavy imports (torch, transformers) happen only when the local model is first used.
"""

from phitools.llm.backends import make_backend
from phitools.llm.cache import RequestCache, default_cache_path
from phitools.llm.client import (
    Answer,
    Backend,
    LLMRequest,
    LLMResult,
    LLMRunner,
    RequestFailed,
    TransientError,
    Usage,
    parse_price,
)
from phitools.llm.ratelimit import RateLimiter

__all__ = [
    "Answer",
    "Backend",
    "LLMRequest",
    "LLMResult",
    "LLMRunner",
    "RateLimiter",
    "RequestCache",
    "RequestFailed",
    "TransientError",
    "Usage",
    "default_cache_path",
    "make_backend",
    "parse_price",
]
