"""The training system: configuration, optimisation recipe, epoch loop and evaluation, checkpoints, runs."""

from deit.engine.config import TrainConfig, config_from_args, load_yaml_settings, make_config
from deit.engine.loop import NonFiniteLossError, evaluate, train_one_epoch
from deit.engine.run import train

__all__ = [
    "NonFiniteLossError",
    "TrainConfig",
    "config_from_args",
    "evaluate",
    "load_yaml_settings",
    "make_config",
    "train",
    "train_one_epoch",
]
