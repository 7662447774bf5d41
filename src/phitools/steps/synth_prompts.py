"""Prompt templates for `synth` and the parsing of what comes back.

A template is plain text with {dimension} placeholders ({{ and }} for literal braces). It may start with
a `[system]` section, ended by a `[user]` line; otherwise the whole file is the user message. The
placeholder {constraints} becomes the list of drawn dimensions the template does not mention by name, so
a user can add dimensions to a spec without editing the template.

The built-in templates live in phitools/prompts/synth-<kind>.txt (print one with
`phitools synth --show-template KIND`). Each kind also has default dimensions (audiences and styles for
textbooks, ...) that are drawn when the template names them and the spec does not declare them.
"""

from __future__ import annotations

import ast
import hashlib
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from phitools.errors import ConfigError
from phitools.llm.parse import code_blocks
from phitools.steps.synth_spec import KINDS, Choice, Dimension

PLACEHOLDER_RE = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
CONSTRAINTS = "constraints"

# Default dimensions per kind: drawn only when the template names them and the spec does not declare them.
KIND_DEFAULTS: dict[str, dict[str, list[str]]] = {
    "textbook": {
        "audience": [
            "a high-school student in a first programming course",
            "a first-year computer science undergraduate",
            "an adult teaching themselves to program in the evenings",
            "a data analyst moving from spreadsheets to Python",
            "a professional programmer who knows another language",
            "a curious twelve-year-old",
        ],
        "style": [
            "a patient step-by-step tutorial",
            "a Socratic dialogue between a teacher and a student",
            "worked examples, each followed by a one-line exercise",
            "a concise reference with one example per idea",
            "a small project built up piece by piece",
            "a naive solution followed by a better one, with the reasons",
        ],
    },
    "exercise": {
        "difficulty": ["beginner", "easy", "intermediate", "challenging"],
        "requirement": [
            "the function must handle empty input",
            "the solution must not import anything",
            "the solution must run in linear time",
            "the function name must start with a verb",
            "the solution must use a dictionary",
            "the solution must use a loop, not recursion",
            "the solution must use recursion",
            "the function must raise ValueError on invalid input",
            "the function must not modify its arguments",
        ],
    },
    "story": {
        "noun": [
            "box",
            "river",
            "robot",
            "garden",
            "ladder",
            "kite",
            "train",
            "cookie",
            "map",
            "shell",
            "bell",
            "puzzle",
        ],
        "verb": ["count", "share", "climb", "sort", "find", "build", "wait", "jump", "fix", "trade", "stack", "listen"],
        "adjective": [
            "tiny",
            "shiny",
            "brave",
            "sleepy",
            "noisy",
            "careful",
            "round",
            "hungry",
            "bright",
            "gentle",
            "tall",
            "quick",
        ],
        "feature": [
            "include a dialogue",
            "have a surprising twist",
            "end with a lesson learned",
            "have a sad ending",
            "include a mistake that gets fixed",
            "include counting",
        ],
    },
}


@dataclass(frozen=True)
class Template:
    """A parsed prompt template."""

    id: str
    user: str
    system: str | None = None
    sha256: str = ""
    source: str = ""
    placeholders: tuple[str, ...] = field(default=())

    def describe(self) -> dict:
        return {"id": self.id, "sha256": self.sha256}


def parse_template(text: str, *, id: str, source: str = "") -> Template:
    """Split a template into system and user parts and list its placeholders."""
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    system: str | None = None
    body = text
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].strip() == "[system]":
        try:
            u = next(i for i in range(first + 1, len(lines)) if lines[i].strip() == "[user]")
        except StopIteration:
            raise ConfigError(
                f"{source or id}:{first + 1}: template has a [system] section but no [user] line",
                hint="put the user message after a line that reads [user]",
            ) from None
        system = "\n".join(lines[first + 1 : u]).strip()
        body = "\n".join(lines[u + 1 :])
    body = body.strip("\n")
    if not body.strip():
        raise ConfigError(f"{source or id}: template has no user message", hint="write the prompt text")
    names = [m.group(1) for m in PLACEHOLDER_RE.finditer((system or "") + "\n" + body) if m.group(1)]
    return Template(
        id=id, user=body, system=system or None, sha256=sha, source=source, placeholders=tuple(dict.fromkeys(names))
    )


