"""Validation / test values as means over items that are exact on any number of processes.

`module` below is a LightningModule (anything with `.log`, `.device` and sub-modules).

`self.log(name, batch_mean, batch_size=B)` averages batches on one process; with `sync_dist=True`
Lightning then averages the processes' means, which is the item mean only when every process saw
as many items (and with Lightning's padded sampler, some items are counted twice). `log_item_means`
keeps one `torchmetrics.MeanMetric` per name, weighted by the number of items, and logs the metric
object: Lightning computes it at the end of the epoch, summing values and weights over processes.
Non-finite values (a PSNR of a perfect texel set, a NaN of an empty region) are left out of the
mean, as a per-item table would leave them out.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn
from torchmetrics import MeanMetric

_ATTRIBUTE = "item_means"


def _metrics(module: nn.Module) -> nn.ModuleDict:
    metrics = getattr(module, _ATTRIBUTE, None)
    if metrics is None:
        metrics = nn.ModuleDict()
        setattr(module, _ATTRIBUTE, metrics)  # a sub-module: moves with the system, not checkpointed state
    return metrics


def _key(name: str) -> str:
    return name.replace("/", "__").replace(".", "_")


def item_mean(module: nn.Module, name: str) -> MeanMetric:
    """The running item mean called `name` of `module` (created on first use, on its device)."""
    metrics = _metrics(module)
    key = _key(name)
    if key not in metrics:
        metrics[key] = MeanMetric(nan_strategy="ignore").to(module.device)
        metrics[key].persistent(False)
    return metrics[key]


def log_item_means(module: nn.Module, values: Mapping[str, torch.Tensor], batch_size: int | None = None,
                   prog_bar: bool = False) -> None:
    """Add `values` to the running item means and log them for the epoch (see the module doc).

    Each value is a batch mean (scalar, weighted by `batch_size`) or per-item values (B,)."""
    for name, value in values.items():
        value = torch.as_tensor(value, dtype=torch.float32, device=module.device).detach()
        value = torch.where(torch.isfinite(value), value, torch.full_like(value, math.nan))
        metric = item_mean(module, name)
        if value.ndim == 0:
            if not torch.isnan(value):
                metric.update(value, weight=float(batch_size or 1))
        else:
            metric.update(value.flatten())
        # metric_attribute given: Lightning's own lookup is cached at the first log, before later metrics exist
        module.log(name, metric, on_step=False, on_epoch=True, prog_bar=prog_bar,
                   metric_attribute=f"{_ATTRIBUTE}.{_key(name)}")


class NamedMeans(nn.Module):
    """Means over items of named per-item values (B,) for a report (e.g. a test table): one
    torchmetrics MeanMetric per name, NaN-skipping, summed over every process at `compute`. The
    states are not checkpointed; `reset` forgets the names too."""

    def __init__(self) -> None:
        super().__init__()
        self.means = nn.ModuleDict()  # name with "/" -> "|" (a ModuleDict key cannot hold ".")

    def update(self, values: Mapping[str, torch.Tensor]) -> None:
        for name, value in values.items():
            key = name.replace("/", "|")
            if key not in self.means:  # the same names on every process: they come from the batch keys
                self.means[key] = MeanMetric(nan_strategy="ignore").to(value.device)
            self.means[key].update(value.detach().float())

    def compute(self) -> dict[str, float]:
        return {key.replace("|", "/"): float(metric.compute()) for key, metric in self.means.items()}

    def reset(self) -> None:
        self.means.clear()


__all__ = ["NamedMeans", "item_mean", "log_item_means"]
