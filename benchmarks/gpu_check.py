"""GPU facts no CPU can give, as one JSON file: the device, the OOM-driven largest batch of the wide ResNet-32
(fp32 and bf16), the fused group lasso against one norm per slice, and the epoch time of the `full`
profile's chapter-3 training on CIFAR-shaped data (fp32, bf16, and `full-fast`'s path: bf16, channels_last
and TF32 on CUDA).

Random CIFAR-shaped images stand in when CIFAR-10 is absent (the time of an epoch does not depend on the
pixel values). Part of `benchmarks/gpu_check.sh`; also runs on the CPU with small sizes, to check it:

    PYTHONPATH=. python3 benchmarks/gpu_check.py --out /tmp/gpu_check --device cpu --n-train 256 --epochs 1
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path

import torch
from benchmark_args import benchmark_parser

from thesis_lib.data import random_dataset
from thesis_lib.experiments import get_profile
from thesis_lib.methods.batchsize import max_batch_size, training_step_peak_bytes
from thesis_lib.methods.prunetrain import _edge_weights, group_lasso
from thesis_lib.models import WIDE_BASELINE, count_parameters
from thesis_lib.training import Trainer, seeded_model, timed


def device_facts(device: torch.device) -> dict[str, object]:
    facts: dict[str, object] = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device)}
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        facts.update(
            name=properties.name,
            memory_bytes=properties.total_memory,
            capability=f"{properties.major}.{properties.minor}",
            cudnn=torch.backends.cudnn.version(),
        )
    return facts


def largest_batches(device: torch.device, limit: int) -> dict[str, object]:
    """The OOM-driven search for the wide ResNet-32's largest fp32 training batch (CUDA only: elsewhere the
    memory model needs a budget), and the measured peak of one step at batch 256 in fp32 and bf16."""
    if device.type != "cuda":
        return {"note": "no CUDA: the OOM-driven search needs a GPU"}
    model = seeded_model(WIDE_BASELINE, 0).to(device)
    start = time.perf_counter()
    batch = max_batch_size(model, (3, 32, 32), device=device, limit=limit)
    return {
        "params": count_parameters(model),
        "max_batch_fp32": batch,
        "limit": limit,
        "search_seconds": time.perf_counter() - start,
        **{
            f"peak_bytes_at_256_{precision}": training_step_peak_bytes(
                model, (3, 32, 32), 256, device, precision=precision
            )
            for precision in ("fp32", "bf16")
        },
    }


def per_slice_group_lasso(model: torch.nn.Module) -> torch.Tensor:
    """Eq. 2.2 the direct way, two `vector_norm` kernels per conv: the reference the fused one replaced."""
    terms = []
    for edge, weight in _edge_weights(model):
        for dim, group in ((0, edge.out_group), (1, edge.in_group)):
            if group is not None:
                other = tuple(d for d in range(weight.ndim) if d != dim)
                terms.append(torch.linalg.vector_norm(weight, dim=other).sum())
    return torch.stack(terms).sum()


def group_lasso_timing(device: torch.device, repeats: int = 50) -> dict[str, float]:
    """Median ms of forward + backward of the wide ResNet-32's group lasso, fused vs per slice."""
    model = seeded_model(WIDE_BASELINE, 0).to(device)
    result = {}
    for name, function in (("fused_ms", group_lasso), ("per_slice_ms", per_slice_group_lasso)):
        samples = []
        for repeat in range(repeats + 3):
            seconds = timed(device, lambda function=function: function(model).backward())
            if repeat >= 3:
                samples.append(1e3 * seconds)
        result[name] = statistics.median(samples)
    return result


def chapter3_epochs(
    device: torch.device, n_train: int, epochs: int, batch_size: int, precision: str
) -> dict[str, object]:
    """Epochs of the `full` profile's chapter-3 training (wide ResNet-32, SGD, step schedule settings);
    precision "profile" is `full-fast`'s path, the others `full`'s settings at that precision."""
    profile = get_profile("full-fast" if precision == "profile" else "full")
    overrides = {} if precision == "profile" else {"precision": precision, "compile": "off"}
    config = profile.train_config(epochs=epochs, batch_size=batch_size, schedule="constant", **overrides)
    trainer = Trainer(
        seeded_model(WIDE_BASELINE, 0),
        random_dataset(n_train, 1000, (3, 32, 32), name="random_cifar"),
        config,
        device=device,
        progress=False,
    )
    history = trainer.fit()
    return {
        "batch_size": batch_size,
        "precision": config.precision,
        "compile": config.compile,
        "channels_last": config.channels_last,
        "n_train": n_train,
        "epoch_times": history["epoch_time"].tolist(),
        "train_loss": history["train_loss"].tolist(),
    }


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n-train", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-limit", type=int, default=16_384)
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "device": device_facts(device),
        "largest_batch": largest_batches(device, args.batch_limit),
        "group_lasso": group_lasso_timing(device),
    }
    print(json.dumps(report, indent=2), flush=True)
    runs = []
    for batch_size, precision in ((128, "fp32"), (128, "bf16"), (128, "profile"), (512, "profile")):
        runs.append(chapter3_epochs(device, args.n_train, args.epochs, batch_size, precision))
        (args.out / "gpu_check.json").write_text(json.dumps({**report, "chapter3_epochs": runs}, indent=2))
    print(json.dumps({**report, "chapter3_epochs": runs}, indent=2))


if __name__ == "__main__":
    main()
