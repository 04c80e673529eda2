"""An experiment of your own, cached in the run store and reachable from the command line.

    python -m thesis_lib --module examples/my_experiments.py list
    python -m thesis_lib --module examples/my_experiments.py run width_scaled --profile smoke --param width=0.5
    python -m thesis_lib runs width_scaled --profile smoke --module examples/my_experiments.py

(or `export THESIS_MODULES=examples/my_experiments.py` once). In Python, import this module and call
`thesis_lib.experiments.run("width_scaled", {"width": 0.5}, profile="smoke")`.

The params dataclass declares what a run may be asked for: its types and bounds are checked before
anything is written, its defaults are filled in before the run is hashed, so `{}` and `{"width": 1.0}` name
the same cached run. `RunContext` gives the profile's data, net and TrainConfig and a Trainer that
checkpoints into the run's folder, so a killed run resumes from its last epoch. Bump `version` when a change
makes old results mean something else: the old runs are then ignored, not mixed in.
"""

from __future__ import annotations

from dataclasses import dataclass

from thesis_lib.experiments import RunContext, RunOutput, experiment, param, seed_param, summarize_training
from thesis_lib.training import seeded_model


@dataclass
class WidthScaledParams:
    """width: the factor on every stage's width of the wide net (1.0: the wide net itself)."""

    width: float = param(1.0, above=0)
    seed: int = seed_param()


@experiment("width_scaled", version=1, params=WidthScaledParams, train_config=True)
def width_scaled(context: RunContext) -> RunOutput:
    """The wide thesis ResNet with every stage's width multiplied by `width` (at least one channel), trained
    with the profile's schedule. params: width, seed, and any TrainConfig field (e.g. lr, epochs)."""
    params = dict(context.params)
    width, seed = params.pop("width"), params.pop("seed")
    wide = context.resnet_config("wide")
    model = seeded_model(wide.with_(widths=tuple(max(1, round(w * width)) for w in wide.widths)), seed)
    trainer = context.trainer(model, context.train_config(seed=seed, **params))  # the rest: TrainConfig fields
    history = trainer.fit()
    return RunOutput(history=history, summary=summarize_training(history), model=trainer.model)
