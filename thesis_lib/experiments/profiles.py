"""Profiles: how big every experiment is (data, epochs, seeds, depth, device), and where results live."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from .. import project_root
from ..data import DATASET_SHAPES
from ..models import NARROW_BASELINE, WIDE_BASELINE, ResNetConfig
from ..training import TrainConfig

BASE_MODELS = {"wide": WIDE_BASELINE, "narrow": NARROW_BASELINE}
# Profile.cpu_threads: share the machine's cores between the notebooks that run at once.
PER_JOB = "per_job"


def notebook_jobs() -> int:
    """How many notebooks run at once: THESIS_JOBS, which `notebooks --jobs` sets for its kernels (1 when
    unset)."""
    jobs = os.environ.get("THESIS_JOBS", "1")
    return max(1, int(jobs)) if jobs.isdigit() else 1


PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Profile:
    """How big every experiment is: data, epochs, seeds, network depth, device (DESIGN.md section 5).

    Milestones scale with the epochs like the thesis's 93 and 150 of 180 epochs. `cpu_threads` fixes
    torch's intra-op threads for runs on the CPU (`threads`): a fixed count makes CPU results reproducible
    (reductions split over a different number of threads round differently). `smoke` pins 1 (its tests run
    two at a time); `quick` uses "per_job": the machine's cores shared by the notebooks that run at once
    (`notebooks --jobs`, THESIS_JOBS), or OMP_NUM_THREADS where it is set: on the 2-core machine two threads
    train the thesis nets faster than one (`benchmarks/cpu_threads.py`, its results in
    `benchmarks/results/cpu_threads_*.csv`). None leaves torch's default.

    The `cuda_*` fields are what a run gets when the profile resolves to a CUDA device; a run's own params
    override them (e.g. precision="bf16"). `full` trains as the thesis did, in fp32 without TF32 (section
    2.8 treats mixed precision as a method of its own, chapter 6.4); `full-fast` is `full` on the fast path
    (bf16 autocast, channels_last, TF32 for what stays fp32), with its own results folder, so that no
    number of one is ever read as the other's. On the CPU the fields are ignored: bf16 on a CPU is slower
    than fp32 and compiling small nets never pays. `cuda_compile` stays "off" until a GPU shows that
    compiling pays: with "static" the fixed-shape runs (baselines, MorphNet's phases) would compile and
    PruneTrain's and Net2Net's would not (`TrainConfig.compile`), so every time comparison between them
    would also measure the compiler; a run can still ask for it (`compile="static"`).

    `plans` names the profile whose chapter plans (grids, settings per chapter) this one uses; None: its
    own (`full-fast` uses `full`'s).
    """

    name: str
    dataset: str
    epochs: int
    milestones: tuple[int, ...]
    seeds: tuple[int, ...]
    batch_size: int
    lr: float
    blocks_per_stage: int
    padding: int
    flip: bool
    n_train: int | None = None
    n_test: int | None = None
    device: str = "auto"
    cpu_threads: int | str | None = None
    cuda_precision: str = "fp32"
    cuda_channels_last: bool = False
    cuda_compile: str = "off"
    cuda_tf32: bool = False
    plans: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not PROFILE_NAME.fullmatch(self.name):
            raise ValueError(
                f"profile name {self.name!r} must be letters, digits, '_', '-' or '.', not starting "
                "with '.': it names a folder under the results root and must stay inside it"
            )
        for key in ("n_train", "n_test"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"profile {self.name!r}: {key} must be >= 1 or None (the whole split), got {value!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.blocks_per_stage < 1:
            raise ValueError(f"profile {self.name!r}: epochs, batch_size and blocks_per_stage must be >= 1")
        if not self.seeds:
            raise ValueError(f"profile {self.name!r} needs at least one seed")
        threads = self.cpu_threads
        if not (threads is None or threads == PER_JOB or (type(threads) is int and threads >= 1)):
            raise ValueError(f"profile {self.name!r}: cpu_threads must be >= 1, {PER_JOB!r} or None, got {threads!r}")

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def threads(self) -> int | None:
        """The intra-op threads of this profile's runs on the CPU: `cpu_threads`, or for "per_job"
        OMP_NUM_THREADS where it is set, else the usable cores divided by the notebooks that run at once
        (THESIS_JOBS, 1 when unset), at least 1."""
        if self.cpu_threads != PER_JOB:
            return self.cpu_threads
        if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) >= 1:
            return int(os.environ["OMP_NUM_THREADS"])
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, cores // notebook_jobs())

    def apply_cpu_threads(self) -> None:
        """Set torch's intra-op threads to `threads()` when this profile runs on the CPU."""
        threads = self.threads()
        if self.resolved_device().type == "cpu" and threads is not None:
            torch.set_num_threads(threads)

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image of the profile's dataset, without loading it."""
        channels, size, _ = DATASET_SHAPES[self.dataset]
        return (channels, size, size)

    @property
    def num_classes(self) -> int:
        return DATASET_SHAPES[self.dataset][2]

    def resnet(self, base: ResNetConfig | str, in_channels: int, num_classes: int) -> ResNetConfig:
        """`base` (a config or "wide" / "narrow") with this profile's depth and the dataset's shapes."""
        if isinstance(base, str) and base not in BASE_MODELS:
            raise ValueError(f"unknown model {base!r}; use one of {sorted(BASE_MODELS)} or a ResNetConfig")
        config = BASE_MODELS[base] if isinstance(base, str) else base
        return config.with_(
            blocks=(self.blocks_per_stage,) * config.stages, in_channels=in_channels, num_classes=num_classes
        )

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The profile's TrainConfig, with any field overridden.

        The profile's `lr` is an SGD rate set for its `batch_size` (the reference batch of `lr_scaling`);
        with optimizer "lars" and no lr given, LARS's own recipe rate (`training.DEFAULT_LR`) is used. Other
        `epochs` without `milestones` get the profile's milestones scaled to them (`milestones_for`)."""
        known = {f.name for f in fields(TrainConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown training parameter(s) {unknown}; TrainConfig fields are {sorted(known)}")
        lr = None if overrides.get("optimizer", "sgd") != "sgd" else self.lr
        epochs = overrides.get("epochs", self.epochs)
        base = dict(
            epochs=epochs,
            batch_size=self.batch_size,
            lr=lr,
            lr_reference_batch=self.batch_size,
            schedule="step",
            milestones=self.milestones_for(epochs),
            padding=self.padding,
            flip=self.flip,
        )
        if self.resolved_device().type == "cuda":
            base.update(
                precision=self.cuda_precision,
                channels_last=self.cuda_channels_last,
                compile=self.cuda_compile,
                tf32=self.cuda_tf32,
            )
        return TrainConfig(**{**base, **overrides})

    def milestones_for(self, epochs: int) -> tuple[int, ...]:
        """The profile's lr milestones at the same fractions of a run of `epochs` (rounded), as the thesis's
        93 and 150 of 180 epochs: e.g. `quick`'s 5 and 8 of 10 become 10 and 16 of 20. A milestone that
        rounds to 0 or to `epochs` would never take effect and is left out."""
        if epochs == self.epochs:
            return self.milestones
        scaled = (round(milestone * epochs / self.epochs) for milestone in self.milestones)
        return tuple(milestone for milestone in scaled if 0 < milestone < epochs)

    @property
    def plan_name(self) -> str:
        """The profile whose chapter plans this one uses (`plans`, else its own name)."""
        return self.plans or self.name

    def to_dict(self) -> dict[str, Any]:
        """The profile's fields, JSON-ready."""
        data = asdict(self)
        data["milestones"], data["seeds"] = list(self.milestones), list(self.seeds)
        return data


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        dataset="digits",
        epochs=2,
        milestones=(1,),
        seeds=(0, 1),
        batch_size=64,
        lr=0.05,
        blocks_per_stage=1,
        padding=1,
        flip=False,
        n_train=256,
        n_test=128,
        device="cpu",
        cpu_threads=1,
    ),
    "quick": Profile(
        name="quick",
        dataset="digits",
        epochs=10,
        milestones=(5, 8),
        seeds=(0, 1, 2, 3, 4),
        batch_size=64,
        lr=0.05,
        blocks_per_stage=1,
        padding=1,
        flip=False,
        cpu_threads=PER_JOB,
    ),
    "full": Profile(
        name="full",
        dataset="cifar10",
        epochs=180,
        milestones=(93, 150),
        seeds=(0, 1, 2, 3, 4),
        batch_size=128,
        lr=0.1,
        blocks_per_stage=5,
        padding=4,
        flip=True,
    ),
}
PROFILES["full-fast"] = replace(
    PROFILES["full"], name="full-fast", plans="full", cuda_precision="bf16", cuda_channels_last=True, cuda_tf32=True
)


def get_profile(profile: str | Profile) -> Profile:
    if isinstance(profile, Profile):
        return profile
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {sorted(PROFILES)}")
    return PROFILES[profile]


def results_root() -> Path:
    """THESIS_RESULTS when set and not empty, else results/ in the project root."""
    return Path(os.environ.get("THESIS_RESULTS") or project_root() / "results")


def profile_root(profile: Profile) -> Path:
    """`<results root>/<profile name>`; a root or profile folder that is a file is an error, not "empty"."""
    root = results_root()
    for folder in (root, root / profile.name):
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"the results folder {folder} is a file; move it away or set THESIS_RESULTS to a folder")
    return root / profile.name
