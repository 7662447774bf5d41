"""A transparent, deterministic, non-LLM educational-value scorer (`--backend heuristic`).

It is not a language model and does not pretend to be one: every record it scores says
`label.model = "heuristic"` and `label.heuristic = true`. It exists so that the offline quickstart and
the classifier tests have labels that carry *some* learnable signal about code quality, which the
embedded 135M model's labels do not.

Score (0-5) = round of a weighted sum of simple, documented features, each in [0, 1]:

  code (when the text parses as Python, or looks like code):
    0.20  syntax: parses as Python
    0.20  documentation: share of functions/classes with a docstring (module docstring counts half)
    0.15  comments: comment lines per code line, saturating at 1 in 5
    0.15  names: share of identifiers that are words (length >= 3, not x1/tmp-style), i/j/k/n/x/y allowed
    0.15  size: a teachable length (10-300 lines); tiny snippets and huge files score lower
    0.10  examples: doctests ('>>>') or an `if __name__ == "__main__"` demo
    0.05  readability: share of lines <= 100 characters
  minus penalties for generated or obfuscated code (exec/eval of encoded data, long hex/base64 runs).

  prose (otherwise):
    0.30  sentences: share of lines that are sentence-like (end in . ? ! :)
    0.25  vocabulary: mean word length between 4 and 7 characters
    0.25  size: 150-3000 words
    0.20  structure: headings, lists or code blocks present

The features, not the numbers, are the point: they are what phi-1's annotators were asked to judge
(clear, self-contained, instructive, well documented), measured crudely.
"""

from __future__ import annotations

import ast
import io
import keyword
import re
import tokenize
from typing import Any

from phitools.llm.client import Backend, LLMRequest, RequestFailed

NAME = "heuristic"
_SHORT_OK = {"i", "j", "k", "n", "x", "y", "z", "_", "f", "e", "s", "t", "a", "b", "m", "p", "c"}
_WORDY = re.compile(r"^[a-z]{3,}|[A-Z][a-z]{2,}")
_OBFUSCATED = re.compile(
    r"(b64decode|exec\s*\(|eval\s*\(|marshal\.loads|\\x[0-9a-f]{2}(?:\\x[0-9a-f]{2}){8,}|[A-Za-z0-9+/]{120,}={0,2})"
)
_CODE_HINT = re.compile(
    r"^\s*(def |class |import |from \S+ import |for .+:|if .+:|return\b|#include|function |public |const |let |var )",
    re.M,
)


