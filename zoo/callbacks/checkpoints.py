"""Checkpoints that say what wrote them, load safely and are refused with a reason when wrong.

`CheckpointGuard` (added to every `python -m zoo` run) does three things:

- on save: stamps `checkpoint["zoo"] = {"version", "system", "format"}` and refuses to write a
  checkpoint whose weights hold NaN / inf (`NonFiniteError`, naming the tensors);
- on load (`--ckpt_path`): reads the file with `torch.load(weights_only=True)` whatever the caller
  asked (a checkpoint is data; a pickle that would run code is refused), and turns every failure
  into an error that names the file and says what to do: missing, empty, truncated or not a
  checkpoint at all, written by another system, by another zoo version, or with other weights.

The load check wraps the strategy's `CheckpointIO` at `setup`, so it sees the file before
Lightning restores anything into the model.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins import CheckpointIO

import zoo
from zoo.callbacks.nonfinite import NonFiniteError

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
HOW_TO_RESUME = ("Pass the `last.ckpt` (or another .ckpt) of a run of this config, e.g. "
                 "outputs/zoo/<run id>/checkpoints/last.ckpt.")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used for this run (the message names the file and why)."""


def class_path(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _non_finite_tensors(state: dict, limit: int = 5) -> list[str]:
    return [k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()
            and not torch.isfinite(v).all()][:limit]


def check_checkpoint(checkpoint: Any, path: str | os.PathLike, module: pl.LightningModule | None) -> dict:
    """Raise `CheckpointError` unless `checkpoint` (loaded from `path`) fits `module`'s system."""
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        keys = sorted(checkpoint)[:8] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no 'state_dict'; found {keys}): a bare "
                              f"state dict or an exported module cannot resume a run. {HOW_TO_RESUME}")
    stamp = checkpoint.get("zoo")
    if module is not None and isinstance(stamp, dict):
        if stamp.get("system") != class_path(module):
            raise CheckpointError(f"{path} was written by the system {stamp.get('system')}, but this run builds "
                                  f"{class_path(module)}: pass the config the checkpoint was trained with (its run "
                                  f"folder holds it as config.yaml), or a checkpoint of this system.")
        if stamp.get("version") != zoo.__version__ or stamp.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} was written by zoo {stamp.get('version')} (checkpoint format "
                                  f"{stamp.get('format')}), this is zoo {zoo.__version__} (format {CHECKPOINT_FORMAT}): "
                                  f"use that zoo version to resume it, or re-train with this one.")
    if module is not None:
        expected = set(module.state_dict())
        found = set(checkpoint["state_dict"])
        missing, unexpected = sorted(expected - found), sorted(found - expected)
        shapes = {k: v.shape for k, v in module.state_dict().items()}
        other = [f"{k} {tuple(v.shape)} vs {tuple(shapes[k])}" for k, v in checkpoint["state_dict"].items()
                 if k in shapes and torch.is_tensor(v) and v.shape != shapes[k]]
        if other:
            raise CheckpointError(
                f"{path} holds weights of other sizes than {class_path(module)} as configured ({len(other)} tensors, "
                f"e.g. {other[:2]}, checkpoint vs configured): pass the config it was trained with (config.yaml in "
                "its run folder).")
        if missing or unexpected:
            raise CheckpointError(
                f"{path} does not hold the weights of {class_path(module)} as configured: "
                f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}). "
                "It was trained with another system or other network sizes: pass the config it was trained with "
                "(config.yaml in its run folder).")
        if stamp is None:
            log.warning("%s has no zoo stamp (written outside `python -m zoo` or by an older zoo); its weights "
                        "match %s, loading it", path, class_path(module))
    bad = _non_finite_tensors(checkpoint["state_dict"])
    if bad:
        raise CheckpointError(f"{path} holds NaN / inf weights ({bad}): resume from an earlier checkpoint.")
    return checkpoint


def read_checkpoint(path: str | os.PathLike, load=None, map_location=None) -> dict:
    """`torch.load(path, weights_only=True)` with errors that name the file (see `check_checkpoint`)."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise CheckpointError(f"checkpoint not found: {file}. {HOW_TO_RESUME}")
    if file.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {file} is empty (0 bytes): the run that wrote it was killed while "
                              f"saving, or the copy failed. {HOW_TO_RESUME}")
    try:
        if load is not None:
            return load(file, map_location=map_location, weights_only=True)
        return torch.load(file, map_location=map_location or "cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every reader error becomes one named error
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "weights_only" in str(err) or "Unsupported global" in str(err) or "GLOBAL" in str(err):
            why = ("it pickles Python objects beyond tensors and plain data, which the zoo never loads "
                   "(that could run code)")
        elif "zip" in str(err).lower() or "central directory" in str(err) or "EOF" in str(err):
            why = "it is truncated or not a PyTorch checkpoint (the zip archive is incomplete)"
        else:
            why = "it is not a readable PyTorch checkpoint"
        raise CheckpointError(f"cannot load checkpoint {file}: {why} ({type(err).__name__}: {text}). "
                              f"{HOW_TO_RESUME}") from err


class _GuardedCheckpointIO(CheckpointIO):
    """Delegates to the strategy's own CheckpointIO; loads with weights_only and checks the result."""

    def __init__(self, inner: CheckpointIO, module: pl.LightningModule) -> None:
        self.inner, self.module = inner, module

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        self.inner.save_checkpoint(checkpoint, path, storage_options=storage_options)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        load = self.inner.load_checkpoint
        checkpoint = read_checkpoint(path, load=load, map_location=map_location)
        return check_checkpoint(checkpoint, path, self.module)

    def remove_checkpoint(self, path) -> None:
        self.inner.remove_checkpoint(path)

    def teardown(self) -> None:
        self.inner.teardown()


class CheckpointGuard(pl.Callback):
    """Stamp, check and safely load checkpoints (see the module doc)."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        io = trainer.strategy.checkpoint_io
        if not isinstance(io, _GuardedCheckpointIO):
            trainer.strategy.checkpoint_io = _GuardedCheckpointIO(io, pl_module)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        bad = _non_finite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            raise NonFiniteError(f"refusing to write a checkpoint with NaN / inf weights ({bad}) at global step "
                                 f"{trainer.global_step}: the newest checkpoint on disk is the last finite one. "
                                 "Add `zoo.callbacks.NonFiniteGuard` (on by default in `python -m zoo`) to stop "
                                 "at the step that went wrong.")
        checkpoint["zoo"] = {"version": zoo.__version__, "system": class_path(pl_module), "format": CHECKPOINT_FORMAT}


__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "CheckpointGuard", "check_checkpoint", "read_checkpoint"]