def builtin_template(kind: str) -> Template:
    """The default template of a kind."""
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}", hint=f"one of {', '.join(KINDS)}")
    text = resources.files("phitools").joinpath("prompts", f"synth-{kind}.txt").read_text(encoding="utf-8")
    return parse_template(text, id=f"builtin:{kind}", source=f"phitools/prompts/synth-{kind}.txt")


def builtin_template_text(kind: str) -> str:
    """The raw text of a built-in template (for --show-template)."""
    builtin_template(kind)  # validates the kind
    return resources.files("phitools").joinpath("prompts", f"synth-{kind}.txt").read_text(encoding="utf-8")


def load_template(path: str) -> Template:
    """A user's template file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{p}: cannot read template: {e.strerror}", hint="check the --template path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: template is not valid UTF-8", hint="save it as UTF-8") from None
    return parse_template(text, id=f"file:{p.name}", source=str(p))


def default_dimensions(kind: str, template: Template, declared: Sequence[str]) -> list[Dimension]:
    """The kind's default dimensions the template names and the spec does not declare."""
    out = []
    for name, values in KIND_DEFAULTS.get(kind, {}).items():
        if name in template.placeholders and name not in declared:
            out.append(Dimension(name, choice=Choice(list(values), [1.0] * len(values)), source=f"default:{kind}"))
    return out


def check_template(template: Template, dimensions: Sequence[str]) -> None:
    """Every placeholder must be a dimension (or {constraints}); errors point at the template line."""
    known = set(dimensions) | {CONSTRAINTS}
    for name in template.placeholders:
        if name not in known:
            raw = (f"[system]\n{template.system}\n[user]\n" if template.system else "") + template.user
            line = _line_of(raw, "{" + name + "}", template)
            where = f"{template.source or template.id}:{line}" if line else (template.source or template.id)
            raise ConfigError(
                f"{where}: placeholder {{{name}}} is not a dimension (dimensions: {', '.join(dimensions) or 'none'})",
                hint=f"declare {name} in the --spec, or write {{{{{name}}}}} for literal braces",
            )


def _line_of(raw: str, needle: str, template: Template) -> int | None:
    src = template.source
    text = raw
    if src and Path(src).is_file():
        try:
            text = Path(src).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            pass
    for i, ln in enumerate(text.splitlines()):
        if needle in ln:
            return i + 1
    return None


def unused_dimensions(template: Template, draw: dict[str, str]) -> list[str]:
    """Drawn dimensions the template does not name: they go into {constraints}."""
    return [k for k in draw if k not in template.placeholders]


