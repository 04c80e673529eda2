"""DDP step time and gradient all-reduce volume of the wide ResNet against its size, dense and pruned.

The communication PruneTrain saves under DDP: every step all-reduces one fp32 gradient per parameter, so
a net pruned to a fraction of its channels moves about the square of that fraction of the bytes. For
the wide thesis ResNet, dense and pruned to 1/2 and 1/4 of the channels of every channel group
(`surgery.select_channels`, as a PruneTrain reconfiguration does), on N processes it measures, per step:

- allreduce_bytes: the gradient buckets' bytes (`distributed.counting_allreduce_hook`), against 4 x params;
- step_ms: one DDP step (forward, backward with the bucketed all-reduce, SGD), median over the repeats;
- no_sync_ms: the same step inside `DistributedDataParallel.no_sync()` (no communication);
- in_flight_ms (CPU only): how long an all-reduce was in flight during the step (the hook's timing);
- allreduce_ms: one blocking all-reduce of a buffer of the gradients' size, alone.

Times are the mean over the ranks of each rank's median; the three steps are interleaved, so that load on
a shared machine hits all of them alike. On the CPU the backend is gloo, on CUDA NCCL (one GPU per
process, so --nproc at most the number of GPUs).

Measured on the CPU (gloo, 2 ranks of 1 thread, torch 2.14.1) on a 2-core machine shared with other jobs
(load average 2.5-4.9 during the runs), so the times are noisy: the ranges of 4 runs (`--blocks 1`, the
quick profile's wide net) and 3 runs (`--blocks 5`, ResNet-32 depth); digits-shaped 1 x 8 x 8 inputs,
global batch 64 = 32 per rank, 30-50 repeats. Bytes are exact and the same in every run.

    blocks channels  params  allreduce_bytes  step_ms    no_sync_ms  allreduce_ms  in_flight_ms
         1     1.00   98234           392936  22.8-35.8  14.8-35.4   1.0-1.6        4.9-16.9
         1     0.50   24930            99720  14.6-23.3  10.9-20.4   0.62-0.94      4.8-8.2
         1     0.25    6422            25688  12.7-23.9  10.1-22.9   0.55-1.05      3.8-7.3
         5     1.00  487098          1948392  88.7-92.3  76.8-85.2   2.7-3.7        35-48
         5     0.50  122594           490376  54.7-90.2  54.4-69.6   1.0-1.9        10.5-21.4
         5     0.25   31062           124248  50.8-79.6  47.9-77.5   0.79-1.43      8.8-15

The all-reduced bytes are 4 per parameter and fall 3.9x with every halving of the channels (a conv's
weights scale with its input times output channels). The lone all-reduce falls less (1.9 MB: about 3 ms,
0.12 MB: about 1 ms): below half a megabyte gloo on one machine is latency-bound. The in-flight time is
4-15x the lone all-reduce, mostly one rank waiting for the other on an oversubscribed CPU. On this
machine the step is dominated by compute, and pruning shortens it through compute, not communication;
where the gradient exchange is a larger share (more ranks, slower links, GPUs whose compute is fast) the
saved bytes matter more. NCCL on GPUs has not been measured yet (no GPU was available).

    PYTHONPATH=. python benchmarks/scale_ddp.py --nproc 2 --device cpu
    PYTHONPATH=. python benchmarks/scale_ddp.py --nproc 2 --device cuda --input cifar --blocks 5 --batch-size 256

(``PYTHONPATH=.`` from the repository root; not needed once thesis_lib is installed.) Without torchrun the
script starts itself under torchrun with --nproc processes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
from collections.abc import Callable

import pandas as pd
import torch
import torch.distributed as dist
from benchmark_args import benchmark_parser, save_results
from torch import nn

from thesis_lib import distributed
from thesis_lib.models import WIDE_BASELINE, ResNet, count_parameters
from thesis_lib.surgery import narrowed
from thesis_lib.training import seeded_model, synchronize, timed

INPUTS = {"digits": (1, 8, 10), "cifar": (3, 32, 10)}  # channels, image size, classes


def timed_together(device: torch.device, work: Callable[[], object]) -> float:
    """Seconds of `work` (`training.timed`), started together on every rank (a barrier first)."""
    synchronize(device)
    dist.barrier()
    return timed(device, work)


def measure(model: ResNet, x: torch.Tensor, y: torch.Tensor, device: torch.device, repeats: int) -> dict[str, float]:
    """The columns of one net (see the module docstring)."""
    stats = distributed.CommStats(timed=device.type == "cpu")
    ddp = distributed.wrap(model, stats)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=5e-4)  # lr 0: fixed work
    buffer = torch.zeros(count_parameters(model), device=device)

    def step(sync: bool) -> None:
        with contextlib.nullcontext() if sync else ddp.no_sync():
            loss = nn.functional.cross_entropy(ddp(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        optimizer.step()

    for _ in range(3):  # warm-up: allocations, DDP's bucket rebuild after the first step
        step(True)
    stats.take()
    times: dict[str, list[float]] = {"step_ms": [], "no_sync_ms": [], "allreduce_ms": []}
    for _ in range(repeats):
        times["step_ms"].append(timed_together(device, lambda: step(True)))
        times["no_sync_ms"].append(timed_together(device, lambda: step(False)))
        times["allreduce_ms"].append(timed_together(device, lambda: dist.all_reduce(buffer)))
    comm = stats.take()
    medians = distributed.sum_across_ranks([statistics.median(values) for values in times.values()])
    row = {"params": count_parameters(model), "allreduce_bytes": int(comm["allreduce_bytes_per_step"])}
    row.update({name: 1e3 * total / distributed.world_size() for name, total in zip(times, medians)})
    if "allreduce_seconds_per_step" in comm:
        row["in_flight_ms"] = 1e3 * comm["allreduce_seconds_per_step"]
    return row


def parse_arguments() -> argparse.Namespace:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--nproc", type=int, default=2, help="processes when started without torchrun")
    parser.add_argument("--input", choices=sorted(INPUTS), default="digits", help="digits 1x8x8 or CIFAR 3x32x32")
    parser.add_argument("--blocks", type=int, default=1, help="blocks per stage (1: quick profile, 5: ResNet-32)")
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch, shared out over the ranks")
    parser.add_argument(
        "--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25], help="fractions of every group's channels kept"
    )
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per rank on the CPU")
    return parser.parse_args()


def main() -> int:
    args = parse_arguments()
    if not distributed.under_torchrun():
        forwarded = [
            f"--{name.replace('_', '-')}={value}"
            for name, value in vars(args).items()
            if name not in ("nproc", "fractions") and value is not None
        ]
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={args.nproc}",
            os.path.abspath(__file__),
            *forwarded,
            "--fractions",
            *map(str, args.fractions),
        ]
        return subprocess.run(command).returncode
    device = distributed.setup(args.device)
    try:
        torch.set_num_threads(args.threads)
        world = distributed.world_size()
        if args.batch_size % world:
            raise SystemExit(f"--batch-size {args.batch_size} must divide by the {world} processes")
        channels, size, classes = INPUTS[args.input]
        config = WIDE_BASELINE.with_(
            blocks=(args.blocks,) * WIDE_BASELINE.stages, in_channels=channels, num_classes=classes
        )
        generator = torch.Generator().manual_seed(distributed.rank())  # each rank its own shard
        x = torch.randn(args.batch_size // world, channels, size, size, generator=generator).to(device)
        y = torch.randint(0, classes, (args.batch_size // world,), generator=generator).to(device)
        dense = seeded_model(config, 0)
        rows = []
        for fraction in args.fractions:
            rows.append(
                {"channels": fraction, **measure(narrowed(dense, fraction).to(device), x, y, device, args.repeats)}
            )
        if distributed.rank() == 0:
            backend = dist.get_backend()
            print(
                f"torch {torch.__version__}, {backend} on {world} x {device.type}, {args.threads} thread(s) per "
                f"rank, wide ResNet with {args.blocks} block(s) per stage on {channels}x{size}x{size} inputs, "
                f"global batch {args.batch_size} ({args.batch_size // world} per rank), {args.repeats} repeats, "
                f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
            )
            table = pd.DataFrame(rows)
            table["bytes_per_param"] = table["allreduce_bytes"] / table["params"]
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
            save_results(
                table.assign(world_size=world, blocks=args.blocks).to_dict("records"), "scale_ddp", args.device
            )
    finally:
        distributed.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
