"""Training: typed YAML configs, the two-phase loop, checkpoints, torchrun."""

from airnet_restore.train.config import TrainConfig, load_config
from airnet_restore.train.loop import Trainer
from airnet_restore.train.schedule import lr_at

__all__ = ["TrainConfig", "Trainer", "load_config", "lr_at"]
