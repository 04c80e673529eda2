"""One run on several processes: DistributedDataParallel (DDP) for the Trainer (DESIGN.md section 6).

Start a run with torchrun (`python -m thesis_lib run NAME --nproc N` launches it): every process ("rank")
calls `setup`, which joins the process group that torchrun describes in the environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT), with NCCL on CUDA (rank r on GPU cuda:LOCAL_RANK) and gloo on the CPU.
A Trainer made while the group is up trains data-parallel by itself:

- its model is wrapped in DDP (`wrap`), whose gradient all-reduce goes through `counting_allreduce_hook`:
  torch's own averaging all-reduce, plus the bytes of every gradient bucket and, on the CPU, the time
  the all-reduce was in flight (`CommStats`; the history's allreduce_bytes_per_step and
  allreduce_seconds_per_step);
- its loader gives every rank its contiguous share of each global batch (`data.DeviceLoader`);
- the epoch's metric sums are added up over the ranks once per epoch (`sum_across_ranks`), and rank 0's BN
  statistics are broadcast before the evaluation (`broadcast_buffers`), so every rank evaluates the same
  weights on the whole test set and all ranks hold the same record;
- a hook that replaces the model (PruneTrain, Net2Net) decides on every rank alike from the identical
  weights; `check_identical` verifies it before the new DDP wrapper is built, which would otherwise
  silently overwrite the other ranks' models with rank 0's;
- rank 0 writes the checkpoint, every rank waits at a `barrier` until it is on disk, every rank reads it on
  resume.

The module is core: it imports torch only, so `training` and the methods can use it.
"""

import hashlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def is_distributed() -> bool:
    """Whether this process belongs to an initialised process group (then Trainers train with DDP)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the process group; 0 without one."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes of the process group; 1 without one."""
    return dist.get_world_size() if is_distributed() else 1


def under_torchrun() -> bool:
    """Whether torchrun (or a launcher like it) started this process: WORLD_SIZE is in the environment."""
    return "WORLD_SIZE" in os.environ


def setup(device: str | torch.device = "auto", timeout: timedelta | None = None) -> torch.device:
    """Join the process group described by torchrun's environment variables; returns this rank's device.

    `device` is the device type the run trains on ("auto": CUDA when available): on CUDA the backend is
    NCCL and the rank uses, and makes current, GPU cuda:LOCAL_RANK; on the CPU it is gloo. `timeout`
    bounds every collective (torch's default when None: 30 minutes for gloo, 10 for NCCL).
    """
    missing = [name for name in TORCHRUN_ENV if name not in os.environ]
    if missing:
        raise RuntimeError(
            f"the environment lacks {missing}, which torchrun sets: start the processes with "
            "`python -m torch.distributed.run --nproc_per_node N ...` (or `thesis_lib run --nproc N`)"
        )
    if is_distributed():
        raise RuntimeError("the process group is initialised already; call setup() once per process")
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if str(device) == "auto" else device)
    if device.type == "cuda":
        local_rank, visible = int(os.environ["LOCAL_RANK"]), torch.cuda.device_count()
        if local_rank >= visible:
            raise RuntimeError(
                f"local rank {local_rank} has no GPU: {visible} are visible; start at most "
                f"{visible} processes per machine (--nproc)"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"DDP runs on CUDA (NCCL) or the CPU (gloo), not on {device.type!r}")
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo", **({"timeout": timeout} if timeout is not None else {})
    )
    return device


def teardown() -> None:
    """Leave the process group, if this process is in one."""
    if is_distributed():
        dist.destroy_process_group()


def torchrun_command(nproc: int, module_args: Sequence[str]) -> list[str]:
    """The command that runs `python -m thesis_lib <module_args>` on `nproc` local processes with torchrun
    (single machine: a free rendezvous port is chosen by `--standalone`)."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"--nproc must be a whole number >= 1 (processes, one per GPU on CUDA), got {nproc!r}")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "thesis_lib",
        *module_args,
    ]


def _reduction_device() -> torch.device:
    """Where a collective's tensors must live: the current GPU for NCCL, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_across_ranks(values: Sequence[torch.Tensor | float]) -> list[float]:
    """The sums over all ranks of scalar `values` (tensors or numbers), in one all-reduce of a float64 vector;
    the values themselves without a process group."""
    if not is_distributed():
        return [float(value) for value in values]
    device = _reduction_device()
    vector = torch.stack([torch.as_tensor(value, dtype=torch.float64).to(device) for value in values])
    dist.all_reduce(vector)
    return vector.tolist()


def mean_across_ranks(value: torch.Tensor | float) -> float:
    """The mean over all ranks of a scalar (PruneTrain's first loss: the loss of the whole global batch)."""
    return sum_across_ranks([value])[0] / world_size()


def barrier() -> None:
    """Wait until every rank arrives here; nothing without a process group."""
    if is_distributed():
        dist.barrier()


