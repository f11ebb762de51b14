"""Random number generator states in checkpoints, so that a resumed run draws what the
uninterrupted run would have drawn (dropout, diffusion noise and timesteps, random masks).

Lightning checkpoints weights, optimisers, loops and stateful data loaders, not the global RNGs.
`RNGState` stores the torch (CPU and every CUDA device), numpy and Python states of each process
(`states[rank]`) at save time and puts them back when training starts after a resume (after the
sanity check, which also draws from them and runs again on resume only).

Validation during `fit` leaves the global RNGs as it found them (their states are put back when it
ends): the training draws do not depend on how often, or whether, validation ran, and a checkpoint
saved in the middle of a validation (Ctrl-C, `InterruptCheckpoint`) holds the states the training
continues with.
"""
from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn


def capture() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain(state: dict) -> dict:
    """numpy / Python RNG states as lists and tuples of ints (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    version, internal, gauss_next = state["python"]
    out = {"torch": state["torch"], "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                              int(has_gauss), float(gauss)],
           "python": [int(version), list(internal), gauss_next]}
    if "cuda" in state:
        out["cuda"] = state["cuda"]
    return out


def _native(state: dict) -> dict:
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    version, internal, gauss_next = state["python"]
    out = {"torch": state["torch"], "numpy": (kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss),
           "python": (version, tuple(internal), gauss_next)}
    if "cuda" in state:
        out["cuda"] = state["cuda"]
    return out


class RNGState(pl.Callback):
    """Checkpoint and restore the global RNG states of every process (see the module doc)."""

    def __init__(self) -> None:
        self._pending: dict | None = None
        self._training: dict | None = None  # the training's states while a validation in `fit` runs
        self._after_step: dict | None = None  # the states after the last training step

    def state_dict(self) -> dict:
        return {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        # Taken here, not at `on_validation_start`: Lightning creates the validation iterator before
        # that hook, and a DataLoader without a generator draws its base seed from the global RNG.
        self._after_step = capture()

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self._training = self._after_step if self._after_step is not None else capture()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._training is not None:
            restore(self._training)
            self._training = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._training = None

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        mine = _plain(self._training if self._training is not None else capture())
        gathered = [mine] * trainer.world_size
        if trainer.world_size > 1:
            import torch.distributed as dist

            gathered = [None] * trainer.world_size
            dist.all_gather_object(gathered, mine)
        checkpoint["rng_states"] = gathered

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        states = checkpoint.get("rng_states")
        if states and len(states) == trainer.world_size:
            self._pending = _native(states[trainer.global_rank])

    def on_train_start(self, trainer, pl_module) -> None:
        if self._pending is not None:
            restore(self._pending)
            self._pending = None


__all__ = ["RNGState", "capture", "restore"]
