"""The Trainer: one optimizer step = one global batch, split into per-device micro-batches.

    global batch B (sequences)  = world_size * micro_batch_size * grad_accum
    tokens per step             = B * seq_len

so `--batch-size` means the same thing on 1 CPU and on 64 GPUs. Gradients of the micro-batches are averaged
(each micro-batch loss is divided by grad_accum; DDP/FSDP average over ranks), which gives the gradient of the
mean loss over the global batch. The run directory layout, resume rules and metrics are in docs/train.md.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import torch
import torch.nn.functional as F

from phitools.errors import PhitoolsError, UsageError
from phitools.runtime import console
from phitools.runtime.files import atomic_write
from phitools.runtime.seeding import seed_everything
from phitools.train import checkpoint as ckpt
from phitools.train.config import TrainConfig, check_same_trajectory, require
from phitools.train.data import TokenData, heldout_ids, rank_slice
from phitools.train.optim import Schedule, build_optimizer
from phitools.train.parallel import Dist, init_distributed, is_fsdp, no_grad_sync, unwrap, wrap_model


class DivergedError(PhitoolsError):
    """The loss or gradient norm became NaN/inf; the optimizer step was not taken."""


# Dense (no sparsity) bf16 tensor-core peaks in FLOP/s from NVIDIA's datasheets, matched by device-name
# substring, first match wins. Other devices: pass --peak-tflops.
GPU_PEAK_BF16 = [
    ("H200", 989e12),
    ("H100 NVL", 835e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H800", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
]


def device_peak_flops(device: torch.device, dtype: torch.dtype, override_tflops: float | None) -> float | None:
    """The device's peak FLOP/s for MFU: --peak-tflops if given; known GPUs in bf16; otherwise None.

    A CPU has no meaningful single peak here (it depends on the ISA, the cores in use and clocks), so MFU is
    reported as null on CPU unless the user supplies --peak-tflops.
    """
    if override_tflops:
        return float(override_tflops) * 1e12
    if device.type != "cuda" or dtype != torch.bfloat16:
        return None
    name = torch.cuda.get_device_name(device)
    for key, peak in GPU_PEAK_BF16:
        if key in name:
            return peak
    return None


@dataclass
class StepResult:
    step: int
    loss: float
    grad_norm: float
    lr: float


class Trainer:
    """Builds data, model, optimizer and schedule from a TrainConfig, then `fit()` runs the loop."""

    def __init__(
        self, cfg: TrainConfig, *, dist: Dist | None = None, resume: bool = False, argv: list[str] | None = None
    ):
        self.cfg = cfg
        self.argv = list(argv if argv is not None else sys.argv)
        self.dist = dist or init_distributed(cfg.device)
        self.device = self.dist.device
        self.run = Path(cfg.output)
        self.main = self.dist.is_main
        d = self.dist
        if not self.main:
            console.set_quiet(True)  # one progress line per job, from rank 0

        # ---- precision -----------------------------------------------------------------------------
        if cfg.dtype == "auto":
            self.amp_dtype = (
                torch.bfloat16 if (self.device.type == "cuda" and torch.cuda.is_bf16_supported()) else torch.float32
            )
        else:
            self.amp_dtype = torch.bfloat16 if cfg.dtype == "bf16" else torch.float32
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        # ---- the previous state, when resuming --------------------------------------------------------
        self.resume_from = ckpt.latest(self.run) if resume else None

        # ---- data -------------------------------------------------------------------------------------
        seed_everything(cfg.seed)
        model, self.model_config, self.parent = self._build_model()
        self.seq_len = int(cfg.seq_len or self.model_config.max_seq_len)
        if self.seq_len > self.model_config.max_seq_len:
            raise UsageError(
                f"--seq-len {self.seq_len} exceeds the model's max_seq_len {self.model_config.max_seq_len}",
                hint="lower --seq-len or raise it with --model-override max_seq_len=N",
            )
        self.data = TokenData(cfg.data, seq_len=self.seq_len, seed=cfg.seed, eval_fraction=cfg.eval_fraction)
        if self.data.vocab_size > self.model_config.vocab_size:
            raise UsageError(
                f"the tokenizer has {self.data.vocab_size} ids but the model only {self.model_config.vocab_size}",
                hint="use a model with vocab_size >= the tokenizer's (--model-override vocab_size=N)",
            )

        # ---- batch arithmetic ------------------------------------------------------------------------
        B, W = cfg.batch_size, d.world_size
        if B % W:
            raise UsageError(
                f"--batch-size {B} is not divisible by the world size {W}",
                hint=f"use a multiple of {W} (it is the global batch in sequences)",
            )
        per_rank = B // W
        self.micro = int(cfg.micro_batch_size or per_rank)
        if per_rank % self.micro:
            raise UsageError(
                f"--batch-size {B} over {W} process(es) is {per_rank} sequences each, not divisible by "
                f"--micro-batch-size {self.micro}",
                hint="pick --micro-batch-size dividing batch_size / world_size",
            )
        self.grad_accum = per_rank // self.micro
        self.tokens_per_step = B * self.seq_len

        # ---- model, optimizer, schedule ---------------------------------------------------------------
        self.raw_model = model.to(self.device)
        seed_everything(cfg.seed + d.rank)  # per-rank streams (dropout); identical init above on every rank
        self.flops_per_token = self.raw_model.flops_per_token(self.seq_len)
        self.n_params = self.raw_model.num_params()
        if cfg.compile:
            self.raw_model.compile()  # in place: parameter names (checkpoints, optimizer state) stay unchanged
        self.model = wrap_model(self.raw_model, cfg.parallel, d)
        self.optimizer = build_optimizer(
            self.model, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas), eps=cfg.eps
        )
        warmup = cfg.warmup_steps if cfg.warmup_steps is not None else round(0.05 * cfg.max_steps)
        min_lr = cfg.min_lr if cfg.min_lr is not None else cfg.lr / 10
        self.schedule = Schedule(
            lr=cfg.lr, min_lr=min_lr, warmup_steps=warmup, max_steps=cfg.max_steps, kind=cfg.schedule
        )
        self.peak_flops = device_peak_flops(self.device, self.amp_dtype, cfg.peak_tflops)

        self.step = 0  # optimizer steps completed
        self.tokens = 0
        self.elapsed = 0.0  # training seconds (excluding eval and checkpoints) over the whole run
        if self.resume_from is not None:
            self._restore(self.resume_from)

    # ---- construction ----------------------------------------------------------------------------------
    def _build_model(self):
        from phitools.model.phi import Phi, preset_config

        cfg = self.cfg
        if self.resume_from is not None:
            model, config, _ = ckpt.load_model(self.resume_from)
            return model, config, ckpt.read_state(self.resume_from).get("parent")
        if cfg.init:
            model, config, meta = ckpt.load_model(cfg.init)
            parent = {"path": str(Path(cfg.init).resolve()), "meta": ckpt.summarize_meta(meta)}
            return model, config, parent
        overrides = dict(cfg.model)
        if "vocab_size" not in overrides:
            from phitools.shards.tokens import open_token_dir

            # sizes only here: TokenData opens the directory next and checks every sha256
            overrides["vocab_size"] = open_token_dir(cfg.data, verify="size").vocab_size
        config = preset_config(cfg.preset, **overrides)
        return Phi(config), config, None

    def _restore(self, path: Path) -> None:
        """Optimizer, schedule position, data position and RNG from a training checkpoint (weights: _build_model)."""
        state = ckpt.load_state(path)
        self.data.check_same_as(state["data"])
        self.data.sampler.load_state_dict(state["sampler"])
        self.step, self.tokens, self.elapsed = (
            int(state["step"]),
            int(state["tokens"]),
            float(state.get("elapsed", 0.0)),
        )
        ckpt.load_optimizer(state["optimizer"], self.model, self.optimizer)
        ckpt.restore_rng(state, rank=self.dist.rank)

    # ---- one step --------------------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _to_device(self, arr: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(arr)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _loss(self, model, xy: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        x, y = xy[:, :-1], xy[:, 1:]  # (b, T), (b, T)
        with self._autocast():
            logits = model(x)  # (b, T, V) float32
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction=reduction)

    def train_step(self) -> StepResult:
        """One optimizer step over one global batch; raises DivergedError (model untouched) on NaN/inf."""
        cfg, d = self.cfg, self.dist
        lr = self.schedule.apply(self.optimizer, self.step)
        ids = self.data.sampler.take(cfg.batch_size)[rank_slice(cfg.batch_size, d.rank, d.world_size)]
        loss_sum = torch.zeros((), device=self.device)
        self.model.train()
        for i in range(self.grad_accum):
            xy = self._to_device(self.data.train.get(ids[i * self.micro : (i + 1) * self.micro]))  # (m, T+1)
            with no_grad_sync(self.model, cfg.parallel, sync=(i == self.grad_accum - 1)):
                loss = self._loss(self.model, xy)
                (loss / self.grad_accum).backward()
            loss_sum += loss.detach()
        norm = torch.nn.utils.clip_grad_norm_(
            self.model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        )
        if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
            norm = norm.full_tensor()
        stats = torch.stack([loss_sum / self.grad_accum, norm.to(loss_sum.dtype)])
        d.all_reduce_sum(stats[:1])
        loss_v, norm_v = (stats[0] / d.world_size).item(), stats[1].item()  # the one host sync per step
        if not (math.isfinite(loss_v) and math.isfinite(norm_v)):
            self.optimizer.zero_grad(set_to_none=True)
            what = "loss" if not math.isfinite(loss_v) else "gradient norm"
            raise DivergedError(
                f"{what} is {loss_v if what == 'loss' else norm_v} at step {self.step + 1}: stopped before the "
                "optimizer step, the weights were not updated"
                + (f"; the last checkpoint is {ckpt.latest(self.run)}" if ckpt.latest(self.run) else ""),
                hint="lower --lr, raise --warmup-steps or --grad-clip, or check the --init checkpoint for NaN weights",
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens += self.tokens_per_step
        return StepResult(self.step, loss_v, norm_v, lr)

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean per-token loss over the fixed held-out windows (None when there are none)."""
        cfg, d = self.cfg, self.dist
        n = len(heldout_ids(len(self.data.heldout), cfg.eval_batches * cfg.batch_size))
        per = n // d.world_size  # every rank runs the same number of forwards (FSDP needs that)
        if per == 0:
            return None
        ids = np.arange(d.rank * per, (d.rank + 1) * per)
        model = self.model if is_fsdp(self.model) else unwrap(self.model)
        model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        for i in range(0, per, self.micro):
            xy = self._to_device(self.data.heldout.get(ids[i : i + self.micro]))
            total[0] += self._loss(model, xy, reduction="sum").double()
            total[1] += xy[:, 1:].numel()
        model.train()
        d.all_reduce_sum(total)
        return (total[0] / total[1]).item()

    # ---- checkpoints -----------------------------------------------------------------------------------
    def state_json(self) -> dict:
        return {
            "step": self.step,
            "tokens": self.tokens,
            "elapsed": self.elapsed,
            "sampler": self.data.sampler.state_dict(),
            "schedule": self.schedule.to_dict(),
            "train_config": self.cfg.to_dict(),
            "data": self.data.describe(),
            "parent": self.parent,
            "world_size": self.dist.world_size,
            "grad_accum": self.grad_accum,
            "micro_batch_size": self.micro,
        }

    def provenance(self) -> dict:
        """What made these weights: parent checkpoint, data (shards + tokenizer hash), steps, tokens."""
        return {
            "operation": "train",
            "params": self.cfg.to_dict(),
            "parent": self.parent,
            "data": self.data.describe(),
            "steps": self.step,
            "tokens_seen": self.tokens,
            "run": str(self.run.resolve()),
        }

    def save(self) -> Path:
        """Write RUN/checkpoints/step-NNNNNN (all ranks take part; rank 0 writes) and point RUN/latest at it."""
        path = ckpt.step_dir(self.run, self.step)
        ckpt.save(
            path,
            self.model,
            self.model_config,
            self.optimizer,
            self.state_json(),
            self.provenance(),
            dist=self.dist,
            tokenizer=self.data.dir.tokenizer_path,
        )
        if self.main:
            ckpt.point_latest(self.run, path)
            ckpt.prune(self.run, keep=self.cfg.keep_checkpoints)
        self.dist.barrier()
        return path

    # ---- the loop --------------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to max_steps with periodic eval, logging and checkpoints; returns a summary."""
        cfg = self.cfg
        if self.step >= cfg.max_steps:
            console.info(
                f"train: {self.run} is already at step {self.step} >= --max-steps {cfg.max_steps}; nothing to do"
            )
            return self.summary(None)
        metrics = MetricsLog(self.run / "metrics.jsonl", after_step=self.step) if self.main else None
        if self.main:
            console.info(
                f"train: {self.n_params / 1e6:.2f}M params, {self.flops_per_token / 1e6:.1f} MFLOP/token, "
                f"batch {cfg.batch_size} x {self.seq_len} tokens = {self.world_desc()}, device {self.device}, "
                f"{str(self.amp_dtype).replace('torch.', '')}"
                + (f", resuming at step {self.step}" if self.step else "")
            )
        eval_loss = None
        if self.step == 0 and cfg.eval_every:
            # the starting point: random init, or what an --init (e.g. grown) model already knows
            eval_loss = self.evaluate()
            if eval_loss is not None and metrics:
                metrics.write({"type": "eval", "step": 0, "eval_loss": eval_loss, "tokens": 0})
        window_s, window_tokens = 0.0, 0  # training time and tokens since the last logged step
        try:
            with console.progress("train", total=cfg.max_steps, unit="steps", initial=self.step) as bar:
                while self.step < cfg.max_steps:
                    t0 = time.perf_counter()
                    try:
                        res = self.train_step()
                    except DivergedError as e:
                        if metrics:
                            metrics.write({"type": "error", "step": self.step + 1, "error": e.message})
                        raise
                    dt = time.perf_counter() - t0
                    self.elapsed += dt
                    window_s += dt
                    window_tokens += self.tokens_per_step
                    bar.advance()
                    last = self.step == cfg.max_steps
                    if self.step % cfg.log_every == 0 or last:
                        self._log(metrics, bar, res, window_tokens / window_s if window_s > 0 else None, eval_loss)
                        window_s, window_tokens = 0.0, 0
                    if (cfg.eval_every and self.step % cfg.eval_every == 0) or last:
                        eval_loss = self.evaluate()
                        if eval_loss is not None and metrics:
                            metrics.write(
                                {"type": "eval", "step": self.step, "eval_loss": eval_loss, "tokens": self.tokens}
                            )
                        if eval_loss is not None and self.main:
                            console.info(f"step {self.step}: eval loss {eval_loss:.4f}")
                    if (cfg.save_every and self.step % cfg.save_every == 0) or last:
                        self.save()
        finally:
            if metrics:
                metrics.close()
        if self.main:
            ckpt.publish_final(self.run, ckpt.step_dir(self.run, self.step))
        self.dist.barrier()
        return self.summary(eval_loss)

    def _log(self, metrics, bar, res: StepResult, tps: float | None, eval_loss: float | None) -> None:
        mfu = (
            (self.flops_per_token * tps / (self.peak_flops * self.dist.world_size))
            if (tps and self.peak_flops)
            else None
        )
        if metrics:
            metrics.write(
                {
                    "type": "train",
                    "step": res.step,
                    "loss": res.loss,
                    "lr": res.lr,
                    "tokens": self.tokens,
                    "tokens_per_s": tps,
                    "grad_norm": res.grad_norm,
                    "mfu": mfu,
                    "elapsed_s": round(self.elapsed, 3),
                }
            )
        if not self.main:
            return
        bar.update(
            description=f"train loss {res.loss:.4f} lr {res.lr:.2e}"
            + (f" eval {eval_loss:.4f}" if eval_loss is not None else "")
            + (f" {tps:,.0f} tok/s" if tps else "")
            + (f" mfu {mfu:.1%}" if mfu is not None else "")
        )
        if not console.interactive() and os.environ.get("PHITOOLS_VERBOSE") == "1":
            console.info(
                f"step {res.step} loss {res.loss:.4f} lr {res.lr:.3e} grad_norm {res.grad_norm:.3f} "
                f"tok/s {tps or 0:,.0f}"
            )

    def world_desc(self) -> str:
        return f"{self.dist.world_size} process(es) x {self.micro} x {self.grad_accum} accumulation"

    def summary(self, eval_loss: float | None) -> dict:
        return {
            "step": self.step,
            "tokens": self.tokens,
            "eval_loss": eval_loss,
            "elapsed_s": round(self.elapsed, 3),
            "params": self.n_params,
            "world_size": self.dist.world_size,
            "grad_accum": self.grad_accum,
            "micro_batch_size": self.micro,
            "seq_len": self.seq_len,
            "dtype": str(self.amp_dtype).replace("torch.", ""),
            "device": str(self.device),
            "final": str(ckpt.step_dir(self.run, self.step)),
        }


