"""Where a run's files go: the folder that holds its `checkpoints/`."""
from __future__ import annotations

from pathlib import Path


def run_dir(trainer) -> Path:
    """The run's own folder: beside its checkpoints when there are any (`<save_dir>/<project>/<id>`
    for W&B), else the logger's log_dir, else the trainer's default_root_dir."""
    ckpt = getattr(trainer, "checkpoint_callback", None)
    if ckpt is not None and getattr(ckpt, "dirpath", None):
        return Path(ckpt.dirpath).parent
    logger = trainer.logger
    if logger is not None and getattr(logger, "save_dir", None) and logger.name is not None:
        return Path(logger.save_dir) / str(logger.name) / str(logger.version)
    return Path(trainer.log_dir or trainer.default_root_dir)
