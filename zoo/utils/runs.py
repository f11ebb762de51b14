"""Where a run's files go: the folder that holds its `checkpoints/`."""
from __future__ import annotations

import re
import time
from pathlib import Path

_STEP = re.compile(r"step=(\d+)")


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


def run_checkpoint(path: str | Path, config_name: str = "row_config.yaml") -> tuple[Path, Path]:
    """(run folder, checkpoint) of a training run named by its folder or by one of its checkpoints.

    A run folder holds `<config_name>` and `ckpt/*.ckpt`. Given the folder, the checkpoint is the
    one whose name carries the highest `step=N` (Lightning's `{step}` filename field; among equal
    steps the alphabetically first), else the newest `last*.ckpt`. Given a `.ckpt` file, the run
    folder is the parent of its `ckpt/` folder. Anything else is an error naming the path.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run folder or checkpoint")
    if path.is_file():
        if path.suffix != ".ckpt":
            raise ValueError(f"{path}: not a checkpoint (.ckpt) nor a run folder")
        if path.parent.name != "ckpt":
            raise ValueError(f"{path}: a run's checkpoint lies in <run>/ckpt/, this one in {path.parent}")
        run, checkpoint = path.parent.parent, path
    else:
        run, folder = path, path / "ckpt"
        files = sorted(folder.glob("*.ckpt")) if folder.is_dir() else []
        stepped = [(int(m.group(1)), f) for f in files if (m := _STEP.search(f.name))]
        lasts = sorted((f for f in files if f.name.startswith("last")), key=lambda f: f.stat().st_mtime)
        if stepped:
            best = max(step for step, _ in stepped)
            checkpoint = next(f for step, f in stepped if step == best)
        elif lasts:
            checkpoint = lasts[-1]
        else:
            raise FileNotFoundError(f"{path}: no checkpoint in {folder} (expected *step=N*.ckpt or last*.ckpt)")
    if not (run / config_name).is_file():
        raise FileNotFoundError(f"{path}: its run folder {run} has no {config_name}")
    return run, checkpoint
