"""Seconds per training step of the small profiles' nets on the CPU with 1, 2, ... intra-op threads.

Why `quick` shares the machine's cores between the notebooks that run at once (`Profile.threads`, "per_job")
instead of pinning one thread: for each of the narrow and wide thesis ResNets on 8x8 digits and on 14x14
Fashion-MNIST (chapter 8), a batch of 64 random images, SGD with momentum; the median over `--repeats`
timings of `--steps` steps after a warm-up. Run it on a quiet machine:

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/cpu_threads.py --threads 1 2

(``PYTHONPATH=.`` from the repository root; not needed once thesis_lib is installed.)
"""

from __future__ import annotations

import statistics
import time

import torch
from benchmark_args import benchmark_parser, save_results

from thesis_lib.experiments import get_profile
from thesis_lib.models import build_resnet

NETS = (("narrow", 8), ("wide", 8), ("narrow", 14), ("wide", 14))


def step_seconds(model: str, size: int, threads: int, steps: int, repeats: int) -> float:
    """Median seconds of one SGD step of the quick profile's `model` net on a batch of 64 `size` x `size`
    images, with `threads` intra-op threads."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build_resnet(get_profile("quick").resnet(model, 1, 10))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(64, 1, size, size), torch.randint(0, 10, (64,))

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(10):
        step()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        timings.append((time.perf_counter() - start) / steps)
    return statistics.median(timings)


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.device != "cpu":
        parser.error("this benchmark measures CPU threads; run it with --device cpu")
    rows = []
    for model, size in NETS:
        base = None
        for threads in args.threads:
            seconds = step_seconds(model, size, threads, args.steps, args.repeats)
            base = base or seconds
            rows.append(
                {
                    "net": model,
                    "image_size": size,
                    "threads": threads,
                    "step_ms": 1000 * seconds,
                    "speedup": base / seconds,
                }
            )
            print(
                f"{model} {size}x{size}, {threads} thread(s): {1000 * seconds:.2f} ms per step ({base / seconds:.2f}x)"
            )
    save_results(rows, "cpu_threads", args.device)


if __name__ == "__main__":
    main()
