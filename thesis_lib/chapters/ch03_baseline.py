"""Chapter 3.1.4 (notebook 03_baseline): the wide and narrow thesis ResNets with and without the lr schedule.

The thesis reports 81.24 % (constant lr) against 91.89 % (step decay at epochs 93 and 150) for the wide
ResNet-32 on CIFAR-10 over 5 seeds, at about 19.6 s per epoch on an RTX 2080 Ti. The experiment
"baseline" is also the reference every later chapter compares against, through the run cache.
"""

from __future__ import annotations

from ..experiments import RunContext, RunOutput, experiment, summarize_training
from ..training import seeded_model


@experiment("baseline", version=2)  # 2: He-normal init
def baseline(context: RunContext) -> RunOutput:
    """Chapter 3.1.4: train the wide or narrow thesis ResNet with a constant or step lr schedule.

    params: model ("wide" | "narrow"), schedule ("step" | "constant"), seed, and optionally any TrainConfig
    field (e.g. lr, batch_size, precision, optimizer).
    """
    params = dict(context.params)
    base = params.pop("model", "wide")
    seed = int(params.pop("seed", 0))
    config = context.train_config(seed=seed, **params)
    model = seeded_model(context.resnet_config(base), seed)
    trainer = context.trainer(model, config)
    history = trainer.fit()
    return RunOutput(history=history, summary=summarize_training(history), model=trainer.model)