class MetricsLog:
    """RUN/metrics.jsonl, one JSON object per line, flushed per line; a resumed run first drops lines past its step."""

    def __init__(self, path: Path, *, after_step: int):
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            kept = []
            for line in path.read_bytes().splitlines():
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:  # a line cut by a crash
                    continue
                if int(rec.get("step", 0)) <= after_step and rec.get("type") != "error":
                    kept.append(line)
            atomic_write(path, b"".join(line + b"\n" for line in kept))
        self._f = open(path, "ab", buffering=0)

    def write(self, rec: dict) -> None:
        self._f.write(orjson.dumps(rec, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")

    def close(self) -> None:
        self._f.close()


def read_metrics(path: str | os.PathLike, kind: str = "train") -> list[dict]:
    """The lines of a metrics.jsonl of one type ("train" or "eval")."""
    out = []
    for line in Path(path).read_bytes().splitlines():
        rec = orjson.loads(line)
        if rec.get("type") == kind:
            out.append(rec)
    return out


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    argv: list[str] | None = None,
    dist: Dist | None = None,
    sources: dict | None = None,
) -> dict:
    """What `phitools train` does: run (or with `resume`, continue) a training run end to end (run directory,
    manifest with its status, Trainer.fit()); returns the summary.

    Without `resume`, an output directory that already holds a run is a UsageError (nothing is overwritten);
    with it, `cfg` must continue the recorded run (the same TRAJECTORY_KEYS). `sources` (from
    `resolve_config`) records where the settings came from in the manifest.
    """
    from phitools.shards import write_manifest

    require(cfg)
    out = Path(cfg.output)
    last = ckpt.latest(out)
    if resume:
        recorded = ckpt.read_state(last).get("train_config") if last is not None else None
        if recorded:
            check_same_trajectory(cfg.to_dict(), recorded)
    elif last is not None or (out / "metrics.jsonl").exists():
        raise UsageError(
            f"{out} already holds a training run", hint="pass --resume to continue it, or choose a new -o directory"
        )
    argv = list(argv if argv is not None else sys.argv)
    trainer = Trainer(cfg, dist=dist, resume=resume, argv=argv)
    run, main = trainer.run, trainer.main
    started = time.time()

    def manifest(status: str, summary: dict | None = None, error: str | None = None) -> None:
        if not main:
            return
        extra = {
            "train": {
                "status": status,
                "config": cfg.to_dict(),
                "data": trainer.data.describe(),
                "parent": trainer.parent,
                "model": trainer.model_config.to_dict(),
                "params": trainer.n_params,
                "flops_per_token": trainer.flops_per_token,
                "world_size": trainer.dist.world_size,
                "micro_batch_size": trainer.micro,
                "grad_accum": trainer.grad_accum,
                "device": str(trainer.device),
                "dtype": str(trainer.amp_dtype).replace("torch.", ""),
                "peak_flops": trainer.peak_flops,
                "resumed_from": str(trainer.resume_from) if trainer.resume_from else None,
                "wall_s": round(time.time() - started, 3),
                **ckpt.describe_tree(run),
            }
        }
        if sources:
            extra["train"]["sources"] = sources
        if summary:
            extra["train"]["summary"] = summary
        if error:
            extra["train"]["error"] = error
        write_manifest(
            run / "manifest.json",
            tool="train",
            argv=argv,
            seed=cfg.seed,
            inputs=[cfg.data],
            stats={"steps": trainer.step, "tokens": trainer.tokens},
            outputs=[{"path": "."}],
            extra=extra,
        )

    try:
        if trainer.step >= cfg.max_steps:  # a finished run resumed again: leave its files as they are
            if main:
                console.info(
                    f"train: {run} is already at step {trainer.step} >= --max-steps {cfg.max_steps}; nothing to do"
                )
            return trainer.summary(None)
        if main:
            run.mkdir(parents=True, exist_ok=True)
            (run / "train_config.json").write_bytes(
                orjson.dumps(cfg.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
            )
            manifest("running")
        try:
            summary = trainer.fit()
        except BaseException as e:  # any failure (an OSError, a signal, ...) must not leave "running" behind
            status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            try:
                manifest(status, error=str(e) or type(e).__name__)
            except Exception:
                pass  # the disk that failed the run may fail this too; the original error matters more
            raise
        manifest("complete", summary)
        # every rank waits for the others (and rank 0's manifest) before the process group is torn down: a
        # rank that destroyed its gloo group while another was still writing aborted now and then under load
        trainer.dist.barrier()
        if main:
            ev = f", eval loss {summary['eval_loss']:.4f}" if summary.get("eval_loss") is not None else ""
            console.info(
                f"train: done at step {summary['step']} ({summary['tokens']:,} tokens{ev}); the final model is the "
                f"checkpoint {run}"
            )
        return summary
    finally:
        trainer.dist.close()