def share(value: Any) -> Any:
    """Rank 0's `value` on every rank (any picklable object); `value` itself without a process group."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


@torch.no_grad()
def broadcast_buffers(module: nn.Module) -> None:
    """Copy rank 0's buffers (BN running statistics) to every rank. DDP does this at the start of every
    forward; after an epoch's last step each rank's statistics have moved on its own shard, and this makes
    them equal again (before the evaluation, a checkpoint or a change of the model)."""
    if not is_distributed():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def _state_digests(module: nn.Module) -> tuple[str, str]:
    """sha256 of the state dict's names, shapes and dtypes (the architecture), and of all its bytes."""
    layout, values = hashlib.sha256(), hashlib.sha256()
    for name, tensor in module.state_dict().items():
        layout.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        flat = tensor.detach().reshape(-1).contiguous().view(torch.uint8)
        values.update(flat.cpu().numpy().tobytes())
    return layout.hexdigest(), values.hexdigest()


def check_identical(module: nn.Module, what: str) -> None:
    """Raise unless every rank's `module` has the same architecture and bit-identical parameters and
    buffers. `what` names the moment for the message (e.g. "the model installed at the end of epoch 4")."""
    if not is_distributed():
        return
    digests: list[Any] = [None] * world_size()
    dist.all_gather_object(digests, _state_digests(module))
    if all(digest == digests[0] for digest in digests):
        return
    layouts = {layout for layout, _ in digests}
    differing = [r for r, digest in enumerate(digests) if digest != digests[0]]
    kind = "architectures" if len(layouts) > 1 else "weights (the same architecture)"
    raise RuntimeError(
        f"the ranks disagree on {what}: ranks {differing} hold other {kind} than rank 0, and DDP would "
        "silently replace them by rank 0's. A hook decided from rank-local data or an unseeded random draw; "
        "make its decision depend only on the (identical) weights, the run's config and seeded generators"
    )


@dataclass
class CommStats:
    """What DDP's gradient all-reduce moved since the last `take` (filled by `counting_allreduce_hook`).

    `bytes` adds up the gradient buckets' sizes, `steps` counts the backward passes (a bucket marked last
    ends one). With `timed` (the CPU: gloo's all-reduce completes on its own threads, so the host clock
    sees it), `intervals` keeps (launch, completion) of every bucket's all-reduce: the time from this rank
    handing the bucket over until the sum is back, waiting for the slowest rank to reach that bucket
    included, i.e. what synchronising the gradients costs this rank, not the transfer alone (on a 2-core
    CPU a lone all-reduce of the same bytes took several times less: `benchmarks/scale_ddp.py`). On
    CUDA (NCCL) the work is queued on a stream and host clocks would time the queueing only, so it is not
    timed.
    """

    timed: bool
    bytes: int = 0
    steps: int = 0
    intervals: list[tuple[float, float]] = field(default_factory=list)

    def in_flight_seconds(self) -> float:
        """Seconds during which at least one all-reduce was in flight (the union of the intervals: buckets
        overlap with each other and with the backward pass)."""
        total, reach = 0.0, float("-inf")
        for start, end in sorted(self.intervals):
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total

    def take(self) -> dict[str, float]:
        """The history's columns for the steps since the last call, then start afresh: allreduce_bytes_per_step
        (the same on every rank) and, when timed, allreduce_seconds_per_step (the mean over the ranks; one
        all-reduce, so every rank must call it)."""
        steps = max(self.steps, 1)
        columns = {"allreduce_bytes_per_step": self.bytes / steps}
        if self.timed:
            columns["allreduce_seconds_per_step"] = mean_across_ranks(self.in_flight_seconds()) / steps
        self.bytes, self.steps, self.intervals = 0, 0, []
        return columns


def counting_allreduce_hook(stats: CommStats, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """A DDP communication hook: torch's averaging `allreduce_hook` (the same result as DDP without a hook),
    counting the bucket's bytes and, when `stats.timed`, timing the all-reduce into `stats`."""
    buffer = bucket.buffer()
    stats.bytes += buffer.numel() * buffer.element_size()
    stats.steps += int(bucket.is_last())
    started = time.perf_counter()
    future = allreduce_hook(None, bucket)
    if not stats.timed:
        return future

    def finished(done: torch.futures.Future[torch.Tensor]) -> torch.Tensor:
        stats.intervals.append((started, time.perf_counter()))
        return done.value()

    return future.then(finished)


def wrap(model: nn.Module, stats: CommStats) -> DistributedDataParallel:
    """`model` in DDP with `counting_allreduce_hook` feeding `stats`. Building it broadcasts rank 0's parameters
    and buffers; a new wrapper is needed whenever the model is replaced (DDP's buckets hold its parameters)."""
    device = next(model.parameters()).device
    ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    ddp.register_comm_hook(stats, counting_allreduce_hook)
    return ddp
