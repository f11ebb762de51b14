"""Where a run's files go: the folder that holds its `checkpoints/`."""
from __future__ import annotations

import time
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


def machine_description() -> str:
    """The CPU, core count and torch settings a result was measured with (for results documents)."""
    import os
    import platform

    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            names = [ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} logical cores shared with other jobs, torch {torch.__version__} on CPU, "
            f"{torch.get_num_threads()} torch thread(s), Python {platform.python_version()}")


class Timer:
    """Wall and process-CPU seconds of a `with` block (`.wall`, `.cpu` after it; CPU time is less
    affected by other jobs' load); `elapsed()` is the wall seconds so far, inside the block."""

    def __enter__(self) -> Timer:
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
        self.wall = self.cpu = float("nan")
        return self

    def elapsed(self) -> float:
        return time.perf_counter() - self._wall0

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self._wall0, time.process_time() - self._cpu0
