"""thesis_lib: the runnable companion to the thesis "Zeit-effizientes Training von Convolutional Neural Networks".

The core: models (thesis ResNet from a width spec), surgery (every shape change), data, training,
distributed (one run on several processes with DDP), files (the one atomic writer).
methods/: the thesis's algorithms (prunetrain, net2net, morphnet, batchsize), importing the core only.
experiments/ (profiles, run plans, the registry, the run cache, sweeps, progress); chapters/: one module per notebook (plans,
experiments, analysis, the runs its notebook sweeps); planning (the `plan` command: every run the notebooks
would train and its estimated time); stats, plots, cli.
"""

import os
from pathlib import Path

__version__ = "0.7.0"  # CHANGELOG.md


def project_root() -> Path:
    """The repository root (the folder holding the package), or THESIS_ROOT when set and not empty.

    Results (`results/`) and figures (`figures/`) live below it.
    """
    return Path(os.environ.get("THESIS_ROOT") or Path(__file__).resolve().parent.parent)
