"""Stop (or skip the step) when a training loss or gradient is NaN / inf.

Without it one bad input (NaN pixels in a view, a division by a zero-sized mask) turns every
weight into NaN within a step, the run still exits 0 and its checkpoints hold NaN. With it:

- `action="stop"` (default): the loss is checked before `backward`; a NaN / inf loss raises
  `NonFiniteError` naming the epoch, global step, batch index and, when the batch holds NaN / inf
  values, which keys and items, before any weight changes. Lightning saves nothing on an
  exception, so the newest checkpoint is the last finite one.
- `action="skip"`: the step's gradients are dropped (every `param.grad = None`, so the optimiser
  leaves weights and moments alone) and training goes on; more than `max_consecutive_skips`
  skipped steps in a row raise `NonFiniteError` (the run is diverging, not unlucky).

Non-finite gradients of a finite loss are treated the same way (checked before the optimiser
step). Works with automatic and manual optimisation (one check per backward / optimiser step).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pytorch_lightning as pl
import torch

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
    """A loss, gradient or checkpointed tensor is NaN or inf."""


def describe_non_finite(batch, prefix: str = "", limit: int = 4) -> list[str]:
    """'key: n NaN / inf values (items [i, ...])' for every floating tensor of a (nested) batch."""
    found: list[str] = []
    if isinstance(batch, torch.Tensor):
        if batch.is_floating_point():
            bad = ~torch.isfinite(batch.detach())
            if bad.any():
                items = bad.reshape(bad.shape[0], -1).any(1).nonzero().flatten().tolist() if bad.ndim else []
                found.append(f"{prefix or 'batch'}: {int(bad.sum())} NaN / inf values (items {items[:limit]})")
    elif isinstance(batch, Mapping):
        for key, value in batch.items():
            found += describe_non_finite(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}", limit)
    elif isinstance(batch, Sequence) and not isinstance(batch, str):
        for i, value in enumerate(batch):
            found += describe_non_finite(value, f"{prefix}[{i}]", limit)
    return found


class NonFiniteGuard(pl.Callback):
    """Training never silently continues on NaN / inf (see the module doc).

    Args:
        action: "stop" (raise `NonFiniteError` before the bad step changes anything) or "skip"
            (drop that step's gradients and go on).
        max_consecutive_skips: with "skip", this many skipped steps in a row still stop the run.
    """

    def __init__(self, action: str = "stop", max_consecutive_skips: int = 10) -> None:
        if action not in ("stop", "skip"):
            raise ValueError(f"action must be 'stop' or 'skip', got {action!r}")
        if max_consecutive_skips < 1:
            raise ValueError(f"max_consecutive_skips must be >= 1, got {max_consecutive_skips}")
        self.action, self.max_consecutive_skips = action, max_consecutive_skips
        self.skipped_steps: list[int] = []
        self._consecutive = 0
        self._batch, self._batch_idx = None, -1
        self._pending: str | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._batch, self._batch_idx, self._pending = batch, batch_idx, None

    def _where(self, trainer) -> str:
        return f"epoch {trainer.current_epoch}, global step {trainer.global_step}, batch {self._batch_idx}"

    def _explain(self, problem: str, trainer) -> str:
        inputs = describe_non_finite(self._batch) if self._batch is not None else []
        cause = ("; the batch holds " + "; ".join(inputs) + ": check those files / items") if inputs else \
            "; the batch itself is finite: lower the learning rate, check the loss for divisions by zero"
        return (f"{problem} at {self._where(trainer)}{cause}. Nothing was updated by this step. To skip such "
                "steps instead of stopping, use `zoo.callbacks.NonFiniteGuard(action='skip')` "
                "(CLI: --nonfinite.action=skip).")

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if torch.isfinite(loss.detach()).all():
            return
        problem = f"training loss is {float(loss.detach().float().flatten()[0])}"
        if self.action == "stop":
            raise NonFiniteError(self._explain(problem, trainer))
        self._pending = problem

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        problem = self._pending
        if problem is None:
            names = {id(p): n for n, p in pl_module.named_parameters()}
            bad = [names.get(id(p), "?") for p in params if p.grad is not None and not torch.isfinite(p.grad).all()]
            if bad:
                problem = f"gradients of {len(bad)} parameters are NaN / inf (e.g. {bad[:3]})"
        if problem is None:
            return
        if self.action == "stop":
            raise NonFiniteError(self._explain(problem, trainer))
        for p in params:
            p.grad = None
        self._pending = None
        self._consecutive += 1
        self.skipped_steps.append(trainer.global_step)
        log.warning("skipped the optimiser step: %s (%s)", problem, self._where(trainer))
        if self._consecutive > self.max_consecutive_skips:
            raise NonFiniteError(self._explain(f"{self._consecutive} steps in a row were skipped ({problem})", trainer))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self.skipped_steps or self.skipped_steps[-1] != trainer.global_step - 1:
            self._consecutive = 0
        self._batch = None

    def state_dict(self) -> dict:
        return {"skipped_steps": list(self.skipped_steps)}

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped_steps = list(state_dict.get("skipped_steps", []))


__all__ = ["NonFiniteError", "NonFiniteGuard", "describe_non_finite"]
