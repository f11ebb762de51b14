"""Ctrl-C or SIGTERM during `fit` saves a newest `last.ckpt` before the run stops.

Lightning alone saves nothing on an interrupt, so `last.ckpt` is whatever the last periodic save
wrote (possibly many epochs old). `InterruptCheckpoint`:

- Ctrl-C (SIGINT): the first press asks to stop; the current training step finishes, `last.ckpt`
  is written beside the run's other checkpoints, then the run stops as Lightning does on Ctrl-C
  (KeyboardInterrupt, exit status 1). A second press aborts at once (nothing more is saved).
  Pressed during a validation of `fit`, the current validation batch finishes and `last.ckpt`
  is written then (not after the whole validation and the next training step): it holds the state
  after the last training step; the resumed run skips the rest of that validation and continues
  the training exactly (`RNGState` keeps validation out of the training's random draws). On N
  processes the ranks agree at the validation batches every rank has (their shares may differ by
  one batch), else at the end of the validation.
- SIGTERM (a scheduler's kill, `kill <pid>`): Lightning finishes the step and raises
  `SIGTERMException`; `last.ckpt` is written then.

Both save at a step boundary, so resuming from that file continues exactly where it stopped.
"""
from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


def last_checkpoint_path(trainer: pl.Trainer) -> Path | None:
    """`<checkpoint dir>/last.ckpt` of the run's ModelCheckpoint, None when checkpointing is off."""
    ckpt = trainer.checkpoint_callback
    if not isinstance(ckpt, ModelCheckpoint) or not ckpt.dirpath:
        return None
    return Path(ckpt.dirpath) / f"{ckpt.CHECKPOINT_NAME_LAST}{ckpt.FILE_EXTENSION}"


class InterruptCheckpoint(pl.Callback):
    """Save `last.ckpt` on Ctrl-C / SIGTERM (see the module doc)."""

    def __init__(self) -> None:
        self._requested = False
        self._saved = False
        self._previous_handler = None
        self.saved_path: Path | None = None
        self._val_batches_done = self._val_batches_shared = 0

    def _on_sigint(self, signum, frame) -> None:
        if self._requested:  # second Ctrl-C: abort now, the default way
            raise KeyboardInterrupt
        self._requested = True
        log.warning("Ctrl-C: finishing this training step, then saving last.ckpt (press Ctrl-C again to abort now)")

    def on_train_start(self, trainer, pl_module) -> None:
        # Installed here, after Lightning registers its own signal handlers (it puts back, at teardown,
        # whatever was installed before that).
        self._requested = self._saved = False
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _restore_handler(self) -> None:
        if self._previous_handler is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_handler)
        self._previous_handler = None

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore_handler()

    def save(self, trainer: pl.Trainer, why: str) -> Path | None:
        path = last_checkpoint_path(trainer)
        if path is None:
            log.warning("%s: checkpointing is off for this run, so nothing was saved", why)
            return None
        trainer.save_checkpoint(path)
        trainer.checkpoint_callback.last_model_path = str(path)
        self._saved, self.saved_path = True, path
        log.warning("%s: saved %s at epoch %d, global step %d; resume with --ckpt_path=%s",
                    why, path, trainer.current_epoch, trainer.global_step, path)
        return path

    def _stop_if_requested(self, trainer: pl.Trainer, why: str) -> None:
        # a collective on N processes: every rank calls it at the same point
        if trainer.strategy.reduce_boolean_decision(self._requested, all=False):
            self.save(trainer, why)
            self._restore_handler()
            raise KeyboardInterrupt

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._stop_if_requested(trainer, "Ctrl-C")

    def _in_fit_validation(self, trainer: pl.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_batches_done = 0
        if not self._in_fit_validation(trainer):
            return
        batches = sum(int(n) if n != float("inf") else 0 for n in trainer.num_val_batches)
        # the validation batches every rank runs: only there can the ranks agree on stopping
        if trainer.world_size > 1:
            batches = int(trainer.strategy.reduce(torch.tensor(batches, device=pl_module.device), reduce_op="min"))
        self._val_batches_shared = batches

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        self._val_batches_done += 1
        if self._in_fit_validation(trainer) and self._val_batches_done <= self._val_batches_shared:
            self._stop_if_requested(trainer, "Ctrl-C during validation")

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._in_fit_validation(trainer):
            self._stop_if_requested(trainer, "Ctrl-C during validation")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore_handler()
        if isinstance(exception, SIGTERMException) and not self._saved:
            self.save(trainer, "SIGTERM")
        elif isinstance(exception, KeyboardInterrupt) and not self._saved:
            path = last_checkpoint_path(trainer)
            log.warning("aborted mid-step: nothing new saved; the newest checkpoint is %s",
                        path if path is not None and path.is_file() else "none")


__all__ = ["InterruptCheckpoint", "last_checkpoint_path"]