def _clip(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x


def _size_score(n: int, lo: int, hi: int) -> float:
    if n <= 0:
        return 0.0
    if n < lo:
        return n / lo
    if n > hi:
        return _clip(1.0 - (n - hi) / (4 * hi))
    return 1.0


def code_features(text: str) -> dict[str, float]:
    """The code features (each in [0, 1]) for `text`."""
    lines = text.splitlines() or [""]
    code_lines = [ln for ln in lines if ln.strip() and not ln.strip().startswith("#")]
    comment_lines = sum(1 for ln in lines if ln.strip().startswith("#"))
    try:
        tree = ast.parse(text)
        syntax = 1.0
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        tree = None
        syntax = 0.0
    doc = 0.0
    names: list[str] = []
    examples = 1.0 if ">>>" in text else 0.0
    if tree is not None:
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        with_doc = sum(1 for n in defs if ast.get_docstring(n))
        mod_doc = 0.5 if ast.get_docstring(tree) else 0.0
        doc = _clip((with_doc + mod_doc) / (len(defs) + 0.5)) if defs else mod_doc
        for n in ast.walk(tree):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.append(n.name)
            elif isinstance(n, ast.arg):
                names.append(n.arg)
            elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                names.append(n.id)
            elif (
                isinstance(n, ast.If)
                and isinstance(n.test, ast.Compare)
                and isinstance(n.test.left, ast.Name)
                and n.test.left.id == "__name__"
            ):
                examples = 1.0
    else:
        try:  # still count names in code that does not parse (other languages, fragments)
            for tok in tokenize.generate_tokens(io.StringIO(text).readline):
                if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
                    names.append(tok.string)
        except (tokenize.TokenError, IndentationError, SyntaxError):
            names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", text)
    good = sum(1 for nm in names if nm in _SHORT_OK or _WORDY.search(nm.strip("_")))
    return {
        "syntax": syntax,
        "documentation": doc,
        "comments": _clip(comment_lines / max(1, len(code_lines)) * 5),
        "names": good / len(names) if names else 0.0,
        "size": _size_score(len(code_lines), 10, 300),
        "examples": examples,
        "readability": sum(1 for ln in lines if len(ln) <= 100) / len(lines),
    }


CODE_WEIGHTS = {
    "syntax": 0.20,
    "documentation": 0.20,
    "comments": 0.15,
    "names": 0.15,
    "size": 0.15,
    "examples": 0.10,
    "readability": 0.05,
}
PROSE_WEIGHTS = {"sentences": 0.30, "vocabulary": 0.25, "size": 0.25, "structure": 0.20}


def prose_features(text: str) -> dict[str, float]:
    """The prose features (each in [0, 1]) for `text`."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    words = re.findall(r"[A-Za-z]+", text)
    mean_len = sum(map(len, words)) / len(words) if words else 0.0
    vocab = 1.0 if 4 <= mean_len <= 7 else _clip(1 - min(abs(mean_len - 4), abs(mean_len - 7)) / 3)
    structure = 1.0 if re.search(r"^\s*(#{1,6} |[-*] |\d+\. |```)", text, re.M) else 0.0
    return {
        "sentences": sum(1 for ln in lines if ln[-1] in ".?!:") / len(lines) if lines else 0.0,
        "vocabulary": vocab if words else 0.0,
        "size": _size_score(len(words), 150, 3000),
        "structure": structure,
    }


def looks_like_code(text: str) -> bool:
    """Python that parses with at least one statement, or many code-looking lines."""
    try:
        tree = ast.parse(text)
        if tree.body and not all(
            isinstance(s, ast.Expr) and isinstance(getattr(s, "value", None), ast.Name) for s in tree.body
        ):
            return True
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        pass
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return bool(lines) and len(_CODE_HINT.findall(text)) / len(lines) > 0.15


def score(text: str) -> tuple[int, str, dict[str, Any]]:
    """(score 0-5, one-line rationale, features) for a document."""
    if not text.strip():
        return 0, "heuristic: empty document", {"kind": "empty"}
    if looks_like_code(text):
        feats = code_features(text)
        weights = CODE_WEIGHTS
        kind = "code"
    else:
        feats = prose_features(text)
        weights = PROSE_WEIGHTS
        kind = "prose"
    total = sum(weights[k] * feats[k] for k in weights)
    penalty = 0.0
    if kind == "code" and _OBFUSCATED.search(text):
        penalty = 0.4
    s = int(round(5 * _clip(total - penalty)))
    top = sorted(weights, key=lambda k: weights[k] * feats[k], reverse=True)[:2]
    low = sorted(weights, key=lambda k: feats[k])[:2]
    why = f"heuristic ({kind}): strongest {', '.join(top)}; weakest {', '.join(low)}"
    if penalty:
        why += "; looks obfuscated or generated"
    return s, why, {"kind": kind, **{k: round(v, 3) for k, v in feats.items()}, "penalty": penalty}


class HeuristicBackend(Backend):
    """Marker backend: `phitools label` scores documents with `score()` directly; it answers no prompts."""

    kind = "heuristic"
    model = NAME
    uses_timeout = False

    def describe(self) -> dict:
        return {"kind": self.kind, "model": NAME, "note": "deterministic non-LLM scorer; see phitools.llm.heuristic"}

    async def send(self, req: LLMRequest, *, timeout: float, variant: int = 0):
        raise RequestFailed("the heuristic backend scores documents for `phitools label`; it does not answer prompts")
