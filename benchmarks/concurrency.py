"""Throughput of k independent small runs sharing one device at once, against one run at a time.

A thesis sweep is many small runs (the quick profile's digits nets, the full profile's ResNet-32 at
batch 128); one of them leaves a large GPU mostly idle, because each step is a chain of small kernels
that the host launches one by one. Running k processes at once overlaps their launches. For k = 1, 2, 4,
8 this starts k worker processes together, each training its own seeded net with thesis_lib's Trainer
on random data of the chosen shape, and reports the summed images per second of the timed epochs (the
first epoch, with start-up and cuDNN autotuning, is not timed) and the speed-up over k = 1. The Ray
executor's fractional `num_gpus` per run is 1 / (the k with the best throughput).

    PYTHONPATH=. python benchmarks/concurrency.py --device cuda --net cifar --processes 1 2 4 8 --out c.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from benchmark_args import benchmark_parser, save_results

from thesis_lib.data import random_dataset
from thesis_lib.models import WIDE_BASELINE
from thesis_lib.training import TrainConfig, Trainer, seeded_model

NETS = {  # net name: (image channels, image size, blocks per stage, batch size) of the profile it stands for
    "digits": (1, 8, 1, 64),
    "cifar": (3, 32, 5, 128),
}


def worker(net: str, device: str, n_train: int, epochs: int, seed: int, precision: str) -> dict[str, float]:
    """One run: train `epochs` + 1 epochs, return the images per second of all but the first."""
    channels, size, blocks, batch_size = NETS[net]
    data = random_dataset(n_train, 256, (channels, size, size), seed=seed, name=f"random_{net}")
    config = TrainConfig(
        epochs=epochs + 1,
        batch_size=batch_size,
        schedule="constant",
        precision=precision,
        channels_last=device == "cuda",
        padding=1 if size == 8 else 4,
        seed=seed,
    )
    model = seeded_model(WIDE_BASELINE.with_(blocks=(blocks,) * 3, in_channels=channels), seed)
    history = Trainer(model, data, config, device=device, progress=False, cpu_threads=1).fit()
    timed = history["epoch_time"].iloc[1:].sum()
    return {"images_per_s": epochs * n_train / timed, "epoch_s": float(history["epoch_time"].iloc[1:].median())}


def concurrent(k: int, args: argparse.Namespace) -> dict[str, float]:
    """Start k workers at once and sum their throughputs."""
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--net",
        args.net,
        "--device",
        args.device,
        "--n-train",
        str(args.n_train),
        "--epochs",
        str(args.epochs),
        "--precision",
        args.precision,
    ]
    start = time.perf_counter()
    processes = [
        subprocess.Popen(command + ["--seed", str(seed)], stdout=subprocess.PIPE, text=True) for seed in range(k)
    ]
    outputs = [process.communicate()[0] for process in processes]
    wall = time.perf_counter() - start
    failed = [seed for seed, process in enumerate(processes) if process.returncode != 0]
    if failed:
        raise SystemExit(f"worker(s) {failed} failed with k={k}; run one with --worker to see its error")
    results = [json.loads(output.strip().splitlines()[-1]) for output in outputs]
    return {
        "processes": k,
        "images_per_s": sum(r["images_per_s"] for r in results),
        "median_epoch_s": sorted(r["epoch_s"] for r in results)[k // 2],
        "wall_s": wall,
    }


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--net", choices=sorted(NETS), default="digits")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--n-train", type=int, default=2048, help="random images per epoch and run")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per run, after one untimed")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.net, args.device, args.n_train, args.epochs, args.seed, args.precision)))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch.cuda.is_available() is False")
    if min(args.processes) < 1 or args.n_train < 1 or args.epochs < 1:
        parser.error("--processes, --n-train and --epochs must be positive")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(
        f"{args.net} net, {args.n_train} images x {args.epochs} timed epochs per run, {args.precision}, "
        f"on {device_name}"
    )
    rows = []
    for k in args.processes:
        row = concurrent(k, args)
        row["speedup"] = row["images_per_s"] / rows[0]["images_per_s"] if rows else 1.0
        rows.append(row)
        print(
            f"k={k}: {row['images_per_s']:.0f} images/s in all ({row['speedup']:.2f}x k={args.processes[0]}), "
            f"median epoch {row['median_epoch_s']:.3f} s, wall {row['wall_s']:.1f} s",
            flush=True,
        )
    best = max(rows, key=lambda row: row["images_per_s"])
    print(f"best: {best['processes']} runs at once -> num_gpus = {1 / best['processes']:g} per run")
    save_results([{**row, "net": args.net, "precision": args.precision} for row in rows], "concurrency", args.device)
    if args.out:
        args.out.write_text(json.dumps({"device": device_name, "net": args.net, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
