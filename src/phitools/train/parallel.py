"""One process or many: torchrun environment, device choice, DDP / FSDP2 wrapping, and small collectives.

Under `torchrun` (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT in the environment) a process group is
created: nccl on CUDA, gloo on CPU. Without it everything below degrades to single-process no-ops, so the
trainer has one code path.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
from torch import nn

from phitools.errors import UsageError

PARALLEL_MODES = ("ddp", "fsdp")


@dataclass
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over all ranks (in place; returned for chaining)."""
        if self.distributed:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t

    def all_gather_objects(self, obj) -> list:
        """Every rank's `obj`, in rank order (small JSON-able things only)."""
        if not self.distributed:
            return [obj]
        out: list = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj):
        """Rank 0's `obj` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
            self.backend = None


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """`auto` -> this rank's CUDA device when there is one, else CPU; `cuda` without a GPU is a usage error."""
    pref = (pref or "auto").lower()
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(
                "--device cuda but torch sees no CUDA device",
                hint="install the CUDA build of torch (pip install torch from the CUDA index) or use --device cpu",
            )
        return torch.device(pref if ":" in pref else f"cuda:{local_rank}")
    if pref == "cpu":
        return torch.device("cpu")
    if pref == "mps":
        return torch.device("mps")
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {pref!r}")


def init_distributed(device_pref: str = "auto") -> Dist:
    """Read the torchrun environment and join the process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world <= 1:
        return Dist(rank=0, world_size=1, local_rank=0, device=device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not torch.distributed.is_initialized():
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
    return Dist(rank=rank, world_size=world, local_rank=local_rank, device=device, backend=backend)


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated transformer blocks: the children of the model's largest nn.ModuleList."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        return []
    return list(max(lists, key=len))


def wrap_model(model: nn.Module, mode: str, dist: Dist) -> nn.Module:
    """DDP or FSDP2 (`fully_shard` per block, then the root) when distributed; the model itself otherwise."""
    if mode not in PARALLEL_MODES:
        raise UsageError(f"--parallel must be one of {', '.join(PARALLEL_MODES)}, got {mode!r}")
    if not dist.distributed:
        return model
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [dist.device.index] if dist.device.type == "cuda" else None
        return DDP(model, device_ids=ids)
    import warnings

    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # Phi returns logits that are a view (reshaped matmul output); the trainer never modifies them in place
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    mp = None
    if dist.device.type == "cuda":
        # parameters stay fp32 (sharded); compute in bf16, reduce gradients in fp32
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    kwargs = {"mp_policy": mp} if mp is not None else {}
    for block in _blocks(model):
        fully_shard(block, **kwargs)
    fully_shard(model, **kwargs)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The module under DDP / torch.compile wrappers (FSDP2 modifies the module in place)."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def no_grad_sync(model: nn.Module, mode: str, sync: bool):
    """A context in which backward does (sync=True) or does not all-reduce gradients: for accumulation."""
    if sync:
        return contextlib.nullcontext()
    if hasattr(model, "no_sync"):  # DDP
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2

        @contextlib.contextmanager
        def _fsdp_no_sync():
            model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)

        return _fsdp_no_sync()
    return contextlib.nullcontext()


def full_state_dict(model: nn.Module, dist: Dist) -> dict[str, torch.Tensor]:
    """The full (unsharded) model state dict on CPU; with FSDP every rank must call it, rank 0 uses it."""
    if dist.distributed and _is_fsdp(model):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().to("cpu") for k, v in unwrap(model).state_dict().items()}


def _is_fsdp(model: nn.Module) -> bool:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover
        return False
    return isinstance(unwrap(model), FSDPModule)


def is_fsdp(model: nn.Module) -> bool:
    """True when the model was sharded with fully_shard."""
    return _is_fsdp(model)