def _fill(text: str, values: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        g = m.group(0)
        if g == "{{":
            return "{"
        if g == "}}":
            return "}"
        return values[m.group(1)]

    return PLACEHOLDER_RE.sub(sub, text)


def constraints_text(names: Sequence[str], draw: dict[str, str], descriptions: dict[str, str] | None = None) -> str:
    """The {constraints} block: one line per drawn dimension the template does not mention."""
    if not names:
        return ""
    descriptions = descriptions or {}
    lines = [f"- {descriptions.get(n) or n.replace('_', ' ')}: {draw[n]}" for n in names]
    return "Additional requirements:\n" + "\n".join(lines)


def render(
    template: Template,
    draw: dict[str, str],
    *,
    system: str | None = None,
    descriptions: dict[str, str] | None = None,
) -> list[dict]:
    """Chat messages for one record: the template filled with the drawn values."""
    values = dict(draw)
    values[CONSTRAINTS] = constraints_text(unused_dimensions(template, draw), draw, descriptions)
    user = re.sub(r"\n{3,}", "\n\n", _fill(template.user, values)).strip()
    sys_text = system if system is not None else (_fill(template.system, values) if template.system else None)
    msgs = []
    if sys_text:
        msgs.append({"role": "system", "content": sys_text})
    msgs.append({"role": "user", "content": user})
    return msgs


# ---- parsing what comes back ----------------------------------------------------------------------------


class SynthParseError(ValueError):
    """A completion that cannot be used; the message is the short reason recorded in the manifest."""


@dataclass(frozen=True)
class Exercise:
    """A parsed exercise: `prompt` (imports, signature, docstring) and `solution` (the body and helpers)."""

    prompt: str
    solution: str
    entry_point: str

    @property
    def text(self) -> str:
        return self.prompt + self.solution


def _exercise_code(text: str) -> tuple[str, bool]:
    """(the code to parse, whether it came from a fenced block)."""
    blocks = code_blocks(text)
    pyish = [c for lang, c in blocks if lang in ("python", "py", "python3", "")]
    for group in ([c for c in pyish if "def " in c], [c for _, c in blocks if "def " in c], pyish):
        if group:
            return group[0], True
    return text, False


def _is_harness(node: ast.stmt) -> bool:
    """Top-level code after the function that only exercises it (prints, asserts, a __main__ block)."""
    if isinstance(node, (ast.Expr, ast.Assert)):
        return True
    if isinstance(node, ast.If):
        t = node.test
        return isinstance(t, ast.Compare) and isinstance(t.left, ast.Name) and t.left.id == "__name__"
    return False


def parse_exercise(text: str) -> Exercise:
    """Split a model's answer into signature + docstring and solution; the whole must parse as Python.

    Raises SynthParseError with the reason (no code, syntax error, no function with a docstring, empty body).
    """
    code, fenced = _exercise_code(text)
    code = code.replace("\r\n", "\n").expandtabs(4)
    if not code.strip():
        raise SynthParseError("empty completion")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escape sequences: still valid Python
            tree = ast.parse(code)
    except (SyntaxError, ValueError) as e:
        where = f" (line {e.lineno})" if isinstance(e, SyntaxError) else ""
        what = "solution" if fenced else "answer (no ```python block)"
        raise SynthParseError(f"{what} does not parse: {getattr(e, 'msg', str(e))}{where}") from None
    fn = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(node):
            fn = node
            break
    if fn is None:
        if not any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in tree.body):
            raise SynthParseError("no function definition")
        raise SynthParseError("no function with a docstring")
    doc = fn.body[0]
    rest = fn.body[1:]
    if not rest or all(
        isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)) for s in rest
    ):
        raise SynthParseError("function has no body after its docstring")
    assert doc.end_lineno is not None and fn.end_lineno is not None
    if rest[0].lineno <= doc.end_lineno:
        raise SynthParseError("code on the same line as the docstring")
    lines = code.split("\n")
    prompt = "\n".join(lines[: doc.end_lineno]).rstrip() + "\n"
    body = lines[doc.end_lineno : fn.end_lineno]
    after = [n for n in tree.body if n.lineno > fn.end_lineno and not _is_harness(n)]
    extra: list[str] = []
    for n in after:
        assert n.end_lineno is not None
        start = min([n.lineno] + [d.lineno for d in getattr(n, "decorator_list", [])])
        extra.append("\n".join(lines[start - 1 : n.end_lineno]))
    solution = "\n".join(body).rstrip() + "\n"
    if extra:
        solution += "\n\n" + "\n\n".join(extra).rstrip() + "\n"
    ex = Exercise(prompt=prompt, solution=solution, entry_point=fn.name)
    try:
        ast.parse(ex.text)
    except SyntaxError as e:  # pragma: no cover - splitting whole statements keeps it parseable
        raise SynthParseError(f"prompt + solution do not parse: {e.msg} (line {e.lineno})") from None
    return ex


def clean_prose(text: str) -> str:
    """Textbook and story completions: strip surrounding whitespace; empty is an error."""
    t = text.strip()
    if not t:
        raise SynthParseError("empty completion")
    return t


def doctest_examples(ex: Exercise) -> int:
    """How many doctest examples (>>> lines) the exercise's docstring holds."""
    return sum(1 for ln in ex.prompt.splitlines() if ln.strip().startswith(">>>"))
